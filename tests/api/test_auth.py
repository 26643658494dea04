"""Bearer authentication: every API route needs a token (read from the route table, so a new
one cannot forget); sessions and CSRF play no part; bad, revoked and malformed tokens are 401
with a Bearer challenge; a use is recorded without a write per request."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from console.tokens import api_tokens_table
from tests.api.conftest import bearer
from tests.web.conftest import PASSWORDS, sign_in

PUBLIC = {"api.openapi_document", "api.problem_type"}
SAMPLE = {"job_id": "01a2218b-0000-7000-8000-000000000000", "tenant_id": "acme",
          "handler": "noop", "batch_id": "01a2218b-0000-7000-8000-000000000001",
          "subscription_id": "01a2218b-0000-7000-8000-000000000002"}


def api_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.endpoint not in PUBLIC:
            url = rule.build({name: SAMPLE[name] for name in rule.arguments})[1]
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, url


def test_every_api_route_needs_a_token(app, tokens):
    client = app.test_client()
    checked = 0
    for method, url in api_routes(app):
        response = client.open(url, method=method, json={})
        assert response.status_code == 401, (method, url)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        assert response.mimetype == "application/problem+json"
        assert "Authorization: Bearer" in response.get_json()["detail"]
        checked += 1
    assert checked >= 24


@pytest.mark.parametrize("header,error", [
    ("Basic dXNlcjpwYXNz", "invalid_request"),
    ("Bearer", "invalid_request"),
    ("Bearer not-a-token", "invalid_token"),
    ("Bearer cjt_short", "invalid_token"),
    ("Bearer cjt_" + "A" * 43, "invalid_token"),          # well-formed, but nobody's
    ("Bearer cjt_" + "é" * 43, "invalid_token"),
])
def test_malformed_and_unknown_tokens_are_refused(api, header, error):
    response = api("get", "/jobs", token=None, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="api", error="{error}"'
    assert response.get_json()["type"] == "/api/v1/problems/unauthorized"


def test_a_revoked_token_is_refused(api):
    response = api("get", "/jobs", token="revoked")
    assert response.status_code == 401
    assert "revoked" in response.get_json()["detail"]


def test_the_scheme_is_case_insensitive(api, tokens):
    response = api("get", "/jobs", token=None, headers={"Authorization": f"bearer {tokens['all']}"})
    assert response.status_code == 200


def test_a_signed_in_session_without_a_token_is_refused(app, users, tokens):
    """The console's session cookie does not sign API calls in: another site's page could
    otherwise make an operator's browser queue or cancel jobs."""
    client = app.test_client()
    assert sign_in(client, "ada", PASSWORDS["ada"]).status_code == 302
    assert client.get("/").status_code == 200                       # signed in to the console
    response = client.post("/api/v1/jobs", json={"type": "immediate", "handler": "noop",
                                                 "tenant_id": "acme"})
    assert response.status_code == 401
    assert client.get("/api/v1/jobs").status_code == 401


def test_api_calls_need_no_csrf_token(app, users, tokens):
    """Bearer-token calls are not forgeable by another site, so the console's CSRF check is
    off for the API, even when a session cookie comes along."""
    client = app.test_client()
    sign_in(client, "ada", PASSWORDS["ada"])
    response = client.post("/api/v1/jobs", headers=bearer(tokens["acme"]),
                           json={"type": "immediate", "handler": "noop"})
    assert response.status_code == 201


def _last_used(service, name):
    with service.engine.connect() as conn:
        return conn.execute(select(api_tokens_table.c.last_used_at)
                            .where(api_tokens_table.c.name == name)).scalar_one()


def test_last_use_is_recorded_at_most_once_a_minute(api, service):
    assert _last_used(service, "acme app") is None
    before = datetime.now(timezone.utc)
    assert api("get", "/jobs", token="acme").status_code == 200
    first = _last_used(service, "acme app")
    assert first is not None and first >= before - timedelta(seconds=1)
    for _ in range(3):
        api("get", "/jobs", token="acme")
    assert _last_used(service, "acme app") == first             # no write per request
    assert _last_used(service, "globex app") is None            # only the token used


def test_a_failed_call_still_counts_as_a_use(api, service):
    assert api("get", "/tenants/globex/usage", token="acme").status_code == 404
    assert _last_used(service, "acme app") is not None
