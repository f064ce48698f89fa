"""The dashboard's pages and actions, as one Flask blueprint.

Every page reads rows through the library (:mod:`rqjobs.store.search`,
:mod:`rqjobs.worker.listing`) and every action calls :func:`rqjobs.api.retry_tasks` or
:func:`rqjobs.api.cancel_tasks`, so the web shows and does exactly what the command line
does. The Schedules page and the pause/resume actions of schedules and queues are in
:mod:`rqjobs.web.controls`. Templates are Jinja with autoescape: task text is always
data, never markup.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from flask import (
    Blueprint,
    Response,
    abort,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from rqjobs.exceptions import InvalidInput, RqjobsError
from rqjobs.status import ALL, FINAL, RETRYABLE, WAITING, TaskStatus
from rqjobs.web import controls, present
from rqjobs.web.security import (
    AUTH_COOKIE,
    CSRF_COOKIE,
    CSRF_FIELD,
    SECURITY_HEADERS,
    TOKEN_ENV,
    CsrfSigner,
    cookie_matches,
    session_proof,
    token_matches,
)

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime

#: rows per page of the tasks list
PAGE_SIZE = 50
#: a bulk action handles at most this many tasks per press (it says how many more match)
BULK_LIMIT = 500
#: ids one progress poll may ask about
MAX_POLL_IDS = 200
#: statuses an action applies to
CANCELABLE = (*WAITING, TaskStatus.DEFERRED.value, TaskStatus.RUNNING.value)


def make_blueprint(
    runtime: Runtime | Callable[[], Runtime] | None = None,
    *,
    read_only: bool = False,
    token: str | None = None,
    name: str = "rqjobs_web",
) -> Blueprint:
    """The dashboard as a blueprint; ``runtime`` may be a callable (or None: the process's)."""
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    csrf = CsrfSigner()
    bp = Blueprint(name, __name__, template_folder="templates", static_folder="static")

    def get_runtime() -> Runtime:
        if runtime is None:
            from rqjobs.runtime import get_runtime as default_runtime

            return default_runtime()
        return runtime() if callable(runtime) else runtime

    # -- every request: who is asking, and the CSRF cookie -----------------------------

    @bp.before_request
    def _guard() -> Any:
        nonce = request.cookies.get(CSRF_COOKIE)
        g.rqjobs_csrf_new = nonce is None or len(nonce) > 64
        g.rqjobs_csrf_nonce = csrf.new_nonce() if g.rqjobs_csrf_new else nonce
        if token is not None and not _authenticated():
            if request.endpoint == f"{bp.name}.login" or request.endpoint == f"{bp.name}.static":
                pass
            elif request.path.startswith(url_for(".overview") + "api/") or request.method != "GET":
                return _json_error("a token is required (Authorization: Bearer ...)", 401)
            else:
                return redirect(url_for(".login", next=request.full_path))
        if request.method == "POST" and read_only and request.endpoint != f"{bp.name}.login":
            return _page_error("This dashboard is read-only.", 403)
        if request.method == "POST" and not csrf.valid(
            request.cookies.get(CSRF_COOKIE), request.form.get(CSRF_FIELD)
        ):
            return _page_error(
                "This form has expired or did not come from this dashboard: reload the page and try again.",
                403,
            )
        return None

    def _authenticated() -> bool:
        assert token is not None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and token_matches(token, header[len("Bearer ") :].strip()):
            return True
        return cookie_matches(token, request.cookies.get(AUTH_COOKIE))

    @bp.after_request
    def _headers(response: Response) -> Response:
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        if getattr(g, "rqjobs_csrf_new", False):
            response.set_cookie(
                CSRF_COOKIE,
                g.rqjobs_csrf_nonce,
                httponly=True,
                samesite="Strict",
                secure=request.is_secure,
                path=url_for(".overview"),
            )
        return response

    @bp.app_template_global("rqjobs_csrf_token")
    def _csrf_token() -> str:
        return csrf.token_for(g.rqjobs_csrf_nonce)

    @bp.context_processor
    def _context() -> dict[str, Any]:
        return {
            "read_only": read_only,
            "present": present,
            "csrf_field": CSRF_FIELD,
            "statuses": ALL,
            "final": FINAL,
            "retryable": RETRYABLE,
            "cancelable": CANCELABLE,
            "now": datetime.now(timezone.utc),
        }

    # -- errors ----------------------------------------------------------------------

    def _wants_json() -> bool:
        return request.path.startswith(url_for(".overview") + "api/")

    def _json_error(message: str, status: int) -> Response:
        response = jsonify({"error": message})
        response.status_code = status
        return response

    def _page_error(message: str, status: int) -> Any:
        if _wants_json():
            return _json_error(message, status)
        return make_response(render_template("rqjobs_web/error.html", message=message, status=status), status)

    @bp.errorhandler(RqjobsError)
    def _rqjobs_error(exc: RqjobsError) -> Any:
        # a refused request is the user's to correct (400); anything else is the database
        # or Redis failing (503): say which, never a traceback
        return _page_error(exc.message, 400 if isinstance(exc, InvalidInput) else 503)

    @bp.errorhandler(404)
    def _not_found(_exc: Any) -> Any:
        return _page_error("No such page or task.", 404)

    # -- pages -----------------------------------------------------------------------

    @bp.get("/")
    def overview() -> Any:

        rt = get_runtime()
        now = datetime.now(timezone.utc)
        totals = rt.store.counts_by_status()
        by_queue = rt.store.counts_by_queue_and_status(ended_since=now - timedelta(hours=24))
        windows = {
            "last 24 hours": rt.store.ended_per_bucket(span=timedelta(hours=24), buckets=24, now=now),
            "last 7 days": rt.store.ended_per_bucket(span=timedelta(days=7), buckets=28, now=now),
        }
        charts = {label: (w, *present.chart_bars(w)) for label, w in windows.items()}
        workers, workers_error = _workers(rt)
        paused = {p.queue: p for p in controls.paused_queues(rt)}
        for queue in paused:  # a paused queue with no rows still gets its line (and Resume)
            by_queue.setdefault(queue, {})
        ticks, ticks_error = controls.next_ticks(rt)
        return render_template(
            "rqjobs_web/overview.html",
            nav="overview",
            totals=totals,
            by_queue=dict(sorted(by_queue.items())),
            charts=charts,
            chart_width=present.CHART_WIDTH,
            chart_height=present.CHART_HEIGHT,
            workers=workers,
            workers_error=workers_error,
            paused=paused,
            ticks=ticks,
            ticks_error=ticks_error,
            notice=controls.notice(),
        )

    @bp.get("/tasks")
    def tasks() -> Any:
        from rqjobs.search import parse_query

        text = request.args.get("q", "")
        before = _id_arg("before")
        after = _id_arg("after")
        error = None
        try:
            query = parse_query(text)
        except InvalidInput as exc:
            error, query = exc.message, None
        page = None
        if query is not None:
            page = get_runtime().store.search(query, limit=PAGE_SIZE, before_id=before, after_id=after)
        html = render_template(
            "rqjobs_web/tasks.html", nav="tasks", q=text, page=page, error=error, bulk_limit=BULK_LIMIT
        )
        return make_response(html, 400 if error else 200)

    @bp.get("/tasks/<int:task_id>")
    def task(task_id: int) -> Any:
        store = get_runtime().store
        record = store.get(task_id)
        if record is None:
            abort(404)
        return render_template(
            "rqjobs_web/task.html",
            nav="tasks",
            task=record,
            parents=store.parent_states(task_id) if record.after else [],
            dependents=store.children_of(task_id),
            timeline=present.timeline(record),
            blocks=present.log_blocks(record.log),
        )

    @bp.get("/workers")
    def workers() -> Any:
        rt = get_runtime()
        live, error = _workers(rt)
        running = rt.store.find(statuses=(TaskStatus.RUNNING.value,), limit=1000)
        labels = {w.label for w in live}
        by_worker: dict[str, list[Any]] = {}
        for record in running:
            by_worker.setdefault(record.worker or "?", []).append(record)
        orphans = {w: rows for w, rows in by_worker.items() if w not in labels} if error is None else {}
        return render_template(
            "rqjobs_web/workers.html",
            nav="workers",
            workers=live,
            workers_error=error,
            by_worker=by_worker,
            orphans=orphans,
            liveness_ttl_s=rt.settings.worker_liveness_ttl_s,
        )

    def _workers(rt: Runtime) -> tuple[list[Any], str | None]:
        from rqjobs.worker.listing import live_workers

        try:
            return live_workers(rt.redis), None
        except Exception as exc:  # Redis down must not take the row pages with it
            from rqjobs.broker.connection import describe

            return [], f"Redis at {describe(rt.settings)} did not answer ({type(exc).__name__}: {exc})"

    controls.register(bp, get_runtime)

    # -- JSON for the page's script --------------------------------------------------

    @bp.get("/api/tasks/<int:task_id>")
    def task_json(task_id: int) -> Any:
        record = get_runtime().store.get(task_id)
        if record is None:
            return _json_error(f"no task {task_id}", 404)
        return jsonify(record.to_dict())

    @bp.get("/api/progress")
    def progress_json() -> Any:

        raw = request.args.get("ids", "")
        try:
            ids = [int(part) for part in raw.split(",") if part.strip()][:MAX_POLL_IDS]
        except ValueError:
            return _json_error("ids must be task ids separated by commas", 400)
        return jsonify({"tasks": get_runtime().store.progress_of(ids)})

    # -- actions ---------------------------------------------------------------------

    def _outcomes(title: str, outcomes: list[Any], *, more: bool = False, q: str | None = None) -> Any:
        status = 200 if all(o.ok for o in outcomes) else 409
        html = render_template(
            "rqjobs_web/outcomes.html", nav="tasks", title=title, outcomes=outcomes, more=more, q=q
        )
        return make_response(html, status)

    @bp.post("/tasks/<int:task_id>/retry")
    def retry_one(task_id: int) -> Any:
        from rqjobs.api import retry_tasks

        rt = _with_tasks(get_runtime())
        return _outcomes(f"Retry task {task_id}", retry_tasks([task_id], runtime=rt))

    @bp.post("/tasks/<int:task_id>/cancel")
    def cancel_one(task_id: int) -> Any:
        from rqjobs.api import cancel_tasks

        return _outcomes(f"Cancel task {task_id}", cancel_tasks([task_id], runtime=get_runtime()))

    @bp.post("/tasks/retry")
    def retry_matching() -> Any:
        from rqjobs.api import retry_tasks

        title = "Retry every failed or canceled task matching the search"
        return _bulk(title, RETRYABLE, retry_tasks, _with_tasks(get_runtime()))

    @bp.post("/tasks/cancel")
    def cancel_matching() -> Any:
        from rqjobs.api import cancel_tasks

        title = "Cancel every waiting or running task matching the search"
        return _bulk(title, CANCELABLE, cancel_tasks, get_runtime())

    def _bulk(title: str, statuses: tuple[str, ...], act: Callable[..., list[Any]], rt: Runtime) -> Any:
        """One batch of a search's tasks in ``statuses`` through ``act`` (retry or cancel)."""
        ids, more, q = _matching(rt, statuses)
        return _outcomes(title, act(ids, runtime=rt), more=more, q=q)

    def _matching(rt: Runtime, statuses: tuple[str, ...]) -> tuple[list[int], bool, str]:
        from rqjobs.search import parse_query

        q = request.form.get("q", "")
        query = parse_query(q)
        if query.empty:
            raise InvalidInput("a bulk action needs a search: it will not touch every task")
        ids, more = rt.store.matching_ids(query, statuses=statuses, limit=BULK_LIMIT)
        return ids, more, q

    def _with_tasks(rt: Runtime) -> Runtime:
        """Retrying checks the task name is registered: load the configured task modules."""
        from rqjobs.tasks.commons import load_task_modules

        load_task_modules(rt.settings)
        return rt

    # -- login (only when a token is set) ----------------------------------------------

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        target = request.values.get("next", "")
        if not target.startswith("/") or target.startswith("//"):
            target = url_for(".overview")
        if token is None:
            return redirect(target)
        error = None
        if request.method == "POST":
            if token_matches(token, request.form.get("token", "")):
                response = redirect(target, code=303)
                response.set_cookie(
                    AUTH_COOKIE,
                    session_proof(token),
                    httponly=True,
                    samesite="Strict",
                    secure=request.is_secure,
                    path=url_for(".overview"),
                )
                return response
            error = "That is not the token."
        html = render_template("rqjobs_web/login.html", nav="", next=target, error=error)
        return make_response(html, 401)

    return bp


def _id_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise InvalidInput(f"{name} must be a task id")
    return int(raw)
