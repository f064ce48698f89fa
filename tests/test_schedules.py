"""Recurring tasks with real workers on SQLite, PostgreSQL and MariaDB.

* three workers (two of them on simulated other hosts: their own hostname, through a UTS
  namespace) on one database for 20 ticks of ``every = "1s"``: each tick exactly one row,
  also while one worker is SIGKILLed and another joins later;
* a tick whose row was committed by a worker that died before enqueueing it: reconcile
  enqueues it, no worker makes a second row;
* catch_up none/last/all after a 10 s stop (the stop is simulated by seeding the
  schedules' last tick 10 s back: the workers then run the real catch-up code path);
* skip_if_running with a slow task;
* pause, resume and ``schedule run`` through the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rqjobs.keys import SCHEDULES_ALIVE_SINCE_KEY
from rqjobs.schedules.ticker import MISSED_SLACK_S
from rqjobs.store.engine import get_engine
from rqjobs.store.records import TaskRecord
from rqjobs.store.repository import TaskStore
from tests.conftest import SAMPLE_TASKS, Project, RedisServer, wait_for
from tests.faults import FAST_RECONCILE, kill_session, stop
from tests.support.databases import BACKENDS, ServerDatabase, db_url, make_database  # noqa: F401


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        result = subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


#: without UTS namespaces (not root) the "other hosts" run with this host's name
OTHER_HOSTS = _unshare_works()


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def write_config(root: Path, database_url: str, redis_url: str, schedules: list[dict[str, Any]]) -> None:
    lines = [
        f"database_url = {json.dumps(database_url)}",
        f"redis_url = {json.dumps(redis_url)}",
        'tasks_modules = ["sample_tasks"]',
        *(f"{key} = {value}" for key, value in FAST_RECONCILE.items()),
    ]
    for table in schedules:
        lines.append("[[schedule]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    (root / "rqjobs.toml").write_text("\n".join(lines) + "\n")


def start_worker(root: Path, host: str | None = None, log_name: str = "worker.log") -> subprocess.Popen[str]:
    """``rqjobs worker`` in ``root``; with ``host``, on a simulated machine of that name."""
    command = [sys.executable, "-m", "rqjobs", "worker"]
    if host is not None and OTHER_HOSTS:
        command = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *command]
    with (root / log_name).open("a") as log:
        return subprocess.Popen(
            command,
            cwd=root,
            env={k: v for k, v in os.environ.items() if not k.startswith("RQJOBS_")},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def rows_of(store: TaskStore, schedule: str) -> list[TaskRecord]:
    return store.find(schedules=[schedule], limit=None, oldest_first=True)


def by_tick(rows: list[TaskRecord]) -> dict[datetime, list[TaskRecord]]:
    out: dict[datetime, list[TaskRecord]] = {}
    for row in rows:
        if row.schedule_tick is not None:
            out.setdefault(row.schedule_tick, []).append(row)
    return out


def contiguous(ticks: list[datetime], step_s: int = 1) -> bool:
    return all((b - a) == timedelta(seconds=step_s) for a, b in zip(ticks, ticks[1:], strict=False))


@dataclass
class Cluster:
    """One backend's database, Redis database and project folder, and its workers."""

    backend: str
    root: Path
    url: str
    database: ServerDatabase | None
    redis_url: str
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def store(self) -> TaskStore:
        return TaskStore(get_engine(self.url), retry_s=10)


@pytest.fixture
def clusters(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Cluster]]:
    """One cluster per configured backend, each on its own Redis database number."""
    made: list[Cluster] = []
    client = redis_server.client()
    client.flushall()
    try:
        for index, backend in enumerate(BACKENDS):
            root = tmp_path / backend
            root.mkdir()
            shutil.copy(SAMPLE_TASKS, root / "sample_tasks.py")
            url, database = make_database(backend, root)
            made.append(Cluster(backend, root, url, database, f"{redis_server.url}?db={index}"))
        yield made
    finally:
        for cluster in made:
            for proc in cluster.workers:
                kill_session(proc)
        from rqjobs.store.engine import forget_engines

        forget_engines()
        for cluster in made:
            if cluster.database is not None:
                cluster.database.drop()
        client.flushall()


TICKS = 20


def test_three_workers_on_three_hosts_make_exactly_one_row_per_tick(clusters: list[Cluster]) -> None:
    """All backends at once (their workers run side by side), 20 ticks of every = "1s".

    Worker A is SIGKILLed (with its work horse) after a few ticks and started again later:
    a tick is never lost (every tick from the first to the last has a row) and never
    doubled (no tick has two rows, no job ran twice).
    """
    for cluster in clusters:
        write_config(
            cluster.root,
            cluster.url,
            cluster.redis_url,
            [
                {
                    "name": "pulse",
                    "task": "add",
                    "every": "1s",
                    "kwargs": {"a": 1, "b": 2},
                    "skip_if_running": False,
                }
            ],
        )
        # the schema first: three workers creating it at once on an empty MariaDB can see it
        # half-made ("a tasks table that rqjobs did not create"), a race outside this test's topic
        get_engine(cluster.url)
        cluster.workers = [
            start_worker(cluster.root, log_name="a.log"),
            start_worker(cluster.root, host="host-b", log_name="b.log"),
            start_worker(cluster.root, host="host-c", log_name="c.log"),
        ]

    def ticks_of(cluster: Cluster) -> list[datetime]:
        return sorted(by_tick(rows_of(cluster.store, "pulse")))

    firsts = [
        wait_for(lambda c=c: ticks_of(c), timeout=90, message=f"a first tick on {c.backend}")[0]
        for c in clusters
    ]
    wait_for(lambda: all(len(ticks_of(c)) >= 5 for c in clusters), timeout=60, message="5 ticks")
    for cluster in clusters:
        kill_session(cluster.workers[0])  # worker A, mid-run: whatever it was doing
    wait_for(lambda: all(len(ticks_of(c)) >= 10 for c in clusters), timeout=60, message="10 ticks")
    for cluster in clusters:
        cluster.workers[0] = start_worker(cluster.root, log_name="a.log")
    wait_for(
        lambda: all(
            ticks_of(c)[-1] >= first + timedelta(seconds=TICKS - 1)
            for c, first in zip(clusters, firsts, strict=True)
        ),
        timeout=90,
        message=f"{TICKS} ticks",
    )

    def settled(cluster: Cluster, first: datetime) -> bool:
        last = first + timedelta(seconds=TICKS - 1)
        rows = [r for r in rows_of(cluster.store, "pulse") if r.schedule_tick and r.schedule_tick <= last]
        return all(r.status in ("finished", "failed") for r in rows)

    wait_for(
        lambda: all(settled(c, first) for c, first in zip(clusters, firsts, strict=True)),
        timeout=60,
        message="the rows of the 20 ticks to end",
    )
    for cluster in clusters:
        for proc in cluster.workers:
            stop(proc)

    for cluster, first in zip(clusters, firsts, strict=True):
        rows = rows_of(cluster.store, "pulse")
        rows = [r for r in rows if r.schedule_tick and r.schedule_tick < first + timedelta(seconds=TICKS)]
        ticks = by_tick(rows)
        wanted = [first + timedelta(seconds=i) for i in range(TICKS)]
        assert [t for t in wanted if t not in ticks] == [], f"{cluster.backend}: lost ticks"
        assert {t: len(r) for t, r in ticks.items() if len(r) != 1} == {}, f"{cluster.backend}: doubled"
        assert contiguous(sorted(ticks)), cluster.backend
        # each row's job ran once; the only exception allowed is a run that worker A's kill cut short
        unfinished = [r for r in rows if r.status != "finished"]
        assert len(unfinished) <= 1, [(r.id, r.status, r.log) for r in unfinished]
        assert all(r.attempts == 1 for r in rows if r.status == "finished"), cluster.backend
        assert all(r.description.startswith("pulse at ") for r in rows)
        logs = "".join((cluster.root / name).read_text() for name in ("a.log", "b.log", "c.log"))
        at = logs.find("Traceback")
        assert at < 0, logs[max(0, at - 1500) : at + 3000]
        if OTHER_HOSTS:
            # the rows were made (and run) by workers of all three "machines"
            hosts = {r.worker.split(":")[0] for r in rows if r.worker}
            assert {"host-b", "host-c"} <= hosts, hosts


def _seed_last_tick(url: str, names: list[str], tick: datetime) -> None:
    """As if the workers had stopped right after ``tick``: the schedules' state says so."""
    from rqjobs.store.schedules import ScheduleStore

    store = ScheduleStore(get_engine(url))
    for name in names:
        assert store.ensure_state(name, tick).last_tick == tick


def _claim_without_enqueue(project: Project, url: str, name: str, tick: datetime) -> int:
    """What a worker that dies between its commit and its enqueue leaves: the tick's row,
    committed by the ticker's own claim, and no job in Redis."""
    from rqjobs.schedules.ticker import new_row_values
    from rqjobs.store.schedules import ScheduleStore

    runtime = project.runtime()
    spec = next(s for s in runtime.settings.schedules if s.name == name)
    claim = ScheduleStore(get_engine(url)).claim_tick(
        name, tick, new_row_values(runtime, spec, tick), skip_if_running=True
    )
    assert claim.outcome == "created" and claim.record is not None
    return claim.record.id


def test_catch_up_skip_if_running_and_a_tick_left_by_a_dying_worker(
    project: Project,
    db_url: str,  # noqa: F811
) -> None:
    plain = {"task": "add", "every": "1s", "kwargs": {"a": 2, "b": 3}, "skip_if_running": False}
    schedules = [
        {"name": "c-none", "catch_up": "none", **plain},
        {"name": "c-last", "catch_up": "last", **plain},
        {"name": "c-all", "catch_up": "all", **plain},
        {"name": "slow", "task": "sleep-for", "every": "1s", "kwargs": {"seconds": 2.5}},
        {"name": "orphan", "task": "add", "every": "1s", "kwargs": {"a": 1, "b": 1}},
    ]
    write_config(project.root, db_url, project.redis.url, schedules)  # type: ignore[union-attr]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    stopped_at = now - timedelta(seconds=10)
    _seed_last_tick(db_url, ["c-none", "c-last", "c-all"], stopped_at)
    orphan_tick = now + timedelta(seconds=4)
    orphan_id = _claim_without_enqueue(project, db_url, "orphan", orphan_tick)
    assert project.redis.client().exists(f"rq:job:{orphan_id}") == 0  # type: ignore[union-attr]

    started = datetime.now(timezone.utc)
    workers = [start_worker(project.root, log_name="a.log"), start_worker(project.root, log_name="b.log")]
    try:
        store = project.store()
        wait_for(
            lambda: store.get(orphan_id).status == "finished", timeout=60, message="the orphan tick to run"
        )
        alive_since_s = project.redis.client().get(SCHEDULES_ALIVE_SINCE_KEY)  # type: ignore[union-attr]
        wait_for(
            lambda: len([r for r in rows_of(store, "slow") if r.status == "canceled"]) >= 2,
            timeout=60,
            message="two skipped ticks of the slow schedule",
        )
        wait_for(
            lambda: max(by_tick(rows_of(store, "orphan"))) >= orphan_tick + timedelta(seconds=2),
            timeout=60,
            message="ticks after the orphan's",
        )
        wait_for(
            lambda: all(
                r.status == "finished"
                for r in rows_of(store, "c-all")
                if r.log and "--- catch-up of tick" in r.log
            ),
            timeout=60,
            message="the catch-up rows to run",
        )
    finally:
        for proc in workers:
            stop(proc)
    # the tickers' shared "running without a break since" (set by the first of them): ticks
    # older than it, less the slack, were missed while no worker ran

    assert alive_since_s is not None
    boundary = datetime.fromtimestamp(float(alive_since_s), timezone.utc) - timedelta(seconds=MISSED_SLACK_S)
    newest_missed = boundary.replace(microsecond=0)
    assert stopped_at < newest_missed and boundary >= started - timedelta(seconds=MISSED_SLACK_S)

    def catch_ups(rows: list[TaskRecord]) -> list[TaskRecord]:
        return [r for r in rows if r.log and "--- catch-up of tick" in r.log]

    # none: the missed ticks got no row; the ticks go on from the first one after them
    rows = rows_of(store, "c-none")
    ticks = sorted(by_tick(rows))
    assert rows and catch_ups(rows) == []
    assert ticks[0] == newest_missed + timedelta(seconds=1) and contiguous(ticks)
    # last: exactly one row for the missed ticks, for the newest of them, then the ticks go on
    rows = rows_of(store, "c-last")
    ticks = sorted(by_tick(rows))
    assert [r.schedule_tick for r in catch_ups(rows)] == [newest_missed]
    assert ticks[0] == newest_missed and contiguous(ticks)
    # all: a row for every missed tick, oldest first, then the ticks go on without a gap
    rows = rows_of(store, "c-all")
    ticks = sorted(by_tick(rows))
    assert ticks[0] == stopped_at + timedelta(seconds=1) and contiguous(ticks)
    assert [r.schedule_tick for r in catch_ups(rows)] == [t for t in ticks if t <= newest_missed]
    assert len(catch_ups(rows)) >= 8
    assert all(r.status == "finished" and r.result == {"result": 5} for r in catch_ups(rows))
    for name in ("c-none", "c-last", "c-all"):
        assert all(len(v) == 1 for v in by_tick(rows_of(store, name)).values())

    # skip_if_running: a tick whose previous row waits or runs is recorded, not stacked
    rows = rows_of(store, "slow")
    ran = [r for r in rows if r.status != "canceled"]
    skipped = [r for r in rows if r.status == "canceled"]
    ids = {r.id for r in ran}
    for row in skipped:
        assert row.log is not None and "skipped: previous #" in row.log, row.log
        previous = int(row.log.split("previous #")[1].split()[0])
        assert previous in ids and previous < row.id
        assert row.started_at is None and row.attempts == 0  # never ran
    spans = sorted((r.started_at, r.finished_at or datetime.now(timezone.utc)) for r in ran if r.started_at)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)), (
        "two runs overlapped"
    )

    # the dying worker's tick: reconcile enqueued its row, no worker made a second one
    orphan = by_tick(rows_of(store, "orphan"))
    assert [r.id for r in orphan[orphan_tick]] == [orphan_id]
    row = store.get(orphan_id)
    assert row.status == "finished" and row.attempts == 1 and row.result == {"result": 2}
    logs = (project.root / "a.log").read_text() + (project.root / "b.log").read_text()
    assert f"task {orphan_id}" in logs and "enqueued again" in logs, logs[-3000:]


def test_pause_resume_run_and_status_through_the_cli(project: Project) -> None:
    """Pause is kept in SQL; `schedule run` makes a row outside the ticks; status and show
    name the schedule."""
    write_config(
        project.root,
        f"sqlite:///{project.root / 'tasks.sqlite3'}",
        project.redis.url,  # type: ignore[union-attr]
        [
            {
                "name": "held",
                "task": "add",
                "every": "1s",
                "kwargs": {"a": 4, "b": 4},
                "skip_if_running": False,
                "description": "held {tick}",
            },
            {
                "name": "other",
                "task": "add",
                "cron": "0 3 * * *",
                "timezone": "Europe/Berlin",
                "kwargs": {"a": 1, "b": 0},
            },
        ],
    )
    result = project.rqjobs("schedule", "pause", "held", check=True)
    assert "schedule held paused" in result.stderr
    assert "already paused" in project.rqjobs("schedule", "pause", "held", check=True).stderr
    listing = json.loads(project.rqjobs("schedule", "list", "--json", check=True).stdout)
    assert [(s["name"], s["state"], s["spec"], s["timezone"]) for s in listing] == [
        ("held", "paused", "every 1s", "UTC"),
        ("other", "active", "cron 0 3 * * *", "Europe/Berlin"),
    ]
    assert listing[0]["next_tick"] is None and listing[1]["next_tick"].endswith(
        ("T02:00:00+00:00", "T01:00:00+00:00")
    )

    task_id = int(project.rqjobs("schedule", "run", "held", check=True).stdout)
    missing = project.rqjobs("schedule", "run", "nope")
    assert missing.returncode == 2 and "no schedule named 'nope'" in missing.stderr

    worker = start_worker(project.root)
    try:
        store = project.store()
        wait_for(lambda: store.get(task_id).status == "finished", timeout=60, message="the run by hand")
        time.sleep(2.5)  # ticks of a paused schedule would come every second
        assert [r.id for r in rows_of(store, "held")] == [task_id]
        project.rqjobs("schedule", "resume", "held", check=True)
        wait_for(
            lambda: len([r for r in rows_of(store, "held") if r.status == "finished"]) >= 4,
            timeout=60,
            message="ticks after the resume",
        )
    finally:
        stop(worker)
    rows = rows_of(store, "held")
    assert rows[0].id == task_id and rows[0].schedule_tick is None and rows[0].description.startswith("held ")
    # resumed from the current tick: the ticks that passed while paused got no rows
    resumed = sorted(by_tick(rows))
    assert contiguous(resumed) and all(r.status == "finished" for r in rows[:4]), [
        (r.id, r.status, r.schedule_tick, r.log) for r in rows
    ]

    status = json.loads(project.rqjobs("status", "--schedule", "held", "--json", check=True).stdout)
    assert sorted(r["id"] for r in status) == sorted(r.id for r in rows)
    assert all(r["schedule"] == "held" for r in status)
    assert json.loads(project.rqjobs("status", "--schedule", "other", "--json", check=True).stdout) == []
    shown = project.rqjobs("show", str(rows[-1].id), check=True).stdout
    assert "schedule" in shown and "held (tick " in shown
    assert "run by hand" in project.rqjobs("show", str(task_id), check=True).stdout
    table = project.rqjobs("schedule", "list", check=True).stdout
    assert "held" in table and "every 1s" in table and "active" in table
    (held,) = [
        s
        for s in json.loads(project.rqjobs("schedule", "list", "--json", check=True).stdout)
        if s["name"] == "held"
    ]
    newest = max((r for r in rows if r.schedule_tick), key=lambda r: r.schedule_tick)
    assert (held["last_tick"], held["last_task_id"]) == (newest.schedule_tick.isoformat(), newest.id)
    assert held["last_status"] == newest.status
