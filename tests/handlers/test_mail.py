"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from console.handlers.models import sent_messages_table
from console.jobs import JobStatus, JobValidationError
from tests.support import refused_port, start_smtp_server


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "MAIL_DEFAULT_SENDER": "Console <console@example.test>", "MAIL_TIMEOUT_SECONDS": 5}


@pytest.fixture
def sink(smtp_server):
    return smtp_server.sink


def test_email_arrives_with_its_headers_and_rendered_bodies(service, make_tenant, sink):
    make_tenant("acme")
    job = service.queue_notification(
        "email", "Jane Doe <jane@example.test>", "acme",
        subject="Hello {{ name }}", body="Hi {{ name }}, your code is {{ code }}.",
        html="<p>Hi {{ name }}</p>", variables={"name": "Jane & <Co>", "code": 42})
    service.run_until_idle(settle=0.3)

    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED, done.last_result
    assert done.last_result.result["status"] == "sent"
    [envelope] = sink.envelopes
    assert envelope.mail_from == "console@example.test"
    assert envelope.rcpt_tos == ["jane@example.test"]
    [message] = sink.messages
    assert message["From"] == "Console <console@example.test>"
    assert message["To"] == "Jane Doe <jane@example.test>"
    assert message["Subject"] == "Hello Jane & <Co>"      # plain text: not escaped
    assert message["Message-ID"] == f"<{job.id}@example.test>"
    assert message["Date"]
    text_part = message.get_body(preferencelist=("plain",)).get_content()
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert text_part.strip() == "Hi Jane & <Co>, your code is 42."
    assert html_part.strip() == "<p>Hi Jane &amp; &lt;Co&gt;</p>"   # HTML: escaped


def test_payload_message_id_sets_the_header(service, make_tenant, sink):
    make_tenant("acme")
    service.queue_notification("email", "jane@example.test", "acme", subject="s", body="b",
                               message_id="invoice-17/reminder")
    service.run_until_idle(settle=0.3)
    assert sink.messages[0]["Message-ID"] == "<invoice-17-reminder@example.test>"


@pytest.mark.parametrize("recipient", ["not-an-address", "jane@", "@example.test",
                                       "jane@localhost\nBcc: x@y.test"])
def test_an_address_without_at_is_rejected_at_queue_time(service, make_tenant, recipient):
    make_tenant("acme")
    with pytest.raises(JobValidationError, match="recipient"):
        service.queue_notification("email", recipient, "acme", subject="s", body="b")
    assert service.get_jobs_by_status("queued", tenant_id="acme") == []


def test_a_template_that_does_not_parse_is_rejected_at_queue_time(service, make_tenant):
    make_tenant("acme")
    with pytest.raises(JobValidationError, match="body is not a valid template"):
        service.queue_notification("email", "jane@example.test", "acme", body="{% if %}")


def test_the_sandbox_refuses_unsafe_templates_without_retrying(service, make_tenant, sink):
    make_tenant("acme")
    job = service.queue_notification(
        "email", "jane@example.test", "acme", subject="x",
        body="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    assert done.last_result.error_type == "TemplateError"
    assert len(service.get_job_attempts(job.id)) == 1
    assert sink.envelopes == []


def test_a_4xx_reply_is_retried(service, make_tenant, sink):
    make_tenant("acme")
    sink.rcpt_replies = ["451 4.3.0 Mailbox busy, try again later"]
    job = service.queue_notification("email", "jane@example.test", "acme", subject="s", body="b")
    service.run_until_idle(settle=0.3)

    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED
    attempts = service.get_job_attempts(job.id)
    assert [a["success"] for a in attempts] == [False, True]
    assert attempts[0]["error_type"] == "SMTPTemporaryError"
    assert "451" in attempts[0]["error_message"]
    assert len(sink.envelopes) == 1


def test_a_5xx_reply_fails_at_once(service, make_tenant, sink):
    make_tenant("acme")
    sink.rcpt_replies = ["550 5.1.1 No such user"] * 5
    job = service.queue_notification("email", "nobody@example.test", "acme", subject="s",
                                     body="b")
    service.run_until_idle(settle=0.3)

    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    assert done.last_result.error_type == "SMTPPermanentError"
    assert done.last_result.metadata["retryable"] is False
    assert done.last_result.metadata["smtp_code"] == 550
    assert len(service.get_job_attempts(job.id)) == 1
    assert sink.envelopes == []


def test_a_5xx_reply_to_data_fails_at_once(service, make_tenant, sink):
    make_tenant("acme")
    sink.data_replies = ["554 5.6.0 Message rejected as spam"]
    job = service.queue_notification("email", "jane@example.test", "acme", subject="s", body="b")
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    assert len(service.get_job_attempts(job.id)) == 1


def test_no_server_is_a_retryable_connection_error(service, make_tenant, monkeypatch):
    make_tenant("acme")
    handler = service.handlers.get("email_handler")
    with refused_port() as port:
        monkeypatch.setitem(handler.config, "MAIL_PORT", port)
        job = service.queue_notification("email", "jane@example.test", "acme", subject="s",
                                         body="b", max_retries=1)
        service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    attempts = service.get_job_attempts(job.id)
    assert [a["error_type"] for a in attempts] == ["SMTPConnectionError"] * 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_with_the_configured_credentials(service, make_tenant, monkeypatch):
    from aiosmtpd.smtp import AuthResult

    from .conftest import SmtpSink

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"mailer" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    sink = SmtpSink()
    controller = start_smtp_server(sink, authenticator=authenticator, auth_require_tls=False,
                                   auth_required=True, auth_exclude_mechanism=["LOGIN"])
    try:
        make_tenant("acme")
        handler = service.handlers.get("email_handler")
        monkeypatch.setitem(handler.config, "MAIL_PORT", controller.port)
        monkeypatch.setitem(handler.config, "MAIL_USERNAME", "mailer")
        monkeypatch.setitem(handler.config, "MAIL_PASSWORD", "s3cret")
        good = service.queue_notification("email", "jane@example.test", "acme", body="b")
        service.run_until_idle(settle=0.3)
        assert service.get_job_by_id(good.id).status == JobStatus.COMPLETED
        assert len(sink.envelopes) == 1

        monkeypatch.setitem(handler.config, "MAIL_PASSWORD", "wrong")
        bad = service.queue_notification("email", "jane@example.test", "acme", body="b")
        service.run_until_idle(settle=0.3)
        done = service.get_job_by_id(bad.id)
        assert done.status == JobStatus.FAILED   # 535: retrying cannot fix credentials
        assert done.last_result.metadata["smtp_code"] == 535
        assert len(sink.envelopes) == 1
    finally:
        controller.stop()


# -- never twice ---------------------------------------------------------------------------

def test_a_retry_after_a_crash_past_the_send_does_not_send_again(service, make_tenant, sink,
                                                                 monkeypatch):
    """The first attempt sends and records, then dies before its result is written; the retry
    finds the record and reports the message as already sent."""
    make_tenant("acme")
    handler = service.handlers.get("email_handler")
    send_and_report = handler.execute

    def crash_after_sending(context):
        result = send_and_report(context)
        if context.attempt == 1:
            raise RuntimeError("worker died after the message was handed to SMTP")
        return result

    monkeypatch.setattr(handler, "execute", crash_after_sending)
    job = service.queue_notification("email", "jane@example.test", "acme", subject="s", body="b")
    service.run_until_idle(settle=0.3)

    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED
    assert done.last_result.result["status"] == "already_sent"
    assert done.last_result.result["sent_by_job"] == job.id
    assert [a["success"] for a in service.get_job_attempts(job.id)] == [False, True]
    assert len(sink.envelopes) == 1
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sent_messages_table)).scalar() == 1


def test_two_jobs_naming_one_message_send_it_once(service, make_tenant, sink):
    make_tenant("acme")
    first = service.queue_notification("email", "jane@example.test", "acme", body="b",
                                       message_id="welcome-jane")
    service.run_until_idle(settle=0.3)
    second = service.queue_notification("email", "jane@example.test", "acme", body="b",
                                        message_id="welcome-jane")
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(first.id).last_result.result["status"] == "sent"
    assert service.get_job_by_id(second.id).last_result.result["status"] == "already_sent"
    assert len(sink.envelopes) == 1
    # Another tenant's message of the same name is its own.
    make_tenant("globex")
    service.queue_notification("email", "joe@example.test", "globex", body="b",
                               message_id="welcome-jane")
    service.run_until_idle(settle=0.3)
    assert len(sink.envelopes) == 2


def test_the_default_sender_on_localhost_is_a_valid_sender_but_not_a_valid_recipient():
    from console import defaults
    from console.handlers.mail import check_address

    assert check_address(defaults.MAIL_DEFAULT_SENDER, "MAIL_DEFAULT_SENDER",
                         local_domain_ok=True) == "console@localhost"
    with pytest.raises(ValueError, match="is not an email address"):
        check_address("jane@localhost")
