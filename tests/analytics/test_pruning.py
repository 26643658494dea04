"""Pruning finished jobs past retention changes no total, rate or trend."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from console.analytics.prometheus import render_metrics
from console.demo import load_demo
from console.jobs import JobStatus
from console.jobs.models import attempts_table, jobs_table

UTC = timezone.utc


def rounded(values):
    """Sums of floats may be added in another order after pruning (PostgreSQL plans change)."""
    return [round(v, 6) if isinstance(v, float) else v for v in values]


def seconds(delta):
    return round(delta.total_seconds(), 6)


def snapshot(service):
    now = datetime.now(UTC)
    usage = service.get_tenant_job_usage("acme")
    metrics = service.get_job_performance_metrics("immediate", "data_processor")
    trends = service.get_job_trends(tenant_id="acme", start_date=now - timedelta(days=50),
                                    end_date=now)
    exposition = [line for line in render_metrics(service.engine).splitlines()
                  if not line.startswith(b"console_jobs{")          # live counts, not totals
                  and b'handler="prune_finished_jobs"' not in line  # the prune job's own run
                  and b"prune_finished_jobs" not in line]
    return {
        "usage": (usage.total_jobs, usage.jobs_by_status, usage.jobs_by_type,
                  round(usage.success_rate, 9), seconds(usage.avg_execution_time)),
        "metrics": (metrics.total_executions, round(metrics.success_rate, 9),
                    seconds(metrics.avg_execution_time), metrics.errors_by_type),
        "trends": {k: rounded(v) if isinstance(v, list) else v for k, v in trends.items()
                   if k not in ("start", "end")},
        "exposition": exposition,
    }


def counts(service, before):
    with service.engine.connect() as conn:
        jobs = conn.execute(select(func.count()).select_from(jobs_table).where(
            jobs_table.c.tenant_id == "acme", jobs_table.c.completed_at < before)).scalar()
        attempts = conn.execute(select(func.count()).select_from(attempts_table).where(
            attempts_table.c.tenant_id == "acme")).scalar()
    return jobs, attempts


def test_pruning_keeps_every_total_rate_and_trend(service):
    load_demo(service, days=45, jobs_per_day=20)
    service.run_until_idle(settle=0.3, timeout=60)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    old_jobs, attempts_before = counts(service, cutoff)
    assert old_jobs > 100
    before = snapshot(service)

    prune = service.queue_job("maintenance", "prune_finished_jobs", {"retention_days": 30},
                              "acme")
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(prune.id)
    assert done.status is JobStatus.COMPLETED
    assert done.last_result.result["jobs_deleted"] == old_jobs
    remaining_old, attempts_after = counts(service, cutoff)
    assert remaining_old == 0 and attempts_after < attempts_before
    assert service.count_jobs("acme") > 0          # recent history and live jobs stay

    after = snapshot(service)
    # The prune job itself ran meanwhile: take it out of the "after" figures.
    before_usage, after_usage = before["usage"], after["usage"]
    assert after_usage[0] == before_usage[0] + 1
    assert after_usage[1]["completed"] == before_usage[1]["completed"] + 1
    assert after["metrics"] == before["metrics"]
    assert after["exposition"] == before["exposition"]
    for series in ("jobs_failed", "jobs_cancelled", "timeouts", "limit_rejections"):
        assert after["trends"][series] == before["trends"][series], series
    assert sum(after["trends"]["jobs_created"]) == sum(before["trends"]["jobs_created"]) + 1
    assert after["trends"]["avg_duration_ms"][:-1] == before["trends"]["avg_duration_ms"][:-1]
    assert after["trends"]["p95_duration_ms"][:-1] == before["trends"]["p95_duration_ms"][:-1]


def test_pruning_touches_only_its_own_tenant(service):
    load_demo(service, days=40, jobs_per_day=10)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    with service.engine.connect() as conn:
        others_before = conn.execute(select(func.count()).select_from(jobs_table).where(
            jobs_table.c.tenant_id != "acme")).scalar()
    service.queue_job("maintenance", "prune_finished_jobs", {"retention_days": 30}, "acme")
    service.run_until_idle(settle=0.3, timeout=60)
    with service.engine.connect() as conn:
        others_after = conn.execute(select(func.count()).select_from(jobs_table).where(
            jobs_table.c.tenant_id != "acme",
            jobs_table.c.completed_at < cutoff)).scalar()
        total_others = conn.execute(select(func.count()).select_from(jobs_table).where(
            jobs_table.c.tenant_id != "acme")).scalar()
    assert others_after > 0 and total_others == others_before
