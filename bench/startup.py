"""Start-up cost of the command line, side by side with RQ's own CLI.

Each pair does the same job from a cold process, so the ratio is what a user feels:

=================================  ===============================  =========
rqjobs                             rq                               target
=================================  ===============================  =========
``rqjobs --help``                  ``rq --help``                    <= 0.50x
``rqjobs status``                  ``rq info``                      <= 1.20x
``rqjobs enqueue count-words ...`` ``rq enqueue ... count_words``   <= 1.30x
=================================  ===============================  =========

Both sides talk to the same private redis-server (started here, on a unix socket in a
temporary folder) and rqjobs to a SQLite file in that folder. The commands run
interleaved (one of each per round), so load from other processes on the machine hits
both sides alike; the medians and their ratios are printed, never asserted.

What each rqjobs command must import, and why (``python -X importtime -m rqjobs ...``):

* ``--help``: Typer (with its vendored click) and the cli package: no rq, redis,
  SQLAlchemy (a test checks) or rich.
* ``status``: SQLAlchemy, rich and the config; no rq or redis (a test checks). The
  rows live in SQL and the store owns every query, so SQLAlchemy's import (~216 ms on
  an idle 2-core machine, all of ``sqlalchemy/__init__``: no submodule can be imported
  without it) is paid on this path; ``rq info`` pays rq and redis-py instead, about as
  much. SQLAlchemy's import alone is about 0.9x ``rq info``'s whole run (216 ms vs
  241 ms in issue 9's figures), which leaves ~0.3x for Python itself, Typer, rich,
  the config and the query: the 1.2x target cannot be met through the store. The last
  lines of the output estimate the ratio without SQLAlchemy's import.
* ``enqueue``: the row (SQLAlchemy) and the job (rq and redis-py): both halves of the
  promise, so it pays for both where ``rq enqueue`` pays for one. redis-py's eager
  ``redis.asyncio`` import (~100 ms) is paid by both sides: deferring it with a lazy
  module does not help, as ``redis.commands.core`` imports ``redis.asyncio.observability``
  at module level.

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import private_redis, project_folder  # noqa: E402

#: (rqjobs label, rq label, target ratio)
PAIRS = (
    ("rqjobs --help", "rq --help", 0.50),
    ("rqjobs status", "rq info", 1.20),
    ("rqjobs enqueue", "rq enqueue", 1.30),
)

TEXT = "to be or not to be that is the question"


def commands(bindir: Path, redis_url: str) -> dict[str, list[str]]:
    rq = str(bindir / "rq")
    rqjobs = str(bindir / "rqjobs")
    return {
        "rq --help": [rq, "--help"],
        "rqjobs --help": [rqjobs, "--help"],
        "rq info": [rq, "info", "--url", redis_url],
        "rqjobs status": [rqjobs, "status"],
        "rq enqueue": [
            rq,
            "enqueue",
            "--url",
            redis_url,
            "--serializer",
            "json",
            "--description",
            "bench",
            "rqjobs.tasks.word_counter.count_words",
            f"text={TEXT}",
        ],
        "rqjobs enqueue": [rqjobs, "enqueue", "count-words", "--description", "bench", "--text", TEXT],
        # references: what the interpreter and SQLAlchemy's import alone cost
        "python": [sys.executable, "-c", "pass"],
        "import sqlalchemy": [sys.executable, "-c", "import sqlalchemy"],
    }


def clean_env() -> dict[str, str]:
    """The caller's environment without RQJOBS_* (the project's rqjobs.toml decides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RQJOBS_")}
    env["NO_COLOR"] = "1"
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    env = clean_env()
    with private_redis() as redis_url:
        folder = project_folder(redis_url)
        try:
            cmds = commands(bindir, redis_url)
            for cmd in cmds.values():  # warm-up: creates the database, compiles .pyc files
                subprocess.run(cmd, cwd=folder, env=env, capture_output=True, check=True)
            times: dict[str, list[float]] = {name: [] for name in cmds}
            for _ in range(args.runs):
                for name, cmd in cmds.items():
                    times[name].append(timed(cmd, folder, env))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    med = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"medians of {args.runs} interleaved runs, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    for ours, theirs, target in PAIRS:
        ratio = med[ours] / med[theirs]
        verdict = "ok" if ratio <= target else "OVER"
        print(
            f"{ours:15s} {med[ours]:6.0f} ms | {theirs:11s} {med[theirs]:6.0f} ms | "
            f"{ratio:.2f}x (target <= {target:.2f}x) {verdict}"
        )
    sqlalchemy_ms = med["import sqlalchemy"] - med["python"]
    print(f"SQLAlchemy's import alone: {sqlalchemy_ms:.0f} ms (python -c pass: {med['python']:.0f} ms)")
    for ours, theirs, _target in PAIRS[1:]:
        without = (med[ours] - sqlalchemy_ms) / med[theirs]
        print(f"  {ours} without it would be {without:.2f}x {theirs} (an estimate, not a run)")


if __name__ == "__main__":
    main()
