"""Tenants' event webhooks: a tenant subscribes URLs to its own jobs' events, and every event
becomes a ``webhook`` notification job of that tenant, which delivers it.

**Events.** ``job.completed`` and ``job.failed`` (a run ended: a recurring job's run counts
like a job of its own), ``job.retried`` (an attempt failed and another follows), and
``batch.completed`` (every job of a batch has ended). A job that delivers an event makes none
of its own: ``metadata[DELIVERY_MARK]`` says what it delivers.

**Once, and at once.** The delivering jobs are stored in the transaction that records the
attempt (or finishes the batch): a crash keeps both or neither, so an event is never lost and
never stored twice. Each delivery's id (``webhook_deliveries.id``) is the message id the
receiver sees on every try (``X-Console-Message-Id``, and the envelope's ``id``), and the
notification machinery never sends a message id twice: a receiver that dedups on it sees each
event once. The job's attempts, backoff and ``Retry-After`` are the webhook channel's own.

**In order per job.** A job's next event to the same URL waits for the delivery of its
previous one (``depends_on`` with ``on_dependency_failure="run"``): a retried, then completed
job is delivered as ``job.retried`` then ``job.completed``, even when the receiver was down in
between.

**Bounded.** A tenant has at most ``MAX_SUBSCRIPTIONS`` URLs; each is checked by the webhook
channel's own rules when it is saved (public addresses only) and again when each delivery is
sent. Deliveries are signed with the tenant's ``webhookSecret``, which subscribing creates when
the tenant has none. They are the tenant's jobs: its pauses, concurrency and rate limits apply,
and they count in its usage; limits that refuse new work at queue time do not refuse them (an
ending cannot be refused).
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select

from . import db
from .keyset import Page, keyset_page
from .models import (
    JOB_COLUMNS,
    deliveries_table,
    dependencies_table,
    jobs_table,
    subscriptions_table,
    tenants_table,
)
from .records import job_from_row, new_job_id
from .rollups import RollupBatch
from .types import JobPriority, JobStatus, JobType, SystemJob
from .wakeup import NOTIFY_CHANNEL

EVENTS = ("job.completed", "job.failed", "job.retried", "batch.completed")
MAX_SUBSCRIPTIONS = 10
MAX_URL_CHARS = 2000
DELIVERY_MARK = "webhook_event"      # metadata key of a delivering job: the event it delivers
DELIVERY_HANDLER = "webhook_handler"
DELIVERY_RETRIES = 8                 # nine tries in all, with the runner's backoff
SECRET_SETTING = "webhookSecret"
ERROR_CHARS = 500                    # of a failed job's error message, in its event
_OUTCOME_EVENTS = {"completed": "job.completed", "failed": "job.failed", None: "job.retried"}
_UNFINISHED = (JobStatus.PENDING.value, JobStatus.QUEUED.value, JobStatus.PROCESSING.value)

_s, _dl, _j = subscriptions_table.c, deliveries_table.c, jobs_table.c


class SubscriptionNotFound(LookupError):
    """No subscription of that tenant has that id."""


@dataclass(frozen=True)
class Subscription:
    id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    created_at: datetime
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant_id": self.tenant_id, "url": self.url,
                "events": list(self.events), "created_at": self.created_at,
                "created_by": self.created_by}


@dataclass(frozen=True)
class Delivery:
    """A line of the delivery log: the event, and where its delivering job stands."""

    id: str
    tenant_id: str
    subscription_id: str
    event: str
    subject_id: str
    job_id: str
    created_at: datetime
    url: str | None                  # None once the delivering job is pruned
    status: JobStatus | None
    attempts: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "subject_id": self.subject_id,
                "subscription_id": self.subscription_id, "job_id": self.job_id,
                "created_at": self.created_at, "url": self.url,
                "status": self.status.value if self.status else None,
                "attempts": self.attempts, "last_error": self.last_error}


def attempt_event(outcome: str | None) -> str:
    """The event of an attempt's end, from ``attempts.run_outcome``'s answer."""
    return _OUTCOME_EVENTS[outcome]


# -- subscribing ---------------------------------------------------------------------------------

def subscribe(conn: Connection, tenant_id: str, url: str, events: Iterable[str],
              created_by: str | None, now: datetime) -> tuple[Subscription, str]:
    """Store a subscription (``url`` and ``events`` already checked) and return it with the
    tenant's signing secret, created now if it had none.

    :raise ValueError: the tenant has ``MAX_SUBSCRIPTIONS`` already.
    """
    count = len(conn.execute(select(_s.id).where(_s.tenant_id == tenant_id)).all())
    if count >= MAX_SUBSCRIPTIONS:
        raise ValueError(f"tenant {tenant_id!r} has {count} webhook subscriptions, the most "
                         "it may have; remove one first")
    subscription = Subscription(id=new_job_id(), tenant_id=tenant_id, url=url,
                                events=tuple(e for e in EVENTS if e in set(events)),
                                created_at=now, created_by=created_by)
    conn.execute(subscriptions_table.insert().values(
        id=subscription.id, tenant_id=tenant_id, url=url, events=list(subscription.events),
        created_at=now, created_by=created_by))
    return subscription, _signing_secret(conn, tenant_id, now)


def _signing_secret(conn: Connection, tenant_id: str, now: datetime) -> str:
    t = tenants_table.c
    # Locked (PostgreSQL): two first subscriptions at once make one secret, not two.
    settings = dict(conn.execute(select(t.custom_settings).where(t.id == tenant_id)
                                 .with_for_update()).scalar_one() or {})
    if not settings.get(SECRET_SETTING):
        settings[SECRET_SETTING] = secrets.token_urlsafe(32)
        conn.execute(tenants_table.update().where(t.id == tenant_id)
                     .values(custom_settings=settings, updated_at=now))
    return settings[SECRET_SETTING]


def unsubscribe(conn: Connection, tenant_id: str, subscription_id: str) -> Subscription | None:
    """Remove a subscription (the deliveries already stored still go out); the removed one."""
    row = conn.execute(select(subscriptions_table).where(
        _s.id == subscription_id, _s.tenant_id == tenant_id)).first()
    if row is None:
        return None
    conn.execute(delete(subscriptions_table).where(_s.id == subscription_id))
    return _subscription(row)


def subscriptions(conn: Connection, tenant_id: str) -> list[Subscription]:
    rows = conn.execute(select(subscriptions_table).where(_s.tenant_id == tenant_id)
                        .order_by(_s.id))
    return [_subscription(row) for row in rows]


def _subscription(row) -> Subscription:
    return Subscription(id=row.id, tenant_id=row.tenant_id, url=row.url,
                        events=tuple(row.events or ()), created_at=row.created_at,
                        created_by=row.created_by)


# -- events (in the transaction that makes them) -------------------------------------------------

def record_job_events(conn: Connection, outcomes: Iterable[tuple[SystemJob, str | None]],
                      now: datetime, rollups: RollupBatch) -> list[SystemJob]:
    """Store the deliveries of attempts' ends: ``outcomes`` pairs each job (as now stored)
    with its attempt's ``run_outcome``. Returns the delivering jobs, for the caller to
    publish; ``rollups`` counts them as created (the caller writes it)."""
    outcomes = [(job, outcome) for job, outcome in outcomes
                if DELIVERY_MARK not in (job.metadata or {})]
    # Most attempts' tenants subscribe to nothing: look before building any event's data.
    wanted = _subscribed(conn, {job.tenant_id for job, _ in outcomes})
    events = [(job.tenant_id, attempt_event(outcome), job.id, _job_data(job, outcome))
              for job, outcome in outcomes if job.tenant_id in wanted]
    return _deliver(conn, wanted, events, now, rollups, ordered=True)


def record_batch_events(conn: Connection, finished: Iterable[Any], now: datetime,
                        rollups: RollupBatch) -> list[SystemJob]:
    """Store the deliveries of batches that have just finished (``finished``: their rows, as
    ``batches.count_endings`` read them back)."""
    events = [(batch.tenant_id, "batch.completed", batch.id,
               {"batch": {"id": batch.id, "total": batch.total, "completed": batch.completed,
                          "failed": batch.failed, "cancelled": batch.cancelled}})
              for batch in finished]
    return _deliver(conn, _subscribed(conn, {tenant for tenant, *_ in events}), events, now,
                    rollups, ordered=False)


def _job_data(job: SystemJob, outcome: str | None) -> dict[str, Any]:
    result = job.last_result
    data = {"id": job.id, "type": job.type, "handler": job.handler,
            "status": job.status.value, "attempts": job.total_attempts,
            "retries": job.current_retries, "batch_id": job.batch_id}
    if outcome != "completed" and result is not None:
        data["error_type"] = result.error_type
        data["error_message"] = (result.error_message or "")[:ERROR_CHARS]
    if outcome is None and job.scheduled_for is not None:
        data["next_attempt_at"] = job.scheduled_for.isoformat()
    return {"job": data}


def _subscribed(conn: Connection, tenants: set[str]) -> dict[str, list[Subscription]]:
    """The subscriptions of these tenants, by tenant (only tenants that have some)."""
    wanted: dict[str, list[Subscription]] = {}
    if tenants:
        for row in conn.execute(_SUBSCRIPTIONS_OF, {"tenants": sorted(tenants)}):
            wanted.setdefault(row.tenant_id, []).append(_subscription(row))
    return wanted


# Built once: every runner cycle asks, and building the statement costs more than running it.
_SUBSCRIPTIONS_OF = select(subscriptions_table).where(
    _s.tenant_id.in_(bindparam("tenants", expanding=True)))


def _deliver(conn: Connection, wanted: dict[str, list[Subscription]],
             events: list[tuple[str, str, str, dict]], now: datetime,
             rollups: RollupBatch, ordered: bool) -> list[SystemJob]:
    """Store a delivery of each event to each of its tenant's subscriptions (``wanted``)
    that asked for it."""
    if not events or not wanted:
        return []
    jobs, links, log = [], [], []
    previous: dict[tuple[str, str], str] = {}    # (subscription, subject) → its last delivery
    for tenant_id, event, subject_id, data in events:
        for subscription in wanted.get(tenant_id, ()):
            if event not in subscription.events:
                continue
            key = (subscription.id, subject_id)
            before = previous.get(key) or (_unfinished_delivery(conn, *key) if ordered else None)
            delivery_id = new_job_id()
            row = _delivery_row(subscription, event, delivery_id, data, now, before)
            jobs.append(row)
            if before is not None:
                links.append({"job_id": row["id"], "depends_on_id": before})
            log.append({"id": delivery_id, "tenant_id": tenant_id,
                        "subscription_id": subscription.id, "event": event,
                        "subject_id": subject_id, "job_id": row["id"], "created_at": now})
            previous[key] = row["id"]
            rollups.add_jobs(now, tenant_id, DELIVERY_HANDLER, JobType.NOTIFICATION.value,
                             "jobs_created")
    if not jobs:
        return []
    conn.execute(jobs_table.insert(), jobs)
    if links:
        conn.execute(dependencies_table.insert(), links)
    conn.execute(deliveries_table.insert(), log)
    db.notify_channel(conn, NOTIFY_CHANNEL)
    return [job_from_row(row) for row in jobs]


def _unfinished_delivery(conn: Connection, subscription_id: str, subject_id: str) -> str | None:
    """The job delivering the subject's previous event to this subscription, if it has not
    ended (the next one then waits for it)."""
    row = conn.execute(
        select(_dl.job_id, _j.status).join(jobs_table, _j.id == _dl.job_id)
        .where(_dl.subscription_id == subscription_id, _dl.subject_id == subject_id)
        .order_by(_dl.id.desc()).limit(1)).first()
    return row.job_id if row is not None and row.status in _UNFINISHED else None


def _delivery_row(subscription: Subscription, event: str, delivery_id: str,
                  data: dict[str, Any], now: datetime, after: str | None) -> dict[str, Any]:
    body = {"event": event, "occurred_at": now.isoformat(), **data}
    row = dict.fromkeys(JOB_COLUMNS)
    row.update(id=new_job_id(), tenant_id=subscription.tenant_id,
               type=JobType.NOTIFICATION.value, handler=DELIVERY_HANDLER,
               payload={"channel": "webhook", "recipient": subscription.url, "body": body,
                        "message_id": delivery_id},
               priority=JobPriority.NORMAL.rank,
               # Waiting for the previous delivery: pending with no time until it ends.
               status=(JobStatus.PENDING if after else JobStatus.QUEUED).value,
               scheduled_for=None if after else now,
               max_retries=DELIVERY_RETRIES, current_retries=0, total_attempts=0,
               metadata={DELIVERY_MARK: event}, timezone="UTC",
               depends_on=[after] if after else None,
               on_dependency_failure="run", created_at=now, updated_at=now)
    return row


# -- reading and pruning -------------------------------------------------------------------------

def list_deliveries(conn: Connection, tenant_id: str, *, before: str | None = None,
                    after: str | None = None, size: int = 20) -> Page:
    """One keyset page of the tenant's delivery log, newest first (``Page.rows``:
    ``Delivery``s). :raise BadCursor: a cursor this list did not write."""
    query = (select(deliveries_table, _j.status, _j.total_attempts, _j.last_result,
                    _j.payload)
             .join(jobs_table, _j.id == _dl.job_id, isouter=True)
             .where(_dl.tenant_id == tenant_id))
    page = keyset_page(conn, query, _dl.created_at, _dl.id, before=before, after=after,
                       size=size)
    page.rows = [_delivery(row) for row in page.rows]
    return page


def _delivery(row) -> Delivery:
    result = row.last_result or {}
    failed = row.status is not None and result and not result.get("success", True)
    return Delivery(id=row.id, tenant_id=row.tenant_id, subscription_id=row.subscription_id,
                    event=row.event, subject_id=row.subject_id, job_id=row.job_id,
                    created_at=row.created_at,
                    url=(row.payload or {}).get("recipient") if row.status else None,
                    status=JobStatus(row.status) if row.status else None,
                    attempts=row.total_attempts or 0,
                    last_error=(result.get("error_message") or None) if failed else None)


def prunable_deliveries(conn: Connection, tenant_id: str, cutoff: datetime,
                        limit: int) -> list[str]:
    """Up to ``limit`` of the tenant's log lines older than ``cutoff`` whose delivering job is
    gone (pruned with the tenant's finished jobs): a line whose job is still there may be the
    one the subject's next event must wait for, so it stays until its job goes."""
    return conn.execute(
        select(_dl.id).where(
            _dl.tenant_id == tenant_id, _dl.created_at < cutoff,
            ~select(_j.id).where(_j.id == _dl.job_id).exists())
        .order_by(_dl.created_at, _dl.id).limit(limit)).scalars().all()


def delete_deliveries(conn: Connection, ids: list[str]) -> int:
    return conn.execute(delete(deliveries_table).where(_dl.id.in_(ids))).rowcount
