"""`rqjobs web`: every route through Flask's test client, on a real store and a private Redis.

Rows are made the way users make them (``enqueue_task``, ``rqjobs worker --burst`` in a
subprocess); the pages are then checked for what they show, what they escape, what they
refuse, and what the actions did to the rows.
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, Project, wait_for
from tests.test_example_app import _load_example

XSS = "<script>alert(1)</script>"
TOKEN = "s3cret-token-0123456789"


def _app(project: Project, **kwargs: Any) -> Any:
    from rqjobs.web import create_app

    app = create_app(project.runtime(), **kwargs)
    app.testing = True
    return app


@pytest.fixture
def client(project: Project) -> Any:
    return _app(project).test_client()


def _enqueue(project: Project, task: str, description: str = "web test", **kwargs: Any) -> int:
    from rqjobs.api import enqueue_task

    return enqueue_task(task, description=description, runtime=project.runtime(), **kwargs).id


def _text(response: Any) -> str:
    return response.get_data(as_text=True)


def _csrf(client: Any, url: str) -> str:
    """The CSRF token of a page's form (it stays valid for this client's cookie)."""
    page = _text(client.get(url))
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert match, f"no CSRF field on {url}"
    return match.group(1)


def _task_ids_listed(response: Any) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-task-id="(\d+)"', _text(response))]


# -- pages -------------------------------------------------------------------------------


def test_every_page_answers_with_the_security_headers(client: Any, project: Project) -> None:
    task_id = _enqueue(project, "add", a=1, b=2)
    for url in (
        "/",
        "/tasks",
        f"/tasks/{task_id}",
        "/workers",
        "/api/progress?ids=1",
        f"/api/tasks/{task_id}",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for asset in ("rqjobs-web.css", "rqjobs-web.js"):
        with client.get(f"/static/{asset}") as response:  # a file response: close it
            assert response.status_code == 200 and len(response.data) > 500
    page = _text(client.get("/"))
    # no inline script and nothing from another origin: the page works offline under the CSP
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/rqjobs-web.js" defer>']
    assert "http://" not in page and "https://" not in page
    assert client.get("/tasks/999999").status_code == 404
    assert client.get("/no-such-page").status_code == 404


def test_task_text_is_escaped_everywhere(client: Any, project: Project) -> None:
    task_id = _enqueue(project, "echo-dict", description=XSS, text=XSS)
    project.work()
    pages = [client.get(u) for u in ("/tasks", f"/tasks/{task_id}", "/tasks?q=alert", "/tasks?q=" + XSS)]
    for response in pages:
        body = _text(response)
        assert XSS not in body
        assert html.escape(XSS, quote=False) in body or "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    result = _text(client.get(f"/tasks/{task_id}"))
    assert (
        "&#34;echo&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in result
    )  # the result, as JSON text
    # the JSON API returns the text as data, with a JSON content type the browser will not sniff
    api = client.get(f"/api/tasks/{task_id}")
    assert api.json["description"] == XSS and api.mimetype == "application/json"


def test_overview_counts_charts_and_workers(client: Any, project: Project) -> None:
    for i in range(3):
        _enqueue(project, "add", a=i, b=1)
    _enqueue(project, "fail-always", queue="high")
    project.work("default", "high")
    _enqueue(project, "add", a=9, b=9)  # stays queued: no worker runs
    page = _text(client.get("/"))
    found = re.findall(r'<span class="count">([\d,]+)</span>\s*<span class="status status-(\w+)"', page)
    counts = {status: count for count, status in found}
    assert counts == {
        "queued": "1",
        "scheduled": "0",
        "deferred": "0",
        "running": "0",
        "finished": "3",
        "failed": "1",
        "canceled": "0",
    }
    assert "3 finished, 1 failed" in page and "failure rate <strong>25.0%</strong>" in page
    assert page.count("<svg") == 2  # 24 h and 7 d
    assert re.search(r"<title>[^<]*: 3 finished, 1 failed</title>|<title>[^<]*: [1-3] finished", page)
    assert '<a href="/tasks?q=queue:high">high</a>' in page
    assert 'id="workers-alive">0<' in page  # the burst worker has exited: its key is gone


def test_overview_and_workers_survive_redis_being_unreachable(project: Project, tmp_path: Any) -> None:
    from dataclasses import replace

    from rqjobs.runtime import Runtime
    from rqjobs.web import create_app

    _enqueue(project, "add", a=1, b=1)
    runtime = Runtime(replace(project.settings(), redis_url=f"unix://{tmp_path / 'nobody.sock'}"))
    client = create_app(runtime).test_client()
    for url in ("/", "/workers"):
        response = client.get(url)
        assert response.status_code == 200
        assert "did not answer" in _text(response)
    assert _task_ids_listed(client.get("/tasks")) == [1]


def test_workers_page_lists_a_live_worker_and_rows_on_dead_ones(client: Any, project: Project) -> None:
    from rqjobs.worker.listing import live_workers

    ghost = project.store().insert(
        name="add",
        description="left running",
        queue="default",
        args=[1, 1],
        kwargs={},
        timeout_s=30,
        status="running",
        worker="ghost-host:4242",
        attempts=1,
    )
    worker = project.start_worker()
    try:
        # the liveness key comes first, RQ's worker hash right after it
        found = wait_for(
            lambda: [w for w in live_workers(project.runtime().redis) if w.state],
            message="the worker to register",
        )
        page = _text(client.get("/workers"))
        assert found[0].label == f"{os.uname().nodename}:{worker.pid}" or found[0].pid == worker.pid
        assert found[0].label in page and "default" in page
        assert 'id="orphans"' in page and "ghost-host:4242" in page and f"#{ghost.id} add" in page
        assert 'id="workers-alive">1<' in _text(client.get("/"))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


# -- tasks list and search ---------------------------------------------------------------


def test_search_qualifiers_narrow_the_list(client: Any, project: Project) -> None:
    a = _enqueue(project, "add", description="invoice for ACME", a=1, b=2)
    b = _enqueue(project, "fail-always", description="welcome mail to bob", queue="high")
    c = _enqueue(project, "add", description="another invoice", a=2, b=2)
    project.work("default", "high")
    assert _task_ids_listed(client.get("/tasks")) == [c, b, a]
    assert _task_ids_listed(client.get("/tasks?q=task:add")) == [c, a]
    assert _task_ids_listed(client.get("/tasks?q=status:failed")) == [b]
    assert _task_ids_listed(client.get("/tasks?q=status:failed,finished")) == [c, b, a]
    assert _task_ids_listed(client.get("/tasks?q=queue:high")) == [b]
    assert _task_ids_listed(client.get(f"/tasks?q=id:{a}")) == [a]
    assert _task_ids_listed(client.get("/tasks?q=INVOICE")) == [c, a]  # case-insensitive
    assert _task_ids_listed(client.get('/tasks?q="invoice for"')) == [a]
    assert _task_ids_listed(client.get("/tasks?q=invoice task:add status:finished since:1h")) == [c, a]
    worker = project.row(a).worker
    host = worker.rsplit(":", 1)[0]
    assert _task_ids_listed(client.get(f"/tasks?q=worker:{worker}")) == [c, b, a]  # one burst worker ran all
    assert _task_ids_listed(client.get(f"/tasks?q=worker:{host}")) == [c, b, a]
    assert _task_ids_listed(client.get("/tasks?q=worker:elsewhere")) == []
    assert "No tasks match" in _text(client.get("/tasks?q=zzz-nothing"))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status:bogus", "status:bogus is not a status"),
        ("id:abc", "id:abc is not a task id"),
        ("since:yesterday", "not a duration or a time"),
        ('"unclosed', "unbalanced quotes"),
        ("schedule:nightly", "schedule: needs periodic schedules"),
        ("task:", "task: needs a value"),
    ],
)
def test_a_bad_search_is_a_400_that_says_why(client: Any, query: str, message: str) -> None:
    response = client.get("/tasks", query_string={"q": query})
    assert response.status_code == 400
    assert message in html.unescape(_text(response))
    assert "Traceback" not in _text(response)


def test_pages_are_keyset_paginated_by_id(client: Any, project: Project) -> None:
    store = project.store()
    ids = [
        store.insert(
            name="add", description=f"row {i}", queue="default", args=[1, 1], kwargs={}, timeout_s=30
        ).id
        for i in range(120)
    ]
    newest_first = ids[::-1]
    first = client.get("/tasks")
    assert _task_ids_listed(first) == newest_first[:50]
    assert 'rel="prev"' not in _text(first)
    older = re.search(r'href="([^"]+)" rel="next"', _text(first)).group(1)
    assert older == f"/tasks?before={newest_first[49]}"
    second = client.get(html.unescape(older))
    assert _task_ids_listed(second) == newest_first[50:100]
    third = client.get(html.unescape(re.search(r'href="([^"]+)" rel="next"', _text(second)).group(1)))
    assert _task_ids_listed(third) == newest_first[100:]
    assert 'rel="next"' not in _text(third)
    back = client.get(html.unescape(re.search(r'href="([^"]+)" rel="prev"', _text(third)).group(1)))
    assert _task_ids_listed(back) == newest_first[50:100]
    assert client.get("/tasks?before=abc").status_code == 400
    # the search stays in the links
    filtered = client.get("/tasks?q=task:add")
    assert "q=task:add&amp;before=" in _text(filtered)


# -- one task ----------------------------------------------------------------------------


def test_task_page_shows_fields_timeline_result_and_traceback(
    client: Any, project: Project, tmp_path: Any
) -> None:
    marker = tmp_path / "flaky-count"
    ok = _enqueue(project, "flaky", description="flaky once", marker=str(marker), failures=1, retries=1)
    bad = _enqueue(project, "fail-always", message="disk on fire")
    project.work()
    page = html.unescape(_text(client.get(f"/tasks/{ok}")))
    assert "flaky once" in page and 'id="status">finished<' in page
    timeline = page[page.index('id="timeline"') :]
    order = [timeline.index(s) for s in ("created", "attempt 1 failed", "attempt 2 started", "finished")]
    assert order == sorted(order)
    assert "RuntimeError: flaky failure 1 of 1" in page  # the failed attempt's line on the timeline
    assert '"result": "succeeded after 1 failures"' in page
    failed = html.unescape(_text(client.get(f"/tasks/{bad}")))
    assert "Traceback (most recent call last)" in failed and "RuntimeError: disk on fire" in failed
    assert 'value="100"' in failed
    api = client.get(f"/api/tasks/{bad}").json
    assert api["status"] == "failed" and api["attempts"] == 1 and "disk on fire" in api["log"]
    assert client.get("/api/tasks/999999").status_code == 404


def test_progress_endpoint(client: Any, project: Project) -> None:
    a = _enqueue(project, "add", a=1, b=1)
    b = _enqueue(project, "add", a=2, b=2)
    project.work()
    data = client.get(f"/api/progress?ids={a},{b},999999").json["tasks"]
    assert sorted((t["id"], t["status"], t["progress"]) for t in data) == [
        (a, "finished", 100),
        (b, "finished", 100),
    ]
    assert client.get("/api/progress?ids=1,x").status_code == 400
    assert client.get("/api/progress").json == {"tasks": []}


# -- actions -----------------------------------------------------------------------------


def test_retry_and_cancel_one_task(client: Any, project: Project, tmp_path: Any) -> None:
    marker = tmp_path / "flaky-count"
    task_id = _enqueue(project, "flaky", marker=str(marker), failures=1)
    project.work()
    assert project.row(task_id).status == "failed"
    page = _text(client.get(f"/tasks/{task_id}"))
    assert f'action="/tasks/{task_id}/retry"' in page and f'action="/tasks/{task_id}/cancel"' not in page
    # without the CSRF token: refused, the row untouched
    refused = client.post(f"/tasks/{task_id}/retry")
    assert refused.status_code == 403 and project.row(task_id).status == "failed"
    forged = client.post(f"/tasks/{task_id}/retry", data={"csrf_token": "0" * 64})
    assert forged.status_code == 403 and project.row(task_id).status == "failed"
    token = _csrf(client, f"/tasks/{task_id}")
    done = client.post(f"/tasks/{task_id}/retry", data={"csrf_token": token})
    assert done.status_code == 200 and "retried" in _text(done)
    assert project.row(task_id).status == "queued"
    project.work()
    row = project.row(task_id)
    assert row.status == "finished" and row.attempts == 2
    # a second retry of a finished task is refused by the library, and says so
    again = client.post(f"/tasks/{task_id}/retry", data={"csrf_token": token})
    assert again.status_code == 409 and "only failed or canceled tasks are retried" in _text(again)

    waiting = _enqueue(project, "add", a=1, b=1)
    assert f'action="/tasks/{waiting}/cancel"' in _text(client.get(f"/tasks/{waiting}"))
    canceled = client.post(f"/tasks/{waiting}/cancel", data={"csrf_token": token})
    assert canceled.status_code == 200 and "canceled" in _text(canceled)
    assert project.row(waiting).status == "canceled"
    assert "retried by" not in (project.row(waiting).log or "") and "canceled by" in project.row(waiting).log


def test_bulk_retry_and_cancel_everything_matching_a_search(client: Any, project: Project) -> None:
    failed = [_enqueue(project, "fail-always") for _ in range(3)]
    fine = _enqueue(project, "add", a=1, b=1)
    project.work()
    token = _csrf(client, "/tasks?q=task:fail-always")
    assert 'action="/tasks/retry"' in _text(client.get("/tasks?q=task:fail-always"))
    response = client.post("/tasks/retry", data={"csrf_token": token, "q": "task:fail-always"})
    assert response.status_code == 200
    assert (
        sorted(
            int(i)
            for i in re.findall(r"/tasks/(\d+)\">\d+</a></td><td class=\"outcome\">retried", _text(response))
        )
        == failed
    )
    assert [project.row(i).status for i in failed] == ["queued"] * 3
    assert project.row(fine).status == "finished"
    response = client.post("/tasks/cancel", data={"csrf_token": token, "q": "status:queued"})
    assert response.status_code == 200
    assert [project.row(i).status for i in failed] == ["canceled"] * 3
    # a bulk action needs a search: an empty one would touch every task
    empty = client.post("/tasks/cancel", data={"csrf_token": token, "q": ""})
    assert empty.status_code == 400 and "needs a search" in _text(empty)
    bad = client.post("/tasks/retry", data={"csrf_token": token, "q": "status:nope"})
    assert bad.status_code == 400


def test_read_only_hides_and_refuses_every_action(project: Project) -> None:
    client = _app(project, read_only=True).test_client()
    task_id = _enqueue(project, "fail-always")
    project.work()
    page = _text(client.get(f"/tasks/{task_id}"))
    assert "read-only" in page and "/retry" not in page and "/cancel" not in page
    assert "/tasks/retry" not in _text(client.get("/tasks?q=status:failed"))
    for url, data in (
        (f"/tasks/{task_id}/retry", {}),
        (f"/tasks/{task_id}/cancel", {}),
        ("/tasks/retry", {"q": "status:failed"}),
        ("/tasks/cancel", {"q": "status:failed"}),
    ):
        response = client.post(url, data=data)  # refused before the CSRF check: no form exists
        assert response.status_code == 403 and "read-only" in _text(response)
    assert project.row(task_id).status == "failed"


# -- the token ---------------------------------------------------------------------------


def test_a_token_is_asked_for_on_every_request(project: Project) -> None:
    client = _app(project, token=TOKEN).test_client()
    response = client.get("/tasks")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    assert client.get("/api/progress?ids=1").status_code == 401
    assert client.post("/tasks/1/retry").status_code == 401
    assert client.get("/tasks", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 302
    login = _text(client.get("/login?next=/workers"))
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', login).group(1)
    wrong = client.post("/login", data={"csrf_token": csrf, "token": "nope", "next": "/workers"})
    assert wrong.status_code == 401 and "not the token" in _text(wrong)
    assert client.get("/tasks").status_code == 302
    right = client.post("/login", data={"csrf_token": csrf, "token": TOKEN, "next": "/workers"})
    assert right.status_code == 303 and right.headers["Location"] == "/workers"
    cookie = client.get_cookie("rqjobs_web_auth")
    assert cookie is not None and TOKEN not in cookie.value and cookie.http_only
    assert client.get("/tasks").status_code == 200
    # an open redirect is not possible through ?next=
    offsite = client.post("/login", data={"csrf_token": csrf, "token": TOKEN, "next": "//evil.example/"})
    assert offsite.headers["Location"] == "/"


def test_token_from_the_environment(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RQJOBS_WEB_TOKEN", TOKEN)
    client = _app(project).test_client()
    assert client.get("/").status_code == 302
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--host", "0.0.0.0"], {}, "refusing to listen on 0.0.0.0 without a token"),
        (["--host", "example.org"], {}, "refusing to listen on example.org without a token"),
        (["--host", "0.0.0.0"], {"RQJOBS_WEB_TOKEN": "short"}, "RQJOBS_WEB_TOKEN is too short"),
    ],
)
def test_web_refuses_to_start_exposed_without_a_token(
    project: Project, args: list[str], env: dict[str, str], message: str
) -> None:
    project.env.update(env)
    result = project.rqjobs("web", *args, "--port", "0", timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Error:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def _start_web(project: Project, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`rqjobs web --port 0 ARGS` in a subprocess; returns it and the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rqjobs", "web", "--port", "0", *args],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"on (http://\S+/)", line)
        if match:
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"rqjobs web did not start: {line!r}")


def test_rqjobs_web_serves_the_dashboard_on_loopback(project: Project) -> None:
    import urllib.error
    import urllib.request

    task_id = _enqueue(project, "add", description="served", a=1, b=2)
    proc, url = _start_web(project, "--read-only")
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + f"tasks/{task_id}", timeout=10) as response:
            body = response.read().decode()
            assert "served" in body and "read-only" in body
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(
                urllib.request.Request(url + f"tasks/{task_id}/retry", data=b"x=1"), timeout=10
            )
        assert refused.value.code == 403
        refused.value.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) in (0, 130)
        assert proc.stderr is not None
        proc.stderr.close()


def test_web_help_names_the_options(project: Project) -> None:
    result = project.rqjobs("web", "--help", check=True)
    for option in ("--host", "--port", "--read-only", "RQJOBS_WEB_TOKEN"):
        assert option in result.stdout


# -- mounted in another app --------------------------------------------------------------


def test_the_example_app_mounts_the_dashboard(project: Project) -> None:
    app = _load_example().create_app(project.config_path)
    app.testing = True
    client = app.test_client()
    posted = client.post("/tasks/count-words", data={"text": "one two"})
    assert posted.status_code == 303
    listed = _text(client.get("/rqjobs/tasks"))
    assert "count-words" in listed and 'href="/rqjobs/static/rqjobs-web.css"' in listed
    with client.get("/rqjobs/static/rqjobs-web.js") as script:
        assert script.status_code == 200
    assert client.get("/").headers.get("Content-Security-Policy") is None  # only the dashboard's pages
    assert REPO_ROOT.joinpath("examples", "flask_app", "app.py").read_text().count("register_blueprint") == 1
