"""Typed settings: command-line flag > ``RQJOBS_*`` env var > ``rqjobs.toml`` > defaults.

Loading is explicit (:func:`load_settings`) and cheap; nothing here runs at import
time. Relative paths in the config file are taken relative to the file's folder, so a
project's ``rqjobs.toml`` means the same thing from any working directory.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rqjobs import defaults as d
from rqjobs.exceptions import ConfigError
from rqjobs.redact import remember_secret, remember_url

if TYPE_CHECKING:
    from rqjobs.schedules.spec import ScheduleSpec

ENV_PREFIX = "RQJOBS_"


@dataclass(frozen=True)
class MailSettings:
    """The ``[mail]`` table: how send-mail delivers."""

    #: "outbox" writes .eml files into ``outbox_dir``; "smtp" talks to ``host``. The file's
    #: ``backend = "auto"`` (its default) is resolved on loading: "smtp" when ``host`` is set
    backend: str = "outbox"
    host: str = "localhost"
    port: int = 25
    username: str | None = None
    #: never stored in the file: read from the env var named by ``password_env``
    password: str | None = field(default=None, repr=False)
    password_env: str = "RQJOBS_MAIL_PASSWORD"
    #: "none", "starttls" or "ssl"
    security: str = "none"
    sender: str = "rqjobs@localhost"
    timeout_s: float = d.MAIL_TIMEOUT_S
    outbox_dir: Path | None = None
    #: send-mail attaches only files under these folders (default: the config file's folder)
    attachments_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Settings:
    """Everything rqjobs reads from its configuration, resolved and typed."""

    config_path: Path | None
    base_dir: Path
    data_dir: Path
    database_url: str
    redis_url: str | None = None
    redis_server: str | None = None
    tasks_modules: tuple[str, ...] = ()
    default_queue: str = d.DEFAULT_QUEUE
    default_timeout_s: int = d.DEFAULT_TIMEOUT_S
    default_retries: int = d.DEFAULT_RETRIES
    default_retry_interval_s: int = d.DEFAULT_RETRY_INTERVAL_S
    timeout_grace_s: float = d.TIMEOUT_GRACE_S
    result_ttl_s: int = d.RESULT_TTL_S
    max_result_bytes: int = d.MAX_RESULT_BYTES
    failure_ttl_s: int = d.FAILURE_TTL_S
    status_limit: int = d.DEFAULT_STATUS_LIMIT
    progress_interval_s: float = d.PROGRESS_INTERVAL_S
    reconcile_interval_s: float = d.RECONCILE_INTERVAL_S
    reconcile_grace_s: float = d.RECONCILE_GRACE_S
    worker_liveness_ttl_s: float = d.WORKER_LIVENESS_TTL_S
    redis_socket_timeout_s: float = d.REDIS_SOCKET_TIMEOUT_S
    db_retry_s: float = d.DB_RETRY_S
    templates_dir: Path | None = None
    image_sizes: tuple[int, ...] = d.IMAGE_SIZES_PX
    image_output_dir: Path | None = None
    url_timeout_s: float = d.URL_TIMEOUT_S
    url_max_bytes: int = d.URL_MAX_BYTES
    mail: MailSettings = field(default_factory=MailSettings)
    #: the ``[[schedule]]`` tables, validated (their tasks are checked once the task modules load)
    schedules: tuple[ScheduleSpec, ...] = ()
    #: the ``[limits]`` table: task name -> most jobs of it running at once, across every
    #: worker; beats ``@background_task(max_running=...)`` (see rqjobs.flow.concurrency_limit)
    limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def embedded_redis(self) -> bool:
        """True when rqjobs runs its own redis-server (no ``redis_url`` configured)."""
        return not self.redis_url

    @property
    def outbox_dir(self) -> Path:
        return self.mail.outbox_dir or self.data_dir / "outbox"


# key -> (type, env var or None). Types: str, int, float, path, list[str], list[int].
_TOP_KEYS: dict[str, str] = {
    "database_url": "str",
    "redis_url": "str",
    "data_dir": "path",
    "redis_server": "str",
    "tasks_modules": "list[str]",
    "default_queue": "str",
    "default_timeout_s": "int",
    "default_retries": "int",
    "default_retry_interval_s": "int",
    "timeout_grace_s": "float",
    "result_ttl_s": "int",
    "max_result_bytes": "int",
    "failure_ttl_s": "int",
    "status_limit": "int",
    "progress_interval_s": "float",
    "reconcile_interval_s": "float",
    "reconcile_grace_s": "float",
    "worker_liveness_ttl_s": "float",
    "redis_socket_timeout_s": "float",
    "db_retry_s": "float",
    "templates_dir": "path",
    "image_sizes": "list[int]",
    "image_output_dir": "path",
    "url_timeout_s": "float",
    "url_max_bytes": "int",
}
_MAIL_KEYS: dict[str, str] = {
    "backend": "str",
    "host": "str",
    "port": "int",
    "username": "str",
    "password_env": "str",
    "security": "str",
    "sender": "str",
    "timeout_s": "float",
    "outbox_dir": "path",
    "attachments_dirs": "list[path]",
}
_MAIL_BACKENDS = ("auto", "outbox", "smtp")
_MAIL_SECURITY = ("none", "starttls", "ssl")


def env_var_for(key: str) -> str:
    """The environment variable that overrides a top-level key."""
    return ENV_PREFIX + key.upper()


def _coerce(value: Any, kind: str, where: str, base_dir: Path) -> Any:
    """Check and convert one value, naming ``where`` it came from in any error."""
    try:
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError("a string")
            return value
        if kind == "int":
            if isinstance(value, bool):
                raise TypeError("an integer")
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError("a number")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError("a finite number")
            return number
        if kind == "path":
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError("a path")
            path = Path(os.path.expanduser(str(value)))
            return path if path.is_absolute() else (base_dir / path)
        if kind == "list[str]":
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError("a list of strings")
            return tuple(value)
        if kind == "list[path]":
            if isinstance(value, (str, os.PathLike)):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, (str, os.PathLike)) for v in value):
                raise TypeError("a list of paths")
            return tuple(_coerce(v, "path", where, base_dir) for v in value)
        if kind == "list[int]":
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise TypeError("a list of integers")
            return tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        expected = exc.args[0] if isinstance(exc, TypeError) or exc.args == ("a finite number",) else kind
        raise ConfigError(f"{where}: expected {expected}, got {value!r}") from None
    raise AssertionError(kind)  # pragma: no cover


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def find_config_file(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """``--config`` wins, then ``RQJOBS_CONFIG``, then the nearest ``rqjobs.toml``.

    The nearest one is looked for in the working directory and then each parent folder,
    as git, ruff and pytest find theirs: a command run from a project's subfolder must
    use the project's database and Redis, not quietly start a second set of its own.
    """
    if explicit:
        return Path(explicit).expanduser().resolve()
    if env.get("RQJOBS_CONFIG"):
        return Path(env["RQJOBS_CONFIG"]).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / d.CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings once; callers pass the result down instead of re-reading.

    ``overrides`` are command-line values (already typed) and beat everything else.
    """
    env = os.environ if env is None else env
    path = find_config_file(config_path, env)
    raw: dict[str, Any] = _read_toml(path) if path else {}
    base_dir = path.parent if path else Path.cwd()
    where = str(path) if path else "config"

    values: dict[str, Any] = {}
    mail_values: dict[str, Any] = {}
    schedules: tuple[ScheduleSpec, ...] = ()
    limits: dict[str, int] = {}
    for key, value in raw.items():
        if key == "limits":
            limits = _parse_limits(value, where)
            continue
        if key == "schedule":
            from rqjobs.schedules.spec import parse_schedules

            schedules = parse_schedules(value, where)
            continue
        if key == "mail":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [mail] must be a table")
            for mkey, mvalue in value.items():
                if mkey == "password":
                    raise ConfigError(
                        f"{where}: 'mail.password' must not be stored in the file; "
                        "put it in the environment variable named by mail.password_env"
                    )
                if mkey not in _MAIL_KEYS:
                    raise ConfigError(f"{where}: unknown key 'mail.{mkey}'")
                mail_values[mkey] = _coerce(mvalue, _MAIL_KEYS[mkey], f"{where}: mail.{mkey}", base_dir)
            continue
        if key not in _TOP_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'")
        values[key] = _coerce(value, _TOP_KEYS[key], f"{where}: {key}", base_dir)

    cwd = Path.cwd()
    for key, kind in _TOP_KEYS.items():
        var = env_var_for(key)
        if env.get(var) not in (None, ""):
            values[key] = _coerce(env[var], kind, var, cwd)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _TOP_KEYS:
            raise ConfigError(f"unknown setting '{key}'")
        values[key] = _coerce(value, _TOP_KEYS[key], f"--{key.replace('_', '-')}", cwd)

    data_dir: Path = values.pop("data_dir", None) or base_dir / d.DATA_DIR_NAME
    database_url = values.pop("database_url", None) or f"sqlite:///{data_dir / d.DATABASE_FILE_NAME}"
    database_url = _anchor_sqlite_path(database_url, base_dir)
    if values.get("redis_url") == "":
        values["redis_url"] = None

    if mail_values.get("backend", "auto") == "auto":
        # [mail] host set means "send through it": writing to the outbox instead was a silent surprise
        mail_values["backend"] = "smtp" if "host" in mail_values else "outbox"
    password_env = mail_values.get("password_env", MailSettings.password_env)
    mail_values.setdefault("attachments_dirs", (base_dir,))
    mail = MailSettings(**mail_values, password=env.get(password_env) or None)
    _validate(mail, values, where)
    _check_url("database_url", database_url, _DATABASE_SCHEMES, where)
    if mail.password:
        remember_secret(mail.password)
    return Settings(
        config_path=path,
        base_dir=base_dir,
        data_dir=data_dir,
        database_url=database_url,
        mail=mail,
        schedules=schedules,
        limits=limits,
        **values,
    )


#: a concurrency limit above this is a typo, not a limit
MAX_LIMIT = 1_000_000


def _parse_limits(value: Any, where: str) -> dict[str, int]:
    """``[limits]``: task name -> a positive whole number (checked here, before any worker runs)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [limits] must be a table of task name = number")
    limits: dict[str, int] = {}
    for name, n in value.items():
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LIMIT:
            raise ConfigError(
                f"{where}: limits.{name} must be a whole number between 1 and {MAX_LIMIT}, got {n!r}"
            )
        limits[name] = n
    return limits


def _anchor_sqlite_path(url: str, base_dir: Path) -> str:
    """A relative SQLite path means relative to the config file, like every other path here."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    rest = url[len(prefix) :]
    if not rest or rest.startswith(":memory:") or rest.startswith("file:"):
        return url
    return prefix + str(base_dir / rest)


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb")


def _check_url(key: str, url: str, schemes: Sequence[str], where: str) -> None:
    """Refuse a URL that does not parse now, before any row is written; the message masks it.

    An unencoded '#', '/' or '@' in a password splits the URL in the wrong place, and
    the client library would later quote the pieces (password included) in its error.
    """
    from urllib.parse import urlsplit

    from rqjobs.redact import mask_url

    remember_url(url)
    shown = mask_url(url)
    scheme = url.partition("://")[0].split("+")[0].lower() if "://" in url else ""
    if scheme not in schemes:
        raise ConfigError(
            f"{where}: {key} must start with one of {', '.join(s + '://' for s in schemes)}; got {shown}"
        )
    if scheme in ("sqlite", "unix"):
        return
    hint = "encode special characters of the user name and password (% as %25, # as %23, / as %2F, @ as %40)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: {key} {shown} does not parse: {hint}") from None
    if parts.fragment or url.count("@") > 1 or (scheme.startswith("redis") and not parts.hostname):
        raise ConfigError(f"{where}: {key} {shown} does not parse: {hint}")


def _validate(mail: MailSettings, values: Mapping[str, Any], where: str) -> None:
    redis_url = values.get("redis_url")
    if redis_url:
        _check_url("redis_url", redis_url, ("redis", "rediss", "unix"), where)
    if mail.backend not in _MAIL_BACKENDS:
        raise ConfigError(f"{where}: mail.backend must be one of {', '.join(_MAIL_BACKENDS)}")
    if mail.security not in _MAIL_SECURITY:
        raise ConfigError(f"{where}: mail.security must be one of {', '.join(_MAIL_SECURITY)}")
    if not 0 < mail.port < 65536:
        raise ConfigError(f"{where}: mail.port must be between 1 and 65535")
    if mail.timeout_s <= 0:
        raise ConfigError(f"{where}: mail.timeout_s must be positive")
    for key in ("default_timeout_s", "status_limit", "result_ttl_s", "failure_ttl_s", "timeout_grace_s"):
        if key in values and values[key] <= 0:
            raise ConfigError(f"{where}: {key} must be positive")
    positive = (
        "reconcile_interval_s",
        "worker_liveness_ttl_s",
        "redis_socket_timeout_s",
        "progress_interval_s",
    )
    for key in (*positive, "url_timeout_s", "url_max_bytes", "max_result_bytes"):
        if key in values and values[key] <= 0:
            raise ConfigError(f"{where}: {key} must be positive")
    for key in ("default_retries", "default_retry_interval_s", "db_retry_s", "reconcile_grace_s"):
        if key in values and values[key] < 0:
            raise ConfigError(f"{where}: {key} must not be negative")
    if any(size <= 0 for size in values.get("image_sizes", ())):
        raise ConfigError(f"{where}: image_sizes must be positive")


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with some fields replaced (tests and the CLI use this)."""
    return replace(settings, **changes)


_current: Settings | None = None


def set_current_settings(settings: Settings | None) -> None:
    """Make ``settings`` the process-wide settings (the CLI and the worker do this once)."""
    global _current
    _current = settings


def current_settings() -> Settings:
    """The process-wide settings, loaded from the environment on first use."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current
