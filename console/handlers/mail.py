"""The ``email`` channel: SMTP (STARTTLS or SSL, optional login) with sandboxed Jinja templates.

Settings (``console/defaults.py``): ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS`` (STARTTLS),
``MAIL_USE_SSL``, ``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_DEFAULT_SENDER``,
``MAIL_TIMEOUT_SECONDS``, ``MAIL_CA_FILE`` (CA certificates to trust instead of the system's).

Payload: ``recipient`` (an address, ``"Name <a@b.example>"`` allowed), ``subject``, ``body``
(plain text) and/or ``html``, optional ``variables`` (a dict the three are rendered with),
``reply_to`` and ``message_id``.

Templates render in render processes (``rendering.py``), bounded by ``TEMPLATE_CPU_SECONDS``,
``TEMPLATE_MAX_OUTPUT_BYTES`` and ``TEMPLATE_MEMORY_BYTES``. The SMTP conversation ends by the
job's deadline: each blocking call waits at most the time left (and ``MAIL_TIMEOUT_SECONDS``),
and a watchdog shuts the connection at the deadline, so a server that answers a byte at a time
cannot keep the thread past it.

Failures: no connection, a timeout, a dropped connection or a 4xx reply are retried; a 5xx reply,
a refused recipient, a template that does not render or passes a bound, or a TLS certificate
that does not verify end the job at once.
"""
from __future__ import annotations

import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Engine

from ..jobs import JobExecutionContext
from .delivery import Delivery, DeliveryError, NotificationHandler, check_message_id, config_value
from .rendering import (
    RenderUnavailable,
    TemplateFailed,
    TemplateLimitError,
    TemplateLimits,
    TemplateRenderer,
)

_TEXT_FIELDS = ("subject", "body", "html")
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")


def check_address(value: Any, field: str = "recipient", local_domain_ok: bool = False) -> str:
    """The bare address of ``value`` (``"Jane <jane@x.example>"`` → ``jane@x.example``);
    ``ValueError`` naming ``field`` when it is not one. Recipients need a dotted domain (a
    missing one is a typo far more often than a local mailbox); the configured sender may be
    local (``console@localhost``, the default)."""
    if not isinstance(value, str) or "\n" in value or "\r" in value:
        raise ValueError(f"{field} must be an email address")
    _, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    dotted = "." in domain.strip(".") or local_domain_ok
    if not at or not local or not domain or " " in address or not dotted:
        raise ValueError(f"{field} {value!r} is not an email address")
    return address


class EmailHandler(NotificationHandler):
    """Sends ``queue_notification("email", …)`` jobs over SMTP."""

    handler_name = "email_handler"
    channel = "email"
    description = "Sends an email over SMTP (subject and bodies rendered with sandboxed Jinja)."
    payload_hint = ("needs 'recipient' (an email address) and 'body' or 'html'; optional "
                    "'subject', 'variables' (dict), 'reply_to', 'message_id'")

    def __init__(self, engine: Engine, config: Mapping[str, Any] | None = None):
        super().__init__(engine, config)
        # Only parses at queue time (cheap, bounded by the payload's size); renders happen in
        # the renderer's processes.
        self._parser = SandboxedEnvironment(undefined=StrictUndefined)
        self.renderer = TemplateRenderer(TemplateLimits.from_config(self.config))

    def setting(self, key: str) -> Any:
        return config_value(self.config, key)

    # -- queue time -----------------------------------------------------------------------

    def validate_payload(self, payload: dict[str, Any]) -> bool:
        check_address(payload.get("recipient"))
        if payload.get("reply_to") is not None:
            check_address(payload["reply_to"], "reply_to")
        check_message_id(payload)
        if not payload.get("body") and not payload.get("html"):
            raise ValueError("body or html is required")
        for name in _TEXT_FIELDS:
            if payload.get(name) is not None and not isinstance(payload[name], str):
                raise ValueError(f"{name} must be a string (a Jinja template)")
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise ValueError("variables must be an object")
        try:   # a template that cannot even be parsed never gets queued
            for name in _TEXT_FIELDS:
                if payload.get(name):
                    self._parser.parse(payload[name])
        except TemplateError as exc:
            raise ValueError(f"{name} is not a valid template: {exc}") from None
        return True

    # -- sending --------------------------------------------------------------------------

    def recipient_for_log(self, payload: Mapping[str, Any]) -> str:
        address = parseaddr(str(payload.get("recipient", "")))[1]
        return f"an address at {address.rpartition('@')[2] or 'no domain'}"

    def deliver(self, context: JobExecutionContext, message_id: str) -> Delivery:
        message = self.build_message(context.job.payload, message_id, context)
        recipient = parseaddr(message["To"])[1]
        # The server's name is the operators' business, not the tenant's: only how it is used.
        context.logger.info(
            "rendered the message; handing it to the SMTP server (%s%s)",
            "TLS" if self.setting("MAIL_USE_SSL") else
            "STARTTLS" if self.setting("MAIL_USE_TLS") else "no TLS",
            ", signing in" if self.setting("MAIL_USERNAME") else "")
        self._send(message, recipient, context.seconds_left())
        return Delivery(provider_message_id=message["Message-ID"],
                        details={"recipient": recipient, "subject": message["Subject"]})

    def build_message(self, payload: Mapping[str, Any], message_id: str,
                      context: JobExecutionContext | None = None) -> EmailMessage:
        """The rendered message with its headers; ``DeliveryError`` if it cannot be (final,
        but for a render cut short by the job's deadline or a starved machine)."""
        rendered = self.render(payload, context)
        sender = self.setting("MAIL_DEFAULT_SENDER")
        if isinstance(sender, (tuple, list)):   # Flask-Mail's ("Name", "address") form
            sender = formataddr((sender[0], sender[1]))
        try:
            sender_address = check_address(sender, "MAIL_DEFAULT_SENDER", local_domain_ok=True)
        except ValueError as exc:
            raise DeliveryError(str(exc), retryable=False, error_type="MailConfigError") from exc
        message = EmailMessage()
        message["From"] = sender
        message["To"] = payload["recipient"]
        # A header cannot span lines; a rendered subject with line breaks would be refused.
        message["Subject"] = " ".join(rendered.get("subject", "").split())
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        domain = sender_address.rpartition("@")[2]
        message["Message-ID"] = f"<{_MESSAGE_ID_UNSAFE.sub('-', message_id)}@{domain}>"
        if payload.get("reply_to"):
            message["Reply-To"] = payload["reply_to"]
        if "body" in rendered:
            message.set_content(rendered["body"])
            if "html" in rendered:
                message.add_alternative(rendered["html"], subtype="html")
        else:
            message.set_content(rendered["html"], subtype="html")
        return message

    def render(self, payload: Mapping[str, Any],
               context: JobExecutionContext | None = None) -> dict[str, str]:
        """``subject``, ``body`` and ``html`` rendered with the payload's ``variables`` (only
        ``html`` autoescaped: escaping plain text would show "&amp;" to readers), within the
        template bounds and the job's deadline."""
        templates = [(name, payload[name], name == "html")
                     for name in _TEXT_FIELDS if payload.get(name)]
        left = context.seconds_left() if context is not None else None
        try:
            return self.renderer.render(
                templates, payload.get("variables") or {},
                deadline=None if left is None else time.monotonic() + left,
                cancelled=(lambda: context.cancelled) if context is not None else lambda: False)
        except TemplateLimitError as exc:
            raise DeliveryError(str(exc), retryable=False, error_type="TemplateLimitExceeded",
                                details={"limit": exc.setting}) from exc
        except TemplateFailed as exc:
            raise DeliveryError(f"the message's template could not be rendered: {exc}",
                                retryable=False, error_type="TemplateError") from exc
        except RenderUnavailable as exc:
            raise DeliveryError(f"the message's template could not be rendered: {exc}",
                                retryable=True, error_type="TemplateRenderUnavailable") from exc

    def _send(self, message: EmailMessage, recipient: str, seconds_left: float | None) -> None:
        """Hand the message to the SMTP server, by the job's deadline (``seconds_left``)."""
        host = self.setting("MAIL_SERVER")
        port = int(self.setting("MAIL_PORT") or 0)
        timeout = float(self.setting("MAIL_TIMEOUT_SECONDS") or 30)
        if seconds_left is not None:
            if seconds_left <= 0:
                raise DeliveryError("the job's deadline passed before the SMTP server was "
                                    "reached", retryable=True, error_type="SMTPTimeout")
            timeout = min(timeout, seconds_left)
        tls_context = ssl.create_default_context(cafile=self.setting("MAIL_CA_FILE") or None)
        watchdog = _Watchdog(seconds_left)
        try:
            if self.setting("MAIL_USE_SSL"):
                smtp = smtplib.SMTP_SSL(timeout=timeout, context=tls_context)
            else:
                smtp = smtplib.SMTP(timeout=timeout)
            watchdog.watch(smtp)    # before connecting: the greeting is read while connecting
            # What the constructor sets when given the host: the name TLS checks the
            # certificate against (connect() does not set it).
            smtp._host = host
            try:
                smtp.connect(host, port)
                if self.setting("MAIL_USE_TLS") and not self.setting("MAIL_USE_SSL"):
                    smtp.starttls(context=tls_context)
                if self.setting("MAIL_USERNAME"):
                    smtp.login(self.setting("MAIL_USERNAME"), self.setting("MAIL_PASSWORD") or "")
                smtp.send_message(message, to_addrs=[recipient])
            finally:
                try:
                    smtp.quit()
                except Exception:   # the message was handed over (or not) before QUIT
                    smtp.close()
        except (OSError, smtplib.SMTPException) as exc:
            if watchdog.fired:
                raise DeliveryError(f"SMTP server {host}:{port} had not finished by the job's "
                                    f"deadline ({seconds_left:g} s); the connection was closed",
                                    retryable=True, error_type="SMTPTimeout") from exc
            raise _smtp_error(exc, host, port, timeout) from exc
        finally:
            watchdog.cancel()


class _Watchdog:
    """Shuts the SMTP connection at the job's deadline: a socket timeout bounds one read, and a
    server that answers a byte at a time would otherwise hold the thread past the deadline."""

    def __init__(self, seconds: float | None):
        self.fired = False
        self._smtp: smtplib.SMTP | None = None
        self._timer = threading.Timer(seconds, self._fire) if seconds is not None else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def watch(self, smtp: smtplib.SMTP) -> None:
        self._smtp = smtp
        if self.fired:      # the deadline passed while connecting
            self._fire()

    def _fire(self) -> None:
        self.fired = True
        sock = getattr(self._smtp, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)     # wakes the blocked read at once
            except OSError:
                pass

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _smtp_error(exc: BaseException, host: str, port: int, timeout: float) -> DeliveryError:
    """The ``DeliveryError`` for a failed SMTP conversation: retried or not, by its cause."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        reply = "; ".join(f"{addr}: {code} {_text(msg)}"
                          for addr, (code, msg) in exc.recipients.items())
        return _reply_error(min(codes) if codes else 550, f"recipient refused: {reply}")
    if isinstance(exc, smtplib.SMTPResponseException):
        # Sender refused, DATA refused, login refused, a greeting that is not 220 …
        return _reply_error(exc.smtp_code, f"{type(exc).__name__}: {exc.smtp_code} "
                                           f"{_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"the SMTP server does not support what MAIL_* asks for: {exc}",
                             retryable=False, error_type="MailConfigError")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"the SMTP server's certificate did not verify: {exc}",
                             retryable=False, error_type="SMTPCertificateError")
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"SMTP server {host}:{port} timed out after {timeout:g} s",
                             retryable=True, error_type="SMTPTimeout")
    return DeliveryError(f"could not talk to SMTP server {host}:{port}: "
                         f"{type(exc).__name__}: {exc}",
                         retryable=True, error_type="SMTPConnectionError")


def _reply_error(code: int, message: str) -> DeliveryError:
    """4xx: the server asks us to try again later. 5xx (and anything odd): it never will."""
    temporary = 400 <= int(code) < 500
    return DeliveryError(message, retryable=temporary,
                         error_type="SMTPTemporaryError" if temporary else "SMTPPermanentError",
                         details={"smtp_code": int(code)})


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
