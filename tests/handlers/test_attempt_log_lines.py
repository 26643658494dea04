"""The built-in channels log what an operator (and the tenant) needs to follow an attempt —
whom, through what, how it ended — and never a secret the payload carries: no body, no
template variable, no header, no URL path or query, no device token, no password."""
from __future__ import annotations

import logging

import pytest

from console.jobs import JobStatus, TenantConfig
from tests.support import refused_port

SECRETS = ("s3cr3t-body", "s3cr3t-variable", "s3cr3t-header", "s3cr3t-query", "s3cr3t-path",
           "s3cr3t-token-0123456789", "s3cr3t-mail-password", "whsec-acme-0123456789",
           "5550100999")


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "MAIL_DEFAULT_SENDER": "Console <console@example.test>", "MAIL_TIMEOUT_SECONDS": 5,
            "MAIL_PASSWORD": "s3cr3t-mail-password", "JOBS_RETRY_MAX_SECONDS": 0.1,
            "WEBHOOK_TIMEOUT_SECONDS": 2}


@pytest.fixture
def tenant(service):
    return service.tenants.set_tenant_config(TenantConfig.for_tier(
        "acme", "Acme", "tier4", {"webhookSecret": "whsec-acme-0123456789"}))


def logged(service, job_id) -> list[str]:
    """Every line every attempt of the job logged, with its traceback, as one text each."""
    return [f"{line['level']} {line['message']} {line['traceback'] or ''}"
            for attempt in service.get_job_attempts(job_id, with_lines=True)
            for line in attempt["lines"]]


def assert_no_secret(lines: list[str]) -> None:
    for secret in SECRETS:
        assert not [line for line in lines if secret in line], secret


def test_email_says_where_it_went_and_how_it_ended(service, tenant):
    job = service.queue_notification("email", "jane@example.test", "acme",
                                     subject="Code {{ code }}", body="s3cr3t-body {{ code }}",
                                     variables={"code": "s3cr3t-variable"})
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(job.id).status is JobStatus.COMPLETED
    lines = logged(service, job.id)
    assert lines[0] == f"INFO sending email message {job.id} to an address at example.test "
    assert "handing it to the SMTP server (no TLS)" in lines[1]
    assert lines[2].startswith("INFO sent in ") and f"<{job.id}@example.test>" in lines[2]
    assert_no_secret(lines)


def test_a_webhook_names_its_host_and_answer_but_not_its_path_query_or_headers(
        service, tenant, http_receiver):
    url = http_receiver.url.replace("/hooks", "/hooks/s3cr3t-path?key=s3cr3t-query")
    http_receiver.responses = [(503, {"Retry-After": "0"})]
    job = service.queue_notification("webhook", url, "acme", body={"note": "s3cr3t-body"},
                                     headers={"Authorization": "Bearer s3cr3t-header"})
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(job.id).status is JobStatus.COMPLETED
    lines = logged(service, job.id)
    host = http_receiver.url.split("/hooks")[0]
    assert f"INFO sending webhook message {job.id} to {host}/… " in lines
    assert any("the receiver answered 503 Service Unavailable" in line for line in lines)
    assert any(line.startswith("WARNING not sent (WebhookTemporaryError): it will be tried "
                                          "again; the receiver asked to wait 0 s")
               for line in lines)
    assert any("the receiver answered 200 OK" in line for line in lines)
    assert_no_secret(lines)


def test_a_webhook_that_cannot_connect_says_so_without_the_operators_details(service, tenant,
                                                                             caplog):
    caplog.set_level(logging.INFO)   # a process that logs everything, as operators may run it
    with refused_port() as port:
        job = service.queue_notification("webhook", f"http://127.0.0.1:{port}/s3cr3t-path",
                                         "acme", body={}, max_retries=0)
        service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(job.id).status is JobStatus.FAILED
    lines = logged(service, job.id)
    assert lines[-1] == "WARNING not sent (WebhookConnectionError): no retries left "
    # How the connection failed (refused, reset, which address) is in the process's log for
    # operators only: the module's own logger never reaches the attempt's lines.
    assert not [line for line in lines if "ConnectError" in line or "onnection refused" in line]
    assert_no_secret(lines)
    assert "ConnectError" in caplog.text   # the operators' log has it


@pytest.mark.parametrize("channel, recipient, masked", [
    ("sms", "+15550100999", "the number ending …99"),
    ("push", "s3cr3t-token-0123456789", "the device token ending …89")])
def test_sms_and_push_name_their_provider_and_only_the_recipients_end(service, tenant, channel,
                                                                      recipient, masked):
    job = service.queue_notification(channel, recipient, "acme", body="s3cr3t-body")
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(job.id).status is JobStatus.COMPLETED
    lines = logged(service, job.id)
    assert lines[0] == f"INFO sending {channel} message {job.id} to {masked} "
    assert f"handing it to the {channel} provider (OutboxProvider)" in lines[1]
    assert lines[2].startswith("INFO sent in ")
    assert_no_secret(lines)
