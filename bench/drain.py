"""Drain throughput: `rq worker --burst` vs `rqjobs worker --burst` on no-op jobs.

Both are forking workers with the JSON serializer on the same private redis-server;
rqjobs also marks each row running and finished (and writes its result). Prints
jobs/s and the tracking overhead (target: under 10%).

    python bench/drain.py [--jobs 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import private_redis, project_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from redis import Redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    from rqjobs.config import load_settings, set_current_settings
    from rqjobs.runtime import get_runtime
    from rqjobs.tasks.commons import load_task_modules

    rq_bin = Path(sys.executable).parent / "rq"
    with private_redis() as url:
        folder = project_folder(url)
        os.chdir(folder)
        env = {**os.environ, "PYTHONPATH": str(folder)}
        settings = load_settings(folder / "rqjobs.toml", env={})
        set_current_settings(settings)
        load_task_modules(settings)
        runtime = get_runtime(settings)
        from rqjobs import enqueue_task

        plain_queue = Queue("plain", connection=Redis.from_url(url), serializer=JSONSerializer)

        def plain() -> float:
            for i in range(args.jobs):
                plain_queue.enqueue("bench_tasks.plain_noop", i)
            start = time.perf_counter()
            subprocess.run(
                [
                    str(rq_bin),
                    "worker",
                    "--burst",
                    "--url",
                    url,
                    "--quiet",
                    "--serializer",
                    "rq.serializers.JSONSerializer",
                    "plain",
                ],
                env=env,
                check=True,
                cwd=folder,
            )
            return args.jobs / (time.perf_counter() - start)

        def tracked() -> float:
            ids = [
                enqueue_task("noop", i, description=f"job {i}", runtime=runtime).id for i in range(args.jobs)
            ]
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "rqjobs", "worker", "--burst", "--quiet"],
                env=env,
                check=True,
                cwd=folder,
            )
            rate = args.jobs / (time.perf_counter() - start)
            rows = runtime.store.get_many(ids)
            assert all(r.status == "finished" for r in rows), "not every row finished"
            return rate

        plain_rates, tracked_rates = [], []
        for _ in range(args.runs):
            plain_rates.append(plain())
            tracked_rates.append(tracked())
        p, t = statistics.median(plain_rates), statistics.median(tracked_rates)
        print(
            f"rq worker --burst     : {p:6.1f} jobs/s  (runs: {', '.join(f'{r:.1f}' for r in plain_rates)})"
        )
        print(
            f"rqjobs worker --burst : {t:6.1f} jobs/s  (runs: {', '.join(f'{r:.1f}' for r in tracked_rates)})"
        )
        print(f"tracking overhead     : {(p / t - 1) * 100:5.1f}%   (target < 10%)")


if __name__ == "__main__":
    main()
