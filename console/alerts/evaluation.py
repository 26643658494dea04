"""Evaluating the rules: open an alert where a rule starts to hold, resolve it where it stops,
then send what is owed (``delivery.py``).

Safe to run in several processes at once: an alert opens by an insert that conflicts on its
UNIQUE ``open_key`` (rule and subject) while one is open, and resolves by an UPDATE that only
matches while it is still firing — so exactly one alert and one "fired" notice per episode,
whoever evaluates. The recurring job (``scheduling.py``) normally makes it once a minute.

Every rule is evaluated, muted or not (a mute holds back notices, not alerts); a disabled
rule's open alerts resolve.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, case, func, select

from ..jobs import db
from ..jobs.records import new_job_id
from .delivery import deliver_due
from .messages import fire_message, recommendation, resolution_text
from .models import alerts_table
from .operations import operations_tenant_id
from .rules import Measurement, Readings, Rule
from .sql import insert_unless_present
from .store import list_rules

log = logging.getLogger(__name__)
UTC = timezone.utc
a = alerts_table.c


@dataclass
class EvaluationOutcome:
    """What one evaluation did."""

    rules: int = 0
    fired: list[str] = field(default_factory=list)       # alert ids this evaluation opened
    resolved: list[str] = field(default_factory=list)    # and resolved
    firing: int = 0                                       # alerts firing afterwards
    notifications: int = 0                                # notification jobs queued
    failed_rules: dict[int, str] = field(default_factory=dict)   # rule id → error
    seconds: float = 0.0

    def as_result(self) -> dict[str, Any]:
        return {"rules": self.rules, "fired": len(self.fired), "resolved": len(self.resolved),
                "firing": self.firing, "notifications": self.notifications,
                "failed_rules": {str(k): v for k, v in self.failed_rules.items()},
                "seconds": round(self.seconds, 3)}


@dataclass
class _Changes:
    """The writes one evaluation decided on, made together in one short transaction."""

    opened: list[dict[str, Any]] = field(default_factory=list)
    refreshed: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)


def evaluate_alert_rules(service, config: Mapping[str, Any] | None = None,
                         now: datetime | None = None) -> EvaluationOutcome:
    """Evaluate every rule once, now, and send the notifications that are due.

    :param service: the app's ``JobService`` (its engine, tenants, and the queue notices go to).
    :param config: the app's config (channels: ``ALERTS_EMAIL_TO``, ``ALERTS_WEBHOOK_URL``,
        ``ALERTS_TENANT_ID``); the documented defaults without one.
    """
    started = time.monotonic()
    now = now or service.clock.now()   # leases and heartbeats are stamped in it
    engine = service.engine
    rules = list_rules(engine)
    readings = Readings(engine, service.tenants, now, operations_tenant_id(config))
    with engine.connect() as conn:
        open_alerts = conn.execute(select(alerts_table).where(a.state == "firing")).all()
    outcome = EvaluationOutcome(rules=len(rules))
    changes = _Changes()
    new: list[tuple[Rule, Measurement]] = []
    for rule in rules:
        mine = {alert.subject_key: alert for alert in open_alerts if alert.rule_id == rule.id}
        try:
            new += _judge(rule, mine, readings, changes, now)
        except Exception as exc:   # one broken rule must not stop the others
            log.exception("alert rule %s (%s) could not be measured", rule.id, rule.name)
            outcome.failed_rules[rule.id] = f"{type(exc).__name__}: {exc}"
    changes.opened = _opening(new, readings, now)
    outcome.fired, outcome.resolved = _write(engine, changes, now)
    outcome.notifications = deliver_due(service, config, rules, now, readings.configs)
    with engine.connect() as conn:
        outcome.firing = conn.execute(select(func.count()).where(a.state == "firing")).scalar()
    outcome.seconds = time.monotonic() - started
    if outcome.fired or outcome.resolved:
        log.info("alerts: %d fired, %d resolved, %d notifications queued",
                 len(outcome.fired), len(outcome.resolved), outcome.notifications)
    return outcome


def _judge(rule: Rule, mine: dict[str, Any], readings: Readings, changes: _Changes,
           now: datetime) -> list[tuple[Rule, Measurement]]:
    """Compare one rule's figures with its open alerts (``mine``, by subject): note the alerts
    to refresh and to resolve in ``changes``; return the subjects it starts to hold for."""
    if not rule.enabled:
        changes.closed += [_closing(alert, None, "the rule was disabled")
                           for alert in mine.values()]
        return []
    measured = {m.subject_key: m for m in rule.spec.measure(rule, readings)}
    holding = {key: m for key, m in measured.items() if rule.spec.holds(m.value, rule.threshold)}
    changes.refreshed += [{"b_id": mine[key].id, "b_value": m.value, "b_now": now}
                          for key, m in holding.items()
                          if key in mine and mine[key].last_value != m.value]
    changes.closed += [_closing(alert, measured.get(key),
                                resolution_text(rule, measured.get(key)))
                       for key, alert in mine.items() if key not in holding]
    return [(rule, m) for key, m in holding.items() if key not in mine]


def _opening(new: list[tuple[Rule, Measurement]], readings: Readings, now: datetime
             ) -> list[dict[str, Any]]:
    """Rows of the alerts to open, with their message and recommendation (the health reports
    of every tenant concerned, read in one batch)."""
    if not new:
        return []
    concerned = sorted({t for _, m in new
                        for t in ([m.tenant_id] if m.tenant_id else m.contributors)})
    health = readings.health_of(concerned) if concerned else {}
    rows = []
    for rule, m in new:
        rows.append({"id": new_job_id(now), "rule_id": rule.id, "tenant_id": m.tenant_id,
                     "subject_key": m.subject_key, "open_key": f"{rule.id}|{m.subject_key}",
                     "state": "firing", "fired_at": now, "checked_at": now, "value": m.value,
                     "last_value": m.value, "threshold": rule.threshold,
                     "message": fire_message(rule, m),
                     "recommendation": recommendation(rule, m, health),
                     "notice_due": "fired"})
    return rows


def _closing(alert, measured: Measurement | None, text: str) -> dict[str, Any]:
    return {"b_id": alert.id, "b_value": measured.value if measured else alert.last_value,
            "b_text": text}


_NOW = bindparam("b_now", type_=a.checked_at.type)
_REFRESH = (alerts_table.update()
            .where(a.id == bindparam("b_id"), a.state == "firing")
            .values(last_value=bindparam("b_value"), checked_at=_NOW))
_CLOSE = (alerts_table.update()
          .where(a.id == bindparam("b_id"), a.state == "firing")
          .values(state="resolved", open_key=None, resolved_at=_NOW, checked_at=_NOW,
                  last_value=bindparam("b_value"), resolution=bindparam("b_text"),
                  held_until=None,
                  # Only an alert that was announced owes a "resolved" notice.
                  notice_due=case((a.notified_at.is_not(None), "resolved"), else_=None)))


def _write(engine, changes: _Changes, now: datetime) -> tuple[list[str], list[str]]:
    """Open, refresh and resolve in one transaction; returns the alerts this call opened and
    resolved (another process may have done some of it first: those are not ours)."""
    if not (changes.opened or changes.refreshed or changes.closed):
        return [], []
    opened, closed = [], []
    # Rows in one order in every process (inserts by key, then updates by id), so that two
    # evaluations at once on PostgreSQL wait for each other instead of deadlocking.
    updates = sorted([(row["b_id"], _REFRESH, row) for row in changes.refreshed]
                     + [(row["b_id"], _CLOSE, {**row, "b_now": now}) for row in changes.closed],
                     key=lambda update: update[0])
    with db.write_transaction(engine) as conn:
        insert = insert_unless_present(conn, alerts_table, ["open_key"]).returning(a.id)
        for row in sorted(changes.opened, key=lambda row: row["open_key"]):
            if conn.execute(insert.values(**row)).scalar() is not None:
                opened.append(row["id"])
        for alert_id, statement, params in updates:
            if conn.execute(statement, params).rowcount and statement is _CLOSE:
                closed.append(alert_id)
    return opened, closed
