"""What every notification handler shares: the message id, the sent-message record that keeps a
message from going out twice, and turning a delivery failure into a retryable or final result.

A handler checks ``sent_messages`` before it sends and records the send right after it. The one
window left is a crash between the provider accepting a message and that record's commit: then
the retry sends again (at least once). Providers that store into this database (the outbox)
write the message and its record in one transaction, which closes the window (exactly once).
Email carries the message id in its ``Message-ID`` header and webhooks in their envelope's
``id``, so receivers can drop the rare duplicate.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from .. import defaults
from ..jobs import JobExecutionContext, JobExecutionResult, JobHandler, SystemJob, db
from .models import sent_messages_table

log = logging.getLogger(__name__)
UTC = timezone.utc
MAX_MESSAGE_ID_LENGTH = 200


class DeliveryError(Exception):
    """A send that failed. ``retryable=False`` ends the job at once (a 5xx reply, a bad address);
    ``retry_after`` (seconds) asks the runner to wait at least that long before the next try."""

    def __init__(self, message: str, *, retryable: bool, error_type: str,
                 retry_after: float | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.error_type = error_type
        self.retry_after = retry_after
        self.details = details or {}


@dataclass
class Delivery:
    """A successful send: the provider's id for it and what the job's result should show."""

    provider_message_id: str | None
    details: dict[str, Any] = field(default_factory=dict)


def message_id_for(job: SystemJob) -> str:
    """``payload["message_id"]`` when the caller named the message, else the job id: every
    attempt of one job shares it."""
    given = job.payload.get("message_id")
    return str(given) if given else job.id


def check_message_id(payload: Mapping[str, Any]) -> None:
    """Queue-time check of an optional ``message_id``; raises ``ValueError`` naming the field."""
    given = payload.get("message_id")
    if given is None:
        return
    if not isinstance(given, str) or not given.strip() or len(given) > MAX_MESSAGE_ID_LENGTH:
        raise ValueError(f"message_id must be a non-empty string of at most "
                         f"{MAX_MESSAGE_ID_LENGTH} characters")


def find_sent(conn: Connection, tenant_id: str, message_id: str):
    """The sent-message row for this tenant's message, or None."""
    t = sent_messages_table.c
    return conn.execute(select(sent_messages_table)
                        .where(t.tenant_id == tenant_id, t.message_id == message_id)).first()


def record_sent(conn: Connection, *, tenant_id: str, message_id: str, channel: str,
                job_id: str | None, provider_message_id: str | None) -> None:
    """Insert the sent-message row; raises ``IntegrityError`` if the message was recorded."""
    conn.execute(sent_messages_table.insert().values(
        tenant_id=tenant_id, message_id=message_id, channel=channel, job_id=job_id,
        sent_at=datetime.now(UTC), provider_message_id=provider_message_id))


def masked(text: str, shown: int = 2) -> str:
    """The last ``shown`` characters of ``text``, the rest elided (a phone number, a token)."""
    return f"…{text[-shown:]}" if len(text) > shown else "…"


def config_value(config: Mapping[str, Any] | None, key: str) -> Any:
    """A setting from the app's config, else its documented default."""
    if config is not None and key in config:
        return config[key]
    return getattr(defaults, key, None)


class NotificationHandler(JobHandler):
    """Base of the channel handlers: never sends a ``message_id`` twice.

    Subclasses set ``channel`` and implement ``deliver(context, message_id) -> Delivery``, raising
    ``DeliveryError`` for a failure.
    """

    channel: str = ""
    supported_job_types = {"notification"}

    def __init__(self, engine: Engine, config: Mapping[str, Any] | None = None):
        self.engine = engine
        self.config = dict(config or {})

    def deliver(self, context: JobExecutionContext, message_id: str) -> Delivery:
        raise NotImplementedError

    def recipient_for_log(self, payload: Mapping[str, Any]) -> str:
        """Whom the message goes to, as the attempt's log says it: enough to tell messages
        apart, never a secret (a device token, a URL's path or query) nor the whole address."""
        return "its recipient"

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        job = context.job
        message_id = message_id_for(job)
        # The attempt's log is the tenant's to read: what was tried and how it ended, never
        # the payload's body, headers or credentials.
        context.logger.info("sending %s message %s to %s", self.channel, message_id,
                            self.recipient_for_log(job.payload))
        with self.engine.connect() as conn:
            prior = find_sent(conn, job.tenant_id, message_id)
        if prior is not None:
            return self._already_sent(context, message_id, prior, started)
        try:
            delivery = self.send_and_record(context, message_id)
        except DeliveryError as exc:
            context.logger.warning(
                "not sent (%s): %s%s", exc.error_type,
                "not retryable" if not exc.retryable else "it will be tried again"
                if job.current_retries < job.max_retries else "no retries left",
                f"; the receiver asked to wait {exc.retry_after:g} s"
                if exc.retry_after is not None else "")
            metadata: dict[str, Any] = {"retryable": exc.retryable, "channel": self.channel,
                                        "message_id": message_id, **exc.details}
            if exc.retry_after is not None:
                metadata["retry_after"] = exc.retry_after
            return JobExecutionResult(
                success=False, executed_at=context.actual_start_time,
                execution_time=timedelta(seconds=time.monotonic() - started),
                error_message=str(exc), error_type=exc.error_type, metadata=metadata)
        if delivery is None:   # another job recorded the same message first (see send_and_record)
            with self.engine.connect() as conn:
                prior = find_sent(conn, job.tenant_id, message_id)
            return self._already_sent(context, message_id, prior, started)
        context.logger.info("sent in %.0f ms; provider's id %s",
                            (time.monotonic() - started) * 1000,
                            delivery.provider_message_id or "none")
        return JobExecutionResult(
            success=True, executed_at=context.actual_start_time,
            execution_time=timedelta(seconds=time.monotonic() - started),
            result={"status": "sent", "channel": self.channel, "message_id": message_id,
                    "provider_message_id": delivery.provider_message_id, **delivery.details})

    def send_and_record(self, context: JobExecutionContext, message_id: str) -> Delivery | None:
        """Send, then record the send. Returns None when the message turned out to be recorded
        already (two jobs naming one message ran at once: a duplicate went out, and is logged)."""
        delivery = self.deliver(context, message_id)
        try:
            with db.write_transaction(self.engine) as conn:
                record_sent(conn, tenant_id=context.tenant_id, message_id=message_id,
                            channel=self.channel, job_id=context.job.id,
                            provider_message_id=delivery.provider_message_id)
        except IntegrityError:
            log.warning("%s message %s of tenant %s was sent by two jobs at once (job %s was "
                        "second)", self.channel, message_id, context.tenant_id, context.job.id)
            return None
        return delivery

    def _already_sent(self, context, message_id, prior, started) -> JobExecutionResult:
        context.logger.info("message %s was sent before (by job %s): not sending it again",
                            message_id, prior.job_id if prior else "unknown")
        log.info("%s message %s of tenant %s was sent before (job %s); not sending it again",
                 self.channel, message_id, context.tenant_id, prior.job_id if prior else None)
        return JobExecutionResult(
            success=True, executed_at=context.actual_start_time,
            execution_time=timedelta(seconds=time.monotonic() - started),
            result={"status": "already_sent", "channel": self.channel, "message_id": message_id,
                    "sent_at": prior.sent_at.isoformat() if prior else None,
                    "sent_by_job": prior.job_id if prior else None,
                    "provider_message_id": prior.provider_message_id if prior else None})
