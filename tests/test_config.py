"""Settings: file, environment and flag precedence; clear errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rqjobs.config import load_settings
from rqjobs.exceptions import ConfigError
from tests.conftest import Project


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.config_path is None
    assert settings.data_dir == tmp_path / ".rqjobs"
    assert settings.database_url == f"sqlite:///{tmp_path / '.rqjobs' / 'rqjobs.sqlite3'}"
    assert settings.redis_url is None and settings.embedded_redis
    assert settings.default_queue == "default"
    assert settings.default_timeout_s == 180
    assert settings.default_retries == 0
    assert settings.status_limit == 20
    assert settings.progress_interval_s == 0.5
    assert settings.reconcile_interval_s == 15
    assert settings.result_ttl_s >= 86400


def test_file_in_working_directory_and_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "rqjobs.toml",
        'data_dir = "var"\ndatabase_url = "sqlite:///db/tasks.db"\ntasks_modules = ["myapp.tasks"]\n',
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.config_path == tmp_path / "rqjobs.toml"
    assert settings.data_dir == tmp_path / "var"
    assert settings.database_url == f"sqlite:///{tmp_path / 'db' / 'tasks.db'}"
    assert settings.tasks_modules == ("myapp.tasks",)


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'redis_url = "redis://file/0"\ndefault_queue = "fromfile"\n')
    env = {"RQJOBS_REDIS_URL": "redis://env/0", "RQJOBS_DEFAULT_QUEUE": "fromenv"}
    assert load_settings(config, env=env).redis_url == "redis://env/0"
    assert load_settings(config, env=env).default_queue == "fromenv"
    flagged = load_settings(config, env=env, overrides={"redis_url": "redis://flag/0"})
    assert flagged.redis_url == "redis://flag/0"
    assert load_settings(config, env={}).redis_url == "redis://file/0"


def test_rqjobs_config_env_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "elsewhere.toml", 'default_queue = "q1"\n')
    assert load_settings(env={"RQJOBS_CONFIG": str(config)}).default_queue == "q1"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    config = write(tmp_path / "rqjobs.toml", 'databse_url = "sqlite:///x"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config, env={})
    assert str(config) in str(err.value) and "databse_url" in str(err.value)


def test_unknown_mail_key_and_password_in_file(tmp_path: Path) -> None:
    config = write(tmp_path / "rqjobs.toml", '[mail]\nhots = "x"\n')
    with pytest.raises(ConfigError, match="mail.hots"):
        load_settings(config, env={})
    config = write(tmp_path / "rqjobs.toml", '[mail]\npassword = "secret"\n')
    with pytest.raises(ConfigError, match="environment"):
        load_settings(config, env={})


def test_invalid_toml_and_wrong_types(tmp_path: Path) -> None:
    config = write(tmp_path / "rqjobs.toml", "this is = = not toml\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config, env={})
    config = write(tmp_path / "rqjobs.toml", 'default_timeout_s = "soon"\n')
    with pytest.raises(ConfigError, match="default_timeout_s"):
        load_settings(config, env={})
    with pytest.raises(ConfigError, match="RQJOBS_STATUS_LIMIT"):
        load_settings(None, env={"RQJOBS_STATUS_LIMIT": "many"})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_mail_password_comes_from_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "rqjobs.toml", '[mail]\nbackend = "smtp"\npassword_env = "MY_SMTP_PW"\n')
    settings = load_settings(config, env={"MY_SMTP_PW": "s3cret"})
    assert settings.mail.password == "s3cret"
    assert "s3cret" not in repr(settings)


def test_cli_reports_bad_config_without_traceback(project: Project) -> None:
    project.config_path.write_text('redis_url = "redis://x"\nnot_a_key = 1\n')
    result = project.rqjobs("status")
    assert result.returncode == 2
    assert "not_a_key" in result.stderr and "rqjobs.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_example_documents_every_key_and_loads() -> None:
    """config.example.toml names every key the loader accepts, and is itself valid."""
    from rqjobs import config
    from tests.conftest import REPO_ROOT

    example = REPO_ROOT / "config.example.toml"
    text = example.read_text()
    for key in config._TOP_KEYS:
        assert f"{key} =" in text, f"config.example.toml does not document {key}"
    for key in config._MAIL_KEYS:
        assert f"{key} =" in text, f"config.example.toml does not document mail.{key}"
    settings = load_settings(example, env={})
    assert settings.default_timeout_s == 180 and settings.mail.backend == "outbox"
    assert settings.schedules == ()  # the [[schedule]] examples are commented out


def test_config_example_schedules_document_every_key_and_load(tmp_path: Path) -> None:
    """The commented [[schedule]] examples name every schedule key and, uncommented, load."""
    from rqjobs.schedules.spec import SCHEDULE_KEYS
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "config.example.toml").read_text()
    block = text[text.index("# [[schedule]]") :]
    for key in SCHEDULE_KEYS:
        assert f"# {key} =" in block, f"config.example.toml does not document schedule key {key}"
    uncommented = "\n".join(line[2:] if line.startswith("# ") else "" for line in block.splitlines())
    path = tmp_path / "rqjobs.toml"
    path.write_text(uncommented)
    schedules = load_settings(path, env={}).schedules
    assert [(s.name, s.spec_text, s.timezone) for s in schedules] == [
        ("nightly-count", "cron 30 2 * * *", "Europe/Berlin"),
        ("heartbeat", "every 10m", "UTC"),
    ]
