"""The ``[[schedule]]`` tables of rqjobs.toml: their model, validation and tick arithmetic.

A schedule's *ticks* are the instants it fires at, as aware UTC datetimes:

* ``every = "30s"``: the multiples of the interval since the Unix epoch (UTC), so every
  worker on every host computes the same ticks with no coordination. ``timezone`` does not
  apply (and is refused): an interval has no wall clock.
* ``cron = "30 2 * * *"``: standard 5-field cron, parsed and iterated by croniter in the
  schedule's IANA ``timezone`` (zoneinfo), then stored in UTC. Daylight saving time follows
  croniter, with one adjustment that cron users expect (Vixie cron does the same):

  - spring forward: a time in the skipped hour fires once, right after the change
    (``30 2 * * *`` in Europe/Berlin fires at 03:00 CEST on the last Sunday of March);
  - fall back: a job whose hour field is fixed fires once, in the first pass through the
    repeated hour (croniter alone would fire ``30 2 * * *`` twice that night); a job whose
    hour field is a wildcard (``*/30 * * * *``, ``0 * * * *``) fires in both passes, as real
    time goes on.

Validation happens when the config is loaded (bad cron, unknown timezone, both or neither of
cron/every, an unknown key: :class:`~rqjobs.exceptions.ConfigError`, exit 2, naming the file
and the key); whether ``task`` is registered can only be checked once the task modules are
imported (:func:`check_tasks`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from rqjobs.exceptions import ConfigError

CATCH_UP_POLICIES = ("none", "last", "all")
DEFAULT_CATCH_UP = "last"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
_EVERY = re.compile(r"^(\d+)([smhd])$")
_EVERY_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: key -> what it must be (for the error message); every key a [[schedule]] table may have
SCHEDULE_KEYS: dict[str, str] = {
    "name": "a string",
    "task": "a string",
    "cron": "a string",
    "every": "a string",
    "args": "a list",
    "kwargs": "a table",
    "description": "a string",
    "queue": "a string",
    "timezone": "a string",
    "catch_up": "a string",
    "skip_if_running": "a boolean",
    "enabled": "a boolean",
}
_TYPES: dict[str, type | tuple[type, ...]] = {
    "a string": str,
    "a list": list,
    "a table": dict,
    "a boolean": bool,
}


@dataclass(frozen=True)
class ScheduleSpec:
    """One ``[[schedule]]`` table, validated."""

    name: str
    task: str
    #: exactly one of ``cron`` and ``every_s`` is set
    cron: str | None = None
    every_s: int | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: may contain ``{tick}``: the tick, in the schedule's timezone, ISO 8601
    description: str | None = None
    queue: str | None = None
    timezone: str = "UTC"
    catch_up: str = DEFAULT_CATCH_UP
    skip_if_running: bool = True
    enabled: bool = True

    @property
    def spec_text(self) -> str:
        """``cron 30 2 * * *`` or ``every 30s``: what ``schedule list`` shows."""
        if self.cron is not None:
            return f"cron {self.cron}"
        return f"every {_every_text(self.every_s or 0)}"

    def zone(self) -> Any:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def describe(self, tick: datetime | None) -> str:
        """The row's description for ``tick`` (None: a run outside the ticks, made now)."""
        when = (tick or datetime.now(timezone.utc)).astimezone(self.zone()).isoformat(timespec="seconds")
        if self.description:
            return self.description.replace("{tick}", when)
        return f"{self.name} at {when}" if tick else f"{self.name}, run by hand at {when}"

    # -- ticks ----------------------------------------------------------------------------

    def tick_at_or_before(self, when: datetime) -> datetime | None:
        """The newest tick not after ``when`` (None if there is none within a year)."""
        if self.every_s:
            step = timedelta(seconds=self.every_s)
            return _EPOCH + ((when - _EPOCH) // step) * step
        for tick in self._cron_ticks(when, backwards=True, inclusive=True):
            return tick
        return None

    def next_tick_after(self, when: datetime) -> datetime:
        """The first tick strictly after ``when``."""
        if self.every_s:
            step = timedelta(seconds=self.every_s)
            return _EPOCH + ((when - _EPOCH) // step + 1) * step
        return next(self._cron_ticks(when))

    def ticks_between(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Ticks in ``(after, until]``, oldest first, at most ``limit`` of them."""
        out: list[datetime] = []
        if self.every_s:
            tick = self.next_tick_after(after)
            step = timedelta(seconds=self.every_s)
            while tick <= until and len(out) < limit:
                out.append(tick)
                tick += step
            return out
        for tick in self._cron_ticks(after):
            if tick > until or len(out) >= limit:
                break
            out.append(tick)
        return out

    def _cron_ticks(
        self, start: datetime, *, backwards: bool = False, inclusive: bool = False
    ) -> Iterator[datetime]:
        """croniter's ticks from ``start`` in the schedule's zone, as UTC, with the
        fall-back rule above applied."""
        from croniter import croniter  # type: ignore[import-untyped]

        assert self.cron is not None
        zone = self.zone()
        local = start.astimezone(zone)
        if inclusive:  # croniter's get_prev is strictly before; step a microsecond past
            local = (start + timedelta(microseconds=1)).astimezone(zone)
        it = croniter(self.cron, local)
        fixed_hour = not self.cron.split()[1].startswith("*")
        for _ in range(400 * 24 * 60):  # bounded: a year of minutes at most
            tick = it.get_prev(datetime) if backwards else it.get_next(datetime)
            if fixed_hour and _second_pass_of_repeated_hour(tick):
                continue
            yield tick.astimezone(timezone.utc)


def _second_pass_of_repeated_hour(local: datetime) -> bool:
    """Is ``local`` a wall time that occurs twice (fall back), in its second occurrence?"""
    first = local.replace(fold=0).utcoffset()
    second = local.replace(fold=1).utcoffset()
    return (
        first != second
        and local.utcoffset() == second
        and first is not None
        and second is not None
        and first > second
    )


def _every_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- loading -----------------------------------------------------------------------------


def parse_schedules(raw: Any, where: str) -> tuple[ScheduleSpec, ...]:
    """``[[schedule]]`` tables (a list of dicts from TOML) -> validated specs.

    Raises :class:`ConfigError` naming ``where`` (the file), the schedule and the key.
    """
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(f"{where}: schedule must be written as [[schedule]] tables")
    specs: list[ScheduleSpec] = []
    seen: set[str] = set()
    for index, table in enumerate(raw, start=1):
        spec = _parse_one(table, where, index)
        if spec.name in seen:
            raise ConfigError(f"{where}: [[schedule]] #{index}: name: {spec.name!r} is used twice")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _parse_one(table: Mapping[str, Any], where: str, index: int) -> ScheduleSpec:
    name = table.get("name")
    label = f"[[schedule]] {name!r}" if isinstance(name, str) and name else f"[[schedule]] #{index}"

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{where}: {label}: {key}: {message}")

    for key, value in table.items():
        if key not in SCHEDULE_KEYS:
            known = ", ".join(SCHEDULE_KEYS)
            raise fail(key, f"unknown key (a schedule has {known})")
        expected = SCHEDULE_KEYS[key]
        if not isinstance(value, _TYPES[expected]):
            raise fail(key, f"expected {expected}, got {value!r}")
    for key in ("name", "task"):
        if not table.get(key):
            raise fail(key, "missing (every schedule needs a name and a task)")
    if not _NAME.match(table["name"]):
        raise fail("name", f"{table['name']!r} is not a valid name (letters, digits, _ . : -; up to 200)")
    cron, every = table.get("cron"), table.get("every")
    if (cron is None) == (every is None):
        raise fail("cron", "give exactly one of cron and every" + (", not both" if cron else ""))
    zone_name = table.get("timezone", "UTC")
    if every is not None and "timezone" in table:
        raise fail("timezone", "applies to cron schedules only (every ticks count from the Unix epoch)")
    _check_zone(zone_name, fail)
    every_s = _parse_every(every, fail) if every is not None else None
    if cron is not None:
        cron = " ".join(cron.split())
        _check_cron(cron, fail)
    catch_up = table.get("catch_up", DEFAULT_CATCH_UP)
    if catch_up not in CATCH_UP_POLICIES:
        raise fail("catch_up", f"must be one of {', '.join(CATCH_UP_POLICIES)}, got {catch_up!r}")
    description = table.get("description")
    if description is not None and not description.strip():
        raise fail("description", "must not be empty")
    return ScheduleSpec(
        name=table["name"],
        task=table["task"],
        cron=cron,
        every_s=every_s,
        args=tuple(table.get("args", ())),
        kwargs=dict(table.get("kwargs", {})),
        description=description,
        queue=table.get("queue"),
        timezone=zone_name,
        catch_up=catch_up,
        skip_if_running=table.get("skip_if_running", True),
        enabled=table.get("enabled", True),
    )


def _parse_every(text: str, fail: Any) -> int:
    match = _EVERY.match(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise fail("every", f"not an interval: {text!r} (use e.g. 30s, 10m, 2h, 1d)")
    return int(match.group(1)) * _EVERY_UNITS_S[match.group(2)]


def _check_zone(name: str, fail: Any) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail("timezone", f"unknown IANA time zone {name!r} (e.g. UTC, Europe/Berlin)") from None


def _check_cron(expr: str, fail: Any) -> None:
    from croniter import croniter  # type: ignore[import-untyped]

    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise fail("cron", f"not a valid 5-field cron expression: {expr!r}")


def check_tasks(specs: Sequence[ScheduleSpec], where: str, registered: Mapping[str, Any]) -> None:
    """Refuse a schedule whose task is not registered (the task modules must be loaded)."""
    for spec in specs:
        if spec.task not in registered:
            known = ", ".join(sorted(registered)) or "none"
            raise ConfigError(
                f"{where}: [[schedule]] {spec.name!r}: task: unknown task {spec.task!r} (registered: {known})"
            )


def find(specs: Sequence[ScheduleSpec], name: str) -> ScheduleSpec:
    """The schedule called ``name``, or :class:`~rqjobs.exceptions.UnknownSchedule`."""
    from rqjobs.exceptions import UnknownSchedule

    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs) or "none configured"
    raise UnknownSchedule(f"no schedule named {name!r} (schedules: {known})")
