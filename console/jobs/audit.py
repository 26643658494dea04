"""The audit trail: who changed what, when — one append-only row per change made by a person
(a console user) or a token (the API), and per sign-in (failed ones too).

An entry is written by the change's own transaction (``record`` on that transaction's
connection or session; the queue path adds ``entry_row`` to its hand-written transaction), so
a change and its entry are stored together or not at all: a refused change leaves no entry.
Both doors build an ``Actor`` and hand it down; the engine's verbs take it as ``actor=`` and
write nothing without one (the runner, the CLI, the demo and the engine's own schedules).

Entries are never updated; the maintenance job ``prune_audit_entries`` deletes those older than
``AUDIT_RETENTION_DAYS``.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Select, delete, select

from .models import audit_table
from .records import new_job_id

UTC = timezone.utc

# The closed list of actions, each with how people read it (the screen's filter and rows).
ACTIONS: dict[str, str] = {
    "sign_in": "signed in",
    "sign_in_failed": "failed to sign in",
    "job_created": "created a job",
    "jobs_created": "created a batch of jobs",
    "job_retried": "retried a job",
    "job_cancelled": "cancelled a job",
    "jobs_retried": "retried jobs in bulk",
    "jobs_cancelled": "cancelled jobs in bulk",
    "report_generated": "generated a report",
    "tenant_added": "added a tenant",
    "tenant_limits_changed": "changed a tenant's limits",
    "alert_contacts_changed": "changed a tenant's alert contacts",
    "user_added": "added a user",
    "user_role_changed": "changed a user's role",
    "user_tenants_changed": "changed the tenants a user sees",
    "user_password_reset": "reset a user's password",
    "user_disabled": "disabled a user",
    "user_enabled": "enabled a user",
    "sessions_ended": "signed a user out everywhere",
    "token_created": "created an API token",
    "token_revoked": "revoked an API token",
    "alert_rule_created": "created an alert rule",
    "alert_rule_changed": "changed an alert rule",
    "alert_rule_enabled": "enabled an alert rule",
    "alert_rule_disabled": "disabled an alert rule",
    "alert_rule_muted": "muted an alert rule",
    "alert_rule_unmuted": "unmuted an alert rule",
    "all_paused": "paused everything (maintenance)",
    "all_resumed": "resumed everything",
    "tenant_paused": "paused a tenant",
    "tenant_resumed": "resumed a tenant",
    "handler_paused": "paused a handler",
    "handler_resumed": "resumed a handler",
    "job_paused": "paused a job",
    "job_resumed": "resumed a job",
    "job_run_now": "ran a job now",
    "handler_rate_limit_set": "set a handler's rate limit",
    "handler_rate_limit_removed": "removed a handler's rate limit",
    "webhook_subscribed": "subscribed a URL to a tenant's events",
    "webhook_unsubscribed": "removed a tenant's event webhook",
}
ACTOR_KINDS = ("user", "token", "command")
# A bulk action lists the ids it changed up to this many (a ticked selection); past it, the
# entry keeps the filter and the count, so that one entry stays small however many jobs.
MAX_LISTED_JOB_IDS = 200


@dataclass(frozen=True)
class Actor:
    """Who made a change: a console user (``kind`` "user", their user name), an API token
    (``kind`` "token", its prefix) or someone at the machine's command line (``kind``
    "command", the operating system's user name), from ``address`` (the client's, as the door
    sees it; None on the command line)."""

    kind: str
    name: str
    address: str | None = None

    def __post_init__(self):
        if self.kind not in ACTOR_KINDS:
            raise ValueError(f"actor kind must be one of {', '.join(ACTOR_KINDS)}")


def entry_row(actor: Actor, action: str, *, tenant_id: str | None = None,
              target_type: str | None = None, target_id: Any = None,
              job_ids: Iterable[str] | None = None, job_count: int | None = None,
              before: dict | None = None, after: dict | None = None,
              details: dict | None = None, now: datetime | None = None) -> dict[str, Any]:
    """One entry's row (every column of ``audit_table``).

    :raise ValueError: ``action`` is not one of ``ACTIONS`` (a programming error).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to ACTIONS")
    ids = list(job_ids) if job_ids is not None else None
    if ids is not None and job_count is None:
        job_count = len(ids)
    if ids is not None and len(ids) > MAX_LISTED_JOB_IDS:
        ids = None
    return {"id": new_job_id(), "created_at": now or datetime.now(UTC),
            "actor_kind": actor.kind, "actor_name": actor.name[:100],
            "actor_address": (actor.address or None) and actor.address[:64],
            "action": action, "tenant_id": tenant_id, "target_type": target_type,
            "target_id": None if target_id is None else str(target_id)[:100],
            "job_ids": ids, "job_count": job_count, "value_before": before,
            "value_after": after, "details": details}


def record(conn, actor: Actor | None, action: str, **what: Any) -> None:
    """Write one entry in ``conn``'s transaction (a SQLAlchemy connection or session): the
    change's own. No actor (the engine acting for itself): nothing is written."""
    if actor is not None:
        conn.execute(audit_table.insert().values(**entry_row(actor, action, **what)))


@dataclass(frozen=True)
class AuditQuery:
    """What the screen and the API filter on; ``tenant_scope`` (None: every tenant) limits a
    reader bound to some tenants to their entries."""

    actor: str | None = None
    action: str | None = None
    tenant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    tenant_scope: frozenset[str] | None = None

    def select(self) -> Select:
        """The entries, filtered, unordered (the keyset pager orders and bounds them)."""
        a = audit_table.c
        query = select(audit_table)
        if self.actor:
            query = query.where(a.actor_name == self.actor)
        if self.action:
            query = query.where(a.action == self.action)
        if self.tenant_id:
            query = query.where(a.tenant_id == self.tenant_id)
        if self.since is not None:
            query = query.where(a.created_at >= self.since)
        if self.until is not None:
            query = query.where(a.created_at < self.until)
        if self.tenant_scope is not None:
            query = query.where(a.tenant_id.in_(sorted(self.tenant_scope)))
        return query


def check_action(action: str | None) -> str | None:
    """``action`` if it is one of ``ACTIONS`` (or empty: None).

    :raise ValueError: naming the actions there are.
    """
    if not action:
        return None
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action[:40]!r}; use one of {', '.join(ACTIONS)}")
    return action


def recent_entries(conn, tenant_id: str, limit: int = 10) -> list[Any]:
    """A tenant's newest entries (its page's "Recent changes")."""
    a = audit_table.c
    return conn.execute(select(audit_table).where(a.tenant_id == tenant_id)
                        .order_by(a.created_at.desc(), a.id.desc()).limit(limit)).all()


def prune_entries(conn, retention_days: int, tenant_id: str | None = None, *,
                  with_untenanted: bool = False, now: datetime | None = None) -> int:
    """Delete entries older than ``retention_days`` — of ``tenant_id`` (None: every entry),
    and with ``with_untenanted`` also those of no tenant; returns how many went."""
    a = audit_table.c
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    query = delete(audit_table).where(a.created_at < cutoff)
    if tenant_id is not None:
        mine = a.tenant_id == tenant_id
        query = query.where(mine | a.tenant_id.is_(None) if with_untenanted else mine)
    return conn.execute(query).rowcount
