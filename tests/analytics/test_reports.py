"""Analytics against hand-counted fixtures, and rollups against the raw rows they summarise."""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from console.jobs.models import attempts_table, jobs_table, rollups_table
from console.jobs.rollups import RollupBatch

UTC = timezone.utc


def test_usage_counts_by_status_and_type_with_rates(service, make_tenant):
    make_tenant("acme", "tier4")
    for _ in range(4):
        service.queue_job("immediate", "sleeps", {"ms": 2}, "acme")
    service.queue_job("data_sync", "fails_permanently", {}, "acme")
    cancelled = service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    service.cancel_job(cancelled.id)
    service.run_until_idle(settle=0.2)
    make_tenant("acme", "tier4", maxQueuedJobs=5)
    for _ in range(4):   # waiting: 4 of max_queued_jobs 5 = 80 %, then 5 = 100 %
        service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    usage = service.get_tenant_job_usage("acme")
    assert usage.total_jobs == 10
    assert usage.jobs_by_type == {"immediate": 4, "data_sync": 1, "delayed": 5}
    assert usage.jobs_by_status == {"completed": 4, "failed": 1, "cancelled": 1, "pending": 4,
                                    "queued": 0, "processing": 0}
    assert usage.success_rate == pytest.approx(0.8) and usage.failure_rate == pytest.approx(0.2)
    assert usage.queued_jobs == 4 and usage.current_usage["queued_jobs"] == 4
    assert usage.current_usage["daily_jobs"] == 10
    assert usage.limits["max_queued_jobs"] == 5
    assert usage.avg_execution_time > timedelta(0)
    assert usage.warnings == []          # 80 % is not over 80 %
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    assert any(w.startswith("max_queued_jobs: 5 of 5") for w in
               service.get_tenant_job_usage("acme").warnings)


def test_date_ranges_include_and_exclude_the_right_jobs(service, make_tenant):
    make_tenant()
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.run_until_idle(settle=0.2)
    now = datetime.now(UTC)
    around = service.get_tenant_job_usage("acme", now - timedelta(hours=1),
                                          now + timedelta(hours=1))
    assert around.total_jobs == 3 and around.jobs_by_status["completed"] == 3
    before = service.get_tenant_job_usage("acme", now - timedelta(days=2),
                                          now.replace(minute=0, second=0, microsecond=0))
    assert before.total_jobs == 0 and before.jobs_by_status["completed"] == 0
    after = service.get_tenant_job_usage("acme", now + timedelta(hours=1))
    assert after.total_jobs == 0
    metrics = service.get_job_performance_metrics("immediate", "sleeps",
                                                  start_date=now + timedelta(hours=1))
    assert metrics.total_executions == 0


def write_attempts(service, tenant, handler, job_type, durations, failures=(), when=None):
    """Attempts with known durations, written as the runner writes them."""
    when = when or datetime.now(UTC)
    rows, batch = [], RollupBatch()
    for i, duration in enumerate(durations):
        failed = i in failures
        rows.append({"job_id": f"job-{handler}-{i}", "tenant_id": tenant, "job_type": job_type,
                     "handler": handler, "attempt": 1, "started_at": when,
                     "finished_at": when, "duration_ms": duration, "success": not failed,
                     "error_type": "ConnectionError" if failed else None,
                     "error_message": "refused" if failed else None, "worker": "test"})
        batch.add_attempt(when, tenant, handler, job_type, duration, not failed,
                          "ConnectionError" if failed else None, "refused" if failed else None,
                          "failed" if failed else "completed")
    with service.engine.begin() as conn:
        conn.execute(attempts_table.insert(), rows)
        batch.write(conn)


def test_p95_is_exact_for_known_durations(service, make_tenant):
    make_tenant()
    durations = [float(d) for d in range(1, 101)]   # 1 … 100 ms
    random.Random(3).shuffle(durations)
    write_attempts(service, "acme", "report", "immediate", durations, failures={0, 1, 2, 3})
    metrics = service.get_job_performance_metrics("immediate", "report")
    assert metrics.total_executions == 100
    assert metrics.p95_execution_time == timedelta(milliseconds=95)   # nearest rank: 95th of 100
    assert metrics.p95_is_exact
    assert metrics.avg_execution_time == timedelta(milliseconds=50.5)
    assert metrics.success_rate == pytest.approx(0.96)
    assert metrics.errors_by_type == {"ConnectionError": 4}


def test_p95_of_a_single_value_and_of_none(service, make_tenant):
    make_tenant()
    write_attempts(service, "acme", "one", "immediate", [12.345])
    assert service.get_job_performance_metrics("immediate", "one").p95_execution_time == \
        timedelta(milliseconds=12.345)
    empty = service.get_job_performance_metrics("immediate", "nothing")
    assert empty.total_executions == 0 and empty.p95_execution_time == timedelta(0)


def test_p95_after_real_runs_matches_the_raw_attempts(service, make_tenant):
    make_tenant()
    for ms in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89) * 2:
        service.queue_job("immediate", "sleeps", {"ms": ms}, "acme")
    service.run_until_idle(settle=0.2)
    with service.engine.connect() as conn:
        raw = sorted(conn.execute(select(attempts_table.c.duration_ms)).scalars())
    expected = raw[math.ceil(0.95 * len(raw)) - 1]
    metrics = service.get_job_performance_metrics("immediate", "sleeps")
    assert metrics.p95_execution_time == timedelta(milliseconds=expected)


def test_rollups_agree_with_raw_rows_after_a_random_mix(service, make_tenant):
    make_tenant("a", "tier4", maxConcurrentJobs=3)
    make_tenant("b", "tier3")
    rng = random.Random(11)
    for _ in range(60):
        tenant = rng.choice(["a", "b"])
        kind = rng.random()
        if kind < 0.5:
            service.queue_job("immediate", "sleeps", {"ms": rng.randint(0, 4)}, tenant)
        elif kind < 0.7:
            service.queue_job("data_sync", "fails_n_times", {"failures": rng.randint(1, 3)},
                              tenant, max_retries=2)
        elif kind < 0.85:
            service.queue_job("immediate", "always_fails", {}, tenant, max_retries=1)
        else:
            later = service.queue_delayed_job("sleeps", {}, timedelta(hours=1), tenant)
            if rng.random() < 0.5:
                service.cancel_job(later.id)
    service.run_until_idle(settle=0.5)
    with service.engine.connect() as conn:
        r = rollups_table.c
        rolled = conn.execute(select(
            func.sum(r.attempts), func.sum(r.attempts_succeeded), func.sum(r.attempts_failed),
            func.sum(r.duration_ms_sum), func.sum(r.jobs_created), func.sum(r.jobs_cancelled)
        )).one()
        a = attempts_table.c
        raw = conn.execute(select(
            func.count(), func.sum(func.cast(a.success, rollups_table.c.attempts.type)),
            func.sum(a.duration_ms))).one()
        jobs = dict(conn.execute(select(jobs_table.c.status, func.count())
                                 .group_by(jobs_table.c.status)).all())
        per_tenant = dict(conn.execute(select(r.tenant_id, func.sum(r.jobs_created))
                                       .group_by(r.tenant_id)).all())
        raw_per_tenant = dict(conn.execute(select(jobs_table.c.tenant_id, func.count())
                                           .group_by(jobs_table.c.tenant_id)).all())
    attempts, succeeded, failed, duration_sum, created, cancelled = rolled
    assert attempts == raw[0] and succeeded == raw[1] and failed == raw[0] - raw[1]
    assert duration_sum == pytest.approx(raw[2])
    assert created == sum(jobs.values()) and cancelled == jobs.get("cancelled", 0)
    assert per_tenant == raw_per_tenant
    usage = {t: service.get_tenant_job_usage(t) for t in ("a", "b")}
    assert sum(u.jobs_by_status["completed"] for u in usage.values()) == jobs["completed"]
    assert sum(u.jobs_by_status["failed"] for u in usage.values()) == jobs["failed"]


def test_queue_status_reports_the_oldest_queued_job(service, make_tenant):
    make_tenant()
    past = datetime.now(UTC) - timedelta(seconds=90)
    service.queue_job("immediate", "sleeps", {}, "acme", scheduled_for=past)
    service.queue_job("immediate", "sleeps", {}, "acme")
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    before = datetime.now(UTC)
    status = service.get_job_queue_status()
    after = datetime.now(UTC)
    assert (status["queued_jobs"], status["pending_jobs"], status["processing_jobs"]) == (2, 1, 0)
    # The first job's age (it was due 90 s ago) at the moment the status was read.
    age = timedelta(milliseconds=status["oldest_queued_job_age"])
    slack = timedelta(milliseconds=1)                     # milliseconds, rounded either way
    assert before - past - slack <= age <= after - past + slack


def test_system_statistics_and_the_reference_health_check(service, make_tenant):
    make_tenant("a")
    make_tenant("b")
    for _ in range(8):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "a")
    for _ in range(2):
        service.queue_job("immediate", "always_fails", {}, "b", max_retries=0)
    service.run_until_idle(settle=0.2)
    stats = service.get_system_job_statistics()
    assert stats.total_jobs == 10 and stats.active_tenants == 2
    assert stats.system_success_rate == pytest.approx(0.8)
    assert any("Low system success rate: 80.0%" in w for w in stats.system_warnings)
    assert stats.total_queued_jobs == 0 and stats.total_running_jobs == 0
    service.queue_job("immediate", "sleeps", {}, "a")   # queued, and no runner is alive
    warnings = service.get_system_job_statistics().system_warnings
    assert any("no runner has a recent heartbeat" in w for w in warnings)
