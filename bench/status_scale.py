"""`rqjobs status --failed` on a million rows vs a thousand (target: within 1.5x).

Builds two SQLite task databases (1,000 and 1,000,000 rows, 1% failed, spread over
30 days and four task names) with bulk inserts, then times the real command line
(`rqjobs status --failed`, and `status --name X --since 1h`) against each, interleaved.

    python bench/status_scale.py [--big 1000000] [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path


def build(path: Path, rows: int) -> None:
    from sqlalchemy import insert

    from rqjobs.store.engine import get_engine
    from rqjobs.store.models import Task

    engine = get_engine(f"sqlite:///{path}")
    now = datetime.now(timezone.utc)
    rng = random.Random(7)
    names = ["send-mail", "count-words", "create-image-set", "report"]
    batch = []
    with engine.begin() as conn:
        for i in range(rows):
            created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            status = "failed" if rng.random() < 0.01 else "finished"
            batch.append(
                {
                    "name": names[i % 4],
                    "description": f"task {i}",
                    "queue": "default",
                    "args": [],
                    "kwargs": {},
                    "status": status,
                    "progress": 100,
                    "result": {"result": i},
                    "log": "boom" if status == "failed" else None,
                    "attempts": 1,
                    "max_retries": 0,
                    "timeout_s": 180,
                    "created_at": created,
                    "enqueued_at": created,
                    "started_at": created,
                    "finished_at": created + timedelta(seconds=1),
                }
            )
            if len(batch) == 20000:
                conn.execute(insert(Task.__table__), batch)
                batch.clear()
        if batch:
            conn.execute(insert(Task.__table__), batch)


def timed(args: list[str], db: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rqjobs", "--database-url", f"sqlite:///{db}", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        cwd=db.parent,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rqjobs-bench-status-"))
    small, big = folder / "small.sqlite3", folder / "big.sqlite3"
    t0 = time.perf_counter()
    build(small, args.small)
    build(big, args.big)
    print(f"built {args.small:,} and {args.big:,} rows in {time.perf_counter() - t0:.0f} s")
    for label, cmd in (
        ("status --failed", ["status", "--failed"]),
        ("status --name report --since 1h", ["status", "--name", "report", "--since", "1h"]),
    ):
        s_times, b_times = [], []
        for _ in range(args.runs):
            s_times.append(timed(cmd, small))
            b_times.append(timed(cmd, big))
        s, b = statistics.median(s_times) * 1000, statistics.median(b_times) * 1000
        print(
            f"{label:34s}: {args.small:>9,} rows {s:6.0f} ms | {args.big:>9,} rows {b:6.0f} ms | ratio {b / s:.2f}x (target <= 1.5x)"
        )


if __name__ == "__main__":
    main()
