"""Tenant tiers and limits: presets, overrides, every limit type refused, exact under races."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from console.jobs import (
    JobLimitConfig,
    JobPriority,
    JobValidationError,
    TenantConfig,
    TenantLimitException,
    TenantLimitTier,
)
from console.jobs.models import rejections_table


def test_tier_presets_follow_the_reference_table():
    expected = {"tier1": (10, 2, 100), "tier2": (50, 5, 1_000), "tier3": (200, 20, 10_000),
                "tier4": (1_000, 100, 100_000)}
    for tier, (queued, concurrent, daily) in expected.items():
        limits = JobLimitConfig.for_tier(tier)
        assert (limits.max_queued_jobs, limits.max_concurrent_jobs,
                limits.max_daily_jobs) == (queued, concurrent, daily)
    assert JobLimitConfig.for_tier("tier1").allowed_job_types == {"notification"}
    assert "file_processing" in JobLimitConfig.for_tier("tier4").allowed_job_types
    assert "file_processing" not in JobLimitConfig.for_tier("tier3").allowed_job_types
    assert {"cleanup", "data_sync"} <= JobLimitConfig.for_tier("tier3").allowed_job_types
    assert "cleanup" not in JobLimitConfig.for_tier("tier2").allowed_job_types


def test_custom_settings_override_in_camel_case():
    config = TenantConfig.for_tier("premium", "Premium", TenantLimitTier.TIER3, {"jobLimits": {
        "maxQueuedJobs": 500, "maxConcurrentJobs": 50, "maxDailyJobs": 20000,
        "maxJobPayloadSize": 2 * 1024 * 1024,
        "allowedJobTypes": ["notification", "scheduled", "custom_processing"],
        "maxJobDuration": 2 * 3600 * 1000, "defaultJobPriority": "high"}})
    limits = config.job_limit
    assert (limits.max_queued_jobs, limits.max_concurrent_jobs, limits.max_daily_jobs) == (
        500, 50, 20000)
    assert limits.max_job_payload_size == 2 * 1024 * 1024
    assert limits.allowed_job_types == {"notification", "scheduled", "custom_processing"}
    assert limits.max_job_duration == timedelta(hours=2)
    assert limits.default_job_priority is JobPriority.HIGH


def test_unknown_override_and_tier_are_clear_errors():
    with pytest.raises(JobValidationError, match="jobLimits.maxQueue"):
        TenantConfig.for_tier("t", "T", "tier1", {"jobLimits": {"maxQueue": 5}})
    with pytest.raises(JobValidationError, match="tier"):
        TenantConfig.for_tier("t", "T", "gold")
    with pytest.raises(JobValidationError, match="max_queued_jobs"):
        JobLimitConfig(max_queued_jobs=-1)


@pytest.mark.parametrize("overrides, field, message", [
    ({"maxDailyJobs": 2**31}, "max_daily_jobs", "at most 2,147,483,647"),
    ({"maxQueuedJobs": 10**12}, "max_queued_jobs", "at most 2,147,483,647"),
    ({"maxJobDuration": (30 * 24 * 3600 + 1) * 1000}, "max_job_duration", "30 days"),
    ({"allowedJobTypes": ["notification", "Bad-Type"]}, "allowed_job_types", "'Bad-Type'"),
])
def test_the_engine_refuses_limits_the_database_cannot_hold(service, overrides, field, message):
    """Whichever door a limit comes through (engine, form, API), the limit itself refuses a
    value the columns cannot hold, and nothing is stored."""
    with pytest.raises(JobValidationError, match=message) as refused:
        service.tenants.set_tenant_config(
            TenantConfig.for_tier("acme", "Acme", "tier2", {"jobLimits": overrides}))
    assert refused.value.field == field
    assert service.tenants.get_tenant_config("acme") is None
    at_the_bound = {"maxDailyJobs": 2**31 - 1, "maxJobDuration": 30 * 24 * 3600 * 1000}
    service.tenants.set_tenant_config(
        TenantConfig.for_tier("acme", "Acme", "tier2", {"jobLimits": at_the_bound}))
    stored = service.tenants.get_tenant_config("acme").job_limit
    assert (stored.max_daily_jobs, stored.max_job_duration.days) == (2**31 - 1, 30)


def test_set_and_get_tenant_config_round_trip(service):
    config = TenantConfig.for_tier("acme", "Acme", "tier2", {"jobLimits": {"maxQueuedJobs": 7}})
    service.tenants.set_tenant_config(config)
    assert service.tenants.get_tenant_config("acme") == config
    assert service.tenants.get_tenant_config("nobody") is None


def queue_n(service, tenant, n, job_type="immediate", **kwargs):
    return [service.queue_job(job_type, "sleeps", kwargs.pop("payload", {}), tenant, **kwargs)
            for _ in range(n)]


def rejections(service, tenant):
    with service.engine.connect() as conn:
        return dict(conn.execute(select(rejections_table.c.limit_type, rejections_table.c.count)
                                 .where(rejections_table.c.tenant_id == tenant)).all())


def test_max_queued_jobs_counts_pending_and_queued(service, make_tenant):
    make_tenant("acme", "tier2", maxQueuedJobs=3)
    queue_n(service, "acme", 2)
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    with pytest.raises(TenantLimitException) as error:
        service.queue_job("immediate", "sleeps", {}, "acme")
    e = error.value
    assert (e.limit_type, e.current_usage, e.limit, e.tenant_id) == (
        "max_queued_jobs", 3, 3, "acme")
    assert "max_queued_jobs" in e.message
    assert service.count_jobs("acme") == 3
    assert rejections(service, "acme") == {"max_queued_jobs": 1}


def test_max_daily_jobs(service, make_tenant):
    make_tenant("acme", "tier2", maxDailyJobs=4, maxQueuedJobs=None)
    queue_n(service, "acme", 4)
    with pytest.raises(TenantLimitException) as error:
        service.queue_job("immediate", "sleeps", {}, "acme")
    assert (error.value.limit_type, error.value.current_usage, error.value.limit) == (
        "max_daily_jobs", 4, 4)
    assert service.count_jobs("acme") == 4


def test_max_job_payload_size_is_the_encoded_size(service, make_tenant):
    make_tenant("acme", "tier2", maxJobPayloadSize=100)
    service.queue_job("immediate", "sleeps", {"text": "x" * 80}, "acme")   # 93 bytes encoded
    with pytest.raises(TenantLimitException) as error:
        service.queue_job("immediate", "sleeps", {"text": "x" * 100}, "acme")
    assert error.value.limit_type == "max_job_payload_size"
    assert error.value.current_usage == len('{"text":""}') + 100 and error.value.limit == 100
    assert service.count_jobs("acme") == 1


def test_allowed_job_types(service, make_tenant):
    make_tenant("small", "tier1")
    with pytest.raises(TenantLimitException) as error:
        service.queue_job("immediate", "sleeps", {}, "small")
    assert error.value.limit_type == "allowed_job_types"
    assert error.value.current_usage == "immediate" and error.value.limit == ["notification"]
    assert service.count_jobs("small") == 0
    assert service.queue_job("notification", "sleeps", {}, "small").type == "notification"


def test_batch_with_one_spec_over_a_limit_stores_nothing(service, make_tenant):
    make_tenant("acme", "tier2", maxQueuedJobs=5)
    specs = [{"type": "immediate", "handler": "sleeps", "payload": {}} for _ in range(6)]
    with pytest.raises(TenantLimitException) as error:
        service.queue_batch_jobs(specs, "acme")
    assert error.value.limit_type == "max_queued_jobs"
    specs = [{"type": "immediate", "handler": "sleeps", "payload": {}},
             {"type": "file_processing", "handler": "sleeps", "payload": {}}]
    with pytest.raises(TenantLimitException) as error:
        service.queue_batch_jobs(specs, "acme")
    assert error.value.limit_type == "allowed_job_types"
    assert service.count_jobs("acme") == 0
    assert len(service.queue_batch_jobs(specs[:1] * 5, "acme")) == 5


def test_a_refused_batch_does_not_use_up_the_daily_quota(service, make_tenant):
    make_tenant("acme", "tier2", maxDailyJobs=3, maxQueuedJobs=2)
    with pytest.raises(TenantLimitException):
        service.queue_batch_jobs([{"type": "immediate", "handler": "sleeps"}] * 3, "acme")
    assert len(queue_n(service, "acme", 2)) == 2  # the quota still has room for these


def test_limit_change_applies_at_once(service, make_tenant):
    config = make_tenant("acme", "tier2", maxQueuedJobs=1)
    queue_n(service, "acme", 1)
    with pytest.raises(TenantLimitException):
        queue_n(service, "acme", 1)
    service.tenants.set_tenant_config(config.copy_with(
        job_limit=JobLimitConfig(max_queued_jobs=3, max_concurrent_jobs=5)))
    assert len(queue_n(service, "acme", 2)) == 2
    service.tenants.set_tenant_config(config.copy_with(tier=TenantLimitTier.TIER1,
                                                       job_limit=JobLimitConfig.for_tier("tier1")))
    with pytest.raises(TenantLimitException) as error:
        queue_n(service, "acme", 1)
    assert error.value.limit_type == "allowed_job_types"


@pytest.mark.parametrize("limit", ["maxQueuedJobs", "maxDailyJobs"])
def test_twenty_threads_racing_a_limit_of_ten_store_exactly_ten(service, make_tenant, limit):
    overrides = {"maxQueuedJobs": None, "maxDailyJobs": None, limit: 10}
    make_tenant("acme", "tier4", **overrides)
    barrier = threading.Barrier(20)
    accepted, refused, errors = [], [], []

    def queue_one():
        barrier.wait()
        try:
            accepted.append(service.queue_job("immediate", "sleeps", {}, "acme"))
        except TenantLimitException as exc:
            refused.append(exc)
        except Exception as exc:  # anything else (a lock error) fails the test
            errors.append(exc)

    threads = [threading.Thread(target=queue_one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(accepted) == 10 and len(refused) == 10
    assert service.count_jobs("acme") == 10


def test_adding_a_tenant_never_replaces_one_even_when_two_add_it_at_once(service):
    import threading

    from console.jobs import JobValidationError, TenantConfig

    configs = [TenantConfig.for_tier("acme", f"Acme {n}", "tier2") for n in range(8)]
    outcomes: list[str] = []
    start = threading.Barrier(len(configs))

    def add(config):
        start.wait()
        try:
            service.tenants.add_tenant_config(config)
            outcomes.append(config.name)
        except JobValidationError as error:
            assert error.field == "tenant_id" and "already exists" in str(error)
            outcomes.append("refused")

    threads = [threading.Thread(target=add, args=(c,)) for c in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1 and outcomes.count("refused") == 7
    assert service.tenants.get_tenant_config("acme").name == winners[0]
