"""The alerting tables: rules operators keep, the alerts they raise, and the notification jobs
each alert queued. Migration 0007 creates exactly these (tests/alerts/test_schema.py).

An alert is one episode of a rule holding for one subject (the whole system, or one tenant):
it is ``firing`` from ``fired_at`` until the rule stops holding, then ``resolved`` for good; a
new episode is a new row, so the table is the history. ``open_key`` (rule id and subject) is set
only while the alert fires and is UNIQUE: two processes evaluating at once cannot open two
alerts for one episode — the second insert conflicts and does nothing. NULLs never collide (on
SQLite and PostgreSQL alike), so resolved alerts keep theirs NULL.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..jobs.models import Base, UTCDateTime


class AlertRule(Base):
    """A condition to watch. ``scope``: ``system`` (one figure for everything), ``each_tenant``
    (every tenant its own subject) or ``tenant`` (``tenant_id`` only). ``threshold`` is in the
    kind's unit (jobs, seconds, percent, points; see ``console/alerts/rules.py``)."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("tenants.id", ondelete="CASCADE"))
    threshold: Mapped[float] = mapped_column(Float)
    window_hours: Mapped[int | None] = mapped_column(Integer)      # rates over a window
    handler: Mapped[str | None] = mapped_column(String(100))       # handler_failure_rate
    limit_name: Mapped[str | None] = mapped_column(String(40))     # limit_usage
    cooldown_seconds: Mapped[int] = mapped_column(Integer)
    notify_operators: Mapped[bool] = mapped_column(Boolean)
    notify_tenant: Mapped[bool] = mapped_column(Boolean)
    enabled: Mapped[bool] = mapped_column(Boolean)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The defaults seeded once (console/alerts/store.py): a rule is never deleted, only
    # disabled, so a seeded rule is never seeded again.
    seed_key: Mapped[str | None] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(80))


class Alert(Base):
    """One episode of a rule holding for one subject; see the module docstring.

    ``notice_due`` is the notification this alert still owes (``fired`` or ``resolved``):
    whoever evaluates next sends it, so a crash between a change and its message loses nothing.
    ``held_until`` says until when a ``fired`` notice waits for the rule's cool-down or mute.
    """

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule_id: Mapped[int] = mapped_column(Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"))
    tenant_id: Mapped[str | None] = mapped_column(String(64))   # the subject; None: the system
    subject_key: Mapped[str] = mapped_column(String(80))
    open_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The figure when it fired, and its latest value since ``checked_at`` (written when the
    # figure changes, not at every evaluation: a steady alert costs no write a minute).
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[float] = mapped_column(Float)
    last_value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    recommendation: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)
    notice_due: Mapped[str | None] = mapped_column(String(16))
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolve_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The Alerts screen: newest first, all or by state / tenant / rule (keyset pages).
        Index("ix_alerts_fired", "fired_at", "id"),
        Index("ix_alerts_state_fired", "state", "fired_at", "id"),
        Index("ix_alerts_tenant_fired", "tenant_id", "fired_at", "id"),
        Index("ix_alerts_rule_subject_fired", "rule_id", "subject_key", "fired_at"),
        # Notifications still owed: a handful of rows among the whole history.
        Index("ix_alerts_notice_due", "notice_due"),
    )


class AlertNotification(Base):
    """A notification job an alert queued: its history, with a link to the job."""

    __tablename__ = "alert_notifications"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(36), ForeignKey("alerts.id", ondelete="CASCADE"))
    transition: Mapped[str] = mapped_column(String(16))      # fired, resolved
    channel: Mapped[str] = mapped_column(String(16))         # email, webhook
    audience: Mapped[str] = mapped_column(String(16))        # operators, tenant
    recipient: Mapped[str] = mapped_column(String(500))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_alert_notifications_alert", "alert_id", "queued_at"),)


alert_rules_table = AlertRule.__table__
alerts_table = Alert.__table__
alert_notifications_table = AlertNotification.__table__
