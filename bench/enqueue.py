"""Enqueue throughput: plain RQ `queue.enqueue` vs `rqjobs.enqueue_task`, side by side.

Both use the same private redis-server, the JSON serializer, and the same job function
shape; rqjobs also commits its SQLite row first. Prints jobs/s and the ratio
(target: enqueue_task >= 0.7x plain enqueue).

    python bench/enqueue.py [--jobs 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median_of, private_redis, project_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

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

        rates_plain, rates_tracked = [], []
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            rates_plain.append(median_of(1, plain)[0])
            rates_tracked.append(median_of(1, tracked)[0])
        import statistics

        p, t = statistics.median(rates_plain), statistics.median(rates_tracked)
        print(
            f"plain RQ queue.enqueue : {p:8.0f} jobs/s  (runs: {', '.join(f'{r:.0f}' for r in rates_plain)})"
        )
        print(
            f"rqjobs enqueue_task    : {t:8.0f} jobs/s  (runs: {', '.join(f'{r:.0f}' for r in rates_tracked)})"
        )
        print(f"ratio rqjobs/plain     : {t / p:.2f}x   (target >= 0.70x)")


if __name__ == "__main__":
    main()
