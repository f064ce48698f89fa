"""The embedded default as a new user meets it: no config, no server started by hand."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rqjobs.broker import embedded
from tests.conftest import REPO_ROOT


def rqjobs(cwd: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rqjobs", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def redis_pids_for(socket_path: Path) -> list[int]:
    """redis-server processes serving this socket (redis renames its process title)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if str(socket_path) in cmdline and "redis" in cmdline and ") Z " not in stat:
            pids.append(int(entry.name))
    return pids


def test_two_first_commands_start_one_embedded_server(tmp_path: Path) -> None:
    """Two `rqjobs enqueue` racing on a fresh folder share one redis-server, and a worker runs both."""
    (tmp_path / "sample_tasks.py").write_text((REPO_ROOT / "tests/support/sample_tasks.py").read_text())
    (tmp_path / "rqjobs.toml").write_text('tasks_modules = ["sample_tasks"]\n')
    data_dir = tmp_path / ".rqjobs"
    try:
        procs = [
            rqjobs(tmp_path, "enqueue", "add", "--description", f"race {i}", "--a", str(i), "--b", "1")
            for i in range(4)
        ]
        outputs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
        ids = sorted(int(out) for out, _ in outputs)
        assert ids == [1, 2, 3, 4]
        socket_path = embedded.socket_path_for(data_dir)
        assert len(redis_pids_for(socket_path)) == 1
        worker = rqjobs(tmp_path, "worker", "--burst")
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        status = rqjobs(tmp_path, "status", "--json")
        out, err = status.communicate(timeout=60)
        import json

        rows = json.loads(out)
        assert sorted(r["result"]["result"] for r in rows) == [1, 2, 3, 4]
        assert {r["status"] for r in rows} == {"finished"}
    finally:
        embedded.stop(data_dir)
    assert redis_pids_for(embedded.socket_path_for(data_dir)) == []


def readme_first_command() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)
    assert len(blocks) >= 2, "README must open with the run command and the test command"
    return blocks[0]


def test_readme_first_command_on_a_fresh_checkout(tmp_path: Path) -> None:
    """The README's first command, verbatim, in a copy of the repository with a new venv."""
    checkout = tmp_path / "checkout"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        source = REPO_ROOT / name
        if source.is_file():
            target = checkout / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    work_tmp = tmp_path / "tmp"
    work_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQJOBS_", "VIRTUAL_ENV", "PYTHON"))}
    env["TMPDIR"] = str(work_tmp)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        ["bash", "-c", readme_first_command()],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "finished" in result.stdout
    assert "count-words" in result.stdout
    assert "stopped" in result.stderr  # `rqjobs redis stop` left nothing running (a message: stderr)
    (demo,) = list(work_tmp.iterdir())
    assert redis_pids_for(embedded.socket_path_for(demo / ".rqjobs")) == []
