"""Live across processes: the page is served by one gunicorn worker, the job runs in a
`flask worker` process, and the status still changes on the open page within 2 seconds."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from console.web.auth.views import set_user
from tests.conftest import env_for_subprocess
from tests.support import gunicorn_port, wait_until

from .conftest import ADMIN

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def app_config(app_config):
    """Nothing runs in this test's own process: the worker process does."""
    return {**app_config, "JOBS_RUN_SCHEDULER": False}


def serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def processes(app, database_url, tmp_path):
    """gunicorn (2 web workers, no runner) and one `flask worker`, on the test's database."""
    with app.app_context():
        set_user(*ADMIN[:1], "admin", ADMIN[1])
    web_log, worker_log = tmp_path / "gunicorn.log", tmp_path / "worker.log"
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "8",
         "-b", "127.0.0.1:0", "--no-control-socket", "wsgi:app"],
        cwd=ROOT, env=env_for_subprocess(database_url, CONSOLE_JOBS_RUN_SCHEDULER="false"),
        stdout=web_log.open("w"), stderr=subprocess.STDOUT)
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "console", "worker"], cwd=ROOT,
        env=env_for_subprocess(database_url), stdout=worker_log.open("w"),
        stderr=subprocess.STDOUT)
    try:
        port, master = gunicorn_port(web_log)
        assert master == web.pid
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: serving(url), 30, lambda: f"gunicorn to serve:\n{web_log.read_text()}",
                   interval=0.2)
        yield url
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            process.wait(timeout=30)


def sign_in(page, base_url: str) -> None:
    """Sign in as the admin through gunicorn's login form (not the live server's)."""
    page.goto(f"{base_url}/login")
    page.locator("input[name=username]").fill(ADMIN[0])
    page.locator("input[name=password]").fill(ADMIN[1])
    with page.expect_navigation():
        page.locator("form button[type=submit]").click()


def test_a_job_run_by_another_process_changes_on_the_open_page(processes, page, service,
                                                               make_tenant):
    from playwright.sync_api import expect

    make_tenant("acme")
    sign_in(page, processes)
    # Due in 3 s: its page is open and listening before the worker runs it.
    job = service.queue_job("immediate", "sleeps", {"ms": 300}, "acme",
                            scheduled_for=datetime.now(timezone.utc) + timedelta(seconds=3))
    page.goto(f"{processes}/jobs/{job.id}")
    badge = page.locator(f'[sse-swap="job-{job.id}"] .status').first
    expect(badge).to_have_text("pending")
    expect(badge).to_have_text("completed", timeout=15_000)
    finished = service.get_job_by_id(job.id)
    seen_at = time.time()
    # The page learned of it within 2 s of the worker's commit.
    assert seen_at - finished.completed_at.timestamp() < 2.0


def test_a_running_attempts_log_lines_appear_on_the_open_page_as_they_are_logged(
        processes, page, service, make_tenant):
    """The attempt runs in the `flask worker`, the page is gunicorn's: each line the handler
    logs shows up on the open page while the attempt still runs, without a reload."""
    from playwright.sync_api import expect

    make_tenant("acme")
    sign_in(page, processes)
    # Due in 3 s, so the page listens before it starts; 2.5 s between lines.
    job = service.queue_job("immediate", "logs_lines", {"lines": 3, "interval_ms": 2500},
                            "acme", scheduled_for=datetime.now(timezone.utc) + timedelta(seconds=3))
    page.goto(f"{processes}/jobs/{job.id}")
    page.evaluate("window.loadedOnce = true")   # gone if the page were reloaded
    lines = page.get_by_role("list", name="Log of attempt 1").locator("li")
    expect(lines).to_have_count(1, timeout=15_000)
    expect(lines.first).to_contain_text("INFO")
    expect(lines.first).to_contain_text("line 1 of 3")
    assert service.get_job_by_id(job.id).status.value == "processing"   # still running
    expect(page.get_by_text("Log (1 line so far)")).to_be_visible()
    expect(lines).to_have_count(2, timeout=10_000)
    expect(lines.nth(1)).to_contain_text("line 2 of 3")
    expect(lines).to_have_count(3, timeout=10_000)
    badge = page.locator(f'[sse-swap="job-{job.id}"] .status').first
    expect(badge).to_have_text("completed", timeout=10_000)
    expect(page.get_by_text("Log (3 lines)")).to_be_visible()
    assert page.evaluate("window.loadedOnce") is True
