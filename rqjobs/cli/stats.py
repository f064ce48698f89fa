"""``rqjobs stats``: counts, failure rates, run times and a chart of runs over time."""

from __future__ import annotations

from typing import Annotated

import typer

from rqjobs.cli.context import JsonOption, TaskNameOption, echo_json, runtime_from, stdout

DEFAULT_STATS_SINCE = "7d"


def stats(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="Tasks created since: 1h, 30m, 7d, an ISO time, or 'all'.")
    ] = DEFAULT_STATS_SINCE,
    name: TaskNameOption = None,
    as_json: JsonOption = False,
) -> None:
    """Counts, failure rates and run times per task name, and a chart of runs over time.

    Run times are those of finished runs (p50, p95, max); the chart shows finished and failed runs per time slice.

    Example: rqjobs stats --since 24h
    """
    from rqjobs.stats import compute_stats
    from rqjobs.timeparse import parse_since

    since_dt = None if since.strip().lower() == "all" else parse_since(since)
    console = stdout()
    buckets = max(10, min(60, console.width - 20))
    result = compute_stats(runtime_from(ctx).store, since=since_dt, names=name or (), buckets=buckets)
    if as_json:
        echo_json(result.to_dict())
        return
    from rqjobs.cli.render.stats import stats_view

    window = (
        "in all time" if since_dt is None else f"since {since_dt.astimezone().isoformat(timespec='minutes')}"
    )
    console.print(stats_view(result, window))
