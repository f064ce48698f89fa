"""`rqjobs web`: server time of the tasks page and of searches on 1,000,000 rows vs 1,000.

Target: within 1.5x. Builds two SQLite task databases with one bulk ``INSERT ... SELECT``
each (a recursive CTE makes the rows inside SQLite: a million in a minute or two): four
task names, two queues, three workers, 20% failed (so that every search below fills a
page of 50 on the small table too: a fuller page costs more to render, whatever the
table's size), one row in ten made by the schedule hourly-report and 50 rows spread
over the whole table by monthly-audit (a rare schedule: a scan or a sort would show),
one task every 2.6 s, so the big table is the small one after a month more of history. Then times the web app's own request handling (Flask's test client:
no network, no browser) for each page, interleaving the two databases, and prints
medians and ratios.

    python bench/web_scale.py [--big 1000000] [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

#: page -> URL (relative to the dashboard); every one must answer 200
PAGES = {
    "tasks page (newest 50)": "/tasks",
    "tasks page 3 (keyset)": None,  # filled in at run time: the third page's URL
    "search status:failed": "/tasks?q=status:failed",
    "search task:report status:failed": "/tasks?q=task:report+status:failed",
    "search queue:high": "/tasks?q=queue:high",
    "search worker:bench-host:2 task:report": "/tasks?q=worker:bench-host:2+task:report",
    "search since:1h task:send-mail": "/tasks?q=since:1h+task:send-mail",
    "search free text 'invoice 7'": "/tasks?q=invoice+7",
    "search schedule:hourly-report": "/tasks?q=schedule:hourly-report",
    "search schedule:hourly-report status:failed": "/tasks?q=schedule:hourly-report+status:failed",
    # 50 rows spread over the whole table (a rare schedule: once per 20,000 rows on 1M)
    "search schedule:monthly-audit": "/tasks?q=schedule:monthly-audit",
    "search schedule:nobody (no rows)": "/tasks?q=schedule:nobody",
    # several values of one qualifier: one index walk per value, merged by id
    "search task:report,send-mail": "/tasks?q=task:report,send-mail",
    "search schedule:monthly-audit,nobody": "/tasks?q=schedule:monthly-audit,nobody",
    "search task:nobody,nothing (no rows)": "/tasks?q=task:nobody,nothing",
    "task page": "/tasks/{id}",
}
#: shown for the record, with no target: the costs that do grow, and their bounds
WORST_CASES = {
    "free text with no match (1 window)": "/tasks?q=no-such-words",
    "worker:bench-host:2 alone (1 window)": "/tasks?q=worker:bench-host:2",
    "overview (counts: a GROUP BY)": "/",
}

_BUILD = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows),
r(i, created) AS (
  SELECT i, strftime('%Y-%m-%d %H:%M:%S', 'now', printf('-%d seconds', (:rows - i) * 2592 / 1000)) FROM n
)
INSERT INTO tasks (name, description, queue, args, kwargs, status, progress, result, log, attempts,
                   max_retries, timeout_s, created_at, enqueued_at, started_at, finished_at, worker,
                   schedule, schedule_tick)
SELECT
  CASE i % 4 WHEN 0 THEN 'send-mail' WHEN 1 THEN 'count-words' WHEN 2 THEN 'create-image-set'
             ELSE 'report' END,
  printf('%s %d for customer %d', CASE i % 3 WHEN 0 THEN 'invoice' WHEN 1 THEN 'welcome mail'
                                  ELSE 'report' END, i, i % 977),
  CASE WHEN i % 10 = 0 THEN 'high' ELSE 'default' END,
  '[]', '{}',
  CASE WHEN i % 10 IN (3, 7) THEN 'failed' ELSE 'finished' END,
  100, '{"result": 1}',
  CASE WHEN i % 10 IN (3, 7) THEN 'Traceback: boom' END,
  1, 0, 180,
  created || '.000000', created || '.000000', created || '.000000',
  strftime('%Y-%m-%d %H:%M:%S', created, '+1 seconds') || '.000000',
  printf('bench-host:%d', i % 3),
  CASE WHEN i % 20 IN (5, 7) THEN 'hourly-report' WHEN i % (:rows / 50) = 13 THEN 'monthly-audit' END,
  CASE WHEN i % 20 IN (5, 7) OR i % (:rows / 50) = 13 THEN created || '.000000' END
FROM r
"""


def build(path: Path, rows: int) -> None:
    """A task database at the newest schema holding ``rows`` rows, made inside SQLite."""
    from sqlalchemy import text

    from rqjobs.store.engine import get_engine

    engine = get_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text(_BUILD), {"rows": rows})
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def make_client(db: Path) -> Any:
    from rqjobs.config import load_settings
    from rqjobs.runtime import Runtime
    from rqjobs.web import create_app

    # no Redis is needed by the pages timed here; a URL nobody listens on proves it
    settings = load_settings(
        None, env={}, overrides={"database_url": f"sqlite:///{db}", "redis_url": "redis://127.0.0.1:9/0"}
    )
    return create_app(runtime=Runtime(settings)).test_client()


def timed(client: Any, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:500])
    return elapsed


def third_page(client: Any) -> str:
    """Follow the "older" link twice, as a user would."""
    import re

    url = "/tasks"
    for _ in range(2):
        html = client.get(url).get_data(as_text=True)
        url = re.search(r'href="(/tasks\?[^"]*before=\d+[^"]*)"', html).group(1).replace("&amp;", "&")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rqjobs-bench-web-"))
    small, big = folder / "small.sqlite3", folder / "big.sqlite3"
    t0 = time.perf_counter()
    build(small, args.small)
    build(big, args.big)
    print(f"built {args.small:,} and {args.big:,} rows in {time.perf_counter() - t0:.0f} s")
    clients = {small: make_client(small), big: make_client(big)}
    for label, url in (*PAGES.items(), *WORST_CASES.items()):
        s_times, b_times = [], []
        for _ in range(args.runs):
            for db, times in ((small, s_times), (big, b_times)):
                client = clients[db]
                if url is None:
                    page_url = third_page(client)
                else:
                    page_url = url.format(id=5 if db is small else 500_000)
                timed(client, page_url)  # warm: the first request of a URL compiles its SQL
                times.append(timed(client, page_url))
        s, b = statistics.median(s_times) * 1000, statistics.median(b_times) * 1000
        print(
            f"{label:44s}: {args.small:>9,} rows {s:7.1f} ms | {args.big:>9,} rows {b:7.1f} ms | "
            f"ratio {b / s:.2f}x" + (" (target <= 1.5x)" if label in PAGES else " (no target)")
        )


if __name__ == "__main__":
    main()
