"""Real-browser tests: Playwright (pytest-playwright) drives Debian's Chromium against the app
served on 127.0.0.1 by a real threaded server, with its in-process runner executing jobs.

- ``live_server``: the app (``app_config`` + ``JOBS_RUN_SCHEDULER``) served for this test, with
  three users (``ADMIN``, ``OPERATOR``, ``VIEWER``); ``.url``, ``.app``, ``.service``.
- ``page`` (pytest-playwright's, one fresh context per test, 1280×800): when the test also uses
  ``live_server``, the context's ``base_url`` is its URL, so ``page.goto("/jobs")`` works.
- ``signed_in_page``: ``page`` signed in as ``ADMIN`` through the real sign-in form.
- ``sign_in(page, username, password)`` and ``screenshot(page, name)`` (into $SCREENSHOTS_DIR,
  by default a scratch folder).

Every test here is marked ``browser`` (``pytest -m browser`` / ``-m "not browser"``), skipped when
/usr/bin/chromium is missing or on PostgreSQL (``TEST_DATABASE_URL``), and run after all other
tests: see ``pytest_collection_modifyitems``.
"""
from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from console.jobs import JobService
from tests.conftest import ON_POSTGRES

BROWSER_TESTS = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
# Screenshots go to a scratch folder, so a test run leaves the checkout clean; to refresh the
# README's pictures: SCREENSHOTS_DIR=docs/screenshots bash .ci/run (or pytest tests/browser).
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR")
                   or Path(tempfile.gettempdir()) / "console-screenshots")
VIEWPORT = {"width": 1280, "height": 800}
# Debian's Chromium under Playwright (../shared/RECIPES.md, "A real browser in tests").
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

# (username, password) of the users every live server has.
ADMIN = ("ada", "correct horse battery")
OPERATOR = ("otto", "operator horse battery")
VIEWER = ("vic", "viewer horse battery")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark, skip, and move to the end every test under tests/browser.

    A ``pytestmark`` in a conftest applies to nothing, hence this hook. The tests run last because
    Playwright's sync API leaves its event loop marked as running in the main thread from the
    first browser test until the session-scoped ``playwright`` fixture stops at the end of the
    session: any later test calling ``asyncio.run()`` in the main thread would fail with
    "cannot be called from a running event loop".
    """
    skip = None
    if ON_POSTGRES:
        skip = pytest.mark.skip(
            reason="browser tests run on SQLite only (TEST_DATABASE_URL is set)")
    elif not CHROMIUM.exists():
        skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium "
                                       "(.ci/run does) to run the browser tests")
    ours, others = [], []
    for item in items:
        if item.path.is_relative_to(BROWSER_TESTS):
            item.add_marker(pytest.mark.browser)
            if skip is not None:
                item.add_marker(skip)
            ours.append(item)
        else:
            others.append(item)
    items[:] = others + ours


# -- Playwright (pytest-playwright's fixtures, adapted) -------------------------------------------

@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def base_url():
    """Not used: a page's base URL is its test's live server (``browser_context_args``). This
    also replaces pytest-playwright's fallback fixture, which pytest 9 warns about (a fixture
    defined as a method of a plugin object)."""
    return None


@pytest.fixture
def browser_context_args(browser_context_args, request):
    """A fixed viewport for every page; ``base_url`` = the live server's when the test has one.

    Asking for ``live_server`` here also sets it up before the browser context, so the context
    (and any open server-sent-events stream) closes before the server shuts down."""
    args = {**browser_context_args, "viewport": VIEWPORT}
    if "live_server" in request.fixturenames:
        args["base_url"] = request.getfixturevalue("live_server").url
    return args


# -- The app, served ------------------------------------------------------------------------------

@dataclass
class LiveServer:
    url: str            # "http://127.0.0.1:<port>", no trailing slash
    app: Flask
    service: JobService  # app.extensions["jobs"]
    users: dict[str, tuple[str, str]] = field(default_factory=dict)   # role → (name, password)


@pytest.fixture
def app_config(app_config):
    """The shared test settings, with the in-process runner on (jobs queued here get run).
    Its heartbeats (every lease/3 = 1.7 s) commit while pages sign in and act, as in production."""
    return {**app_config, "JOBS_RUN_SCHEDULER": True}


@pytest.fixture
def live_server(app) -> LiveServer:
    """``app`` (tests/conftest.py: runner stopped and engine disposed afterwards) served by
    werkzeug on 127.0.0.1 in a daemon thread; threaded, so a page's SSE stream holds no one up."""
    from console.web.auth.views import set_user

    users = {"admin": ADMIN, "operator": OPERATOR, "viewer": VIEWER}
    with app.app_context():
        for role, (username, password) in users.items():
            set_user(username, role, password)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=app,
                         service=app.extensions["jobs"], users=users)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- Signed in ------------------------------------------------------------------------------------

def sign_in(page, username: str, password: str) -> None:
    """Sign in through the form at ``/login`` (relative to the page's ``base_url``). Returns once
    the answer has loaded; it does not check that the sign-in worked."""
    page.goto("/login")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    with page.expect_navigation():
        page.locator("form button[type=submit]").click()


def sign_in_to(page, path: str, username: str, password: str) -> None:
    """Sign in through the form at ``/login?next=<path>`` and wait until ``path`` has loaded.

    Quicker than landing on the dashboard when a test starts elsewhere: the dashboard loads
    plotly.js, which every fresh browser context loads anew."""
    from urllib.parse import quote

    from playwright.sync_api import expect

    page.goto(f"/login?next={quote(path, safe='/')}")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    with page.expect_navigation():
        page.locator("form button[type=submit]").click()
    expect(page.locator("header")).to_contain_text(f"{username} (")
    assert page.url.endswith(path), f"signed in, but on {page.url} instead of {path}"


@pytest.fixture
def signed_in_page(live_server, page):
    """pytest-playwright's ``page``, signed in as ``ADMIN`` on ``live_server``."""
    from playwright.sync_api import expect

    sign_in(page, *ADMIN)
    expect(page.locator("header")).to_contain_text(f"{ADMIN[0]} (admin)")
    return page


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG into SCREENSHOTS (SCREENSHOTS_DIR=docs/screenshots for the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


# -- What the page drew, and what went wrong in it ------------------------------------------------

def expect_charts_drawn(scope, count: int, timeout: float = 15_000) -> None:
    """``count`` Plotly charts (``figure.chart``, shared/_chart.html) inside ``scope`` (a page or
    a locator), each drawn by static/js/console.js: its SVG visible with at least one trace.
    Charts arrive by htmx after the page, so this waits for them."""
    from playwright.sync_api import expect

    figures = scope.locator("figure.chart")
    expect(figures).to_have_count(count, timeout=timeout)
    for figure in figures.all():
        expect(figure).to_have_attribute("data-drawn", "true", timeout=timeout)
        expect(figure.locator(".main-svg").first).to_be_visible()
        assert figure.locator("g.trace").count() >= 1, \
            f"chart {figure.get_attribute('data-chart')!r} has no trace"


@pytest.fixture
def page_errors(page) -> list[str]:
    """Console errors and uncaught exceptions of ``page`` as they happen: a Content-Security-
    Policy violation, a script that failed to load or threw. Assert it is empty at the end."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(
        f"console: {message.text} ({message.location.get('url')})")
        if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    return errors
