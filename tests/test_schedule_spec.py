"""[[schedule]] tables: validation at load (file and key named, exit 2) and tick arithmetic,
including a Europe/Berlin cron across both DST changes of 2026 (computed, not waited for)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rqjobs.config import load_settings
from rqjobs.exceptions import ConfigError
from rqjobs.schedules.spec import ScheduleSpec
from tests.conftest import Project
from tests.helpers import row_count

UTC = timezone.utc


def _load(tmp_path: Path, body: str) -> tuple[ScheduleSpec, ...]:
    path = tmp_path / "rqjobs.toml"
    path.write_text(body)
    return load_settings(path, env={}).schedules


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_valid_table_loads_with_its_defaults(tmp_path: Path) -> None:
    (spec,) = _load(
        tmp_path,
        '[[schedule]]\nname = "n"\ntask = "add"\ncron = "*/5  * * * *"\nkwargs = {a = 1, b = 2}\n',
    )
    assert (spec.cron, spec.every_s, spec.timezone, spec.catch_up) == ("*/5 * * * *", None, "UTC", "last")
    assert spec.skip_if_running is True and spec.enabled is True and spec.kwargs == {"a": 1, "b": 2}
    assert spec.describe(_utc(2026, 1, 1, 9, 0, 0)) == "n at 2026-01-01T09:00:00+00:00"


@pytest.mark.parametrize(
    ("table", "needles"),
    [
        ('name = "n"\ntask = "add"\ncron = "61 * * * *"', ["'n'", "cron:", "61 * * * *"]),
        ('name = "n"\ntask = "add"\ncron = "* * * * * *"', ["cron:", "5-field"]),
        (
            'name = "n"\ntask = "add"\ncron = "0 3 * * *"\ntimezone = "Mars/Olympus"',
            ["timezone:", "Mars/Olympus"],
        ),
        ('name = "n"\ntask = "add"\ncron = "0 3 * * *"\nevery = "1m"', ["cron:", "exactly one", "not both"]),
        ('name = "n"\ntask = "add"', ["cron:", "exactly one of cron and every"]),
        ('name = "n"\ntask = "add"\nevery = "1m"\ncolour = "red"', ["colour:", "unknown key"]),
        ('name = "n"\ntask = "add"\nevery = "soon"', ["every:", "soon"]),
        ('name = "n"\ntask = "add"\nevery = "0s"', ["every:"]),
        ('name = "n"\ntask = "add"\nevery = "1m"\ntimezone = "UTC"', ["timezone:", "cron schedules only"]),
        ('name = "n"\ntask = "add"\nevery = "1m"\ncatch_up = "some"', ["catch_up:", "none, last, all"]),
        ('name = "n"\ntask = "add"\nevery = "1m"\nenabled = "yes"', ["enabled:", "a boolean"]),
        ('task = "add"\nevery = "1m"', ["#1", "name:", "missing"]),
    ],
)
def test_an_invalid_table_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, table: str, needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"[[schedule]]\n{table}\n")
    message = caught.value.message
    assert str(tmp_path / "rqjobs.toml") in message and "[[schedule]]" in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_two_schedules_with_one_name_are_refused(tmp_path: Path) -> None:
    table = '[[schedule]]\nname = "twin"\ntask = "add"\nevery = "1m"\n'
    with pytest.raises(ConfigError, match="'twin' is used twice"):
        _load(tmp_path, table + table)


@pytest.mark.parametrize(
    ("table", "needles"),
    [
        ('name = "n"\ntask = "no-such-task"\nevery = "1m"', ["'n'", "task:", "no-such-task"]),
        ('name = "n"\ntask = "add"\nevery = "1m"\nkwargs = {a = 1}', ["'n'", "args/kwargs", "b"]),
        (
            'name = "n"\ntask = "add"\nevery = "1m"\nkwargs = {a = 1, b = 2}\nqueue = "no good"',
            ["queue", "no good"],
        ),
    ],
)
def test_the_cli_refuses_an_invalid_schedule_with_exit_2(
    project: Project, table: str, needles: list[str]
) -> None:
    """Checked at load by every command that loads the tasks: no traceback, nothing written."""
    config = project.config_path.read_text()
    project.config_path.write_text(config + f"[[schedule]]\n{table}\n")
    for args in (("schedule", "list"), ("worker", "--burst")):
        result = project.rqjobs(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "rqjobs.toml" in result.stderr and "Traceback" not in result.stderr
        for needle in needles:
            assert needle in result.stderr, (needle, result.stderr)
    assert row_count(project) == 0


# -- ticks ---------------------------------------------------------------------------------


def test_every_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    spec = ScheduleSpec(name="n", task="add", every_s=600)
    now = _utc(2026, 5, 1, 12, 34, 56)
    assert spec.tick_at_or_before(now) == _utc(2026, 5, 1, 12, 30)
    assert spec.next_tick_after(now) == _utc(2026, 5, 1, 12, 40)
    assert spec.next_tick_after(_utc(2026, 5, 1, 12, 40)) == _utc(2026, 5, 1, 12, 50)  # strictly after
    assert spec.ticks_between(_utc(2026, 5, 1, 12, 0), _utc(2026, 5, 1, 12, 30), 10) == [
        _utc(2026, 5, 1, 12, 10),
        _utc(2026, 5, 1, 12, 20),
        _utc(2026, 5, 1, 12, 30),
    ]
    assert len(spec.ticks_between(_utc(2026, 1, 1), _utc(2026, 2, 1), 7)) == 7  # the limit holds


def test_berlin_cron_across_spring_forward_fires_once_right_after_the_gap() -> None:
    """02:30 does not exist on 2026-03-29 in Berlin: the tick comes at 03:00 CEST (01:00 UTC)."""
    spec = ScheduleSpec(name="n", task="add", cron="30 2 * * *", timezone="Europe/Berlin")
    ticks = spec.ticks_between(_utc(2026, 3, 27, 12), _utc(2026, 3, 31, 12), 10)
    assert ticks == [
        _utc(2026, 3, 28, 1, 30),  # 02:30 CET
        _utc(2026, 3, 29, 1, 0),  # 03:00 CEST, right after the skipped hour
        _utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        _utc(2026, 3, 31, 0, 30),
    ]


def test_berlin_cron_across_fall_back_fires_a_fixed_hour_once_and_wildcards_twice() -> None:
    """02:00-03:00 happens twice on 2026-10-25 in Berlin."""
    daily = ScheduleSpec(name="d", task="add", cron="30 2 * * *", timezone="Europe/Berlin")
    assert daily.ticks_between(_utc(2026, 10, 23, 12), _utc(2026, 10, 26, 12), 10) == [
        _utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        _utc(2026, 10, 25, 0, 30),  # 02:30 CEST, first pass only (croniter alone: also 01:30 UTC)
        _utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]
    half_hourly = ScheduleSpec(name="h", task="add", cron="*/30 * * * *", timezone="Europe/Berlin")
    ticks = half_hourly.ticks_between(_utc(2026, 10, 24, 23, 10), _utc(2026, 10, 25, 2, 10), 20)
    # real time goes on: every 30 minutes, through both passes of the repeated hour
    assert ticks == [_utc(2026, 10, 24, 23, 30) + timedelta(minutes=30 * i) for i in range(6)]
    assert len(set(ticks)) == len(ticks)


def test_tick_at_or_before_includes_a_tick_exactly_now_and_skips_the_repeat() -> None:
    spec = ScheduleSpec(name="n", task="add", cron="30 2 * * *", timezone="Europe/Berlin")
    assert spec.tick_at_or_before(_utc(2026, 10, 25, 0, 30)) == _utc(2026, 10, 25, 0, 30)
    # an hour later is the repeated 02:30 (CET), which does not fire: the newest tick is the first
    assert spec.tick_at_or_before(_utc(2026, 10, 25, 1, 45)) == _utc(2026, 10, 25, 0, 30)
    assert spec.next_tick_after(_utc(2026, 10, 25, 0, 30)) == _utc(2026, 10, 26, 1, 30)
