"""The email channel over TLS against real aiosmtpd servers on 127.0.0.1: STARTTLS (with a
login that the server only allows once the connection is encrypted) and implicit SSL, each
trusting the server's self-signed certificate through ``MAIL_CA_FILE``; an untrusted
certificate fails at once."""
from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from console.jobs import JobStatus
from tests.support import start_smtp_server

from .conftest import SmtpSink

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command to make a certificate")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert file, key file)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def server_context(certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def start(controller_options):
    sink = SmtpSink()
    controller = start_smtp_server(sink, **controller_options)
    controller.sink = sink
    return controller


def configure(monkeypatch, service, port, **settings):
    handler = service.handlers.get("email_handler")
    for key, value in {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port,
                       "MAIL_DEFAULT_SENDER": "console@example.test",
                       "MAIL_TIMEOUT_SECONDS": 5, **settings}.items():
        monkeypatch.setitem(handler.config, key, value)


def send(service):
    job = service.queue_notification("email", "jane@example.test", "acme", subject="Hi",
                                     body="Hello over TLS")
    service.run_until_idle(settle=0.3)
    return service.get_job_by_id(job.id)


def test_starttls_then_login(service, make_tenant, monkeypatch, certificate, server_context):
    from aiosmtpd.smtp import AuthResult

    seen_tls = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen_tls.append(session.ssl is not None)
        ok = auth_data.login == b"mailer" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    controller = start({"tls_context": server_context, "require_starttls": True,
                        "authenticator": authenticator, "auth_require_tls": True,
                        "auth_required": True})
    try:
        make_tenant("acme")
        configure(monkeypatch, service, controller.port, MAIL_USE_TLS=True,
                  MAIL_CA_FILE=str(certificate[0]), MAIL_USERNAME="mailer",
                  MAIL_PASSWORD="s3cret")
        done = send(service)
        assert done.status is JobStatus.COMPLETED, done.last_result
        [message] = controller.sink.messages
        assert message["Subject"] == "Hi"
        assert message.get_content().strip() == "Hello over TLS"
        assert seen_tls == [True]   # the password crossed an encrypted connection only
    finally:
        controller.stop()


def test_implicit_ssl(service, make_tenant, monkeypatch, certificate, server_context):
    controller = start({"ssl_context": server_context})
    try:
        make_tenant("acme")
        configure(monkeypatch, service, controller.port, MAIL_USE_SSL=True,
                  MAIL_CA_FILE=str(certificate[0]))
        done = send(service)
        assert done.status is JobStatus.COMPLETED, done.last_result
        assert [m["To"] for m in controller.sink.messages] == ["jane@example.test"]
    finally:
        controller.stop()


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_an_untrusted_certificate_fails_without_retrying(service, make_tenant, monkeypatch,
                                                         server_context, mode):
    options = ({"tls_context": server_context, "require_starttls": True} if mode == "starttls"
               else {"ssl_context": server_context})
    controller = start(options)
    try:
        make_tenant("acme")
        # No MAIL_CA_FILE: the system's CAs do not know this self-signed certificate.
        configure(monkeypatch, service, controller.port, MAIL_USE_TLS=mode == "starttls",
                  MAIL_USE_SSL=mode == "ssl")
        done = send(service)
        assert done.status is JobStatus.FAILED and done.total_attempts == 1
        assert done.last_result.error_type == "SMTPCertificateError"
        assert controller.sink.envelopes == []
    finally:
        controller.stop()


def test_starttls_required_by_the_server_but_not_configured_is_refused(
        service, make_tenant, monkeypatch, server_context):
    controller = start({"tls_context": server_context, "require_starttls": True})
    try:
        make_tenant("acme")
        configure(monkeypatch, service, controller.port)   # plain SMTP
        done = send(service)
        # 530 "Must issue a STARTTLS command first": a 5xx, so retrying cannot help.
        assert done.status is JobStatus.FAILED and done.total_attempts == 1
        assert done.last_result.metadata["smtp_code"] == 530
        assert controller.sink.envelopes == []
    finally:
        controller.stop()
