"""Data at rest: the data folder is 0700 and every file rqjobs (or its redis-server) makes is 0600.

Run as a new user would, with a permissive umask (022): the embedded redis-server, the
SQLite file, the outbox and the image outputs all land in ``.rqjobs/``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from PIL import Image

from rqjobs.broker import embedded
from tests.conftest import REPO_ROOT


def _rqjobs(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rqjobs", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # what most users have
    )


def _modes(folder: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_data_folder_and_its_files_are_private(tmp_path: Path) -> None:
    (tmp_path / "sample_tasks.py").write_text((REPO_ROOT / "tests/support/sample_tasks.py").read_text())
    (tmp_path / "rqjobs.toml").write_text('tasks_modules = ["sample_tasks"]\n')
    Image.new("RGB", (40, 20), "red").save(tmp_path / "photo.png")
    data_dir = tmp_path / ".rqjobs"
    try:
        for args in (
            ("add", "--a", "1", "--b", "2"),
            ("send-mail", "--to", "ann@example.com", "--subject", "hi", "--var", "name=Ann"),
            ("create-image-set", "--path", str(tmp_path / "photo.png"), "--size", "10"),
        ):
            result = _rqjobs(tmp_path, "enqueue", args[0], "--description", "private", *args[1:])
            assert result.returncode == 0, result.stderr
        worker = _rqjobs(tmp_path, "worker", "--burst")
        assert worker.returncode == 0, worker.stderr
        status = _rqjobs(tmp_path, "status")
        assert "readable by other" not in status.stderr
        live = _modes(data_dir)
    finally:
        embedded.stop(data_dir)
    after = _modes(data_dir)
    modes = {**live, **after}
    names = set(modes)
    # SQLite removes -wal/-shm when the last connection closes; they take the database's mode
    assert any(n.endswith(".sqlite3") for n in names), names
    assert any(n.startswith("outbox/") and n.endswith(".eml") for n in names), names
    assert any(n.startswith("images/") for n in names), names
    assert any("appendonly" in n for n in names), names
    assert "redis.log" in names, names
    wrong = {}
    for name, mode in modes.items():
        path = data_dir / name
        if path.is_dir() or name == ".":
            if mode != 0o700:
                wrong[name] = oct(mode)
        elif mode & 0o077:
            wrong[name] = oct(mode)
    assert not wrong, wrong


def test_existing_data_folder_open_to_others_gets_one_warning(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared-data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)
    (tmp_path / "rqjobs.toml").write_text(f'data_dir = "{data_dir}"\nredis_url = "redis://127.0.0.1:1/0"\n')
    result = _rqjobs(tmp_path, "--help")
    assert result.returncode == 0
    result = _rqjobs(tmp_path, "db", "upgrade")
    warnings = [line for line in result.stderr.splitlines() if "readable by other users" in line]
    assert len(warnings) == 1, result.stderr
    assert "chmod 700" in warnings[0]
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755  # warned about, not changed
