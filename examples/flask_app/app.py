"""A small Flask app that hands slow work to rqjobs and shows each task's row.

This is the design of the Flask Mega-Tutorial's background-jobs chapter (a view
launches a task, a Task row tracks it, a page shows its progress), with rqjobs keeping
the row: the view calls :func:`rqjobs.enqueue_task`, a separate ``rqjobs worker`` runs
the job, and the status page reads the row, which the worker keeps true even when a
job fails or its process dies.

Run it in this folder, in two terminals (the embedded default needs no set-up: a
SQLite file and a private redis-server under ./.rqjobs):

    pip install "rqjobs[web]"          # or, from a checkout: pip install -e "../..[web]"
    flask --app app run                # then open http://127.0.0.1:5000/
    rqjobs worker                      # runs what the app enqueues

Routes:

* ``GET /``: forms to count words and to send a welcome mail, and the latest tasks;
* ``POST /tasks/count-words``: field ``text`` (a form, or JSON ``{"text": ...}``);
* ``POST /tasks/welcome``: fields ``email`` and ``name``: the built-in ``send-mail``
  with its ``email/welcome`` template (into ./.rqjobs/outbox unless ``[mail]`` says SMTP);
* ``GET /tasks/<id>``: the task's page, refreshing itself until the task is done;
* ``GET /api/tasks/<id>``: the same as JSON;
* ``/rqjobs/``: the rqjobs web dashboard (``rqjobs.web.blueprint()``), mounted as a
  blueprint: every task, search, live progress, workers, retry and cancel.

A form post answers with a redirect to the task's page; a JSON post with ``202
Accepted``, the task as JSON and its URL in ``Location``. Input the task refuses is a
``400`` with the reason, and no row is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, jsonify, redirect, render_template_string, request, url_for

import rqjobs
from rqjobs import InvalidInput, RqjobsError, TaskRecord

#: the statuses after which a task's page stops refreshing itself
FINAL = ("finished", "failed", "canceled")

RECENT_TASKS = 10

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
{% if refresh %}<meta http-equiv="refresh" content="1">{% endif %}
<title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:40rem;margin:2rem auto} .failed{color:#b00}</style>
</head><body>
<h1>{{ title }}</h1>
{% if error %}<p class="failed">{{ error }}</p>{% endif %}
{{ body | safe }}
</body></html>"""

INDEX = """
<form method="post" action="{{ url_for('count_words') }}">
  <p><label>Text <textarea name="text" rows="4" cols="50"></textarea></label></p>
  <p><button>Count its words</button></p>
</form>
<form method="post" action="{{ url_for('welcome') }}">
  <p><label>E-mail <input name="email" type="email"></label>
     <label>Name <input name="name"></label> <button>Send a welcome mail</button></p>
</form>
<h2>Latest tasks</h2>
<p><a href="{{ url_for('rqjobs_web.overview') }}">Open the rqjobs dashboard</a></p>
<ul>{% for t in tasks %}
  <li><a href="{{ url_for('task_page', task_id=t.id) }}">#{{ t.id }} {{ t.name }}</a>:
      {{ t.description }} ({{ t.status }})</li>
{% else %}<li>none yet</li>{% endfor %}</ul>
"""

TASK = """
<p>{{ task.description }}</p>
<p id="status" class="{{ task.status }}">status: <strong>{{ task.status }}</strong></p>
<p><progress value="{{ task.progress }}" max="100">{{ task.progress }}%</progress>
   {{ task.progress }}% {{ task.progress_message or "" }}</p>
{% if task.result is not none %}<h2>Result</h2><pre id="result">{{ result_json }}</pre>{% endif %}
{% if task.error %}<h2>Error</h2><pre class="failed">{{ task.error }}</pre>{% endif %}
<p><a href="{{ url_for('index') }}">back</a> ·
   <a href="{{ url_for('task_json', task_id=task.id) }}">as JSON</a></p>
"""


def task_as_json(record: TaskRecord) -> dict[str, Any]:
    """What the API and the page show of a row."""
    return {
        "id": record.id,
        "name": record.name,
        "description": record.description,
        "status": record.status,
        "progress": record.progress,
        "progress_message": record.progress_message,
        "result": record.result,
        "error": record.error,
        "attempts": record.attempts,
        "created_at": record.created_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "url": url_for("task_page", task_id=record.id),
    }


def _page(title: str, body: str, *, status: int = 200, refresh: bool = False, **context: Any) -> Any:
    inner = render_template_string(body, **context)
    return render_template_string(LAYOUT, title=title, body=inner, refresh=refresh, **context), status


def _wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def create_app(config_path: str | os.PathLike[str] | None = None) -> Flask:
    """The app; rqjobs finds its settings as the CLI does (./rqjobs.toml or a parent's) unless
    ``config_path`` names a file. Nothing else is set up: the public API imports the
    configured ``tasks_modules`` on first use."""
    if config_path is not None:
        rqjobs.configure(config_path)

    app = Flask(__name__)
    # the whole dashboard under /rqjobs/ (set RQJOBS_WEB_TOKEN to require a token there);
    # with no runtime given it shows the rows of the settings rqjobs found, as the API does
    from rqjobs.web import blueprint

    app.register_blueprint(blueprint(), url_prefix="/rqjobs")

    def launch(task: str, description: str, **arguments: Any) -> Any:
        record = rqjobs.enqueue_task(task, description=description, **arguments)
        location = url_for("task_json", task_id=record.id)
        if _wants_json():
            return jsonify(task_as_json(record)), 202, {"Location": location}
        return redirect(url_for("task_page", task_id=record.id), code=303)

    def field(name: str) -> str:
        data = request.get_json(silent=True) if request.is_json else request.form
        value = data.get(name, "") if isinstance(data, Mapping) else ""
        return value if isinstance(value, str) else ""

    @app.errorhandler(InvalidInput)
    def refused(exc: InvalidInput) -> Any:
        # refused before any row was written: the user can correct the input and post again
        if _wants_json():
            return jsonify({"error": exc.message}), 400
        return _page("Not enqueued", "", status=400, error=exc.message)

    @app.errorhandler(RqjobsError)
    def failed(exc: RqjobsError) -> Any:
        # e.g. Redis unreachable: the row (if one was written) is already marked failed
        if _wants_json():
            return jsonify({"error": exc.message}), 503
        return _page("Could not enqueue", "", status=503, error=exc.message)

    @app.get("/")
    def index() -> Any:
        tasks = rqjobs.list_tasks(limit=RECENT_TASKS)
        return _page("rqjobs + Flask", INDEX, tasks=tasks)

    @app.post("/tasks/count-words")
    def count_words() -> Any:
        text = field("text")
        return launch("count-words", f"count the words of {len(text)} characters from the web", text=text)

    @app.post("/tasks/welcome")
    def welcome() -> Any:
        email, name = field("email").strip(), field("name").strip()
        return launch(
            "send-mail",
            f"welcome mail to {email}",
            to=[email],
            subject=f"Welcome, {name}!" if name else "Welcome!",
            template="email/welcome",
            var=[f"name={name}"] if name else None,
        )

    def record_or_404(task_id: int) -> TaskRecord:
        record = rqjobs.get_task(task_id)
        if record is None:
            abort(404)
        return record

    @app.get("/tasks/<int:task_id>")
    def task_page(task_id: int) -> Any:
        import json

        task = task_as_json(record_or_404(task_id))
        return _page(
            f"Task #{task_id}: {task['name']}",
            TASK,
            refresh=task["status"] not in FINAL,
            task=task,
            result_json=json.dumps(task["result"], indent=2, ensure_ascii=False),
        )

    @app.get("/api/tasks/<int:task_id>")
    def task_json(task_id: int) -> Any:
        return jsonify(task_as_json(record_or_404(task_id)))

    return app
