"""SMS and push: the built-in outbox provider, pluggable providers, never twice."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from console import create_app
from console.handlers.models import outbox_messages_table, sent_messages_table
from console.handlers.providers import load_provider
from console.jobs import JobStatus, JobValidationError

from .providers import RecordingProvider


def _rows(service, table):
    with service.engine.connect() as conn:
        return conn.execute(select(table)).all()


def test_an_sms_lands_in_the_outbox_with_its_sent_record(service, make_tenant):
    make_tenant("acme")
    job = service.queue_notification("sms", "+14155550123", "acme", body="Your code is 1234")
    service.run_until_idle(settle=0.3)

    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED, done.last_result
    [row] = _rows(service, outbox_messages_table)
    assert (row.tenant_id, row.channel, row.recipient, row.body, row.job_id, row.message_id) == (
        "acme", "sms", "+14155550123", "Your code is 1234", job.id, job.id)
    [sent] = _rows(service, sent_messages_table)
    assert sent.provider_message_id == f"outbox:{row.id}"
    assert done.last_result.result["provider_message_id"] == f"outbox:{row.id}"


def test_a_push_keeps_its_title_and_data(service, make_tenant):
    make_tenant("acme")
    service.queue_notification("push", "device-token-abc", "acme", subject="Order shipped",
                               body="Your order is on its way", data={"order": 17})
    service.run_until_idle(settle=0.3)
    [row] = _rows(service, outbox_messages_table)
    assert (row.channel, row.subject, row.data) == ("push", "Order shipped", {"order": 17})


@pytest.mark.parametrize("channel, recipient, body", [
    ("sms", "call me maybe", "hi"), ("sms", "+14155550123", ""), ("sms", "+1415", "hi"),
    ("push", "", "hi"), ("push", "token", None),
])
def test_bad_messages_are_rejected_at_queue_time(service, make_tenant, channel, recipient, body):
    make_tenant("acme")
    with pytest.raises(JobValidationError):
        service.queue_notification(channel, recipient, "acme", body=body)


def test_a_retry_after_a_crash_past_the_outbox_write_stores_nothing_twice(
        service, make_tenant, monkeypatch):
    make_tenant("acme")
    handler = service.handlers.get("sms_handler")
    store_and_report = handler.execute

    def crash_after_storing(context):
        result = store_and_report(context)
        if context.attempt == 1:
            raise RuntimeError("worker died after the outbox commit")
        return result

    monkeypatch.setattr(handler, "execute", crash_after_storing)
    job = service.queue_notification("sms", "+14155550123", "acme", body="once")
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(job.id).last_result.result["status"] == "already_sent"
    assert len(_rows(service, outbox_messages_table)) == 1
    assert len(_rows(service, sent_messages_table)) == 1


def test_a_configured_provider_sends_and_its_failures_are_classified(service, make_tenant,
                                                                     monkeypatch):
    make_tenant("acme")
    handler = service.handlers.get("sms_handler")
    RecordingProvider.sent.clear()
    monkeypatch.setattr(handler, "provider", load_provider(
        "tests.handlers.providers:RecordingProvider", service.engine, {}, "SMS_PROVIDER"))
    ok = service.queue_notification("sms", "+14155550123", "acme", body="via provider",
                                    message_id="otp-1")
    service.run_until_idle(settle=0.3)
    assert [m.body for m in RecordingProvider.sent] == ["via provider"]
    assert RecordingProvider.sent[0].message_id == "otp-1"
    assert service.get_job_by_id(ok.id).last_result.result["provider_message_id"] == "rec-1"
    assert _rows(service, outbox_messages_table) == []

    monkeypatch.setattr(handler, "provider", load_provider(
        "tests.handlers.providers:RejectsEverythingProvider", service.engine, {}, "SMS_PROVIDER"))
    bad = service.queue_notification("sms", "+14155550124", "acme", body="x")
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(bad.id)
    assert done.status == JobStatus.FAILED and done.last_result.error_type == "InvalidNumber"
    assert len(service.get_job_attempts(bad.id)) == 1


@pytest.mark.parametrize("spec", ["tests.handlers.providers:NotAProvider",
                                  "tests.handlers.providers:Missing", "no_such_module:X",
                                  "twilio"])
def test_a_provider_that_cannot_be_loaded_stops_the_app(app_config, spec):
    with pytest.raises(RuntimeError, match=f"PUSH_PROVIDER={spec!r}"):
        create_app({**app_config, "PUSH_PROVIDER": spec})


def test_the_provider_setting_is_read_from_config(app_config):
    app = create_app({**app_config, "SMS_PROVIDER": "tests.handlers.providers:RecordingProvider"})
    try:
        provider = app.extensions["jobs"].handlers.get("sms_handler").provider
        assert isinstance(provider, RecordingProvider)
        assert provider.config["SMS_PROVIDER"].endswith("RecordingProvider")
    finally:
        app.extensions["jobs"].engine.dispose()
