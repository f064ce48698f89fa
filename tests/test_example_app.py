"""The Flask example (examples/flask_app/app.py) with Flask's test client and a real worker.

The app enqueues in this process; `rqjobs worker --burst` runs the jobs in a
subprocess; the app's pages then show what the worker wrote in the rows.
"""

from __future__ import annotations

import email
import email.policy
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, Project
from tests.helpers import redis_job_keys, row_count

APP_PATH = REPO_ROOT / "examples" / "flask_app" / "app.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rqjobs_example_flask_app", APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client(project: Project) -> Any:
    app = _load_example().create_app(project.config_path)
    app.testing = True
    return app.test_client()


def test_form_enqueue_then_status_page_after_the_worker(client: Any, project: Project) -> None:
    posted = client.post("/tasks/count-words", data={"text": "the cat saw the dog"})
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/tasks/1"

    page = client.get("/tasks/1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "status: <strong>queued</strong>" in html
    assert 'http-equiv="refresh"' in html  # the page refreshes itself while the task is not done
    assert client.get("/api/tasks/1").get_json()["status"] == "queued"

    project.work()

    data = client.get("/api/tasks/1").get_json()
    assert data["status"] == "finished" and data["progress"] == 100 and data["error"] is None
    assert data["progress_message"] == "counted 5 words"  # the last word, held back per chunk, too
    assert data["result"] == {
        "source": "text",
        "total": 5,
        "unique": 4,
        "top": [["the", 2], ["cat", 1], ["saw", 1], ["dog", 1]],
    }
    assert data["description"] == "count the words of 19 characters from the web"
    html = client.get("/tasks/1").get_data(as_text=True)
    assert "status: <strong>finished</strong>" in html
    assert 'http-equiv="refresh"' not in html
    result = re.search(r'<pre id="result">(.*?)</pre>', html, re.S)
    assert result is not None and "&#34;total&#34;: 5" in result.group(1)

    index = client.get("/").get_data(as_text=True)
    assert '<a href="/tasks/1">#1 count-words</a>' in index and "(finished)" in index


def test_json_api_and_welcome_mail_through_the_outbox(client: Any, project: Project) -> None:
    posted = client.post("/tasks/count-words", json={"text": "<b>to be</b> or not to be"})
    assert posted.status_code == 202
    assert posted.headers["Location"] == "/api/tasks/1"
    assert posted.get_json()["status"] == "queued" and posted.get_json()["url"] == "/tasks/1"

    mail = client.post(
        "/tasks/welcome",
        json={"email": "ana@example.com", "name": "Ana"},
        headers={"Accept": "application/json"},
    )
    assert mail.status_code == 202
    mail_id = mail.get_json()["id"]

    project.work()

    counted = client.get("/api/tasks/1").get_json()
    assert counted["status"] == "finished"
    # the tags are just text to count-words: "b" counts twice
    assert (counted["result"]["total"], counted["result"]["unique"]) == (8, 5)
    sent = client.get(f"/api/tasks/{mail_id}").get_json()
    assert sent["status"] == "finished" and sent["result"]["recipients"] == ["ana@example.com"]
    eml = Path(sent["result"]["path"])
    assert eml.parent == project.root / ".rqjobs" / "outbox"
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Welcome, Ana!"
    assert msg.get_body(preferencelist=("plain",)).get_content().startswith("Hello Ana,")  # type: ignore[union-attr]


def test_refused_input_is_a_400_and_writes_nothing(client: Any, project: Project) -> None:
    injected = client.post(
        "/tasks/welcome",
        json={"email": "ana@example.com\r\nBcc: evil@example.com", "name": "Ana"},
    )
    assert injected.status_code == 400
    assert "line break" in injected.get_json()["error"]

    empty = client.post("/tasks/count-words", data={"text": ""})
    assert empty.status_code == 400
    assert "exactly one of" in empty.get_data(as_text=True)

    assert client.get("/tasks/1").status_code == 404
    assert client.get("/api/tasks/1").status_code == 404
    assert row_count(project) == 0 and redis_job_keys(project) == []
