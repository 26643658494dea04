"""Every route the app has, checked from its route table, so a new screen cannot forget:
signed-out requests go to sign-in (but for the public few), and no POST is taken without
its CSRF token."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from console.web.auth.views import PUBLIC_ENDPOINTS, PUBLIC_PATH_PREFIXES

from .conftest import csrf_token

SAMPLE_ARGUMENTS = {"job_id": "01a2218b-0000-7000-8000-000000000000", "tenant_id": "acme",
                    "name": "noop", "user_id": 1, "kind": "immediate", "filename": "x.css",
                    "token_id": 1, "rule_id": 1}


def routes(app, method: str):
    # The HTTP API takes bearer tokens, not sessions or CSRF tokens: tests/api/test_auth.py
    # checks every one of its routes from the same route table.
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PUBLIC_PATH_PREFIXES):
            continue
        if method in rule.methods and rule.endpoint not in PUBLIC_ENDPOINTS:
            arguments = {name: SAMPLE_ARGUMENTS.get(name, "x") for name in rule.arguments}
            yield rule.endpoint, rule.build(arguments)[1]


def test_the_app_has_its_screens(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    for screen in ("dashboard.index", "jobs.index", "jobs.show", "new_job.index",
                   "failures.index", "tenants.index", "tenants.show", "handlers.index",
                   "users.index", "stream.events"):
        assert screen in endpoints


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_signed_out_requests_are_sent_to_sign_in(app, method):
    client = app.test_client()
    # A valid token (a signed-out visitor gets one with the sign-in page), so that a POST is
    # turned away for not being signed in, not for a missing token.
    headers = {"X-CSRFToken": csrf_token(client)} if method == "POST" else {}
    checked = 0
    for endpoint, url in routes(app, method):
        response = client.open(url, method=method, headers=headers)
        assert response.status_code == 302, (endpoint, response.status_code)
        assert urlsplit(response.headers["Location"]).path == "/login", endpoint
        checked += 1
    assert checked >= 10


def test_no_post_is_taken_without_its_csrf_token(client_as):
    client = client_as("admin")
    checked = 0
    for endpoint, url in routes(client.application, "POST"):
        response = client.post(url, data={})
        assert response.status_code == 400, endpoint
        assert "The form expired" in response.get_data(as_text=True), endpoint
        checked += 1
    assert checked >= 2   # sign-out, and the screens' actions


def test_public_endpoints_answer_without_sign_in(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401   # a scraper's token or an admin
    assert client.get("/static/vendor/htmx.min.js").status_code == 200
    plotly = client.get("/assets/plotly.min.js")
    assert plotly.status_code == 200 and b"plotly.js v" in plotly.data[:200]
    login = client.get("/login")
    assert login.status_code == 200 and 'name="csrf_token"' in login.get_data(as_text=True)


def test_htmx_errors_go_to_the_message_area(client_as):
    response = client_as("viewer").get("/no-such-page", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert response.headers["HX-Retarget"] == "#messages"
    assert "There is nothing here" in response.get_data(as_text=True)


def test_assets_can_come_from_a_cdn_with_integrity_hashes(app_config, users):
    from console import create_app

    app = create_app({**app_config, "ASSETS_FROM_CDN": True})
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert 'src="https://cdn.jsdelivr.net/npm/htmx.org@2.0.11/dist/htmx.min.js"' in page
    assert 'integrity="sha384-' in page and "/static/vendor/htmx.min.js" not in page
    app.extensions["jobs"].engine.dispose()


def test_the_integrity_hashes_are_those_of_the_files_served_locally(app):
    import base64
    import hashlib
    from pathlib import Path

    from console.web.assets import _SCRIPTS, PLOTLY_JS

    local_files = {"htmx": Path(app.static_folder) / "vendor/htmx.min.js",
                   "htmx_sse": Path(app.static_folder) / "vendor/sse.min.js",
                   "plotly": PLOTLY_JS}
    for name, path in local_files.items():
        digest = base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()
        assert _SCRIPTS[name][2] == f"sha384-{digest}", name


def test_pages_tell_the_browser_to_refuse_foreign_scripts_and_framing(client_as):
    response = client_as("viewer").get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
