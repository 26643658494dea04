"""Health score and recommendations: each moves the right way, each appears only with its cause."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from console.jobs.models import jobs_table

UTC = timezone.utc


def run(service, **kwargs):
    service.run_until_idle(settle=0.2, **kwargs)


def test_a_tenant_with_only_successes_is_healthy_with_nothing_to_do(service, make_tenant):
    make_tenant()
    for _ in range(20):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    run(service)
    health = service.get_tenant_job_health("acme")
    assert health["health_score"] == 100 and health["health_status"] == "healthy"
    assert health["success_rate"] == 1.0 and health["queue_length"] == 0
    assert health["recommendations"] == []


def test_failures_lower_the_score_and_name_the_handler_and_error(service, make_tenant):
    make_tenant()
    for _ in range(10):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    for _ in range(10):
        service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    run(service)
    health = service.get_tenant_job_health("acme")
    assert health["success_rate"] == 0.5
    assert health["health_score"] == 60 and health["health_status"] == "warning"
    [advice] = health["recommendations"]
    assert advice.startswith("always_fails failed 100% of 10 runs in 24 h, mostly RuntimeError")
    assert "boom on attempt 1" in advice


def test_more_failures_mean_a_lower_score(service, make_tenant):
    make_tenant("few")
    make_tenant("many")
    for tenant, failing in (("few", 2), ("many", 8)):
        for i in range(20):
            handler = "always_fails" if i < failing else "sleeps"
            service.queue_job("immediate", handler, {"ms": 1}, tenant, max_retries=0)
    run(service)
    few, many = (service.get_tenant_job_health(t) for t in ("few", "many"))
    # 80 points × the failed share: 10 % costs 8, 40 % costs 32.
    assert (few["health_score"], few["health_status"]) == (92.0, "healthy")
    assert (many["health_score"], many["health_status"]) == (68.0, "warning")


def test_backlog_recommendation_appears_from_eighty_percent(service, make_tenant):
    make_tenant("acme", "tier2", maxQueuedJobs=10)
    for _ in range(7):
        service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    health = service.get_tenant_job_health("acme")
    assert health["queue_length"] == 7
    assert not any("queue holds" in r for r in health["recommendations"])
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    health = service.get_tenant_job_health("acme")
    assert "the queue holds 8 of max_queued_jobs 10 (80%)" in health["recommendations"][0]
    assert health["health_score"] == 91


def test_refused_jobs_are_recommended_against(service, make_tenant):
    from console.jobs import TenantLimitException

    make_tenant("acme", "tier2", maxQueuedJobs=2)
    for _ in range(5):
        try:
            service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
        except TenantLimitException:
            pass
    health = service.get_tenant_job_health("acme")
    assert any(r.startswith("3 jobs were refused by limits in 24 h, most by max_queued_jobs (3, "
                            "now 2)") for r in health["recommendations"])


def test_timeouts_are_recommended_against(service, make_tenant):
    make_tenant("acme", "tier4", maxJobDuration=200)
    service.queue_job("immediate", "hangs", {}, "acme", max_retries=0)
    for _ in range(9):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    run(service, threads=2)
    health = service.get_tenant_job_health("acme")
    assert any("1 of 10 attempts (10%) timed out at max_job_duration 0.2 s" in r
               for r in health["recommendations"])
    assert health["penalties"]["timeouts"] == 5


def test_waiting_on_the_concurrency_limit_is_recommended_against(service, make_tenant):
    make_tenant("acme", "tier2", maxConcurrentJobs=1)
    for _ in range(8):
        service.queue_job("immediate", "sleeps", {"ms": 500}, "acme")
    run(service, threads=4)
    health = service.get_tenant_job_health("acme")
    assert health["signals"]["held_back_claims_24h"] > 0
    assert health["signals"]["average_wait_seconds"] > 1.0
    # The wait is the one thing that costs points.
    assert [name for name, points in health["penalties"].items() if points] == ["wait"]
    assert health["health_score"] == pytest.approx(100 - health["penalties"]["wait"], abs=0.1)
    assert any("for a concurrency slot: raise max_concurrent_jobs above 1 or move to tier 3" in r
               for r in health["recommendations"])


def test_waits_on_a_rate_limit_are_recommended_against_but_cost_no_refusal_points(
        service, make_tenant):
    make_tenant("acme", rateLimit={"count": 2, "periodSeconds": 1})
    for _ in range(8):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    run(service, threads=4)
    health = service.get_tenant_job_health("acme")
    assert health["signals"]["rate_limited_claims_24h"] > 0
    assert health["signals"]["average_wait_seconds"] >= 1.0
    assert health["penalties"]["rejections"] == 0
    assert any(r.startswith("jobs waited on a rate limit (the tenant's rate_limit 2 per 1 s, or "
                            "a handler's) in ") and "raise the limit" in r
               for r in health["recommendations"])


def test_stuck_jobs_are_reported(service, make_tenant):
    make_tenant()
    job = service.queue_job("immediate", "sleeps", {}, "acme")
    assert service.get_tenant_job_health("acme")["signals"]["stuck_jobs"] == 0
    past = datetime.now(UTC) - timedelta(minutes=1)
    with service.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job.id).values(
            status="processing", lease_owner="gone", lease_expires_at=past))
    health = service.get_tenant_job_health("acme")
    assert any(r.startswith("1 jobs are processing past their lease") for r in
               health["recommendations"])
    assert health["health_score"] == 95


def test_daily_quota_recommendation(service, make_tenant):
    make_tenant("acme", "tier2", maxDailyJobs=10)
    for _ in range(7):
        service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    assert not service.get_tenant_job_health("acme")["recommendations"]
    for _ in range(2):
        service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    health = service.get_tenant_job_health("acme")
    assert any(r.startswith("9 of max_daily_jobs 10 used today (90%)") for r in
               health["recommendations"])


def test_all_tenants_health_at_once_matches_each_tenants(service, make_tenant):
    make_tenant("acme", "tier4")
    make_tenant("globex", "tier1", maxQueuedJobs=50)
    make_tenant("idle", "tier2")
    for n in range(12):
        service.queue_job("immediate", "noop", {"n": n}, "acme")
    for _ in range(12):
        service.queue_job("notification", "always_fails", {}, "globex", max_retries=0)
    service.run_until_idle(timeout=20)
    together = service.get_tenants_job_health()
    assert set(together) == {"acme", "globex", "idle"}
    for tenant_id in together:
        assert together[tenant_id] == service.get_tenant_job_health(tenant_id)
    assert together["globex"]["health_status"] == "warning"   # success-rate penalty capped at 40
    assert together["acme"]["health_score"] == 100
