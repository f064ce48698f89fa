"""Many writers on one SQLite file: 4 worker processes, an API writer and CLI commands.

No "database is locked" may reach anyone, and no update may be lost: every row ends
finished, once, with its own result.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

from tests.conftest import Project, wait_for

WORKERS = 4
API_TASKS = 300
CLI_TASKS = 6

WRITER = textwrap.dedent(
    """
    import json, sys
    from rqjobs import enqueue_task
    from rqjobs.config import load_settings, set_current_settings
    from rqjobs.runtime import get_runtime
    from rqjobs.tasks.commons import load_task_modules

    settings = load_settings("rqjobs.toml")
    set_current_settings(settings)
    load_task_modules(settings)
    runtime = get_runtime(settings)
    ids = [
        enqueue_task("add", n, 2 * n, description=f"api {n}", runtime=runtime).id
        for n in range(int(sys.argv[1]))
    ]
    print(json.dumps(ids))
    """
)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # warm shutdown: finish the current job
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_four_workers_and_writers_on_one_sqlite_file(project: Project) -> None:
    (project.root / "writer.py").write_text(WRITER)
    # the workers start together on a database that does not exist yet: they also race
    # to create its schema
    workers = [project.start_worker("--quiet", log_name=f"worker{n}.log") for n in range(WORKERS)]
    writer: subprocess.Popen[str] | None = None
    try:
        writer = subprocess.Popen(
            [sys.executable, "writer.py", str(API_TASKS)],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # meanwhile a person enqueues and looks, from the command line
        cli_ids: dict[int, int] = {}
        cli_errors: list[str] = []
        for n in range(CLI_TASKS):
            result = project.rqjobs(
                "enqueue", "add", "--description", f"cli {n}", "--a", str(n), "--b", "1000"
            )
            cli_errors.append(result.stderr)
            assert result.returncode == 0, result.stderr
            cli_ids[int(result.stdout)] = n + 1000
            status = project.rqjobs("status", "--limit", "5")
            cli_errors.append(status.stderr)
            assert status.returncode == 0, status.stderr
        out, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
        api_ids = json.loads(out)
        assert len(api_ids) == API_TASKS

        store = project.store()
        total = API_TASKS + CLI_TASKS
        wait_for(
            lambda: (
                store.counts_by_status()["finished"] == total or any(w.poll() is not None for w in workers)
            ),
            timeout=240,
            interval=0.5,
            message=f"{total} finished rows",
        )
        assert all(w.poll() is None for w in workers), "a worker died"
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait(10)
        for worker in workers:
            _stop(worker)

    logs = "".join((project.root / f"worker{n}.log").read_text() for n in range(WORKERS))
    for text in (logs, err, *cli_errors):
        assert "database is locked" not in text
        assert "Traceback" not in text
    rows = store.find(limit=None)
    assert len(rows) == API_TASKS + CLI_TASKS  # nothing lost, nothing doubled
    expected = {task_id: 3 * n for n, task_id in enumerate(api_ids)}
    expected.update(cli_ids)
    assert {r.id: r.result["result"] for r in rows} == expected
    assert {(r.status, r.attempts, r.progress, r.log) for r in rows} == {("finished", 1, 100, None)}
    assert len({r.worker for r in rows}) > 1  # the work was shared
    assert project.redis.client().zcard("rq:failed:default") == 0
    counts = json.loads(
        project.rqjobs("status", "--finished", "--json", "--limit", "1000", check=True).stdout
    )
    assert len(counts) == API_TASKS + CLI_TASKS
    print(f"{len(rows)} rows finished once each by {len({r.worker for r in rows})} workers")
