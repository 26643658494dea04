"""Read models of alerts for the console (and anything else that shows them): what fires now,
the history newest first in keyset pages, and one alert with its notification jobs."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from ..jobs.models import jobs_table
from .models import alert_notifications_table, alert_rules_table, alerts_table

a, r, n = alerts_table.c, alert_rules_table.c, alert_notifications_table.c
SYSTEM = "system"    # the tenant filter's value for alerts about the whole system
_LISTED = (a.id, a.rule_id, a.tenant_id, a.state, a.fired_at, a.resolved_at, a.checked_at,
           a.value, a.last_value, a.threshold, a.message, a.notice_due, a.held_until,
           a.notified_at, r.name.label("rule_name"), r.kind.label("kind"),
           # keyset pages (console/web/keyset.py) read a row's position as created_at, id
           a.fired_at.label("created_at"))


def _listing():
    return select(*_LISTED).select_from(alerts_table.join(alert_rules_table,
                                                          r.id == a.rule_id))


@dataclass
class Firing:
    """Alerts firing now (the first ``limit``, newest first) and how many there are."""

    alerts: list[Any] = field(default_factory=list)
    total: int = 0


def firing_alerts(engine: Engine, tenant_id: str | None = None, limit: int = 10,
                  tenant_ids: Iterable[str] | None = None) -> Firing:
    """What fires now: everywhere, about one tenant, or about ``tenant_ids`` only (the
    console's tenant-bound users: no system alerts)."""
    query = _listing().where(a.state == "firing")
    count = select(func.count()).select_from(alerts_table).where(a.state == "firing")
    if tenant_ids is not None:
        query = query.where(a.tenant_id.in_(sorted(tenant_ids)))
        count = count.where(a.tenant_id.in_(sorted(tenant_ids)))
    if tenant_id is not None:
        query = query.where(a.tenant_id == tenant_id)
        count = count.where(a.tenant_id == tenant_id)
    with engine.connect() as conn:
        total = conn.execute(count).scalar()
        rows = conn.execute(query.order_by(a.fired_at.desc(), a.id.desc()).limit(limit)).all()\
            if total else []
    return Firing(alerts=rows, total=total)


def alerts_query(state: str | None = None, tenant: str | None = None,
                 rule_id: int | None = None, tenant_ids: Iterable[str] | None = None):
    """The Alerts screen's filtered listing (order and page left to the caller):
    ``tenant`` is a tenant id or ``SYSTEM``; ``tenant_ids`` keeps only those tenants'."""
    query = _listing()
    if tenant_ids is not None:
        query = query.where(a.tenant_id.in_(sorted(tenant_ids)))
    if state:
        query = query.where(a.state == state)
    if tenant == SYSTEM:
        query = query.where(a.tenant_id.is_(None))
    elif tenant:
        query = query.where(a.tenant_id == tenant)
    if rule_id is not None:
        query = query.where(a.rule_id == rule_id)
    return query


def get_alert(engine: Engine, alert_id: str):
    """The alert (None: no such alert) and its notifications, oldest first, each with its
    job's status (None once the job was pruned)."""
    with engine.connect() as conn:
        alert = conn.execute(select(alerts_table).where(a.id == alert_id)).first()
        if alert is None:
            return None, []
        notifications = conn.execute(
            select(alert_notifications_table, jobs_table.c.status.label("job_status"),
                   jobs_table.c.total_attempts.label("job_attempts"))
            .select_from(alert_notifications_table.outerjoin(
                jobs_table, jobs_table.c.id == n.job_id))
            .where(n.alert_id == alert_id).order_by(n.queued_at, n.job_id)).all()
    return alert, notifications


def firing_counts_by_rule(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(a.rule_id, func.count()).where(a.state == "firing")
                                 .group_by(a.rule_id)).all())
