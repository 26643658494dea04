"""Trend series: right counts in the right points, zeros where nothing happened."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from console.jobs import JobValidationError
from console.jobs.rollups import RollupBatch

UTC = timezone.utc


def history(service, tenant, handler, hours_ago, durations, failed=0, created=None):
    """Rollups as the runner would have written them that many hours ago."""
    moment = datetime.now(UTC) - timedelta(hours=hours_ago)
    batch = RollupBatch()
    for i, duration in enumerate(durations):
        ok = i >= failed
        batch.add_attempt(moment, tenant, handler, "immediate", duration, ok,
                          None if ok else "RuntimeError", None if ok else "boom",
                          "completed" if ok else "failed", wait_ms=10)
    batch.add_jobs(moment, tenant, handler, "immediate", "jobs_created",
                   created if created is not None else len(durations))
    with service.engine.begin() as conn:
        batch.write(conn)


def test_hourly_series_put_each_count_in_its_hour(service, make_tenant):
    make_tenant("a")
    make_tenant("b")
    history(service, "a", "report", 5, [10.0] * 8, failed=2)
    history(service, "a", "report", 2, [100.0] * 4)
    history(service, "b", "report", 2, [50.0] * 3)
    trends = service.get_job_trends(tenant_id="a")
    assert trends["granularity"] == "hour" and len(trends["points"]) in (24, 25)
    created = trends["jobs_created"]
    assert sum(created) == 12 and created.count(0) == len(created) - 2
    five = len(created) - 6        # the point five hours before the current hour
    assert created[five] == 8 and trends["jobs_failed"][five] == 2
    assert trends["success_rate"][five] == pytest.approx(0.75)
    assert trends["avg_duration_ms"][five] == pytest.approx(10.0)
    assert trends["p95_duration_ms"][len(created) - 3] == pytest.approx(100.0, rel=0.05)
    assert trends["success_rate"][0] is None   # nothing ran: no rate, not 0 %
    by_handler = service.get_job_trends(handler="report")
    assert sum(by_handler["jobs_created"]) == 15


def test_daily_series_over_a_week(service, make_tenant):
    make_tenant()
    history(service, "acme", "report", 24 * 3, [5.0] * 2)
    history(service, "acme", "report", 1, [5.0] * 3)
    now = datetime.now(UTC)
    trends = service.get_job_trends(tenant_id="acme", start_date=now - timedelta(days=7),
                                    end_date=now)
    assert trends["granularity"] == "day" and len(trends["points"]) == 8
    assert sum(trends["jobs_created"]) == 5 and max(trends["jobs_created"]) == 3


def test_real_runs_and_rejections_show_in_the_current_hour(service, make_tenant):
    from console.jobs import TenantLimitException

    make_tenant("acme", "tier2", maxQueuedJobs=3)
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    with pytest.raises(TenantLimitException):
        service.queue_job("immediate", "sleeps", {}, "acme")
    service.run_until_idle(settle=0.2)
    trends = service.get_job_trends(tenant_id="acme")
    assert trends["jobs_created"][-1] == 3 and trends["jobs_completed"][-1] == 3
    assert trends["limit_rejections"][-1] == 1 and trends["attempts"][-1] == 3


def test_bad_granularity_is_refused():
    from console.analytics.trends import job_trends

    with pytest.raises(JobValidationError):
        job_trends(None, granularity="minute")


def test_queue_depth_is_sampled_by_runners_and_trended(service, make_tenant):
    from console.jobs.runner import Runner

    make_tenant()
    for _ in range(6):
        service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    runner = Runner(service, poll_interval=30)
    runner.renew_leases()           # what every runner does every JOBS_LEASE_SECONDS / 3
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    runner.renew_leases()
    trends = service.get_job_trends(tenant_id="acme")
    assert trends["queue_depth"][-1] == 6.5 and trends["queue_depth_max"][-1] == 7
    assert trends["queue_depth"][0] is None
    assert service.get_job_trends(handler="sleeps")["queue_depth"][-1] is None
