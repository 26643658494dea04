"""Tenants' event webhooks, end to end: a subscription, jobs run by the engine, deliveries
posted by the webhook channel to a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import json

import pytest

from console.handlers.webhook import MESSAGE_ID_HEADER, SIGNATURE_HEADER, verify_signature
from console.jobs import JobStatus, JobValidationError
from console.jobs.webhooks import DELIVERY_HANDLER, MAX_SUBSCRIPTIONS, SubscriptionNotFound


@pytest.fixture
def app_config(app_config):
    return {**app_config, "JOBS_RETRY_MAX_SECONDS": 0.2, "WEBHOOK_TIMEOUT_SECONDS": 2}


def header(headers, name):
    return next(v for k, v in headers.items() if k.lower() == name.lower())


def posted(receiver):
    """The envelopes the receiver got, in the order it got them."""
    return [json.loads(raw) for _, _, raw, _ in receiver.requests]


def test_a_completed_job_posts_one_signed_event(service, make_tenant, http_receiver):
    make_tenant("acme")
    subscription, secret = service.subscribe_webhook("acme", http_receiver.url,
                                                     ["job.completed"])
    job = service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(settle=0.3)

    [(path, headers, raw, _)] = http_receiver.requests
    envelope = json.loads(raw)
    assert path == "/hooks" and envelope["tenant_id"] == "acme"
    assert envelope["data"]["event"] == "job.completed"
    assert envelope["data"]["job"]["id"] == job.id
    assert envelope["data"]["job"]["status"] == "completed"
    assert verify_signature(secret, header(headers, SIGNATURE_HEADER), raw)
    # The secret is the tenant's, created by subscribing; a second subscription keeps it.
    assert service.tenants.get_tenant_config("acme").custom_settings["webhookSecret"] == secret
    assert service.subscribe_webhook("acme", http_receiver.url, ["job.failed"])[1] == secret
    [line] = service.webhook_deliveries("acme").rows
    assert (line.event, line.subject_id, line.status) == ("job.completed", job.id,
                                                          JobStatus.COMPLETED)
    assert line.id == envelope["id"] == header(headers, MESSAGE_ID_HEADER)
    assert line.subscription_id == subscription.id and line.url == http_receiver.url


def test_retries_and_the_end_arrive_in_order_even_when_the_receiver_fails_first(
        service, make_tenant, http_receiver):
    """Attempt 1 and 2 fail, 3 succeeds; the receiver answers 503 to the first delivery, so
    the later events must wait for it."""
    make_tenant("acme")
    service.subscribe_webhook("acme", http_receiver.url,
                              ["job.retried", "job.completed", "job.failed"])
    http_receiver.responses = [(503, {}), (503, {})]
    job = service.queue_job("immediate", "fails_n_times", {"failures": 2}, "acme",
                            max_retries=3)
    service.run_until_idle(settle=1.0)

    envelopes = posted(http_receiver)
    assert len(envelopes) == 5                      # two refused tries, three deliveries
    assert envelopes[0]["id"] == envelopes[1]["id"] == envelopes[2]["id"]   # the same message
    delivered = envelopes[2:]
    assert [e["data"]["event"] for e in delivered] == ["job.retried", "job.retried",
                                                        "job.completed"]
    assert [e["data"]["job"]["attempts"] for e in delivered] == [1, 2, 3]
    assert delivered[0]["data"]["job"]["error_type"] == "ConnectionError"
    assert "attempt 1 failed on purpose" in delivered[0]["data"]["job"]["error_message"]
    assert all(e["data"]["job"]["id"] == job.id for e in delivered)
    assert len({e["id"] for e in delivered}) == 3
    log = service.webhook_deliveries("acme").rows
    assert [line.status for line in log] == [JobStatus.COMPLETED] * 3
    assert log[-1].attempts == 3                    # the first delivery, tried three times


def test_a_failed_job_and_a_finished_batch(service, make_tenant, http_receiver):
    make_tenant("acme")
    service.subscribe_webhook("acme", http_receiver.url, ["job.failed", "batch.completed"])
    failing = service.queue_job("immediate", "fails_permanently", {}, "acme")
    batch = service.queue_batch_jobs([{"type": "immediate", "handler": "noop", "payload": {}}] * 2
                                     + [{"type": "immediate", "handler": "always_fails",
                                         "payload": {}, "max_retries": 0}], "acme")
    service.run_until_idle(settle=0.5)

    assert sorted(e["data"]["event"] for e in posted(http_receiver)) == [
        "batch.completed", "job.failed", "job.failed"]
    events = {e["data"]["event"]: e["data"] for e in posted(http_receiver)}
    failures = [e["data"] for e in posted(http_receiver) if e["data"]["event"] == "job.failed"]
    assert sorted(f["job"]["id"] for f in failures) == sorted([failing.id, batch[2].id])
    assert {f["job"]["error_type"] for f in failures} == {"InvalidRecipient", "RuntimeError"}
    assert events["batch.completed"]["batch"] == {
        "id": batch[0].batch_id, "total": 3, "completed": 2, "failed": 1, "cancelled": 0}


def test_only_the_tenants_own_subscribed_events_are_sent_and_deliveries_make_none(
        service, make_tenant, http_receiver):
    make_tenant("acme")
    make_tenant("globex")
    service.subscribe_webhook("acme", http_receiver.url, ["job.failed"])
    service.queue_job("immediate", "noop", {}, "acme")                  # completed: not asked
    service.queue_job("immediate", "fails_permanently", {}, "globex")   # another tenant's
    service.run_until_idle(settle=0.5)
    assert http_receiver.requests == []
    assert service.webhook_deliveries("acme").rows == []
    assert service.webhook_deliveries("globex").rows == []

    # A subscription to everything: the delivering jobs' own endings add nothing.
    service.subscribe_webhook("acme", http_receiver.url,
                              ["job.completed", "job.failed", "job.retried"])
    service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(settle=0.5)
    assert [e["data"]["event"] for e in posted(http_receiver)] == ["job.completed"]
    assert service.count_jobs("acme") == 3   # two noops and one delivery


def test_after_unsubscribing_nothing_more_is_sent(service, make_tenant, http_receiver):
    make_tenant("acme")
    subscription, _ = service.subscribe_webhook("acme", http_receiver.url, ["job.completed"])
    assert service.webhook_subscriptions("acme") == [subscription]
    assert service.unsubscribe_webhook("acme", subscription.id) == subscription
    service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(settle=0.3)
    assert http_receiver.requests == [] and service.webhook_subscriptions("acme") == []
    with pytest.raises(SubscriptionNotFound):
        service.unsubscribe_webhook("acme", subscription.id)


@pytest.mark.parametrize("url,events,field,words", [
    ("ftp://example.com/x", ["job.completed"], "url", "http or https"),
    ("", ["job.completed"], "url", "required"),
    ("https://example.com/" + "x" * 2000, ["job.completed"], "url", "at most 2000"),
    ("https://example.com/hook", [], "events", "at least one"),
    ("https://example.com/hook", ["job.exploded"], "events", "'job.exploded'"),
    ("https://example.com/hook", "job.completed", "events", "a list"),
])
def test_bad_subscriptions_are_refused_naming_the_field(service, make_tenant, url, events,
                                                        field, words):
    make_tenant("acme")
    with pytest.raises(JobValidationError) as refused:
        service.subscribe_webhook("acme", url, events)
    assert refused.value.field == field and words in refused.value.message
    assert service.webhook_subscriptions("acme") == []


def test_an_unknown_tenant_and_too_many_subscriptions_are_refused(service, make_tenant):
    with pytest.raises(JobValidationError) as refused:
        service.subscribe_webhook("nobody", "https://example.com/hook", ["job.completed"])
    assert refused.value.field == "tenant_id"
    make_tenant("acme")
    for n in range(MAX_SUBSCRIPTIONS):
        service.subscribe_webhook("acme", f"https://example.com/{n}", ["job.completed"])
    with pytest.raises(JobValidationError, match="remove one first"):
        service.subscribe_webhook("acme", "https://example.com/more", ["job.completed"])
    assert len(service.webhook_subscriptions("acme")) == MAX_SUBSCRIPTIONS


class TestPrivateAddresses:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WEBHOOK_ALLOW_PRIVATE": False}

    @pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost/x",
                                     "http://169.254.169.254/latest", "http://10.0.0.7/hook"])
    def test_a_url_inside_the_network_is_refused(self, service, make_tenant, url):
        make_tenant("acme")
        with pytest.raises(JobValidationError) as refused:
            service.subscribe_webhook("acme", url, ["job.completed"])
        assert refused.value.field == "url" and "public addresses only" in refused.value.message


def test_the_audit_trail_never_shows_the_signing_secret(service, make_tenant):
    from sqlalchemy import select

    from console.jobs.audit import Actor
    from console.jobs.models import audit_table

    make_tenant("acme")
    _, secret = service.subscribe_webhook("acme", "https://example.com/hook", ["job.failed"])
    config = service.tenants.get_tenant_config("acme")
    service.tenants.set_tenant_config(
        config.copy_with(custom_settings={**config.custom_settings, "alertEmail": "a@b.test"}),
        actor=Actor("user", "olga", "127.0.0.1"))
    with service.engine.connect() as conn:
        entry = conn.execute(select(audit_table).where(
            audit_table.c.action == "tenant_limits_changed")).one()
    assert entry.value_after["custom_settings"]["webhookSecret"] == "(hidden)"
    assert entry.value_after["custom_settings"]["alertEmail"] == "a@b.test"
    assert secret not in str(entry.value_before) + str(entry.value_after)
    # Stored, and still the one deliveries are signed with.
    assert service.tenants.get_tenant_config("acme").custom_settings["webhookSecret"] == secret


def test_saving_settings_read_before_a_subscription_keeps_its_secret(service, make_tenant):
    """The limits form and the alert contacts save the settings they read when the page was
    opened: a secret created meanwhile must survive them."""
    make_tenant("acme")
    read_earlier = service.tenants.get_tenant_config("acme")
    _, secret = service.subscribe_webhook("acme", "https://example.com/hook", ["job.failed"])
    service.tenants.set_tenant_config(read_earlier.copy_with(
        custom_settings={**read_earlier.custom_settings, "alertEmail": "ops@acme.test"}))
    settings = service.tenants.get_tenant_config("acme").custom_settings
    assert settings["webhookSecret"] == secret and settings["alertEmail"] == "ops@acme.test"


def test_pruning_deletes_the_log_lines_whose_delivery_went_with_the_finished_jobs(
        service, make_tenant, http_receiver):
    """A delivered line goes with its job; one whose delivery has not ended stays, since the
    subject's next event must still wait for it."""
    make_tenant("acme")
    service.subscribe_webhook("acme", http_receiver.url, ["job.completed"])
    delivered = service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(settle=0.3)
    service.pause_handler(DELIVERY_HANDLER, "acme")
    waiting = service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(settle=0.3)
    prune = service.queue_job("maintenance", "prune_finished_jobs", {"retention_days": 0},
                              "acme")
    service.run_until_idle(settle=0.3)

    assert service.get_job_by_id(prune.id).last_result.result[
        "webhook_deliveries_deleted"] == 1
    subjects = {line.subject_id for line in service.webhook_deliveries("acme").rows}
    assert waiting.id in subjects and delivered.id not in subjects
    assert len(http_receiver.requests) == 1
