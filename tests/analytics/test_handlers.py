"""Per-handler performance across job types: the same figures as the per-pair metrics, summed."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from console.analytics.handlers import (
    handler_has_history,
    handler_performance,
    latest_error_messages,
)
from console.jobs.models import attempts_table
from console.jobs.types import JobValidationError

UTC = timezone.utc


@pytest.fixture
def history(service, make_tenant):
    make_tenant("acme", "tier4")
    make_tenant("globex", "tier4")
    for i in range(6):
        service.queue_job("immediate", "sleeps", {"ms": 1 + 3 * i}, "acme")
    for i in range(4):
        service.queue_job("data_sync", "sleeps", {"ms": 2 + 5 * i}, "globex")
    service.queue_job("immediate", "always_fails", {}, "acme", max_retries=1)
    service.run_until_idle(settle=0.2)


def test_every_handler_summed_over_job_types_and_tenants(service, history):
    results = {p.handler: p for p in handler_performance(service.engine)}
    assert set(results) == {"sleeps", "always_fails"}
    sleeps = results["sleeps"]
    assert sleeps.total_executions == 10 and sleeps.succeeded == 10 and sleeps.failed == 0
    assert sleeps.success_rate == 1.0
    assert sleeps.executions_by_type == {"immediate": 6, "data_sync": 4}
    pairs = [service.get_job_performance_metrics(t, "sleeps") for t in ("immediate", "data_sync")]
    weighted = sum((m.avg_execution_time * m.total_executions for m in pairs), timedelta(0)) / 10
    assert abs(sleeps.avg_execution_time - weighted) < timedelta(microseconds=10)
    fails = results["always_fails"]
    assert fails.total_executions == 2 and fails.failure_rate == 1.0   # first try + 1 retry
    assert fails.errors_by_type == {"RuntimeError": 2}


def test_exact_p95_is_the_nearest_rank_over_attempt_rows(service, history):
    [sleeps] = handler_performance(service.engine, handler="sleeps", exact_p95=True)
    with service.engine.connect() as conn:
        durations = sorted(conn.execute(select(attempts_table.c.duration_ms)
                                        .where(attempts_table.c.handler == "sleeps")).scalars())
    expected = durations[math.ceil(0.95 * len(durations)) - 1]
    assert sleeps.p95_is_exact
    assert sleeps.p95_execution_time == timedelta(milliseconds=expected)
    [approx] = handler_performance(service.engine, handler="sleeps")
    assert not approx.p95_is_exact
    assert abs(approx.p95_execution_time / sleeps.p95_execution_time - 1) < 0.06


def test_ranges_and_unknown_handlers(service, history):
    later = datetime.now(UTC) + timedelta(hours=2)
    assert handler_performance(service.engine, start_date=later) == []
    assert handler_performance(service.engine, handler="nobody") == []
    with pytest.raises(JobValidationError):
        handler_performance(service.engine, start_date=later, end_date=later - timedelta(days=1))
    assert handler_has_history(service.engine, "sleeps")
    assert not handler_has_history(service.engine, "nobody")


def test_latest_error_message_per_error_type(service, history):
    errors = latest_error_messages(service.engine, "always_fails")
    assert list(errors) == ["RuntimeError"]
    assert errors["RuntimeError"]["count"] == 2
    assert errors["RuntimeError"]["message"].startswith("boom on attempt")
    assert latest_error_messages(service.engine, "sleeps") == {}
