"""Alert notices delivered by the product's own notification jobs to a real SMTP server
(aiosmtpd) and a real HTTP server on 127.0.0.1: the operators' channel and the tenant admin's,
the figure, the threshold and the health report's recommendation in each message."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from console.handlers.webhook import SIGNATURE_HEADER, verify_signature
from console.jobs import JobStatus, JobValidationError, TenantConfig, TenantLimitException
from tests.alerts.conftest import alerts_of, notifications_of, run_jobs

OPERATORS_SECRET = "whsec-operators-0123456789"
ACME_SECRET = "whsec-acme-0123456789"


@pytest.fixture
def app_config(app_config, smtp_server, http_receiver):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "ALERTS_EMAIL_TO": "ops@example.com", "ALERTS_WEBHOOK_URL": http_receiver.url,
            "WEBHOOK_SIGNING_SECRET": OPERATORS_SECRET, "WEBHOOK_TIMEOUT_SECONDS": 2}


def _header(headers, name):
    return next(v for k, v in headers.items() if k.lower() == name.lower())


def test_a_tenant_at_its_limit_is_told_and_so_are_the_operators(
        service, add_rule, evaluate, smtp_server, http_receiver):
    service.tenants.set_tenant_config(TenantConfig.for_tier("acme", "Acme", "tier2", {
        "jobLimits": {"maxQueuedJobs": 3}, "webhookSecret": ACME_SECRET,
        "alertEmail": "admin@acme.example", "alertWebhookUrl": http_receiver.url + "/acme"}))
    # The name would be template code if the email channel rendered it as a template.
    rule = add_rule("limit_usage", 60, limit_name="max_queued_jobs", name="Acme {{ 7 * 7 }}")
    jobs = [service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
            for _ in range(3)]
    with pytest.raises(TenantLimitException):      # acme itself can queue nothing more
        service.queue_job("immediate", "sleeps", {}, "acme")

    evaluate()
    [alert] = alerts_of(service, rule)
    run_jobs(service)

    notices = notifications_of(service, alert.id)
    assert {(n.transition, n.channel, n.audience, n.recipient) for n in notices} == {
        ("fired", "email", "operators", "ops@example.com"),
        ("fired", "webhook", "operators", http_receiver.url),
        ("fired", "email", "tenant", "admin@acme.example"),
        ("fired", "webhook", "tenant", http_receiver.url + "/acme")}
    for notice in notices:   # jobs of the operations tenant, delivered
        job = service.get_job_by_id(notice.job_id)
        assert job.tenant_id == "console" and job.status == JobStatus.COMPLETED, job.last_result

    emails = {m["To"]: m for m in smtp_server.sink.messages}
    assert set(emails) == {"ops@example.com", "admin@acme.example"}
    email = emails["admin@acme.example"]
    assert email["Subject"] == "[FIRING] Acme {{ 7 * 7 }} (tenant acme)"
    text = email.get_content()
    assert ("Tenant acme: max_queued_jobs usage is 100 % (3 of 3), above the threshold of "
            "60 %") in text                                       # the figure and threshold
    assert "Recommendation: Raise the limit on the tenant's page" in text
    assert ("Health report of acme: the queue holds 3 of max_queued_jobs 3 (100%): raise "
            "max_queued_jobs or add runner capacity") in text     # the health report's advice

    hooks = {path: (headers, raw) for path, headers, raw, _ in http_receiver.requests}
    assert set(hooks) == {"/hooks", "/hooks/acme"}
    operators_headers, operators_raw = hooks["/hooks"]
    assert verify_signature(OPERATORS_SECRET, _header(operators_headers, SIGNATURE_HEADER),
                            operators_raw)
    acme_headers, acme_raw = hooks["/hooks/acme"]
    assert verify_signature(ACME_SECRET, _header(acme_headers, SIGNATURE_HEADER), acme_raw)
    data = json.loads(acme_raw)["data"]
    assert data["event"] == "alert.fired" and data["alert_id"] == alert.id
    assert data["tenant_id"] == "acme" and data["value"] == 100.0 and data["threshold"] == 60
    assert "the queue holds 3 of max_queued_jobs 3" in data["recommendation"]

    service.cancel_job(jobs[0].id)                  # 2 of 3: still above 60 %
    evaluate()
    run_jobs(service)
    assert len(smtp_server.sink.messages) == 2 and len(http_receiver.requests) == 2
    service.cancel_job(jobs[1].id)                  # 1 of 3: resolved
    evaluate()
    run_jobs(service)
    resolved = [m for m in smtp_server.sink.messages if m["Subject"].startswith("[RESOLVED]")]
    assert {m["To"] for m in resolved} == {"ops@example.com", "admin@acme.example"}
    assert "max_queued_jobs usage is back to 33.3 % (1 of 3)" in resolved[0].get_content()
    events = [json.loads(raw)["data"]["event"] for _, _, raw, _ in http_receiver.requests]
    assert sorted(events) == ["alert.fired", "alert.fired", "alert.resolved", "alert.resolved"]
    assert len(notifications_of(service, alert.id)) == 8


def test_no_tenant_gets_a_webhook_signed_with_another_tenants_secret(
        service, make_tenant, http_receiver):
    make_tenant("acme")
    service.tenants.set_tenant_config(TenantConfig.for_tier(
        "globex", "Globex", "tier4", {"webhookSecret": "whsec-globex"}))
    payload = {"channel": "webhook", "recipient": http_receiver.url,
               "body": {"event": "alert.fired"}, "signing_tenant": "globex"}
    # alert_webhook is a system handler: another tenant cannot even queue it …
    with pytest.raises(JobValidationError) as refused:
        service.queue_job("notification", "alert_webhook", payload, "acme", max_retries=0)
    assert refused.value.field == "handler"
    assert "only the operations tenant" in refused.value.message
    assert service.count_jobs("acme") == 0
    # … and one stored before that rule (here: while acme was, wrongly, the operations
    # tenant) is failed by the runner without being run.
    service.system_tenant_id = "acme"
    job = service.queue_job("notification", "alert_webhook", payload, "acme", max_retries=0)
    service.system_tenant_id = "console"
    run_jobs(service)
    failed = service.get_job_by_id(job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.last_result.error_type == "JobNotAllowedError"
    assert "system handler" in failed.last_result.error_message
    assert http_receiver.requests == []
