"""The handlers' tables: what was sent (exactly once), the built-in outbox, generated reports.

They sit on the engine's ``Base`` so that one metadata describes the whole schema; migrations
``0002_notifications`` and ``0005_reports``. ``job_id`` has no foreign key: these rows outlive
pruned jobs.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
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
        # The console's outbox, newest first (keyset on created_at, id): all messages, a
        # tenant's, a channel's, a tenant's on one channel. Cleanup by age uses the tenant's.
        Index("ix_outbox_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_outbox_created", "created_at", "id"),
        Index("ix_outbox_channel_created", "channel", "created_at", "id"),
        Index("ix_outbox_tenant_channel_created", "tenant_id", "channel", "created_at", "id"),
        # One row per message: the webhook catch-all keeps a re-sent webhook once.
        Index("uq_outbox_tenant_message", "tenant_id", "message_id", unique=True),
    )


class Report(Base):
    """A generated report (``report_generator``): its CSV text and what it covers.

    ``range_start`` … ``range_end`` is half-open (whole UTC days). One report per job and range:
    a retried attempt replaces its report instead of adding another.
    """

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    job_id: Mapped[str | None] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(200))
    report_type: Mapped[str] = mapped_column(String(32))
    range_start: Mapped[datetime] = mapped_column(UTCDateTime)
    range_end: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    content: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        # The console's list, newest first (keyset on created_at, id), all or one tenant's.
        Index("ix_reports_created", "created_at", "id"),
        Index("ix_reports_tenant_created", "tenant_id", "created_at", "id"),
        Index("uq_reports_job_range", "job_id", "range_start", "range_end", unique=True),
    )


sent_messages_table = SentMessage.__table__
outbox_messages_table = OutboxMessage.__table__
reports_table = Report.__table__
