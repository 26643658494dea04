"""Tokens that expire (the CLI; the screen's choice is in tests/web/test_tokens.py) and
per-token request rates (held across gunicorn workers; a refused request writes nothing)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import func, select, update

from console.jobs.models import jobs_table
from console.token_rates import seconds_until_free, slice_size, weighted_count
from console.tokens import api_tokens_table, create_token
from tests.api.conftest import bearer
from tests.conftest import env_for_subprocess
from tests.support import gunicorn_server, wait_until

UTC = timezone.utc


def token_row(service, token_id: int):
    with service.engine.connect() as conn:
        return conn.execute(select(api_tokens_table).where(
            api_tokens_table.c.id == token_id)).one()


def expire_now(service, token_id: int) -> datetime:
    """Time passes: the token's expiry moves into the past."""
    past = datetime.now(UTC) - timedelta(minutes=5)
    with service.engine.begin() as conn:
        conn.execute(update(api_tokens_table).where(api_tokens_table.c.id == token_id)
                     .values(expires_at=past))
    return past


def test_create_token_expires_in_90_days_then_gets_401_saying_so(app, service, tenants):
    result = app.test_cli_runner().invoke(
        args=["create-token", "--tenant", "acme", "--expires-in", "90d"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    token = token_count_and_row(service)[1]
    lifetime = token.expires_at - token.created_at
    assert lifetime == timedelta(days=90)
    assert f"expires {token.expires_at:%Y-%m-%d}" in result.stderr
    client = app.test_client()
    assert client.get("/api/v1/jobs", headers=bearer(secret)).status_code == 200

    _, fresh = create_token(service.engine, "soon expired", "acme",
                            expires_in=timedelta(hours=12))
    fresh_id = token_row_by_name(service, "soon expired").id
    past = expire_now(service, fresh_id)
    response = client.get("/api/v1/jobs", headers=bearer(fresh))
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert "expired at" in body["detail"] and f"{past:%Y-%m-%dT%H:%M}" in body["detail"]
    assert body["expired_at"].startswith(f"{past:%Y-%m-%dT%H:%M}")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def token_count_and_row(service):
    """How many tokens there are, and the one when there is one."""
    with service.engine.connect() as conn:
        rows = conn.execute(select(api_tokens_table)).all()
    return len(rows), rows[0] if len(rows) == 1 else None


def token_row_by_name(service, name: str):
    with service.engine.connect() as conn:
        return conn.execute(select(api_tokens_table).where(
            api_tokens_table.c.name == name)).one()


@pytest.mark.parametrize("lifetime,hours", [("12h", 12), ("1d", 24), ("90D", 90 * 24)])
def test_lifetimes_in_hours_or_days(app, service, tenants, lifetime, hours):
    result = app.test_cli_runner().invoke(
        args=["create-token", "--all-tenants", "--name", "x", "--expires-in", lifetime])
    assert result.exit_code == 0, result.output
    row = token_row_by_name(service, "x")
    assert row.expires_at - row.created_at == timedelta(hours=hours)


@pytest.mark.parametrize("lifetime,message", [
    ("90", "give hours or days"), ("3w", "give hours or days"), ("0d", "between 1 hour"),
    ("4000d", "between 1 hour")])
def test_bad_lifetimes_are_refused_naming_the_option(app, service, tenants, lifetime, message):
    result = app.test_cli_runner().invoke(
        args=["create-token", "--tenant", "acme", "--expires-in", lifetime])
    assert result.exit_code != 0
    assert "--expires-in" in result.output and message in result.output
    assert token_count_and_row(service)[0] == 0


def test_past_its_rate_a_token_gets_429_and_nothing_is_written(app, service, tenants):
    token, secret = create_token(service.engine, "tight", "acme", rate_limit=3)
    client = app.test_client()
    for _ in range(3):
        assert client.post("/api/v1/jobs", headers=bearer(secret), json={
            "type": "immediate", "handler": "noop"}).status_code == 201
    before = token_row(service, token.id)
    refused = client.post("/api/v1/jobs", headers=bearer(secret), json={
        "type": "immediate", "handler": "noop"})
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["type"] == "/api/v1/problems/rate-limit" and body["limit"] == 3
    assert "3 requests a minute" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs_table)).scalar() == 3
    assert token_row(service, token.id)._mapping == before._mapping   # not even its last use
    # Another token has its own count.
    _, other = create_token(service.engine, "other", "acme", rate_limit=3)
    assert client.get("/api/v1/jobs", headers=bearer(other)).status_code == 200


def test_the_default_rate_applies_to_tokens_without_their_own(app_config, tenants, service):
    from console import create_app

    limited = create_app({**app_config, "API_RATE_LIMIT": 2})
    try:
        _, secret = create_token(service.engine, "default", "acme")
        client = limited.test_client()
        statuses = [client.get("/api/v1/jobs", headers=bearer(secret)).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 429]
    finally:
        limited.extensions["jobs"].engine.dispose()


def test_the_sliding_window_weighs_the_previous_minute():
    assert weighted_count(used=10, previous=60, elapsed=0.5) == 40
    # 60 used in the previous minute, limit 60, a quarter into this one: 45 weigh, 15 fit.
    assert weighted_count(0, 60, 0.25) == 45
    # Full with nothing from before: free once this minute fades into the next.
    assert seconds_until_free(used=60, previous=0, limit=60, elapsed=0.5) == 31
    # The previous minute's weight fades within this one.
    assert seconds_until_free(used=0, previous=60, limit=60, elapsed=0.0) == 1
    assert seconds_until_free(used=30, previous=60, limit=60, elapsed=0.25) == 16
    assert slice_size(30) == 1 and slice_size(6000) == 60


@pytest.mark.slow
def test_the_rate_holds_across_two_gunicorn_workers(service, tenants, database_url, tmp_path):
    limit = 200   # slices of 2: each process may strand one, so 198–200 are admitted
    token, secret = create_token(service.engine, "spread", "acme", rate_limit=limit)
    env = env_for_subprocess(database_url, CONSOLE_JOBS_RUN_SCHEDULER="false")
    with gunicorn_server(env, tmp_path, threads=4,
                         access_format="%(p)s %(U)s %(s)s") as gunicorn:
        url = f"{gunicorn.url}/api/v1/jobs"
        wait_until(lambda: requests.get(f"{gunicorn.url}/healthz", timeout=30).ok, 60,
                   "gunicorn to answer")
        # The count runs over a sliding minute: start early in one, so that the 260 requests
        # all fall within it (the previous minute's weight would otherwise let a few more in).
        wait_until(lambda: time.time() % 60 < 20, 65, "the start of a minute", interval=0.2)
        statuses = [   # a new connection each: the two workers take turns accepting
            requests.get(url, headers=bearer(secret), timeout=30).status_code
            for _ in range(260)]
        admitted = statuses.count(200)
        assert limit - 2 <= admitted <= limit, admitted
        assert statuses.count(429) == 260 - admitted
        pids = {line.split()[0] for line in gunicorn.access.read_text().splitlines()
                if line.endswith(" 200") and "healthz" not in line}
        assert len(pids) == 2, "both workers admitted requests"
