"""SMS and push providers: the one class to implement, and the built-in ``outbox``.

``SMS_PROVIDER`` / ``PUSH_PROVIDER`` name the provider: ``"outbox"`` (the default: messages are
stored in the ``outbox_messages`` table, shown by the console, never sent), or
``"package.module:ClassName"``: a ``MessageProvider`` subclass, called with the app's config
mapping. See ``README.md`` in this folder for a worked example.
"""
from __future__ import annotations

import abc
import importlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Connection, Engine

from ..jobs import db
from .models import outbox_messages_table


@dataclass(frozen=True)
class OutgoingMessage:
    """One SMS or push message, as a provider receives it."""

    tenant_id: str
    channel: str                 # "sms" or "push"
    recipient: str               # a phone number (E.164) or a device token
    body: str
    message_id: str              # stable across retries: pass it on as an idempotency key
    job_id: str | None = None
    subject: str | None = None   # a push message's title
    data: dict[str, Any] = field(default_factory=dict)   # a push message's custom data


class ProviderError(Exception):
    """Raise from ``send``: ``retryable=False`` for what a retry cannot fix (a bad number, a
    rejected token); ``retry_after`` (seconds) when the provider asks to slow down."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None,
                 error_type: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.error_type = error_type or type(self).__name__


class MessageProvider(abc.ABC):
    """Implement ``send``; the handler does validation, the never-twice record and retries."""

    @abc.abstractmethod
    def send(self, message: OutgoingMessage) -> str:
        """Deliver ``message``; return the provider's id for it. Raise ``ProviderError``."""


class DatabaseProvider(MessageProvider):
    """A provider that writes into the console's database: the handler calls ``store`` in the
    transaction that records the send, so a message is stored exactly once."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @abc.abstractmethod
    def store(self, conn: Connection, message: OutgoingMessage) -> str:
        ...

    def send(self, message: OutgoingMessage) -> str:
        with db.write_transaction(self.engine) as conn:
            return self.store(conn, message)


class OutboxProvider(DatabaseProvider):
    """Keeps every message in ``outbox_messages``: for development, demos and tests."""

    def store(self, conn: Connection, message: OutgoingMessage) -> str:
        outbox_id = str(uuid.uuid4())
        conn.execute(outbox_messages_table.insert().values(
            id=outbox_id, tenant_id=message.tenant_id, channel=message.channel,
            recipient=message.recipient, subject=message.subject, body=message.body,
            data=message.data or None, job_id=message.job_id, message_id=message.message_id,
            created_at=datetime.now(timezone.utc)))
        return f"outbox:{outbox_id}"


def load_provider(spec: str | MessageProvider | None, engine: Engine,
                  config: Mapping[str, Any], setting: str) -> MessageProvider:
    """The provider a ``SMS_PROVIDER``-style setting names; a clear error naming the setting
    when it cannot be loaded."""
    if isinstance(spec, MessageProvider):
        return spec
    if spec in (None, "", "outbox"):
        return OutboxProvider(engine)
    module_name, _, attribute = str(spec).partition(":")
    try:
        if not attribute:
            raise ValueError("expected 'outbox' or 'package.module:ClassName'")
        cls = getattr(importlib.import_module(module_name), attribute)
        if not (isinstance(cls, type) and issubclass(cls, MessageProvider)):
            raise TypeError(f"{attribute} is not a MessageProvider subclass")
        return cls(config)
    except Exception as exc:
        raise RuntimeError(f"{setting}={spec!r} could not be loaded: {exc}") from exc
