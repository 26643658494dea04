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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from sqlalchemy import case, func, select

from ..handlers.delivery import DeliveryError
from ..handlers.webhook import WebhookHandler
from ..jobs import JobService, JobValidationError, TenantLimitException, db
from ..jobs.limits import TenantStore
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
                   tenants: TenantStore) -> list[Recipient]:
    """Everyone an alert of ``rule`` about ``tenant_id`` (None: the system) goes to."""
    found: list[Recipient] = []
    if rule.notify_operators:
        found += [Recipient("email", "operators", address)
                  for address in _listed(alert_setting(config, "ALERTS_EMAIL_TO"))]
        found += [Recipient("webhook", "operators", url)
                  for url in _listed(alert_setting(config, "ALERTS_WEBHOOK_URL"))]
    if rule.notify_tenant and tenant_id is not None:
        tenant = tenants.get_tenant_config(tenant_id)
        settings = (tenant.custom_settings if tenant else None) or {}
        found += [Recipient("email", "tenant", address)
                  for address in _listed(settings.get("alertEmail"))]
        found += [Recipient("webhook", "tenant", url, signing_tenant=tenant_id)
                  for url in _listed(settings.get("alertWebhookUrl"))]
    unique = {(r.channel, r.address): r for r in reversed(found)}   # operators' wins
    return [r for r in found if unique[(r.channel, r.address)] is r]


def deliver_due(service: JobService, config: Mapping[str, Any] | None, rules: list[Rule],
                now: datetime) -> int:
    """Queue every notice alerts owe (see the module docstring); returns how many jobs."""
    with service.engine.connect() as conn:
        due = conn.execute(select(alerts_table).where(a.notice_due.is_not(None))
                           .order_by(a.fired_at, a.id)).all()
    if not due:
        return 0
    by_id = {rule.id: rule for rule in rules}
    queued = 0
    for alert in due:
        rule = by_id.get(alert.rule_id)
        if rule is None:
            continue
        if alert.notice_due == "fired":
            queued += _announce(service, config, rule, alert, now)
        else:
            queued += _send(service, config, rule, alert, "resolved", now)
    return queued


def _announce(service, config, rule: Rule, alert, now: datetime) -> int:
    """The "fired" notice, unless a mute or the cool-down holds it back."""
    engine = service.engine
    if alert.state != "firing":   # resolved before it was announced: nothing to say
        with db.write_transaction(engine) as conn:
            conn.execute(alerts_table.update().where(
                a.id == alert.id, a.notice_due == "fired", a.notified_at.is_(None))
                .values(notice_due=None, held_until=None))
        return 0
    hold = held_until(engine, rule, alert, now)
    if hold is not None:
        if alert.held_until != hold:
            with db.write_transaction(engine) as conn:
                conn.execute(alerts_table.update().where(a.id == alert.id)
                             .values(held_until=hold))
        return 0
    return _send(service, config, rule, alert, "fired", now)


def held_until(engine, rule: Rule, alert, now: datetime) -> datetime | None:
    """Until when the "fired" notice of ``alert`` waits: the end of the rule's mute, or of the
    cool-down since the rule last announced this subject; None: it may go now."""
    until = rule.muted_until if rule.muted(now) else None
    if rule.cooldown_seconds:
        with engine.connect() as conn:
            last = conn.execute(select(func.max(a.notified_at)).where(
                a.rule_id == rule.id, a.subject_key == alert.subject_key,
                a.id != alert.id)).scalar()
        if last is not None:
            end = last + timedelta(seconds=rule.cooldown_seconds)
            if end > now and (until is None or end > until):
                until = end
    return until


def _send(service, config, rule: Rule, alert, transition: str, now: datetime) -> int:
    """Queue ``transition``'s notice to every recipient; mark it sent once all are queued (a
    refusal, e.g. the operations tenant's queue being full, leaves it owed for next time)."""
    recipients = recipients_for(rule, alert.tenant_id, config, service.tenants)
    if not recipients:
        return 0   # no channel yet: owed until one is configured (or the alert resolves)
    ops = ensure_operations_tenant(service, config).tenant_id
    queued, complete = [], True
    for recipient in recipients:
        try:
            job = _queue(service, ops, rule, alert, transition, recipient)
        except TenantLimitException as refused:
            log.warning("alert %s: %s notice to %s held back: %s", alert.id, transition,
                        recipient.address, refused)
            complete = False
            continue
        except JobValidationError as invalid:   # a bad address in the settings: skip it
            log.warning("alert %s: cannot notify %s (%s): %s", alert.id, recipient.address,
                        recipient.audience, invalid)
            continue
        queued.append((job, recipient))
    with db.write_transaction(service.engine) as conn:
        if queued:
            _record(conn, alert.id, transition, queued, now)
        if complete and transition == "fired":
            conn.execute(alerts_table.update().where(a.id == alert.id, a.notified_at.is_(None))
                         .values(notified_at=now, held_until=None,
                                 # resolved meanwhile (by another process): say so next
                                 notice_due=case((a.state == "resolved", "resolved"),
                                                 else_=None)))
        elif complete:
            conn.execute(alerts_table.update()
                         .where(a.id == alert.id, a.notice_due == "resolved")
                         .values(resolve_notified_at=now, notice_due=None))
    return len(queued)


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
