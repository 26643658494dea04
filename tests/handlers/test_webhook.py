"""The webhook channel against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import time

import pytest

from console.handlers.webhook import (
    SIGNATURE_HEADER,
    signature_header,
    verify_signature,
)
from console.jobs import JobStatus, JobValidationError, TenantConfig
from tests.support import refused_port

SECRET = "whsec-acme-0123456789"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "JOBS_RETRY_MAX_SECONDS": 2.0, "WEBHOOK_TIMEOUT_SECONDS": 2}


@pytest.fixture
def tenant(service):
    config = TenantConfig.for_tier("acme", "Acme", "tier4", {"webhookSecret": SECRET})
    return service.tenants.set_tenant_config(config)


def _header(headers, name):
    return next(v for k, v in headers.items() if k.lower() == name.lower())


def test_a_signed_envelope_is_posted_and_verifies(service, tenant, http_receiver):
    body = {"event": "invoice.paid", "amount": 1200}
    job = service.queue_notification("webhook", http_receiver.url, "acme", body=body)
    service.run_until_idle(settle=0.3)

    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED, done.last_result
    assert done.last_result.result["status_code"] == 200
    [(path, headers, raw, _)] = http_receiver.requests
    assert path == "/hooks"
    assert _header(headers, "Content-Type") == "application/json"
    envelope = json.loads(raw)
    assert envelope["id"] == job.id and envelope["tenant_id"] == "acme"
    assert envelope["data"] == body
    assert abs(envelope["timestamp"] - time.time()) < 30
    signature = _header(headers, SIGNATURE_HEADER)
    assert signature.startswith(f"t={envelope['timestamp']},v1=")
    assert verify_signature(SECRET, signature, raw)
    assert not verify_signature("another-secret", signature, raw)
    assert not verify_signature(SECRET, signature, raw.replace(b"1200", b"9999"))
    assert not verify_signature(SECRET, signature, raw, now=time.time() + 3600)   # a replay


def test_verify_signature_reads_the_documented_format():
    raw = b'{"id":"m1"}'
    header = signature_header("k", 1_700_000_000, raw)
    assert verify_signature("k", header, raw, now=1_700_000_100)
    assert verify_signature("k", header, raw.decode(), tolerance=None)
    assert verify_signature("k", f"{header},v1=deadbeef", raw, now=1_700_000_000)  # rotation
    for broken in (None, "", "v1=abc", "t=x,v1=abc", header.split(",")[0]):
        assert not verify_signature("k", broken, raw, now=1_700_000_000)


def test_without_a_tenant_secret_the_configured_one_signs(app_config, http_receiver,
                                                          make_tenant):
    from console import create_app

    app = create_app({**app_config, "WEBHOOK_SIGNING_SECRET": "global-secret"})
    service = app.extensions["jobs"]
    try:
        service.tenants.set_tenant_config(TenantConfig.for_tier("plain", "Plain", "tier2"))
        service.queue_notification("webhook", http_receiver.url, "plain", body=[1, 2])
        service.run_until_idle(settle=0.3)
        [(_, headers, raw, _)] = http_receiver.requests
        assert verify_signature("global-secret", _header(headers, SIGNATURE_HEADER), raw)
    finally:
        service.engine.dispose()


def test_with_no_secret_at_all_nothing_is_sent(service, make_tenant, http_receiver):
    make_tenant("plain")
    job = service.queue_notification("webhook", http_receiver.url, "plain", body={})
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    assert done.last_result.error_type == "WebhookConfigError"
    assert http_receiver.requests == []


def test_a_5xx_answer_is_retried_with_the_same_message_id(service, tenant, http_receiver):
    http_receiver.responses = [(500, {})]
    job = service.queue_notification("webhook", http_receiver.url, "acme", body={"n": 1})
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED
    attempts = service.get_job_attempts(job.id)
    assert [a["success"] for a in attempts] == [False, True]
    assert attempts[0]["error_type"] == "WebhookTemporaryError"
    ids = {json.loads(raw)["id"] for _, _, raw, _ in http_receiver.requests}
    assert ids == {job.id} and len(http_receiver.requests) == 2


def test_a_429_is_retried_no_sooner_than_its_retry_after(service, tenant, http_receiver):
    http_receiver.responses = [(429, {"Retry-After": "1"})]
    job = service.queue_notification("webhook", http_receiver.url, "acme", body={"n": 1})
    service.run_until_idle(settle=1.5)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED
    first, second = http_receiver.requests
    assert second[3] - first[3] >= 0.95     # the backoff alone would be ~0.05 s
    attempts = service.get_job_attempts(job.id)
    assert attempts[0]["error_type"] == "WebhookTemporaryError"


def test_a_404_fails_at_once(service, tenant, http_receiver):
    http_receiver.responses = [(404, {})] * 3
    job = service.queue_notification("webhook", http_receiver.url, "acme", body={})
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    assert done.last_result.error_type == "WebhookRejected"
    assert done.last_result.metadata["status_code"] == 404
    assert len(service.get_job_attempts(job.id)) == 1
    assert len(http_receiver.requests) == 1


def test_connection_refused_is_retryable(service, tenant):
    with refused_port() as port:
        job = service.queue_notification("webhook", f"http://127.0.0.1:{port}/hooks", "acme",
                                         body={}, max_retries=2)
        service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    assert [a["error_type"] for a in service.get_job_attempts(job.id)] == [
        "WebhookConnectionError"] * 3


def test_a_delivered_webhook_is_not_posted_again(service, tenant, http_receiver, monkeypatch):
    handler = service.handlers.get("webhook_handler")
    post_and_report = handler.execute

    def crash_after_posting(context):
        result = post_and_report(context)
        if context.attempt == 1:
            raise RuntimeError("worker died after the receiver answered 200")
        return result

    monkeypatch.setattr(handler, "execute", crash_after_posting)
    job = service.queue_notification("webhook", http_receiver.url, "acme", body={})
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(job.id).last_result.result["status"] == "already_sent"
    assert len(http_receiver.requests) == 1


@pytest.mark.parametrize("url", ["ftp://example.test/x", "not a url", "http://", None])
def test_a_bad_url_is_rejected_at_queue_time(service, tenant, url):
    with pytest.raises(JobValidationError):
        service.queue_notification("webhook", url, "acme", body={})


def test_the_signature_header_cannot_be_overridden(service, tenant, http_receiver):
    with pytest.raises(JobValidationError, match="headers"):
        service.queue_notification("webhook", http_receiver.url, "acme", body={},
                                   headers={SIGNATURE_HEADER: "t=1,v1=forged"})
