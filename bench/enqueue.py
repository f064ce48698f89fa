"""Enqueue throughput: plain RQ vs rqjobs, side by side, single and bulk.

Single: RQ's `queue.enqueue` vs `rqjobs.enqueue_task` (target >= 0.7x).
Bulk: RQ's `Queue.enqueue_many` (with `Queue.prepare_data`) vs `rqjobs.enqueue_many`
for `--bulk-jobs` jobs at once (target >= 0.8x).

Both sides use the same private redis-server, the JSON serializer, and the same job
function shape; rqjobs also commits its SQLite rows first (one transaction for the
bulk). Runs are interleaved (plain, rqjobs, plain, rqjobs...) so load drift hits both
alike; medians and the ratio are printed, with the load average before and after.

    python bench/enqueue.py [--jobs 2000] [--runs 5] [--bulk-jobs 10000] [--only single|bulk]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import private_redis, project_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bulk-jobs", type=int, default=10_000)
    parser.add_argument("--only", choices=("single", "bulk"), default=None)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")

    from redis import Redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    from rqjobs.config import load_settings, set_current_settings
    from rqjobs.runtime import get_runtime
    from rqjobs.tasks.commons import load_task_modules

    with private_redis() as url:
        folder = project_folder(url)
        os.chdir(folder)
        settings = load_settings(folder / "rqjobs.toml", env={})
        set_current_settings(settings)
        load_task_modules(settings)
        runtime = get_runtime(settings)
        from rqjobs import enqueue_task

        plain_queue = Queue("plain", connection=Redis.from_url(url), serializer=JSONSerializer)
        # warm both paths (engine, schema check, connections)
        enqueue_task("noop", description="warm-up", runtime=runtime)
        plain_queue.enqueue("bench_tasks.plain_noop", 0)

        def plain() -> float:
            start = time.perf_counter()
            for i in range(args.jobs):
                plain_queue.enqueue("bench_tasks.plain_noop", i, description=f"job {i}")
            return args.jobs / (time.perf_counter() - start)

        def tracked() -> float:
            start = time.perf_counter()
            for i in range(args.jobs):
                enqueue_task("noop", i, description=f"job {i}", runtime=runtime)
            return args.jobs / (time.perf_counter() - start)

        def plain_bulk() -> float:
            start = time.perf_counter()  # prepare_data is part of RQ's bulk call, as the items are of ours
            datas = [
                Queue.prepare_data("bench_tasks.plain_noop", (i,), description="bulk job")
                for i in range(args.bulk_jobs)
            ]
            plain_queue.enqueue_many(datas)
            return args.bulk_jobs / (time.perf_counter() - start)

        def tracked_bulk() -> float:
            start = time.perf_counter()
            from rqjobs import enqueue_many

            items = [{"i": i} for i in range(args.bulk_jobs)]
            enqueue_many("noop", items, description="bulk job", runtime=runtime)
            return args.bulk_jobs / (time.perf_counter() - start)

        redis = Redis.from_url(url)
        if args.only != "bulk":
            compare(args.runs, plain, tracked, "RQ queue.enqueue", "rqjobs enqueue_task", 0.7, args.jobs)
        if args.only != "single":
            redis.flushdb()  # a fresh start: the single runs' jobs would only use memory
            compare(
                args.runs,
                plain_bulk,
                tracked_bulk,
                "RQ Queue.enqueue_many",
                "rqjobs enqueue_many",
                0.8,
                args.bulk_jobs,
            )
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def compare(
    runs: int,
    plain: Callable[[], float],
    tracked: Callable[[], float],
    a: str,
    b: str,
    target: float,
    jobs: int,
) -> None:
    """Run both ``runs`` times, interleaved; print the medians and the ratio.

    Wall-clock rates decide (they include the redis-server's and the database's work).
    This process's CPU time per job is printed too: on a loaded machine it moves less
    than wall time, so it shows whether a ratio is noise.
    """
    import statistics

    rates: dict[str, list[float]] = {a: [], b: []}
    cpu: dict[str, list[float]] = {a: [], b: []}
    for _ in range(runs):  # interleaved, so drift hits both alike
        for label, fn in ((a, plain), (b, tracked)):
            started = time.process_time()
            rates[label].append(fn())
            cpu[label].append(jobs / max(time.process_time() - started, 1e-9))
    p, t = statistics.median(rates[a]), statistics.median(rates[b])
    pc, tc = statistics.median(cpu[a]), statistics.median(cpu[b])
    width = max(len(a), len(b), 18) + 1
    for label, median in ((a, p), (b, t)):
        runs_text = ", ".join(f"{r:.0f}" for r in rates[label])
        print(
            f"{label:<{width}}: {median:8.0f} jobs/s  (runs: {runs_text}; CPU-bound rate {statistics.median(cpu[label]):.0f}/s)"
        )
    print(
        f"{'ratio rqjobs/plain':<{width}}: {t / p:.2f}x   (target >= {target:.2f}x; by this process's CPU: {tc / pc:.2f}x)"
    )


if __name__ == "__main__":
    main()
