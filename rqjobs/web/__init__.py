"""``rqjobs web``: a dashboard on the task rows, as a Flask app or a blueprint to mount.

    pip install 'rqjobs[web]'
    rqjobs web                              # http://127.0.0.1:8765/
    app.register_blueprint(rqjobs.web.blueprint(), url_prefix="/rqjobs")

Pages: overview (counts, throughput and failure rate over 24 h and 7 d, paused queues,
next schedule ticks, live workers), tasks (search with qualifiers, keyset pages), one task
(every field, its attempts as a timeline, result, traceback, live progress), workers,
schedules. Actions: retry and cancel, one task or everything matching a search; pause and
resume a schedule or a queue; POST with a CSRF token, none with ``read_only``. Assets
come from this package (no CDN); see :mod:`rqjobs.web.security` for the defences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Blueprint, Flask

    from rqjobs.runtime import Runtime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def blueprint(
    runtime: Runtime | Callable[[], Runtime] | None = None,
    *,
    read_only: bool = False,
    token: str | None = None,
    name: str = "rqjobs_web",
) -> Blueprint:
    """The dashboard as a Flask blueprint.

    ``runtime``: whose rows to show (a Runtime, a callable returning one, or None for the
    process's settings). ``token``: required on every request (default: the
    ``RQJOBS_WEB_TOKEN`` environment variable, if set). ``read_only`` hides and refuses
    every action.
    """
    from rqjobs.web.views import make_blueprint

    return make_blueprint(runtime, read_only=read_only, token=token, name=name)


def create_app(runtime: Runtime | None = None, *, read_only: bool = False, token: str | None = None) -> Flask:
    """A Flask app that serves only the dashboard, at ``/``."""
    from flask import Flask

    app = Flask(__name__, static_folder=None)
    app.register_blueprint(blueprint(runtime, read_only=read_only, token=token))
    return app


def serve(
    runtime: Runtime,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    read_only: bool = False,
    token: str | None = None,
    ready: Callable[[str], Any] | None = None,
) -> None:
    """Serve the dashboard until interrupted; refuses a non-loopback host without a token.

    ``ready`` is called with the URL once the socket listens (the CLI prints it).
    """
    from werkzeug.serving import make_server

    from rqjobs.exceptions import InvalidInput
    from rqjobs.tasks.commons import load_task_modules
    from rqjobs.web.security import check_bind

    check_bind(host, token)
    load_task_modules(runtime.settings)
    app = create_app(runtime, read_only=read_only, token=token)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    if ready is not None:
        ready(f"http://{shown}:{server.server_port}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "blueprint", "create_app", "serve"]
