"""System handlers (``JobHandler.system``): only the operations tenant queues, retries or runs
them, on every path; every other tenant gets ``JobValidationError`` naming the handler and
nothing is stored."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from console.jobs import JobHandler, JobStateError, JobStatus, JobValidationError
from console.jobs.handlers import HandlerRegistry

OPS = "console"   # ALERTS_TENANT_ID's default: what create_app tells the engine
REFUSAL = "handler 'evaluate_alert_rules' is a system handler: only the operations tenant " \
          "queues it"


@pytest.fixture
def tenants(make_tenant):
    make_tenant("acme", "tier2")
    make_tenant(OPS, "tier4")


class _System(JobHandler):
    handler_name = "sys"
    supported_job_types = {"immediate", "maintenance", "scheduled", "delayed"}
    system = True


QUEUE_PATHS = {
    "queue_job": (lambda s, t, h: s.queue_job("immediate", h, {}, t), "handler"),
    "queue_job maintenance cron": (
        lambda s, t, h: s.queue_job("maintenance", h, {}, t, cron_schedule="*/5 * * * *"),
        "handler"),
    "queue_scheduled_job": (
        lambda s, t, h: s.queue_scheduled_job("Evaluate", "0 * * * *", h, {}, t), "handler"),
    "queue_delayed_job": (
        lambda s, t, h: s.queue_delayed_job(h, {}, timedelta(minutes=5), t), "handler"),
    "queue_batch_jobs": (
        lambda s, t, h: s.queue_batch_jobs([{"type": "immediate", "handler": "sleeps"},
                                            {"type": "immediate", "handler": h}], t),
        "job_specs[1].handler"),
}


def test_the_app_tells_the_engine_which_tenant_is_the_operations_tenant(service):
    assert service.system_tenant_id == OPS == service.handlers.system_tenant_id


@pytest.mark.parametrize("handler, system", [
    ("evaluate_alert_rules", True), ("alert_webhook", True),
    ("prune_finished_jobs", False), ("compact_rollups", False), ("release_stuck_jobs", False),
    ("report_generator", False), ("custom_cleanup_handler", False), ("webhook_handler", False),
    ("noop", False)])
def test_which_built_in_handlers_are_system_handlers(service, handler, system):
    assert service.handlers.get(handler).system is system


@pytest.mark.parametrize("path", QUEUE_PATHS)
def test_a_tenant_cannot_queue_a_system_handler_on_any_path(service, tenants, path):
    queue, field = QUEUE_PATHS[path]
    with pytest.raises(JobValidationError) as refused:
        queue(service, "acme", "evaluate_alert_rules")
    assert refused.value.field == field
    assert refused.value.message == f"{field}: {REFUSAL}"
    assert service.count_jobs() == 0


@pytest.mark.parametrize("path", QUEUE_PATHS)
def test_the_operations_tenant_can(service, tenants, path):
    service.register_handler(_System)   # runs every job type, unlike evaluate_alert_rules
    queue, _ = QUEUE_PATHS[path]
    result = queue(service, OPS, "sys")
    jobs = result if isinstance(result, list) else [result]
    assert jobs[-1].handler == "sys" and jobs[-1].tenant_id == OPS
    assert service.count_jobs(OPS) == len(jobs) and service.count_jobs("acme") == 0
    with pytest.raises(JobValidationError, match="'sys' is a system handler"):
        queue(service, "acme", "sys")
    assert service.count_jobs("acme") == 0
    ops_job = service.queue_job("maintenance", "evaluate_alert_rules", {}, OPS)
    assert ops_job.status is JobStatus.QUEUED


def test_alert_webhook_is_refused_too(service, tenants):
    with pytest.raises(JobValidationError, match="'alert_webhook' is a system handler"):
        service.queue_job("notification", "alert_webhook",
                          {"channel": "webhook", "recipient": "https://x.example/h",
                           "signing_tenant": "globex"}, "acme")
    assert service.count_jobs() == 0


def test_create_maintenance_jobs_refuses_a_system_maintenance_handler(service, tenants,
                                                                      monkeypatch):
    # The standard maintenance handlers touch only their tenant's rows: not system handlers.
    assert len(service.create_maintenance_jobs("acme")) == 4
    monkeypatch.setattr(service.handlers.get("compact_rollups"), "system", True, raising=False)
    with pytest.raises(JobValidationError) as refused:
        service.create_maintenance_jobs("acme")
    assert refused.value.field == "job_specs[2].handler"
    assert "'compact_rollups' is a system handler" in refused.value.message
    assert service.count_jobs("acme") == 4
    assert len(service.create_maintenance_jobs(OPS)) == 4


def stored_earlier(service, tenant_id: str, **options):
    """A system-handler job of ``tenant_id`` as one queued before the rule would be."""
    service.system_tenant_id = tenant_id
    try:
        return service.queue_job("immediate", "evaluate_alert_rules", {}, tenant_id, **options)
    finally:
        service.system_tenant_id = OPS


def test_retrying_another_tenants_system_job_is_refused(service, tenants):
    job = stored_earlier(service, "acme")
    service.cancel_job(job.id)
    with pytest.raises(JobValidationError) as refused:
        service.retry_job(job.id)
    assert refused.value.field == "handler" and REFUSAL in refused.value.message
    outcome = service.retry_jobs([job.id])
    assert outcome.changed == 0
    assert outcome.left_alone == {
        "a system handler of another tenant than the operations tenant": 1}
    assert service.get_job_by_id(job.id).status is JobStatus.CANCELLED
    # The operations tenant's own is retried as usual.
    own = service.queue_job("immediate", "evaluate_alert_rules", {}, OPS)
    service.cancel_job(own.id)
    assert service.retry_job(own.id).status is JobStatus.QUEUED
    with pytest.raises(JobStateError):
        service.retry_job(own.id)


def test_a_runner_fails_another_tenants_stored_system_job_without_running_it(service, tenants):
    job = stored_earlier(service, "acme", max_retries=3)
    service.run_until_idle(settle=0.2)
    failed = service.get_job_by_id(job.id)
    assert failed.status is JobStatus.FAILED and failed.total_attempts == 1   # no retries
    assert failed.last_result.error_type == "JobNotAllowedError"
    assert REFUSAL in failed.last_result.error_message
    assert "evaluations" not in (failed.last_result.result or {})


def test_another_tenants_stored_recurring_system_job_fails_for_good(service, tenants):
    # Re-armed, it would fail again at each of its times, for ever.
    job = stored_earlier(service, "acme", cron_schedule="* * * * *",
                         scheduled_for=datetime.now(timezone.utc))
    service.run_until_idle(settle=0.2)
    failed = service.get_job_by_id(job.id)
    assert failed.status is JobStatus.FAILED and failed.total_attempts == 1
    assert failed.last_result.error_type == "JobNotAllowedError"
    assert REFUSAL in failed.last_result.error_message
    # The operations tenant's own recurring job still runs and is re-armed.
    own = service.queue_job("maintenance", "evaluate_alert_rules", {}, OPS,
                            cron_schedule="* * * * *", scheduled_for=datetime.now(timezone.utc))
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(own.id).status is JobStatus.PENDING




def test_a_registry_nobody_told_lets_no_tenant_queue_a_system_handler():
    registry = HandlerRegistry()
    handler = registry.register(_System)
    assert not registry.allows(handler, "console") and not registry.allows(handler, None)
    assert registry.available_to("console") == []
    registry.system_tenant_id = "ops"
    assert registry.allows(handler, "ops") and not registry.allows(handler, "acme")
    assert registry.available_to("ops") == [handler] and registry.available_to("acme") == []
