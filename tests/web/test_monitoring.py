"""/healthz and /metrics: reachable without sign-in, figures that match the database."""
from __future__ import annotations

import os
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from console.jobs.models import attempts_table
from console.jobs.rollups import bucket_bounds, duration_bucket
from tests.support import wait_until


@pytest.fixture
def app_config(app_config):
    return {**app_config, "METRICS_TOKEN": SCRAPER_TOKEN}


SCRAPER_TOKEN = "scraper-s3cret"
SCRAPER = {"Authorization": f"Bearer {SCRAPER_TOKEN}"}


def metrics_of(client, headers=SCRAPER):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    return families


def sample(families, name, suffix="", **labels):
    family = families[name]
    for s in family.samples:
        if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_metrics_parse_and_match_the_database(app, service, make_tenant):
    make_tenant("acme")
    for _ in range(5):
        service.queue_job("immediate", "sleeps", {"ms": 2}, "acme")
    for _ in range(2):
        service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(settle=0.2)
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {}, "acme")   # left waiting
    families = metrics_of(app.test_client())
    assert sample(families, "console_jobs", status="queued", tenant="acme") == 3
    assert sample(families, "console_job_attempts", "_total", handler="sleeps",
                  type="immediate") == 5
    assert sample(families, "console_job_attempt_failures", "_total",
                  handler="always_fails") == 2
    assert sample(families, "console_jobs_created", "_total", handler="sleeps") == 8
    count = sample(families, "console_job_attempt_duration_seconds", "_count", handler="sleeps")
    total = sample(families, "console_job_attempt_duration_seconds", "_sum", handler="sleeps")
    with service.engine.connect() as conn:
        raw_sum = conn.execute(select(func.sum(attempts_table.c.duration_ms))
                               .where(attempts_table.c.handler == "sleeps")).scalar()
    assert count == 5 and abs(total - raw_sum / 1000) < 1e-6
    le_10ms = sample(families, "console_job_attempt_duration_seconds", "_bucket",
                     handler="sleeps", le="0.01")
    le_inf = sample(families, "console_job_attempt_duration_seconds", "_bucket",
                    handler="sleeps", le="+Inf")
    with service.engine.connect() as conn:
        durations = conn.execute(select(attempts_table.c.duration_ms)
                                 .where(attempts_table.c.handler == "sleeps")).scalars().all()
    # An attempt is counted under 10 ms when its fine duration bucket ends at or below 10 ms.
    assert le_10ms == sum(bucket_bounds(duration_bucket(ms))[1] <= 10 for ms in durations)
    assert le_inf == 5


def test_metrics_count_limit_rejections(app, service, make_tenant):
    from console.jobs import TenantLimitException

    make_tenant("small", "tier1")
    with pytest.raises(TenantLimitException):         # tier1 runs no immediate jobs
        service.queue_job("immediate", "sleeps", {}, "small")
    families = metrics_of(app.test_client())
    assert sample(families, "console_limit_rejections", "_total", tenant="small",
                  limit_type="allowed_job_types") == 1


def test_metrics_count_claims_a_rate_limit_held_back(app, service, make_tenant):
    make_tenant("acme", rateLimit={"count": 1, "periodSeconds": 60})
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {}, "acme")
    service.run_until_idle(timeout=0.5, settle=0.1)   # one starts; the rest wait on the limit
    families = metrics_of(app.test_client())
    assert sample(families, "console_limit_rejections", "_total", tenant="acme",
                  limit_type="rate_limit") >= 1


def test_metrics_answer_only_their_scraper_or_an_admin(app, service, client_as, make_tenant):
    make_tenant("acme")
    service.queue_job("immediate", "sleeps", {}, "acme")
    client = app.test_client()
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and "acme" not in anonymous.get_data(as_text=True)
    assert "METRICS_TOKEN" in anonymous.get_data(as_text=True)
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert "not METRICS_TOKEN" in wrong.get_data(as_text=True)
    assert 'tenant="acme"' in client.get("/metrics", headers=SCRAPER).get_data(as_text=True)
    viewer = client_as("viewer").get("/metrics")
    assert viewer.status_code == 403 and "admin role" in viewer.get_data(as_text=True)
    admin = client_as("admin").get("/metrics")
    assert admin.status_code == 200 and 'tenant="acme"' in admin.get_data(as_text=True)


def test_without_a_metrics_token_no_bearer_opens_metrics(app_config):
    from console import create_app

    app = create_app({**app_config, "METRICS_TOKEN": None})
    client = app.test_client()
    refused = client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert refused.status_code == 401
    assert "no METRICS_TOKEN is set" in refused.get_data(as_text=True)
    assert client.get("/metrics").status_code == 401
    app.extensions["jobs"].engine.dispose()


def test_metrics_public_opens_metrics_to_anyone(app_config):
    from console import create_app

    app = create_app({**app_config, "METRICS_PUBLIC": True})
    assert app.test_client().get("/metrics").status_code == 200
    app.extensions["jobs"].engine.dispose()


def test_healthz_reports_database_runners_and_backlog(app, service, make_tenant):
    make_tenant()
    service.queue_job("immediate", "sleeps", {}, "acme")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"]["ok"] and body["backlog"]["queued_jobs"] == 1
    assert body["runners"]["live"] == 0 and body["status"] == "degraded"


def test_healthz_shows_anyone_counts_only(app, service, make_tenant):
    """No host names, process ids or tenant ids without credentials; its scraper sees the
    runners' ids (host:pid), which operators pair with processes."""
    from console.jobs.runner import Runner

    make_tenant("acme")
    service.queue_job("immediate", "sleeps", {}, "acme")
    runner = Runner(service, threads=1).start()
    try:
        client = app.test_client()
        wait_until(lambda: client.get("/healthz").get_json()["runners"]["live"] == 1, 10,
                   "the runner to show as live")
        anonymous = client.get("/healthz")
        text = anonymous.get_data(as_text=True)
        assert anonymous.status_code == 200 and anonymous.get_json()["status"] == "ok"
        assert "details" not in anonymous.get_json()["runners"]
        assert runner.id not in text and str(os.getpid()) not in text
        assert socket.gethostname() not in text and "acme" not in text
        scraped = client.get("/healthz", headers=SCRAPER).get_json()
        assert [r["id"] for r in scraped["runners"]["details"]] == [runner.id]
    finally:
        runner.stop()


def test_healthz_is_503_when_the_database_is_gone(app_config, tmp_path):
    from console import create_app
    from tests.conftest import ON_POSTGRES

    if ON_POSTGRES:
        url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"   # nothing listens on port 1
    else:
        url = f"sqlite:///{tmp_path}/missing/dir/console.sqlite3"   # cannot be opened
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url, "AUTO_MIGRATE": False})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"]["ok"] is False
    assert app.test_client().get("/metrics", headers=SCRAPER).status_code == 503
