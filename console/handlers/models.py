"""The notification handlers' tables: what was sent (exactly once) and the built-in outbox.

Both sit on the engine's ``Base`` so that one metadata describes the whole schema; the migration
is ``0002_notifications``. ``job_id`` has no foreign key: these rows outlive pruned jobs.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..jobs.models import Base, JSONText, UTCDateTime


class SentMessage(Base):
    """One row per message a notification handler delivered: the guard against sending twice.

    ``message_id`` is the payload's ``message_id`` or else the job id, so every attempt of one
    job (and every job that names the same message) shares it.
    """

    __tablename__ = "sent_messages"

    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"),
                                           primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(36))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_sent_messages_job", "job_id"),
        Index("ix_sent_messages_sent_at", "sent_at"),   # pruning by age
    )


class OutboxMessage(Base):
    """An SMS or push message kept by the built-in ``outbox`` provider instead of being sent."""

    __tablename__ = "outbox_messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(500))   # a push message's title
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSONText)       # a push message's data, extras
    job_id: Mapped[str | None] = mapped_column(String(36))
    message_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The console's outbox: a tenant's messages, newest first; all messages, newest first.
        Index("ix_outbox_tenant_created", "tenant_id", "created_at"),
        Index("ix_outbox_created", "created_at"),
    )


sent_messages_table = SentMessage.__table__
outbox_messages_table = OutboxMessage.__table__
