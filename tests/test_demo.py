"""``flask --app console demo`` leaves something real to look at."""
from __future__ import annotations

from sqlalchemy import func, select

from console.jobs.models import attempts_table, jobs_table


def test_demo_creates_tenants_in_every_tier_and_jobs_in_every_status(app, service):
    result = app.test_cli_runner().invoke(args=["demo", "--days", "2", "--jobs-per-day", "40"])
    assert result.exit_code == 0, result.output
    assert "flask --app console run" in result.output
    tiers = {c.tier.value for c in service.tenants.list_tenant_configs()}
    assert tiers == {"tier1", "tier2", "tier3", "tier4"}
    with service.engine.connect() as conn:
        statuses = dict(conn.execute(select(jobs_table.c.status, func.count())
                                     .group_by(jobs_table.c.status)).all())
        attempts = conn.execute(select(func.count()).select_from(attempts_table)).scalar()
    assert {"pending", "queued", "completed", "failed", "cancelled"} <= set(statuses)
    assert attempts >= statuses["completed"] + statuses["failed"]
    # The live jobs run through the ordinary engine: once run, processing appears and clears.
    seen = []
    service.job_updates.subscribe(lambda job: seen.append(job.status.value))
    service.run_until_idle(settle=0.3, timeout=30)
    assert "processing" in seen and "completed" in seen and "failed" in seen


def test_demo_history_shows_in_analytics(app, service):
    result = app.test_cli_runner().invoke(args=["demo", "--days", "2", "--jobs-per-day", "40"])
    assert result.exit_code == 0, result.output
    usage = service.get_tenant_job_usage("acme")
    assert usage.total_jobs >= 40 and usage.jobs_by_status["completed"] > 0
    metrics = service.get_job_performance_metrics("immediate", "data_processor")
    assert metrics.total_executions > 0 and metrics.p95_is_exact
    assert metrics.p95_execution_time >= metrics.avg_execution_time * 0.9
    health = service.get_tenant_job_health("acme")
    # Its last 24 hours of history are runs, some failed: they count, and leave it healthy.
    assert health["signals"]["runs_24h"] > 0 and health["penalties"]["success_rate"] > 0
    assert health["health_status"] == "healthy"
