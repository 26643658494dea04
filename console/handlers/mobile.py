"""The ``sms`` and ``push`` channels: validation here, delivery by a ``MessageProvider``.

SMS payload: ``recipient`` (a phone number, E.164 such as ``+14155550123``), ``body``.
Push payload: ``recipient`` (a device token), ``body``, optional ``subject`` or ``title``, and
``data`` (a dict passed to the app). Both take an optional ``message_id``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..jobs import JobExecutionContext, db
from .delivery import (
    Delivery,
    DeliveryError,
    NotificationHandler,
    check_message_id,
    config_value,
    log,
    masked,
    record_sent,
)
from .providers import (
    DatabaseProvider,
    MessageProvider,
    OutgoingMessage,
    ProviderError,
    load_provider,
)

_PHONE = re.compile(r"^\+?[1-9][0-9]{6,14}$")
SMS_MAX_LENGTH = 1600      # ten concatenated segments: what carriers commonly accept
PUSH_MAX_LENGTH = 4000


class ProviderNotificationHandler(NotificationHandler):
    """A channel whose sends go through a provider (``<CHANNEL>_PROVIDER``)."""

    provider_setting = ""
    recipient_kind = "recipient"   # what the attempt's log calls it

    def __init__(self, engine: Engine, config: Mapping[str, Any] | None = None,
                 provider: MessageProvider | None = None):
        super().__init__(engine, config)
        self.provider = provider or load_provider(
            config_value(self.config, self.provider_setting), engine, self.config,
            self.provider_setting)

    def build_message(self, context: JobExecutionContext, message_id: str) -> OutgoingMessage:
        payload = context.job.payload
        return OutgoingMessage(tenant_id=context.tenant_id, channel=self.channel,
                               recipient=payload["recipient"], body=str(payload.get("body", "")),
                               message_id=message_id, job_id=context.job.id)

    def recipient_for_log(self, payload: Mapping[str, Any]) -> str:
        return f"{self.recipient_kind} {masked(str(payload.get('recipient', '')))}"

    def _log_provider(self, context: JobExecutionContext) -> None:
        context.logger.info("handing it to the %s provider (%s)", self.channel,
                            type(self.provider).__name__)

    def deliver(self, context: JobExecutionContext, message_id: str) -> Delivery:
        message = self.build_message(context, message_id)
        self._log_provider(context)
        try:
            provider_id = self.provider.send(message)
        except ProviderError as exc:
            raise DeliveryError(str(exc), retryable=exc.retryable, error_type=exc.error_type,
                                retry_after=exc.retry_after) from exc
        return Delivery(provider_message_id=provider_id, details={"recipient": message.recipient})

    def send_and_record(self, context: JobExecutionContext, message_id: str) -> Delivery | None:
        if not isinstance(self.provider, DatabaseProvider):
            return super().send_and_record(context, message_id)
        # One transaction: the outbox row and its sent record are written together or not at
        # all; a second job naming the same message collides on the record and is rolled back.
        message = self.build_message(context, message_id)
        self._log_provider(context)
        try:
            with db.write_transaction(self.engine) as conn:
                provider_id = self.provider.store(conn, message)
                record_sent(conn, tenant_id=context.tenant_id, message_id=message_id,
                            channel=self.channel, job_id=context.job.id,
                            provider_message_id=provider_id)
        except IntegrityError:
            log.info("%s message %s of tenant %s is already in the outbox", self.channel,
                     message_id, context.tenant_id)
            return None
        return Delivery(provider_message_id=provider_id, details={"recipient": message.recipient})


class SmsHandler(ProviderNotificationHandler):
    handler_name = "sms_handler"
    channel = "sms"
    provider_setting = "SMS_PROVIDER"
    recipient_kind = "the number ending"
    description = "Sends a text message through SMS_PROVIDER (the outbox by default)."
    payload_hint = "needs 'recipient' (a phone number such as +14155550123) and 'body'"

    def validate_payload(self, payload: dict[str, Any]) -> bool:
        number = payload.get("recipient")
        if not isinstance(number, str) or not _PHONE.match(re.sub(r"[\s().-]", "", number)):
            raise ValueError(f"recipient {number!r} is not a phone number (E.164, e.g. "
                             "+14155550123)")
        _check_body(payload, SMS_MAX_LENGTH)
        check_message_id(payload)
        return True


class PushHandler(ProviderNotificationHandler):
    handler_name = "push_handler"
    channel = "push"
    provider_setting = "PUSH_PROVIDER"
    recipient_kind = "the device token ending"
    description = "Sends a push notification through PUSH_PROVIDER (the outbox by default)."
    payload_hint = ("needs 'recipient' (a device token) and 'body'; optional 'subject' or "
                    "'title', 'data' (dict)")

    def validate_payload(self, payload: dict[str, Any]) -> bool:
        token = payload.get("recipient")
        if not isinstance(token, str) or not token.strip() or len(token) > 320:
            raise ValueError("recipient must be a device token (at most 320 characters)")
        _check_body(payload, PUSH_MAX_LENGTH)
        title = payload.get("subject", payload.get("title"))
        if title is not None and (not isinstance(title, str) or len(title) > 500):
            raise ValueError("subject (the title) must be a string of at most 500 characters")
        if payload.get("data") is not None and not isinstance(payload["data"], dict):
            raise ValueError("data must be an object")
        check_message_id(payload)
        return True

    def build_message(self, context: JobExecutionContext, message_id: str) -> OutgoingMessage:
        payload = context.job.payload
        base = super().build_message(context, message_id)
        return OutgoingMessage(**{**base.__dict__,
                                  "subject": payload.get("subject", payload.get("title")),
                                  "data": payload.get("data") or {}})


def _check_body(payload: Mapping[str, Any], limit: int) -> None:
    body = payload.get("body")
    if not isinstance(body, str) or not body.strip():
        raise ValueError("body (the message text) is required")
    if len(body) > limit:
        raise ValueError(f"body is {len(body)} characters; at most {limit}")
