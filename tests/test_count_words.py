"""count-words through the CLI and a real worker: text, a file, and an http(s) URL.

The URLs point at a ThreadingHTTPServer on 127.0.0.1 in this process, with routes
that misbehave on purpose (too big, silent, missing, trickling).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, wait_for
from tests.helpers import assert_refused, configure, read_row, row_count, work_in

LINE = "The cat saw the dog\n"  # 20 bytes, 5 words
STREAM_LINES = 10_240  # 200 KiB: more than three 64 KiB reads, so words straddle chunks
LIMIT_BYTES = 50_000


class Site:
    """The test server's state: what it serves, and the events its handlers wait on."""

    def __init__(self) -> None:
        self.release = threading.Event()  # set: /silent and /stream may go on
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            pass

        def _head(self, length: int | None, charset: str = "utf-8") -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"text/plain; charset={charset}")
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def do_GET(self) -> None:
            try:
                self._route()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first, as it should for /big and /silent

        def _route(self) -> None:
            if self.path == "/words.txt":
                body = "Ünïcode wörds, ünïcode!\n".encode("latin-1") * 3
                self._head(len(body), charset="latin-1")
                self.wfile.write(body)
            elif self.path == "/big":
                self._head(LIMIT_BYTES + 1)  # refused on the header alone: no body needed
            elif self.path == "/big-unsized":
                self._head(None)  # HTTP/1.0, no length: the body ends when the connection closes
                self.wfile.write(b"word " * (LIMIT_BYTES // 5 + 1000))
            elif self.path == "/trickle":
                self._head(40_000)
                self.wfile.write(b"word " * 2_000)
                self.wfile.flush()
                site.release.wait(30)
            elif self.path == "/silent":
                site.release.wait(30)
            elif self.path == "/stream":
                body = (LINE * STREAM_LINES).encode()
                self._head(len(body))
                half = 128 * 1024
                self.wfile.write(body[:half])
                self.wfile.flush()
                site.release.wait(30)
                self.wfile.write(body[half:])
            else:
                self.send_error(404, "Not Found")

    return Handler


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def proxyless(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The worker must reach 127.0.0.1 directly, whatever proxy the developer has set."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    project.env["NO_PROXY"] = project.env["no_proxy"] = "127.0.0.1,localhost"
    return project


def test_text_file_and_url_sources(proxyless: Project, site: Site, tmp_path: Path) -> None:
    project = proxyless
    configure(project, url_max_bytes=LIMIT_BYTES, url_timeout_s=1)
    (project.root / "books").mkdir()
    (project.root / "books" / "tale.txt").write_text("It was the best of times, it was the worst of times.\n")

    text = project.enqueue("count-words", "--text", "to be or not to be", "--top", "2")
    # a relative path, checked in the project folder and read by a worker elsewhere
    file = project.enqueue("count-words", "--path", "books/tale.txt", "--top", "3")
    url = project.enqueue("count-words", "--url", site.url("/words.txt"))

    def enqueue_url(path: str) -> int:  # the Python API: the same rows, without a CLI start-up each
        from rqjobs.api import enqueue_task

        return enqueue_task("count-words", url=site.url(path), description=path, runtime=project.runtime()).id

    big, unsized, silent, trickle, missing = map(
        enqueue_url, ["/big", "/big-unsized", "/silent", "/trickle", "/missing"]
    )
    assert read_row(project, file).kwargs["path"] == str(project.root / "books" / "tale.txt")

    work_in(tmp_path / "elsewhere", project)

    row = read_row(project, text)
    assert row.status == "finished", row.log
    assert row.result == {"source": "text", "total": 6, "unique": 4, "top": [["to", 2], ["be", 2]]}

    row = read_row(project, file)
    assert row.status == "finished", row.log
    assert row.result["source"] == str(project.root / "books" / "tale.txt")
    assert (row.result["total"], row.result["unique"]) == (12, 7)
    assert row.result["top"] == [["it", 2], ["was", 2], ["the", 2]]

    row = read_row(project, url)
    assert row.status == "finished", row.log
    # decoded with the charset the server declared (latin-1), not as UTF-8
    assert row.result["total"] == 9 and row.result["unique"] == 2
    assert row.result["top"] == [["ünïcode", 6], ["wörds", 3]]

    failures = {
        big: f"is {LIMIT_BYTES + 1} bytes (Content-Length), more than url_max_bytes ({LIMIT_BYTES} bytes)",
        unsized: f"sent more than url_max_bytes ({LIMIT_BYTES} bytes); stopped reading",
        silent: "did not answer within url_timeout_s (1.0 s)",
        trickle: "stopped sending for url_timeout_s (1.0 s) before the end of the body",
        missing: "answered HTTP 404 Not Found",
    }
    for task_id, message in failures.items():
        row = read_row(project, task_id)
        assert row.status == "failed", (task_id, row.status)
        assert row.attempts == 1 and row.result is None
        assert "CountWordsError: " in row.log
        assert message in row.log, row.log


def test_progress_is_reported_while_reading(proxyless: Project, site: Site) -> None:
    project = proxyless
    task_id = project.enqueue("count-words", "--url", site.url("/stream"), "--top", "3")
    worker = project.start_worker("--burst")
    try:
        # the server sent 128 KiB and waits: the task has counted two chunks and says so
        row = wait_for(
            lambda: (r := read_row(project, task_id)).status == "running" and r.progress > 0 and r,
            message="progress while the body is still arriving",
        )
        assert 0 < row.progress < 100
        assert row.progress_message.startswith("counted ") and row.progress_message.endswith(" words")
        site.release.set()
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    row = read_row(project, task_id)
    assert row.status == "finished", row.log
    assert row.progress == 100
    total = 5 * STREAM_LINES
    assert row.result["total"] == total and row.result["unique"] == 4
    assert row.result["top"] == [["the", 2 * STREAM_LINES], ["cat", STREAM_LINES], ["saw", STREAM_LINES]]
    assert row.progress_message == f"counted {total} words"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--text", "a", "--url", "http://127.0.0.1/"), "exactly one of"),
        ((), "exactly one of"),
        (("--path", "no/such/file.txt"), "no such file"),
        (("--url", "file:///etc/passwd"), "only http(s) URLs"),
        (("--text", "a", "--top", "-1"), "must not be negative"),
    ],
)
def test_bad_input_is_refused_before_any_row(project: Project, args: tuple[str, ...], needle: str) -> None:
    result = project.rqjobs("enqueue", "count-words", "--description", "bad", *args)
    assert_refused(result, needle)
    assert row_count(project) == 0
