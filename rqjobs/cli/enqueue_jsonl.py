"""``rqjobs enqueue TASK --from-jsonl FILE``: one task per line, all or nothing.

Each non-blank line is a JSON object of the task's arguments by parameter name. Every
line is parsed and checked before anything is written; the first bad one refuses the
file with its line number ("line 7: ..."), exit 2. Then :func:`rqjobs.bulk.enqueue_plans`
writes every row in one transaction and pushes every job in one Redis pipeline. The ids
go to stdout, one per line, in the file's order; the count goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rqjobs.cli.context import echo_json, info, runtime_from
from rqjobs.exceptions import InvalidInput, InvalidTaskArguments

if TYPE_CHECKING:
    from rqjobs.cli._click import Context
    from rqjobs.tasks.commons import TaskSpec


def read_jsonl(path: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The objects of a JSON-lines file (``-``: stdin) and the line number of each."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    items: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidTaskArguments(
                f"line {number}: not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None
        if not isinstance(item, dict):
            raise InvalidTaskArguments(
                f"line {number}: a line must be a JSON object of arguments, got {type(item).__name__}"
            )
        items.append(item)
        lines.append(number)
    return items, lines


def run_enqueue_jsonl(
    ctx: Context,
    spec: TaskSpec,
    path: str,
    *,
    description: str,
    queue: str | None,
    timeout: str | None,
    retries: int | None,
    retry_interval: int | list[int] | None,
    dry_run: bool = False,
    as_json: bool = False,
) -> None:
    from rqjobs.bulk import check_many, enqueue_plans
    from rqjobs.timeparse import parse_duration_s

    items, lines = read_jsonl(path)
    if not items:
        raise InvalidInput(f"{path}: no tasks (every line is blank)")
    runtime = runtime_from(ctx)
    plans = check_many(
        spec.name,
        items,
        description=description,
        queue=queue,
        timeout_s=int(parse_duration_s(timeout)) if timeout else None,
        retries=retries,
        retry_interval_s=retry_interval,
        runtime=runtime,
        label=lambda index: f"line {lines[index]}",
    )
    if dry_run:
        if as_json:
            echo_json([plan.to_dict() for plan in plans], ensure_ascii=False)
        info(f"[dim]dry run: {len(plans)} lines checked, nothing was enqueued[/dim]")
        return
    records = enqueue_plans(runtime, plans)
    sys.stdout.write("".join(f"{record.id}\n" for record in records))
    sys.stdout.flush()
    existing = [record for record in records if record.existing]
    made = len(records) - len(existing)
    note = f"enqueued {made} task{'s' if made != 1 else ''} of {spec.name}"
    if existing:
        shown = ", ".join(f"#{r.id}" for r in existing[:10]) + (" ..." if len(existing) > 10 else "")
        note += f"; {len(existing)} already queued ({shown})"
    info(note)


__all__ = ["read_jsonl", "run_enqueue_jsonl"]
