"""``rqjobs tail``: the follower's polling logic, then the command piped and on a terminal,
with real jobs that report progress run by real workers."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import Project

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) #(\d+) (\S+) (\w+) (\d+)%(?: (.*))?$")


# -- the follower, in-process -----------------------------------------------------------


def _insert(store: Any, name: str = "add") -> int:
    return store.insert(name=name, description="d", queue="default", args=[], kwargs={}, timeout_s=30).id


def test_follower_reports_each_change_once_and_ends_with_its_ids(project: Project) -> None:
    from rqjobs.exceptions import TaskNotFound
    from rqjobs.follow import TaskFollower

    store = project.store()
    a, b = _insert(store), _insert(store)
    with pytest.raises(TaskNotFound, match=r"no task 999"):
        TaskFollower(store, task_ids=[a, 999]).poll()

    follower = TaskFollower(store, task_ids=[a, b])
    first = follower.poll()
    assert [(c.record.id, c.record.status, c.previous) for c in first] == [
        (a, "queued", None),
        (b, "queued", None),
    ]
    assert follower.poll() == []  # nothing changed, nothing reported
    store.mark_running(a, "host:1")
    store.set_progress(a, 50, "half way")
    (change,) = follower.poll()
    assert change.record.status == "running" and change.record.progress == 50
    assert change.record.progress_message == "half way" and change.previous.status == "queued"
    assert not change.ended and not follower.done
    store.mark_finished(a, {"ok": True})
    store.mark_canceled(b, ("queued",), "--- canceled ---\n")
    changes = follower.poll()
    assert [(c.record.id, c.record.status, c.ended) for c in changes] == [
        (a, "finished", True),
        (b, "canceled", True),
    ]
    assert follower.done and not follower.all_finished


def test_follower_without_ids_sees_new_rows_and_their_end(project: Project) -> None:
    from rqjobs.follow import TaskFollower

    store = project.store()
    before_final = _insert(store)
    store.mark_running(before_final, "h:1")
    store.mark_finished(before_final, {})
    waiting = _insert(store)
    follower = TaskFollower(store)
    assert [c.record.id for c in follower.poll()] == [waiting]  # history is not replayed
    fast = _insert(store)  # created and finished between two polls
    store.mark_running(fast, "h:1")
    store.mark_finished(fast, {})
    store.mark_running(waiting, "h:1")
    changes = follower.poll()
    assert [(c.record.id, c.record.status) for c in changes] == [(waiting, "running"), (fast, "finished")]
    assert [r.id for r in follower.active] == [waiting]
    store.mark_finished(waiting, {})
    assert [(c.record.id, c.ended) for c in follower.poll()] == [(waiting, True)]
    assert follower.poll() == [] and follower.active == [] and not follower.done
    named = TaskFollower(store, names=["echo-dict"])
    named.poll()
    _insert(store, "add")
    other = _insert(store, "echo-dict")
    assert [c.record.id for c in named.poll()] == [other]


def test_a_change_is_stamped_with_the_rows_own_time(project: Project) -> None:
    """``TaskChange.at``: when the row says the change happened, not when the poll saw it."""
    from rqjobs.follow import TaskFollower

    store = project.store()
    task_id = _insert(store)
    follower = TaskFollower(store, task_ids=[task_id])
    (queued,) = follower.poll()
    assert queued.at == store.get(task_id).enqueued_at and queued.at < queued.seen_at
    store.mark_running(task_id, "h:1")
    (started,) = follower.poll()
    assert started.at == store.get(task_id).started_at and started.at < started.seen_at
    store.set_progress(task_id, 50, "half way")
    (progress,) = follower.poll()
    assert progress.at == store.get(task_id).progress_at and progress.at < progress.seen_at
    store.mark_finished(task_id, {})
    (finished,) = follower.poll()
    assert finished.at == store.get(task_id).finished_at and finished.at < finished.seen_at


def test_follower_sees_a_row_created_during_its_first_poll(project: Project) -> None:
    """A row committed while the first poll runs (after it read the waiting rows), and
    finished before the next poll, is still reported: the high-water mark for new rows
    is read before the active rows, not after."""
    from rqjobs.follow import TaskFollower
    from rqjobs.status import WAITING
    from rqjobs.store.repository import TaskStore

    created: list[int] = []

    class InsertsAfterTheWaitingRead(TaskStore):
        def find(self, *args: Any, **kwargs: Any) -> Any:
            rows = super().find(*args, **kwargs)
            if tuple(kwargs.get("statuses") or ()) == WAITING and not created:
                task_id = _insert(self)  # real commits, between two of the poll's reads
                self.mark_running(task_id, "h:1")
                self.mark_finished(task_id, {})
                created.append(task_id)
            return rows

    store = InsertsAfterTheWaitingRead(project.store().engine)
    follower = TaskFollower(store)
    assert follower.poll() == [] and created
    assert [(c.record.id, c.record.status) for c in follower.poll()] == [(created[0], "finished")]


# -- piped: one line per change ----------------------------------------------------------


def _start_tail(project: Project, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rqjobs", "tail", *args],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class Lines:
    """Lines from a pipe as they arrive (no buffering of our own hides what was written)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.eof = False

    def _fill(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            chunk = os.read(self.fd, 65536)
            self.buffer += chunk
            self.eof = not chunk

    def next(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            assert not self.eof, "tail ended"
            assert time.monotonic() < deadline, "tail printed no line in time"
            self._fill(0.1)
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def rest(self, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(0.1)
        return self.buffer.decode().splitlines()


def _stop(proc: subprocess.Popen[bytes]) -> str:
    """End the process if it still runs, close its pipes; returns what it wrote on stderr."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    err = proc.stderr.read().decode() if proc.stderr else ""
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()
    return err


def test_tail_piped_prints_one_line_per_change_and_exits_with_the_outcome(project: Project) -> None:
    steps = project.enqueue("progress-steps", "--steps", "3", "--pause-s", "1.0", description="steps")
    failing = project.enqueue("fail-always", "--message", "disk on fire", description="fails")
    tail = _start_tail(project, str(steps), str(failing), "--interval", "0.1")
    lines = Lines(tail)
    try:
        # the first line arrives before any worker runs: each line is flushed as it is made
        first = LINE.match(lines.next())
        assert first and first.group(2) == str(steps) and first.group(4) == "queued"
        project.work()
        seen = [first.group(0), *lines.rest()]
        tail.wait(30)
    finally:
        err = _stop(tail)
    assert tail.returncode == 1, err  # one of the followed tasks failed
    assert "Traceback" not in err
    parsed = []
    for line in seen:
        match = LINE.match(line)
        assert match, f"not a tail line: {line!r}"
        parsed.append(match.groups())
    mine = [(status, int(pct), msg) for _, tid, name, status, pct, msg in parsed if tid == str(steps)]
    assert all(name == "progress-steps" for _, tid, name, *_ in parsed if tid == str(steps))
    assert mine[0] == ("queued", 0, None)
    # (a poll may also catch the instant between "running" and the first progress report)
    assert [m for m in mine if m[0] == "running" and m[2] is not None] == [
        ("running", 0, "step 1 of 3"),
        ("running", 33, "step 2 of 3"),
        ("running", 66, "step 3 of 3"),
    ]
    assert mine[-1][:2] == ("finished", 100) and mine[-1][2].startswith("took ")
    other = [(status, msg) for _, tid, _, status, _, msg in parsed if tid == str(failing)]
    assert other[0] == ("queued", None)
    assert other[-1] == ("failed", "RuntimeError: disk on fire")
    # what tail said is what the database says
    assert project.row(steps).status == "finished" and project.row(steps).progress_message == "step 3 of 3"
    assert project.row(failing).status == "failed"


def test_tail_piped_stamps_each_line_with_the_time_the_row_records(project: Project) -> None:
    """Rows that ended hours ago are stamped with their finished time, not with now."""
    import json
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from rqjobs.store.models import Task

    store = project.store()
    ended = {}
    for status, hours in (("finished", 3), ("failed", 2), ("canceled", 1)):
        task_id = _insert(store)
        when = (datetime.now(timezone.utc) - timedelta(hours=hours)).replace(microsecond=0)
        with store.engine.begin() as conn:
            conn.execute(
                update(Task.__table__)
                .where(Task.__table__.c.id == task_id)
                .values(status=status, finished_at=when, log="--- attempt 1 ended ---\nboom\n")
            )
        ended[task_id] = when
    ids = [str(i) for i in ended]
    result = project.rqjobs("tail", *ids)
    assert result.returncode == 1, result.stderr  # one failed, one canceled
    stamps = {}
    for line in result.stdout.splitlines():
        match = LINE.match(line)
        assert match, line
        stamps[int(match.group(2))] = match.group(1)
    assert stamps == {
        i: when.astimezone().replace(tzinfo=None).isoformat(timespec="seconds") for i, when in ended.items()
    }
    result = project.rqjobs("tail", *ids, "--json")
    assert {json.loads(line)["id"]: json.loads(line)["at"] for line in result.stdout.splitlines()} == {
        i: when.isoformat(timespec="seconds") for i, when in ended.items()
    }


def test_tail_everything_as_json_and_ctrl_c_exits_cleanly(project: Project) -> None:
    import json

    tail = _start_tail(project, "--interval", "0.1", "--json")
    lines = Lines(tail)
    try:
        # whether this lands before tail's first look or after it, it is reported queued
        first = project.enqueue("add", "--a", "1", "--b", "1")
        seen = json.loads(lines.next())
        assert seen["id"] == first and seen["status"] == "queued" and seen["name"] == "add"
        # tail has now looked at least once: this row can only reach it as a new row
        task_id = project.enqueue("add", "--a", "2", "--b", "3")
        seen = json.loads(lines.next())
        assert seen["id"] == task_id and seen["status"] == "queued" and seen["name"] == "add"
        project.work()
        finished: dict[int, Any] = {}
        while len(finished) < 2:
            change = json.loads(lines.next())
            if change["status"] == "finished":
                finished[change["id"]] = change["result"]
        assert finished == {first: {"result": 2}, task_id: {"result": 5}}
        tail.send_signal(signal.SIGINT)
        tail.wait(30)
    finally:
        err = _stop(tail)
    assert tail.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_tail_refuses_ids_with_name_and_unknown_ids(project: Project) -> None:
    result = project.rqjobs("tail", "1", "--name", "add")
    assert result.returncode == 2 and "not both" in result.stderr
    result = project.rqjobs("tail", "77")
    assert result.returncode == 1 and result.stderr.strip() == "Error: no task 77"


# -- on a terminal: the live view --------------------------------------------------------


def test_tail_on_a_pseudo_terminal_renders_and_exits_when_the_task_ends(project: Project) -> None:
    import fcntl
    import pty
    import struct
    import termios

    task_id = project.enqueue("progress-steps", "--steps", "3", "--pause-s", "0.5", description="live one")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, **project.env, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    tail = subprocess.Popen(
        [sys.executable, "-m", "rqjobs", "tail", str(task_id), "--interval", "0.1"],
        cwd=project.root,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    output = bytearray()

    def drain(timeout: float) -> None:
        ready, _, _ = select.select([master], [], [], timeout)
        if ready:
            try:
                output.extend(os.read(master, 65536))
            except OSError:  # EIO: the terminal's other end closed
                pass

    try:
        deadline = time.monotonic() + 30
        while b"following" not in output and time.monotonic() < deadline:
            drain(0.2)
        assert b"following" in output, bytes(output)
        worker = project.start_worker("--burst")
        deadline = time.monotonic() + 90
        while tail.poll() is None and time.monotonic() < deadline:
            drain(0.2)
        drain(0.5)
        assert worker.wait(60) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
        tail.wait()
        os.close(master)
    text = output.decode("utf-8", "replace")
    assert tail.returncode == 0, text
    assert "\x1b[" in text  # it drew with terminal control codes: the live view, not lines
    assert "━" in text  # a progress bar
    assert "step 2 of 3" in text  # the progress message beside it
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(rf"✓ #{task_id} progress-steps finished\s+took \d", plain), plain
    assert "Traceback" not in text
    assert project.row(task_id).status == "finished"


def test_tail_on_an_80_column_terminal_keeps_the_id_and_the_percentage(project: Project) -> None:
    """The description and the progress message are what give way at 80 columns."""
    import fcntl
    import pty
    import struct
    import termios

    task_id = project.enqueue(
        "progress-steps",
        "--steps",
        "4",
        "--pause-s",
        "0.6",
        description="a description far too long to fit beside the bar on an eighty column terminal",
    )
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    env = {**os.environ, **project.env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "30"}
    tail = subprocess.Popen(
        [sys.executable, "-m", "rqjobs", "tail", str(task_id), "--interval", "0.1"],
        cwd=project.root,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    output = bytearray()

    def drain(timeout: float) -> None:
        ready, _, _ = select.select([master], [], [], timeout)
        if ready:
            try:
                output.extend(os.read(master, 65536))
            except OSError:  # EIO: the terminal's other end closed
                pass

    try:
        deadline = time.monotonic() + 30
        while b"following" not in output and time.monotonic() < deadline:
            drain(0.2)
        assert b"following" in output, bytes(output)
        worker = project.start_worker("--burst")
        deadline = time.monotonic() + 90
        while tail.poll() is None and time.monotonic() < deadline:
            drain(0.2)
        drain(0.5)
        assert worker.wait(60) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
        tail.wait()
        os.close(master)
    text = output.decode("utf-8", "replace")
    assert tail.returncode == 0, text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    # a live row: the id, the task, the bar, the whole percentage and status, then the cut text
    live = re.findall(
        rf"#{task_id} progress-steps +[━╸╺ ]* +(\d+)% running \S+ +a description far[^\r\n]*…", plain
    )
    assert {"25", "50", "75"} & set(live), plain
    for line in re.split(r"[\r\n]+", plain):
        assert len(line) <= 80, line
    assert re.search(
        rf"✓ #{task_id} progress-steps finished +took \S+ +\(a description far[^\r\n]*…", plain
    ), plain
