"""A tenant's usage, health, trends and limits through the API."""
from __future__ import annotations

import pytest

from tests.api.conftest import queue


def test_usage_over_a_range(api, service):
    queue(api)
    queue(api, delay_seconds=600)
    response = api("get", "/tenants/acme/usage", token="acme")
    assert response.status_code == 200
    usage = response.get_json()
    assert usage["tenant_id"] == "acme" and usage["total_jobs"] == 2
    assert usage["current_usage"] == {"daily_jobs": 2, "concurrent_jobs": 0, "queued_jobs": 2}
    assert usage["limits"]["max_queued_jobs"] == 50
    assert usage["limits"]["max_job_duration_ms"] == 300_000
    assert usage["jobs_by_type"] == {"immediate": 2}
    ranged = api("get", "/tenants/acme/usage?start=2020-01-01T00:00:00Z"
                        "&end=2020-01-02T00:30:00%2B00:00", token="acme").get_json()
    assert ranged["total_jobs"] == 0
    assert ranged["start"].startswith("2020-01-01T00:00:00")
    assert ranged["end"].startswith("2020-01-02T01:00:00")       # whole hours


@pytest.mark.parametrize("query,field", [
    ("start=yesterday", "start"), ("end=2026-01-01T00:00:00", "end"),
    ("start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z", "end"), ("days=3", "days")])
def test_bad_usage_ranges_are_422(api, query, field):
    response = api("get", f"/tenants/acme/usage?{query}", token="acme")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == field


def test_an_unknown_tenant_is_404(api):
    for path in ("usage", "health", "trends", "limits"):
        response = api("get", f"/tenants/nobody/{path}", token="all")
        assert response.status_code == 404, path
        assert "nobody" in response.get_json()["detail"]


def test_ids_that_cannot_exist_are_404_without_a_query(api):
    for tenant_id in ("a%00b", "x" * 65):
        response = api("get", f"/tenants/{tenant_id}/usage", token="all")
        assert response.status_code == 404, tenant_id


def test_health(api):
    queue(api)
    health = api("get", "/tenants/acme/health", token="acme").get_json()
    # One job waiting and nothing run yet: nothing costs a point.
    assert (health["health_score"], health["health_status"]) == (100.0, "healthy")
    assert health["queue_length"] == 1 and health["recommendations"] == []


def test_trends(api, service):
    queue(api)
    service.run_until_idle(timeout=10)
    trends = api("get", "/tenants/acme/trends?granularity=hour", token="acme").get_json()
    assert trends["granularity"] == "hour" and len(trends["points"]) >= 24
    assert sum(trends["jobs_created"]) == 1 and sum(trends["jobs_completed"]) == 1
    assert len(trends["success_rate"]) == len(trends["points"])
    by_day = api("get", "/tenants/acme/trends?start=2026-01-01T00:00:00Z&end=2026-03-01T00:00:00Z",
                 token="acme").get_json()
    assert by_day["granularity"] == "day" and len(by_day["points"]) == 59


def test_a_trend_range_too_long_is_422_not_slow(api):
    response = api("get", "/tenants/acme/trends?granularity=hour&start=1971-01-01T00:00:00Z"
                          "&end=9998-01-01T00:00:00Z", token="acme")
    assert response.status_code == 422
    assert "granularity=day" in response.get_json()["detail"]


def test_read_limits(api, make_tenant):
    make_tenant("acme", "tier2", "Acme", maxQueuedJobs=3)
    limits = api("get", "/tenants/acme/limits", token="acme").get_json()
    assert limits["tier"] == "tier2" and limits["name"] == "Acme"
    assert limits["limits"]["max_queued_jobs"] == 3 and limits["overridden"] == ["max_queued_jobs"]


def test_an_admin_token_replaces_limits(api, service):
    response = api("put", "/tenants/acme/limits", token="admin", json={
        "tier": "tier3", "limits": {"max_queued_jobs": 1, "max_daily_jobs": None,
                                    "allowed_job_types": ["immediate", "custom_processing"]}})
    assert response.status_code == 200, response.get_json()
    limits = response.get_json()
    assert limits["tier"] == "tier3"
    assert limits["limits"]["max_queued_jobs"] == 1 and limits["limits"]["max_daily_jobs"] is None
    assert limits["limits"]["max_concurrent_jobs"] == 20                  # tier3's preset
    assert sorted(limits["overridden"]) == ["allowed_job_types", "max_daily_jobs",
                                            "max_queued_jobs"]
    queue(api)
    refused = api("post", "/jobs", token="acme", json={"type": "immediate", "handler": "noop"})
    assert refused.status_code == 429                                    # in effect at once
    back = api("put", "/tenants/acme/limits", token="admin", json={}).get_json()
    assert back["overridden"] == [] and back["tier"] == "tier3"          # PUT replaces


def test_changing_limits_keeps_other_settings(api, service):
    from console.jobs import TenantConfig

    service.tenants.set_tenant_config(TenantConfig.for_tier(
        "acme", "Acme", "tier2", {"webhookSecret": "s3cret", "jobLimits": {"maxQueuedJobs": 5}}))
    api("put", "/tenants/acme/limits", token="admin", json={"limits": {"max_daily_jobs": 7}})
    config = service.tenants.get_tenant_config("acme")
    assert config.custom_settings["webhookSecret"] == "s3cret"
    assert config.job_limit.max_daily_jobs == 7 and config.job_limit.max_queued_jobs == 50


@pytest.mark.parametrize("limits,field", [
    ({"max_concurrent_jobs": 0}, "limits.max_concurrent_jobs"),
    ({"max_queued_jobs": -1}, "limits.max_queued_jobs"),
    ({"max_queued_jobs": "5"}, "limits.max_queued_jobs"),
    ({"max_job_payload_size": 1}, "limits.max_job_payload_size"),
    ({"max_job_duration_ms": 0}, "limits.max_job_duration_ms"),
    ({"allowed_job_types": []}, "limits.allowed_job_types"),
    ({"allowed_job_types": ["Not A Type"]}, "limits.allowed_job_types[0]"),
    ({"default_job_priority": "asap"}, "limits.default_job_priority"),
    ({"max_jobs": 3}, "limits.max_jobs"),
])
def test_bad_limits_are_422_and_change_nothing(api, service, limits, field):
    response = api("put", "/tenants/acme/limits", token="admin", json={"limits": limits})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == field
    assert service.tenants.get_tenant_config("acme").job_limit.max_queued_jobs == 50


def test_only_admin_tokens_change_limits(api):
    for token in ("acme", "all"):
        response = api("put", "/tenants/acme/limits", token=token, json={"tier": "tier4"})
        assert response.status_code == 403
        assert "admin token" in response.get_json()["detail"]
