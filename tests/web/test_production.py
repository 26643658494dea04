"""Production settings: what is off by default, and the warnings gunicorn workers give (in the
log and on an admin's dashboard) while something unsafe is on."""
from __future__ import annotations

import re

import pytest
import requests

from console.web.auth.views import set_user
from tests.conftest import env_for_subprocess
from tests.support import gunicorn_server, wait_until


def test_the_webhook_catch_all_and_public_metrics_are_off_by_default(database_url):
    from console import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "JOBS_RUN_SCHEDULER": False,
                      "SECRET_KEY": "x"})
    try:
        assert app.config["WEBHOOK_CATCH_ALL"] is False and app.config["METRICS_PUBLIC"] is False
        client = app.test_client()
        assert client.post("/outbox/webhooks", json={}).status_code == 404
        assert client.get("/metrics").status_code == 401
    finally:
        app.extensions["jobs"].engine.dispose()


@pytest.fixture
def app_config(app_config):
    return {**app_config, "PRODUCTION_WARNINGS": True, "METRICS_PUBLIC": True,
            "WEBHOOK_CATCH_ALL": True, "SESSION_COOKIE_SECURE": False}


def test_an_admins_dashboard_warns_of_unsafe_settings(client_as):
    page = client_as("admin").get("/").get_data(as_text=True)
    for setting in ("SESSION_COOKIE_SECURE is off", "WEBHOOK_CATCH_ALL is on",
                    "METRICS_PUBLIC is on"):
        assert setting in page
    viewer_page = client_as("viewer").get("/").get_data(as_text=True)
    assert "WEBHOOK_CATCH_ALL" not in viewer_page    # only admins can act on it


def test_no_warning_once_the_settings_are_safe(app_config, users):
    from console import create_app
    from tests.web.conftest import PASSWORDS, csrf_token, sign_in

    app = create_app({**app_config, "METRICS_PUBLIC": False, "WEBHOOK_CATCH_ALL": False,
                      "SESSION_COOKIE_SECURE": True})
    try:
        with app.app_context():
            set_user("ada", "admin", PASSWORDS["ada"])
        client = app.test_client()
        # A secure cookie is sent over HTTPS only: the test client's requests say they are.
        client.environ_base["wsgi.url_scheme"] = "https"
        sign_in(client, "ada", PASSWORDS["ada"])
        csrf_token(client, "/")
        page = client.get("/").get_data(as_text=True)
        assert "Production settings" not in page and "Sign out" in page
    finally:
        app.extensions["jobs"].engine.dispose()


@pytest.mark.slow
def test_gunicorn_workers_warn_in_the_log_and_on_the_dashboard(app, database_url, tmp_path):
    with app.app_context():
        set_user("ada", "admin", "correct horse")
    env = env_for_subprocess(database_url, CONSOLE_JOBS_RUN_SCHEDULER="false",
                             CONSOLE_METRICS_PUBLIC="true")   # the catch-all is on too
    with gunicorn_server(env, tmp_path, workers=1) as gunicorn:
        log, base = gunicorn.log, gunicorn.url
        wait_until(lambda: "METRICS_PUBLIC is on" in log.read_text(), 30,
                   lambda: f"the warnings in the log:\n{log.read_text()}")
        text = log.read_text()
        assert "SESSION_COOKIE_SECURE is off" in text and "WEBHOOK_CATCH_ALL is on" in text
        browser = requests.Session()
        form = browser.get(f"{base}/login", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        signed_in = browser.post(f"{base}/login", timeout=30, data={
            "username": "ada", "password": "correct horse", "csrf_token": token})
        assert signed_in.status_code == 200 and "Sign out" in signed_in.text
        assert "METRICS_PUBLIC is on" in signed_in.text   # the dashboard, after sign-in
