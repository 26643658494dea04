"""Sending what alerts owe, as the product's own notification jobs (email, webhook): retries,
history and exactly-once sending come with them.

Who is told:

- **operators**, for every alert of a rule with ``notify_operators``: ``ALERTS_EMAIL_TO`` and
  ``ALERTS_WEBHOOK_URL`` (a string — commas separate several — or a list);
- **the tenant's admin**, for an alert about a tenant of a rule with ``notify_tenant``: the
  tenant's ``custom_settings["alertEmail"]`` and ``["alertWebhookUrl"]``. Their webhooks are
  signed with that tenant's ``webhookSecret`` (``alert_webhook`` handler), so the tenant
  verifies them with the secret it already has.

Each alert sends at most one "fired" and one "resolved" notice per recipient: a notification's
idempotency key is ``alert:<alert id>:<fired|resolved>:<recipient digest>``, so two processes
sending at once, or a retry after a crash, queue one job.

**Cool-down.** A "fired" notice is held back while the same rule last announced the same
subject less than ``cooldown_seconds`` ago, and while the rule is muted. The alert still shows
as firing; if it is still firing when the hold ends, its notice goes out then (the console shows
until when it is held). So a flapping rule sends at most one "fired" (and its "resolved") per
cool-down, and nothing that keeps firing goes unannounced. A "resolved" notice follows every
announced alert, held back by nothing; an alert that resolved before it was announced sends
nothing at all.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, case, func, select

from ..handlers.delivery import DeliveryError
from ..handlers.webhook import WebhookHandler
from ..jobs import JobService, JobValidationError, TenantLimitException, db
from ..jobs.limits import TenantConfig, TenantStore
from .messages import email_content, webhook_body
from .models import alert_notifications_table, alerts_table
from .operations import alert_setting, ensure_operations_tenant, operations_tenant_id
from .rules import Rule
from .sql import insert_unless_present

log = logging.getLogger(__name__)
UTC = timezone.utc
a = alerts_table.c
NOTICE_RETRIES = 5
ALERT_WEBHOOK_HANDLER = "alert_webhook"


@dataclass(frozen=True)
class Recipient:
    channel: str                 # email, webhook
    audience: str                # operators, tenant
    address: str
    signing_tenant: str | None = None   # webhooks: whose webhookSecret signs it


def _listed(value: Any) -> list[str]:
    """``"a@x.example, b@y.example"`` or a list → the non-empty entries."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if isinstance(item, str) and item.strip()]


def recipients_for(rule: Rule, tenant_id: str | None, config: Mapping[str, Any] | None,
                   tenant_settings: Mapping[str, Any] | None) -> list[Recipient]:
    """Everyone an alert of ``rule`` about ``tenant_id`` (None: the system) goes to;
    ``tenant_settings`` is that tenant's ``custom_settings``."""
    found: list[Recipient] = []
    if rule.notify_operators:
        found += [Recipient("email", "operators", address)
                  for address in _listed(alert_setting(config, "ALERTS_EMAIL_TO"))]
        found += [Recipient("webhook", "operators", url)
                  for url in _listed(alert_setting(config, "ALERTS_WEBHOOK_URL"))]
    if rule.notify_tenant and tenant_id is not None:
        settings = tenant_settings or {}
        found += [Recipient("email", "tenant", address)
                  for address in _listed(settings.get("alertEmail"))]
        found += [Recipient("webhook", "tenant", url, signing_tenant=tenant_id)
                  for url in _listed(settings.get("alertWebhookUrl"))]
    unique = {(r.channel, r.address): r for r in reversed(found)}   # operators' wins
    return [r for r in found if unique[(r.channel, r.address)] is r]


def deliver_due(service: JobService, config: Mapping[str, Any] | None, rules: list[Rule],
                now: datetime, tenants: Mapping[str, TenantConfig] | None = None) -> int:
    """Queue every notice alerts owe (see the module docstring); returns how many jobs.

    :param tenants: every tenant by id, when the caller has read them already.
    """
    with service.engine.connect() as conn:
        due = conn.execute(select(alerts_table).where(a.notice_due.is_not(None))
                           .order_by(a.fired_at, a.id)).all()
    if not due:
        return 0
    return _Round(service, config, rules, now, tenants).deliver(due)


class _Round:
    """One pass over the notices owed. What it needs of tenants and past notices is read once
    for all of them: a hundred firing alerts cost a few queries, not a few hundred."""

    def __init__(self, service: JobService, config, rules: list[Rule], now: datetime,
                 tenants: Mapping[str, TenantConfig] | None):
        self.service, self.config, self.now = service, config, now
        self.rules = {rule.id: rule for rule in rules}
        self._tenants = tenants
        self._last_notified: dict[tuple[int, str], datetime] | None = None

    def deliver(self, due) -> int:
        queued = 0
        for alert in due:
            rule = self.rules.get(alert.rule_id)
            if rule is None:
                continue
            if alert.notice_due == "fired":
                queued += self._announce(rule, alert)
            else:
                queued += self._send(rule, alert, "resolved")
        return queued

    def recipients(self, rule: Rule, alert) -> list[Recipient]:
        if self._tenants is None:
            self._tenants = {t.tenant_id: t for t in self.service.tenants.list_tenant_configs()}
        tenant = self._tenants.get(alert.tenant_id)
        return recipients_for(rule, alert.tenant_id, self.config,
                              tenant.custom_settings if tenant else None)

    def _announce(self, rule: Rule, alert) -> int:
        """The "fired" notice, unless a mute or the cool-down holds it back."""
        engine = self.service.engine
        if alert.state != "firing":   # resolved before it was announced: nothing to say
            with db.write_transaction(engine) as conn:
                conn.execute(alerts_table.update().where(
                    a.id == alert.id, a.notice_due == "fired", a.notified_at.is_(None))
                    .values(notice_due=None, held_until=None))
            return 0
        if not self.recipients(rule, alert):
            return 0   # no channel yet: owed until one is configured (or the alert resolves)
        hold = self.held_until(rule, alert)
        if hold is not None:
            if alert.held_until != hold:
                with db.write_transaction(engine) as conn:
                    conn.execute(alerts_table.update().where(a.id == alert.id)
                                 .values(held_until=hold))
            return 0
        return self._send(rule, alert, "fired")

    def held_until(self, rule: Rule, alert) -> datetime | None:
        """Until when the "fired" notice of ``alert`` waits: the end of the rule's mute, or of
        the cool-down since the rule last announced this subject; None: it may go now."""
        until = rule.muted_until if rule.muted(self.now) else None
        if rule.cooldown_seconds:
            last = self.last_notified().get((rule.id, alert.subject_key))
            if last is not None:
                end = last + timedelta(seconds=rule.cooldown_seconds)
                if end > self.now and (until is None or end > until):
                    until = end
        return until

    def last_notified(self) -> dict[tuple[int, str], datetime]:
        """When each rule with a cool-down last announced each subject (alerts that owe a
        "fired" notice have announced nothing, so they never count themselves)."""
        if self._last_notified is None:
            cooling = [rule.id for rule in self.rules.values() if rule.cooldown_seconds]
            query = (select(a.rule_id, a.subject_key, func.max(a.notified_at))
                     .where(a.rule_id.in_(cooling), a.notified_at.is_not(None))
                     .group_by(a.rule_id, a.subject_key))
            with self.service.engine.connect() as conn:
                self._last_notified = {(rule_id, subject): last
                                       for rule_id, subject, last in conn.execute(query)}
        return self._last_notified

    def _send(self, rule: Rule, alert, transition: str) -> int:
        """Queue ``transition``'s notice to every recipient; mark it sent once all are queued
        (a refusal, e.g. the operations tenant's queue being full, leaves it owed)."""
        recipients = self.recipients(rule, alert)
        if not recipients:
            return 0
        ops = ensure_operations_tenant(self.service, self.config).tenant_id
        queued, complete = [], True
        for recipient in recipients:
            try:
                job = _queue(self.service, ops, rule, alert, transition, recipient)
            except TenantLimitException as refused:
                log.warning("alert %s: %s notice to %s held back: %s", alert.id, transition,
                            recipient.address, refused)
                complete = False
                continue
            except JobValidationError as invalid:   # a bad address in the settings: skip it
                log.warning("alert %s: cannot notify %s (%s): %s", alert.id,
                            recipient.address, recipient.audience, invalid)
                continue
            queued.append((job, recipient))
        with db.write_transaction(self.service.engine) as conn:
            if queued:
                _record(conn, alert.id, transition, queued, self.now)
            if complete:
                conn.execute(_MARK_SENT[transition], {"b_id": alert.id, "b_now": self.now})
        return len(queued)


_NOW = bindparam("b_now", type_=a.notified_at.type)
_MARK_SENT = {
    "fired": alerts_table.update().where(a.id == bindparam("b_id"), a.notified_at.is_(None))
    .values(notified_at=_NOW, held_until=None,
            # resolved meanwhile (by another process): the "resolved" notice is owed next
            notice_due=case((a.state == "resolved", "resolved"), else_=None)),
    "resolved": alerts_table.update().where(a.id == bindparam("b_id"),
                                            a.notice_due == "resolved")
    .values(resolve_notified_at=_NOW, notice_due=None),
}


def _queue(service: JobService, ops_tenant: str, rule: Rule, alert, transition: str,
           recipient: Recipient):
    digest = hashlib.sha256(f"{recipient.channel}:{recipient.address}".encode()).hexdigest()
    options = {"idempotency_key": f"alert:{alert.id}:{transition}:{digest[:16]}",
               "priority": "high", "max_retries": NOTICE_RETRIES,
               "metadata": {"alert_id": alert.id, "transition": transition,
                            "audience": recipient.audience}}
    if recipient.channel == "email":
        subject, body = email_content(transition, rule, alert)
        # The email channel renders subject and body as templates: the texts go in as
        # variables, so a rule or tenant name can never be read as template code.
        return service.queue_notification(
            "email", recipient.address, ops_tenant, subject="{{ alert_subject }}",
            body="{{ alert_body }}", variables={"alert_subject": subject, "alert_body": body},
            **options)
    payload = {"channel": "webhook", "recipient": recipient.address,
               "body": webhook_body(transition, rule, alert)}
    if recipient.signing_tenant:
        payload["signing_tenant"] = recipient.signing_tenant
    return service.queue_job("notification", ALERT_WEBHOOK_HANDLER, payload, ops_tenant,
                             **options)


def _record(conn, alert_id: str, transition: str, queued, now: datetime) -> None:
    """The alert's notification history. Two processes sending one notice at once got the
    same job (its idempotency key): it is kept once."""
    insert = insert_unless_present(conn, alert_notifications_table, ["job_id"])
    for job, recipient in queued:
        conn.execute(insert.values(job_id=job.id, alert_id=alert_id, transition=transition,
                                   channel=recipient.channel, audience=recipient.audience,
                                   recipient=recipient.address[:500], queued_at=now))


class AlertWebhookHandler(WebhookHandler):
    """The webhook channel for alert notices: a notice to a tenant's admin
    (``payload["signing_tenant"]``) is signed with that tenant's ``webhookSecret`` (else
    ``WEBHOOK_SIGNING_SECRET``), not the operations tenant's — only for jobs of the operations
    tenant, so no tenant can have a message signed with another's secret."""

    handler_name = ALERT_WEBHOOK_HANDLER
    description = ("POSTs an alert notice as a signed webhook (a tenant admin's with the "
                   "tenant's own webhookSecret).")
    # Signs with another tenant's webhookSecret: only the operations tenant may queue it.
    system = True

    def secret_for(self, context) -> str | None:
        signing = context.job.payload.get("signing_tenant")
        if not signing:
            return super().secret_for(context)
        if context.tenant_id != operations_tenant_id(self.config):
            raise DeliveryError(
                f"only the operations tenant's alert notices are signed for another tenant; "
                f"job of tenant {context.tenant_id!r} asked for {signing!r}",
                retryable=False, error_type="WebhookConfigError")
        tenant = TenantStore(self.engine).get_tenant_config(signing)
        settings = (tenant.custom_settings if tenant else None) or {}
        return settings.get("webhookSecret") or alert_setting(self.config,
                                                              "WEBHOOK_SIGNING_SECRET")
