"""Start-up time: `rqjobs --help` vs `rq --help` (target: at most half), and `rqjobs status`.

Wall-clock medians over repeated runs of each command, interleaved.

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    folder = tempfile.mkdtemp(prefix="rqjobs-bench-startup-")
    commands = {
        "rq --help": [str(bindir / "rq"), "--help"],
        "rqjobs --help": [str(bindir / "rqjobs"), "--help"],
        "rqjobs status": [str(bindir / "rqjobs"), "status"],
    }
    subprocess.run(commands["rqjobs status"], cwd=folder, capture_output=True, check=True)  # creates the db
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, folder))
    med = {name: statistics.median(values) * 1000 for name, values in times.items()}
    for name, ms in med.items():
        print(f"{name:15s}: {ms:6.0f} ms (median of {args.runs})")
    print(
        f"ratio rqjobs --help / rq --help: {med['rqjobs --help'] / med['rq --help']:.2f}x (target <= 0.50x)"
    )
    os.environ.pop("RQJOBS_CONFIG", None)


if __name__ == "__main__":
    main()
