"""`rqjobs web` in a real headless Chromium, against `rqjobs web` and `rqjobs worker` processes.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when missing),
driven by selenium. Each test serves the dashboard on a free loopback port and runs a
real worker, then does what a person does: search, watch a task's progress bar move
without the page reloading, press Retry, open a task whose description is a script
(which must show as text and never run), pause and resume a schedule on the Schedules
page and a queue on the overview. The browser's console must stay free of
errors, so a page the Content-Security-Policy would break fails here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, wait_for
from tests.test_web import XSS, _enqueue, _schedule_states, _start_web

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]
#: where to copy the README's screenshots (unset: they are only checked, in tmp_path)
SCREENSHOTS_ENV = "WEB_SCREENSHOTS_DIR"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def schedules(project: Project) -> list[str]:
    """Two [[schedule]] tables in the project's config (ask for it before ``dashboard``):
    ``pulse`` ticks every 2 s, so the worker makes rows; ``nightly-report`` is a cron."""
    with project.config_path.open("a") as config:
        config.write(
            '\n[[schedule]]\nname = "pulse"\ntask = "add"\nevery = "2s"\nkwargs = {a = 1, b = 1}\n'
            'description = "pulse at {tick}"\n'
            '\n[[schedule]]\nname = "nightly-report"\ntask = "echo-dict"\ncron = "30 2 * * *"\n'
            'timezone = "Europe/Berlin"\nkwargs = {text = "report"}\nqueue = "reports"\n'
        )
    return ["pulse", "nightly-report"]


@pytest.fixture
def dashboard(project: Project) -> Iterator[str]:
    """`rqjobs web` and `rqjobs worker` running for the project; yields the dashboard's URL."""
    web, url = _start_web(project)
    worker = project.start_worker()
    try:
        yield url
    finally:
        for proc in (worker, web):
            proc.send_signal(signal.SIGTERM if proc is worker else signal.SIGINT)
        for proc in (worker, web):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        assert web.stderr is not None
        web.stderr.close()


def _console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _listed_ids(driver: Any) -> list[int]:
    from selenium.webdriver.common.by import By

    return [
        int(r.get_attribute("data-task-id"))
        for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-task-id]")
    ]


def _wait_status(project: Project, task_id: int, *statuses: str) -> None:
    wait_for(
        lambda: project.row(task_id).status in statuses,
        timeout=60,
        message=f"task {task_id} to be {statuses}",
    )


def test_the_search_narrows_the_list(browser: Any, dashboard: str, project: Project) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    adds = [_enqueue(project, "add", description=f"invoice {i}", a=i, b=1) for i in range(3)]
    echo = _enqueue(project, "echo-dict", description="welcome mail", text="hi")
    for task_id in (*adds, echo):
        _wait_status(project, task_id, "finished")
    browser.get(dashboard + "tasks")
    assert _listed_ids(browser) == [echo, *adds[::-1]]
    box = browser.find_element(By.CSS_SELECTOR, "input[name=q]")
    box.send_keys("task:add invoice", Keys.ENTER)
    wait_for(lambda: "q=task" in browser.current_url, timeout=20, message="the search to load")
    assert _listed_ids(browser) == adds[::-1]
    box = browser.find_element(By.CSS_SELECTOR, "input[name=q]")
    assert box.get_attribute("value") == "task:add invoice"
    box.clear()
    box.send_keys("status:bogus", Keys.ENTER)
    error = wait_for(lambda: browser.find_elements(By.ID, "search-error"), timeout=20, message="the error")
    assert "status:bogus is not a status" in error[0].text
    _console_errors(browser)  # the 400 answer itself is logged: read it away
    browser.get(dashboard)
    assert _console_errors(browser) == []


def test_the_progress_bar_of_a_running_task_moves_without_a_reload(
    browser: Any, dashboard: str, project: Project
) -> None:
    from selenium.webdriver.common.by import By

    task_id = _enqueue(project, "progress-steps", description="ten slow steps", steps=10, pause_s=0.8)
    _wait_status(project, task_id, "running")
    browser.get(dashboard + f"tasks/{task_id}")
    browser.execute_script("window.__sameDocument = true;")
    bar = browser.find_element(By.ID, "progress")
    first = int(bar.get_attribute("value"))
    assert first < 90
    moved = wait_for(
        lambda: int(browser.find_element(By.ID, "progress").get_attribute("value")) >= first + 20,
        timeout=30,
        message="the progress bar to move",
    )
    assert moved
    assert browser.execute_script("return window.__sameDocument === true;"), "the page was reloaded"
    assert "step" in browser.find_element(By.ID, "progress-message").text
    # once the task ends, the page shows its result (the script reloads it then)
    wait_for(lambda: browser.find_elements(By.ID, "result"), timeout=30, message="the result")
    assert browser.find_element(By.ID, "status").text == "finished"
    assert '"steps": 10' in browser.find_element(By.ID, "result").text
    assert _console_errors(browser) == []


def test_retry_works(browser: Any, dashboard: str, project: Project, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    marker = tmp_path / "flaky-count"
    task_id = _enqueue(project, "flaky", description="fails once", marker=str(marker), failures=1)
    _wait_status(project, task_id, "failed")
    browser.get(dashboard + f"tasks/{task_id}")
    assert browser.find_element(By.ID, "status").text == "failed"
    browser.find_element(By.XPATH, "//button[text()='Retry']").click()
    outcome = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#outcomes td.outcome"), timeout=20)
    assert outcome[0].text == "retried"
    browser.find_element(By.ID, "back-to-task").click()
    wait_for(
        lambda: (
            browser.find_elements(By.ID, "status")
            and browser.find_element(By.ID, "status").text == "finished"
        ),
        timeout=60,
        message="the retried task to finish on the page",
    )
    row = project.row(task_id)
    assert row.status == "finished" and row.attempts == 2 and "retried by" in row.log
    assert _console_errors(browser) == []


def test_a_script_in_a_description_does_not_run(browser: Any, dashboard: str, project: Project) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    image = '<img src="x" onerror="alert(2)">'
    task_id = _enqueue(project, "echo-dict", description=XSS, text=image)
    _wait_status(project, task_id, "finished")
    for url in (f"tasks/{task_id}", "tasks", "tasks?q=alert"):
        browser.get(dashboard + url)
        time.sleep(0.5)
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - raises when no alert is open
    browser.get(dashboard + f"tasks/{task_id}")
    assert browser.find_element(By.ID, "description").text == XSS
    assert '"echo": "<img src=\\"x\\" onerror=\\"alert(2)\\">"' in browser.find_element(By.ID, "result").text
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    assert _console_errors(browser) == []


def _press(driver: Any, css: str, *, confirm: bool) -> None:
    """Click a form's button and answer its confirmation dialog (if it has one) with OK."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()
    if confirm:
        alert = wait_for(lambda: _open_alert(driver), timeout=10, message="the confirmation")
        alert.accept()


def _open_alert(driver: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        alert.text  # noqa: B018 - raises when no alert is open
        return alert
    except NoAlertPresentException:
        return None


def test_a_schedule_is_listed_and_paused_with_its_button(
    schedules: list[str], browser: Any, dashboard: str, project: Project
) -> None:
    from selenium.webdriver.common.by import By

    store = project.store()
    # the worker fires pulse every 2 s: wait for a row, then the page names it as the last one
    wait_for(lambda: store.find(schedules=["pulse"], limit=1), timeout=60, message="a tick of pulse")
    browser.get(dashboard + "schedules")
    row = browser.find_element(By.ID, "schedule-pulse")
    assert row.get_attribute("data-state") == "active" and "every 2s" in row.text
    assert "nightly-report" in browser.find_element(By.ID, "schedule-nightly-report").text
    last = row.find_element(By.CSS_SELECTOR, "a[href*='/tasks/']")
    assert last.text.startswith("#")
    _press(browser, "#schedule-pulse form[action$='/schedules/pause'] button", confirm=True)
    notice = wait_for(lambda: browser.find_elements(By.ID, "notice"), timeout=20, message="the notice")
    assert notice[0].text == "schedule pulse paused"
    row = browser.find_element(By.ID, "schedule-pulse")
    assert (
        row.get_attribute("data-state") == "paused"
        and "paused" in row.find_element(By.CSS_SELECTOR, ".state").text
    )
    assert _schedule_states(project)["pulse"] == "paused"  # in SQL, where every worker reads it
    # the row of a tick links to its schedule's search, which lists it
    browser.get(dashboard + "tasks?q=schedule:pulse")
    ids = [
        int(r.get_attribute("data-task-id"))
        for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-task-id]")
    ]
    assert ids and all(store.get(i).schedule == "pulse" for i in ids)
    browser.get(dashboard + f"tasks/{ids[0]}")
    browser.find_element(By.CSS_SELECTOR, "#schedule a").click()
    wait_for(lambda: "q=schedule" in browser.current_url, timeout=20, message="the schedule's search")
    browser.get(dashboard + "schedules")
    _press(browser, "#schedule-pulse form[action$='/schedules/resume'] button", confirm=False)
    wait_for(lambda: browser.find_elements(By.ID, "notice"), timeout=20, message="the notice")
    assert browser.find_element(By.ID, "schedule-pulse").get_attribute("data-state") == "active"
    assert _schedule_states(project)["pulse"] == "active"
    assert _console_errors(browser) == []


def test_a_queue_is_paused_and_resumed_from_the_overview(
    browser: Any, dashboard: str, project: Project
) -> None:
    from selenium.webdriver.common.by import By

    from rqjobs.web.controls import paused_queues

    task_id = _enqueue(project, "add", description="on high", a=1, b=2, queue="high")
    browser.get(dashboard)
    assert browser.find_elements(By.ID, "no-paused-queues")
    _press(browser, "tr[data-queue='high'] form[action$='/queues/pause'] button", confirm=True)
    notice = wait_for(lambda: browser.find_elements(By.ID, "notice"), timeout=20, message="the notice")
    assert notice[0].text == "queue high paused"
    assert "paused" in browser.find_element(By.CSS_SELECTOR, "tr[data-queue='high']").get_attribute("class")
    assert "high" in browser.find_element(By.ID, "paused-queues").text
    assert [p.queue for p in paused_queues(project.runtime())] == ["high"]
    _press(browser, "tr[data-queue='high'] form[action$='/queues/resume'] button", confirm=False)
    wait_for(lambda: browser.find_elements(By.ID, "no-paused-queues"), timeout=20, message="the resume")
    assert browser.find_element(By.ID, "notice").text == "queue high resumed"
    assert paused_queues(project.runtime()) == []
    assert project.row(task_id).queue == "high"
    assert _console_errors(browser) == []


def test_screenshots_of_the_overview_and_a_task(
    schedules: list[str], browser: Any, dashboard: str, project: Project, tmp_path: Path
) -> None:
    """The README's pictures: a few tasks of every kind, then the overview and one task."""
    marker = tmp_path / "flaky"
    ids = [_enqueue(project, "add", description=f"add {i} + {i}", a=i, b=i) for i in range(6)]
    ids.append(
        _enqueue(project, "flaky", description="sync invoices (fails once)", marker=str(marker), retries=1)
    )
    ids += [_enqueue(project, "fail-always", description="import the partner feed", message="feed is empty")]
    ids.append(_enqueue(project, "echo-dict", description=XSS, text="shown as text"))
    for task_id in ids:
        _wait_status(project, task_id, "finished", "failed")
    slow = _enqueue(project, "progress-steps", description="rebuild the search index", steps=20, pause_s=1.0)
    _wait_status(project, slow, "running")
    from rqjobs.schedules.service import set_paused
    from rqjobs.web.controls import queue_store

    queue_store(project.runtime()).pause(["reports"], by="ops@example (rqjobs web)")
    wait_for(lambda: project.store().find(schedules=["pulse"], limit=1), timeout=60, message="a tick")
    set_paused(project.runtime(), "pulse", True)
    time.sleep(4)
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shots = {
        "web-overview.png": "",
        "web-task.png": f"tasks/{ids[6]}",
        "web-tasks.png": "tasks",
        "web-schedules.png": "schedules",
    }
    for name, url in shots.items():
        # the overview is long (queues, paused queues, next ticks): a taller window shows it all
        browser.set_window_size(1280, 1300 if name == "web-overview.png" else 900)
        browser.get(dashboard + url)
        time.sleep(1.5)  # let the progress poll run once
        assert browser.save_screenshot(str(tmp_path / name))
        assert (tmp_path / name).stat().st_size > 10_000
        if folder != tmp_path:
            shutil.copy(tmp_path / name, folder / name)
    assert _console_errors(browser) == []
