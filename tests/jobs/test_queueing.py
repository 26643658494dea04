"""Every queue path: the status and scheduled_for it produces, and every bad input refused."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from console.jobs import JobPriority, JobStatus, JobType, JobValidationError

UTC = timezone.utc


def close_to(moment, expected, tolerance=timedelta(seconds=2)):
    return abs(moment - expected) <= tolerance


def test_immediate_job_is_queued_now_with_tenant_default_priority(service, make_tenant):
    make_tenant("acme", "tier4")  # tier4 default priority: high
    job = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    assert job.status is JobStatus.QUEUED
    assert job.priority is JobPriority.HIGH
    assert close_to(job.scheduled_for, datetime.now(UTC))
    stored = service.get_job_by_id(job.id)
    assert stored == job
    assert stored.scheduled_for.tzinfo is not None and stored.created_at.tzinfo is not None
    assert stored.payload == {"ms": 1} and stored.can_retry


def test_delayed_job_is_pending_until_its_time(service, make_tenant):
    make_tenant()
    job = service.queue_delayed_job("sleeps", {"ms": 1}, timedelta(minutes=30), "acme")
    assert job.status is JobStatus.PENDING and job.type == "delayed"
    assert close_to(job.scheduled_for, datetime.now(UTC) + timedelta(minutes=30))


def test_job_scheduled_for_the_past_is_due_now(service, make_tenant):
    make_tenant()
    past = datetime.now(UTC) - timedelta(hours=1)
    job = service.queue_job("immediate", "sleeps", {}, "acme", scheduled_for=past)
    assert job.status is JobStatus.QUEUED


def test_scheduled_job_is_pending_at_its_next_cron_time(service, make_tenant):
    make_tenant()
    job = service.queue_scheduled_job("Daily report", "0 9 * * *", "sleeps", {"ms": 1}, "acme",
                                      timezone="Europe/Paris")
    assert job.status is JobStatus.PENDING and job.cron_schedule == "0 9 * * *"
    local = job.scheduled_for.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 0)
    assert job.scheduled_for > datetime.now(UTC)
    assert job.payload["name"] == "Daily report" and job.metadata["name"] == "Daily report"


def test_recurring_job_via_queue_job(service, make_tenant):
    make_tenant()
    job = service.queue_job(JobType.RECURRING, "sleeps", {"retention_days": 30}, "acme",
                            cron_schedule="0 2 * * 0")
    assert job.status is JobStatus.PENDING and job.type == "recurring"
    assert job.scheduled_for.weekday() == 6 and job.scheduled_for.hour == 2


def test_notification_maps_channel_to_handler_and_payload(service, make_tenant):
    make_tenant()
    job = service.queue_notification("email", "user@example.com", "acme", subject="Welcome!",
                                     body="Thanks", priority=JobPriority.HIGH, template="welcome")
    assert job.handler == "email_handler" and job.type == "notification"
    assert job.payload == {"channel": "email", "recipient": "user@example.com",
                           "subject": "Welcome!", "body": "Thanks", "template": "welcome"}
    assert job.priority is JobPriority.HIGH and job.status is JobStatus.QUEUED


def test_batch_accepts_reference_camel_case_keys(service, make_tenant):
    make_tenant()
    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = service.queue_batch_jobs([
        {"type": "immediate", "handler": "sleeps", "payload": {"ms": 1}},
        {"type": "scheduled", "handler": "sleeps", "payload": {}, "scheduledFor": later,
         "maxRetries": 5},
        {"type": "recurring", "handler": "sleeps", "payload": {}, "cronSchedule": "*/5 * * * *"},
    ], "acme", priority=JobPriority.URGENT)
    assert [j.status for j in jobs] == [JobStatus.QUEUED, JobStatus.PENDING, JobStatus.PENDING]
    assert jobs[1].max_retries == 5 and close_to(jobs[1].scheduled_for, later)
    assert all(j.priority is JobPriority.URGENT for j in jobs)
    assert service.count_jobs("acme") == 3


def test_idempotency_key_returns_the_first_job(service, make_tenant):
    make_tenant()
    first = service.queue_job("immediate", "sleeps", {"n": 1}, "acme", idempotency_key="order-7")
    again = service.queue_job("immediate", "sleeps", {"n": 2}, "acme", idempotency_key="order-7")
    assert again.id == first.id and again.payload == {"n": 1}
    assert service.count_jobs("acme") == 1
    make_tenant("other")
    elsewhere = service.queue_job("immediate", "sleeps", {}, "other", idempotency_key="order-7")
    assert elsewhere.id != first.id  # keys are per tenant


def test_idempotency_key_repeated_inside_a_batch(service, make_tenant):
    make_tenant()
    jobs = service.queue_batch_jobs([
        {"type": "immediate", "handler": "sleeps", "payload": {}, "idempotency_key": "k"},
        {"type": "immediate", "handler": "sleeps", "payload": {}, "idempotency_key": "k"},
    ], "acme")
    assert jobs[0].id == jobs[1].id and service.count_jobs("acme") == 1


def test_job_ids_are_unique_and_unguessable(service, make_tenant):
    make_tenant()
    ids = [service.queue_job("immediate", "sleeps", {}, "acme").id for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) == 36 for i in ids)
    # Consecutive ids differ in their random part, not just a counter.
    assert len({i[-12:] for i in ids}) == 50


BAD_INPUTS = [
    ("handler", dict(handler="nope")),
    ("handler", dict(handler="")),
    ("tenant_id", dict(tenant_id="ghost")),
    ("tenant_id", dict(tenant_id="")),
    ("type", dict(job_type="notification", handler="picky")),
    ("type", dict(job_type="")),
    ("payload", dict(payload=["not", "an", "object"])),
    ("payload", dict(payload={"when": object()})),
    ("payload", dict(payload={"x": float("nan")})),
    ("payload", dict(handler="picky", payload={"ok": False})),
    ("cron_schedule", dict(cron_schedule="61 * * * *")),
    ("cron_schedule", dict(cron_schedule="every day")),
    ("cron_schedule", dict(cron_schedule="0 0 31 2 *")),           # 31 February: never fires
    ("cron_schedule", dict(cron_schedule="0 0 30 2 *")),
    ("cron_schedule", dict(cron_schedule="0 0 31 2 *", scheduled_for=datetime.now(UTC))),
    ("handler", dict(handler="evaluate_alert_rules")),                 # system handlers
    ("handler", dict(job_type="notification", handler="alert_webhook", payload={
        "channel": "webhook", "recipient": "https://x.example/h"})),
    ("timezone", dict(cron_schedule="0 9 * * *", timezone="Mars/Olympus")),
    ("delay", dict(delay=timedelta(seconds=-1))),
    ("priority", dict(priority="highest")),
    ("priority", dict(priority=7)),
    ("max_retries", dict(max_retries=-1)),
    ("max_retries", dict(max_retries="3")),
    ("metadata", dict(metadata="x")),
    ("scheduled_for", dict(scheduled_for=datetime(2030, 1, 1))),
    ("scheduled_for", dict(scheduled_for="tomorrow")),
    ("idempotency_key", dict(idempotency_key="")),
]


@pytest.mark.parametrize("field,override", BAD_INPUTS, ids=[f"{f}-{i}" for i, (f, _) in
                                                            enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(service, make_tenant,
                                                                     field, override):
    make_tenant()
    arguments = dict(job_type="immediate", handler="picky", payload={"ok": True},
                     tenant_id="acme")
    arguments.update(override)
    job_type = arguments.pop("job_type")
    with pytest.raises(JobValidationError) as error:
        service.queue_job(job_type, **arguments)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}:")
    assert isinstance(error.value, ValueError)
    assert service.count_jobs() == 0


def test_validation_messages_say_how_to_fix(service, make_tenant):
    make_tenant()
    with pytest.raises(JobValidationError, match="registered: .*sleeps"):
        service.queue_job("immediate", "nope", {}, "acme")
    with pytest.raises(JobValidationError, match="IANA"):
        service.queue_job("recurring", "sleeps", {}, "acme", cron_schedule="* * * * *",
                          timezone="Nowhere/Land")
    with pytest.raises(JobValidationError, match="low, normal, high, urgent, critical"):
        service.queue_job("immediate", "sleeps", {}, "acme", priority="asap")


def test_handler_schema_errors_name_the_payload_field(service, make_tenant):
    make_tenant()
    with pytest.raises(JobValidationError) as error:
        service.queue_job("immediate", "wait", {"seconds": "ten"}, "acme")
    assert error.value.field == "payload['seconds']"
    assert service.count_jobs() == 0


def test_bad_spec_in_a_batch_stores_nothing(service, make_tenant):
    make_tenant()
    with pytest.raises(JobValidationError) as error:
        service.queue_batch_jobs([
            {"type": "immediate", "handler": "sleeps", "payload": {}},
            {"type": "immediate", "handler": "nope", "payload": {}},
        ], "acme")
    assert error.value.field == "job_specs[1].handler"
    with pytest.raises(JobValidationError, match=r"job_specs\[0\]\.colour"):
        service.queue_batch_jobs([{"type": "immediate", "handler": "sleeps", "colour": "red"}],
                                 "acme")
    assert service.count_jobs() == 0


def test_registering_a_handler_name_twice_is_an_error(service):
    from tests.jobs.handlers import SleepsHandler

    with pytest.raises(ValueError, match="already registered"):
        service.register_handler(SleepsHandler())


def test_get_jobs_by_status_filters_by_tenant(service, make_tenant):
    make_tenant("a")
    make_tenant("b")
    for tenant in ("a", "a", "b"):
        service.queue_job("immediate", "sleeps", {}, tenant)
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "a")
    assert len(service.get_jobs_by_status("queued")) == 3
    assert len(service.get_jobs_by_status(JobStatus.QUEUED, tenant_id="a")) == 2
    assert len(service.get_jobs_by_status("pending", tenant_id="a")) == 1
    with pytest.raises(JobValidationError):
        service.get_jobs_by_status("sleeping")


def test_racing_calls_with_one_idempotency_key_store_one_job(service, make_tenant):
    import threading

    make_tenant()
    barrier = threading.Barrier(10)
    ids, errors = [], []

    def queue():
        barrier.wait()
        try:
            ids.append(service.queue_job("immediate", "sleeps", {}, "acme",
                                         idempotency_key="same").id)
        except Exception as exc:  # any error fails the test
            errors.append(exc)

    threads = [threading.Thread(target=queue) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) == 1 and len(ids) == 10
    assert service.count_jobs("acme") == 1
