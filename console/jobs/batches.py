"""Batches: the jobs of one ``queue_batch_jobs`` call, counted as they end, and the callbacks
that run once when all of them have.

**What counts.** ``total`` is the batch's one-off jobs. A recurring job carries the batch's id
but never ends by itself (each run re-arms it), so it is not counted, and a batch with
callbacks refuses recurring specs (``service.queue_batch_jobs``): its callbacks would wait for
ever. Each job counts once in ``completed``, ``failed`` or ``cancelled`` when it ends for good.
Retrying a failed or cancelled job of the batch takes it out of its count again
(``count_revivals``: the batch is unfinished until it ends again), but callbacks that were
stored are never stored again.

**Why a callback runs once.** Every ending adds to its batch's counters in the transaction
that ends the job (``endings.record_endings``), with one ``UPDATE … RETURNING`` per batch —
however many of its jobs that transaction ends. The row lock (PostgreSQL) or the write lock
(SQLite) puts concurrent endings one after the other, and each reads the counts with its own
added. The one whose counts reach ``total`` while ``callback_job_ids`` is NULL stores the
callbacks, and their ids in ``callback_job_ids``, in that same transaction. A crash before its
commit undoes the ending with them (lease recovery ends the job again later, and counts it
then); after it, ``callback_job_ids`` is set for good, so no other process, crash or retry
stores them twice.

**A callback is accepted with its batch**: validated, checked against the tenant's limits
(counted towards ``max_queued_jobs`` and ``max_daily_jobs``) and counted as created in the
rollups when the batch is queued — as if it had been queued then — so that when it is stored
nothing can refuse it, and the ending's transaction writes no rollup row: it holds rollup rows
already, and every writer takes those in one global order (``RollupBatch.write``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, select

from . import db
from .keyset import Page, keyset_page
from .models import BATCH_FAILURES, JOB_COLUMNS, batches_table, jobs_table
from .records import job_from_row, new_job_id
from .types import JobStatus, SystemJob
from .validation import PreparedJob
from .wakeup import NOTIFY_CHANNEL

CALLBACKS = ("on_complete", "on_success")
PAYLOAD_KEY = "batch"     # the key of a callback's payload that carries its batch's counts
FAILURES_SHOWN = 20       # failed and cancelled jobs a batch's page lists

_b = batches_table.c
_ENDED = _b.completed + _b.failed + _b.cancelled
_COUNTERS = {JobStatus.COMPLETED: 0, JobStatus.FAILED: 1, JobStatus.CANCELLED: 2}
# One statement per batch and transaction: the counts, whether this brings them to total
# (finished_at), and what its callbacks need. SET expressions read the row before the update,
# RETURNING the row after it. (RETURNING plain columns only: SQLite 3.40 answers ``x IS NULL``
# wrongly there.)
_COUNT_ENDINGS = (
    batches_table.update().where(_b.id == bindparam("b_id"))
    .values(completed=_b.completed + bindparam("b_completed"),
            failed=_b.failed + bindparam("b_failed"),
            cancelled=_b.cancelled + bindparam("b_cancelled"),
            finished_at=case((_ENDED + bindparam("b_ended") >= _b.total,
                              bindparam("b_now", type_=_b.finished_at.type)), else_=None))
    .returning(_b.tenant_id, _b.total, _b.completed, _b.failed, _b.cancelled,
               _b.callback_job_ids, _b.on_complete, _b.on_success))
_UNCOUNT_REVIVALS = (
    batches_table.update().where(_b.id == bindparam("b_id"))
    .values(failed=_b.failed - bindparam("b_failed"),
            cancelled=_b.cancelled - bindparam("b_cancelled"), finished_at=None))


@dataclass(frozen=True)
class Batch:
    """A batch as stored: its counts, and the callbacks it stored once every job had ended."""

    id: str
    tenant_id: str
    total: int
    completed: int
    failed: int
    cancelled: int
    callback_job_ids: tuple[str, ...]
    created_at: datetime
    finished_at: datetime | None
    on_complete: dict[str, Any] | None = None   # the callbacks' job templates
    on_success: dict[str, Any] | None = None

    @property
    def ended(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def is_finished(self) -> bool:
        return self.ended >= self.total

    @property
    def succeeded(self) -> bool:
        """Finished with every job completed (what ``on_success`` waits for)."""
        return self.is_finished and not self.failed and not self.cancelled

    @property
    def has_callbacks(self) -> bool:
        return self.on_complete is not None or self.on_success is not None


@dataclass
class NewBatch:
    """A batch being queued: its id (set on every job's row) and its prepared callbacks."""

    id: str
    callbacks: dict[str, PreparedJob] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)   # seconds after the batch ends

    def row(self, tenant_id: str, jobs: list[PreparedJob], now: datetime) -> dict[str, Any]:
        """Its ``batches`` row, once the callbacks' priorities are resolved."""
        total = sum(1 for job in jobs if not job.is_recurring)
        templates = {kind: _template(job, self.delays.get(kind))
                     for kind, job in self.callbacks.items()}
        return {"id": self.id, "tenant_id": tenant_id, "total": total, "completed": 0,
                "failed": 0, "cancelled": 0, "on_complete": templates.get("on_complete"),
                "on_success": templates.get("on_success"), "callback_job_ids": None,
                "created_at": now, "finished_at": now if total == 0 else None}


def placeholder_payload(payload: Any, batch_id: str) -> Any:
    """A callback's payload as its handler will see it (counts still zero), so that the
    handler's checks run when the batch is queued. ``payload`` not a dict: left for
    ``prepare_job`` to refuse."""
    if not isinstance(payload, dict):
        return payload
    return {**payload, PAYLOAD_KEY: _counts(batch_id, 0, 0, 0, 0)}


def _template(job: PreparedJob, delay: float | None) -> dict[str, Any]:
    row = job.row
    payload = {k: v for k, v in job.payload.items() if k != PAYLOAD_KEY}
    return {"type": row["type"], "handler": row["handler"], "payload": payload,
            "priority": row["priority"], "max_retries": row["max_retries"],
            "metadata": job.metadata, "timezone": row["timezone"], "delay_seconds": delay}


def _counts(batch_id: str, total: int, completed: int, failed: int,
            cancelled: int) -> dict[str, Any]:
    return {"id": batch_id, "total": total, "completed": completed, "failed": failed,
            "cancelled": cancelled}


# -- endings and revivals (in the transaction that makes them) ---------------------------------

def count_endings(conn: Connection, ended: Iterable[SystemJob], now: datetime
                  ) -> tuple[list[SystemJob], list[Batch]]:
    """Add jobs that ended for good to their batches' counts (one UPDATE per batch, in id
    order: one lock order for every writer) and store the callbacks of each batch this
    finishes. Returns the callback jobs stored, for the caller to publish, and the batches
    these endings finished."""
    deltas = _deltas(ended)
    stored: list[SystemJob] = []
    finished: list[Batch] = []
    for batch_id in sorted(deltas):
        completed, failed, cancelled = deltas[batch_id]
        added = completed + failed + cancelled
        counts = conn.execute(_COUNT_ENDINGS, {
            "b_id": batch_id, "b_completed": completed, "b_failed": failed,
            "b_cancelled": cancelled, "b_ended": added, "b_now": now}).first()
        if counts is None:
            continue
        ended_now = counts.completed + counts.failed + counts.cancelled
        if ended_now >= counts.total > ended_now - added:
            finished.append(Batch(id=batch_id, tenant_id=counts.tenant_id, total=counts.total,
                                  completed=counts.completed, failed=counts.failed,
                                  cancelled=counts.cancelled, callback_job_ids=(),
                                  created_at=now, finished_at=now))
        if _callbacks_due(counts):
            stored += _store_callbacks(conn, batch_id, counts, now)
    return stored, finished


def count_revivals(conn: Connection, jobs: Iterable[SystemJob]) -> None:
    """Failed or cancelled jobs (as they were) that are about to run again: each leaves the
    count its ending added to, and its batch is unfinished until it ends again."""
    deltas = _deltas(jobs)
    for batch_id in sorted(deltas):
        _, failed, cancelled = deltas[batch_id]
        conn.execute(_UNCOUNT_REVIVALS, {"b_id": batch_id, "b_failed": failed,
                                         "b_cancelled": cancelled})


def _deltas(jobs: Iterable[SystemJob]) -> dict[str, list[int]]:
    """[completed, failed, cancelled] per batch, of the counted (one-off) jobs among ``jobs``."""
    deltas: dict[str, list[int]] = {}
    for job in jobs:
        if job.batch_id is not None and job.cron_schedule is None and job.status in _COUNTERS:
            deltas.setdefault(job.batch_id, [0, 0, 0])[_COUNTERS[job.status]] += 1
    return deltas


def _callbacks_due(counts) -> bool:
    """Every job has ended, the batch has callbacks, and they are not stored yet."""
    return (counts.completed + counts.failed + counts.cancelled >= counts.total
            and counts.callback_job_ids is None
            and (counts.on_complete is not None or counts.on_success is not None))


def _store_callbacks(conn: Connection, batch_id: str, batch, now: datetime
                     ) -> list[SystemJob]:
    """The callbacks of a batch that has just finished (``batch``: its row as updated),
    stored with its id and counts in their payload: ``on_complete`` always, ``on_success``
    only when every job completed."""
    succeeded = batch.failed == 0 and batch.cancelled == 0
    figures = _counts(batch_id, batch.total, batch.completed, batch.failed, batch.cancelled)
    rows = [_callback_row(template, batch.tenant_id, {**figures, "callback": kind}, now)
            for kind, template in (("on_complete", batch.on_complete),
                                   ("on_success", batch.on_success if succeeded else None))
            if template is not None]
    if rows:
        conn.execute(jobs_table.insert(), rows)
        db.notify_channel(conn, NOTIFY_CHANNEL)
    conn.execute(batches_table.update().where(_b.id == batch_id)
                 .values(callback_job_ids=[row["id"] for row in rows]))
    return [job_from_row(row) for row in rows]


def _callback_row(template: dict[str, Any], tenant_id: str, figures: dict[str, Any],
                  now: datetime) -> dict[str, Any]:
    when = now + timedelta(seconds=template["delay_seconds"] or 0)
    row = dict.fromkeys(JOB_COLUMNS)
    row.update(id=new_job_id(), tenant_id=tenant_id, type=template["type"],
               handler=template["handler"],
               payload={**template["payload"], PAYLOAD_KEY: figures},
               priority=template["priority"],
               status=(JobStatus.PENDING if when > now else JobStatus.QUEUED).value,
               scheduled_for=when, timezone=template["timezone"],
               max_retries=template["max_retries"], current_retries=0, total_attempts=0,
               metadata=template["metadata"], created_at=now, updated_at=now)
    return row


# -- reading ------------------------------------------------------------------------------------

def batch_from_row(row: Any) -> Batch:
    m = row._mapping
    return Batch(id=m["id"], tenant_id=m["tenant_id"], total=m["total"],
                 completed=m["completed"], failed=m["failed"], cancelled=m["cancelled"],
                 callback_job_ids=tuple(m["callback_job_ids"] or ()),
                 created_at=m["created_at"], finished_at=m["finished_at"],
                 on_complete=m["on_complete"], on_success=m["on_success"])


def read_batch(conn: Connection, batch_id: str) -> Batch | None:
    row = conn.execute(select(batches_table).where(_b.id == batch_id)).first()
    return batch_from_row(row) if row is not None else None


def list_batches(conn: Connection, *, tenant_id: str | None = None,
                 tenant_ids: frozenset[str] | None = None, before: str | None = None,
                 after: str | None = None, size: int = 50) -> Page:
    """One keyset page of batches, newest first: of one tenant, or every tenant (of
    ``tenant_ids`` only when given). ``Page.rows`` are ``Batch``es.

    :raise BadCursor: ``before`` or ``after`` is not a cursor of this list.
    """
    query = select(batches_table)
    if tenant_id is not None:
        query = query.where(_b.tenant_id == tenant_id)
    if tenant_ids is not None:
        query = query.where(_b.tenant_id.in_(sorted(tenant_ids)))
    page = keyset_page(conn, query, _b.created_at, _b.id, before=before, after=after,
                       size=size)
    page.rows = [batch_from_row(row) for row in page.rows]
    return page


def batch_failures(conn: Connection, batch: Batch, limit: int = FAILURES_SHOWN
                   ) -> list[SystemJob]:
    """The batch's failed and cancelled jobs, newest first (none read when it counts none)."""
    if not batch.failed and not batch.cancelled:
        return []
    j = jobs_table.c
    query = (select(jobs_table).where(j.batch_id == batch.id, BATCH_FAILURES)
             .order_by(j.id.desc()).limit(limit))
    return [job_from_row(row) for row in conn.execute(query)]


def prune_batches(conn: Connection, tenant_id: str, cutoff: datetime) -> int:
    """Delete the tenant's batches that finished before ``cutoff`` (with its finished jobs, by
    ``prune_finished_jobs``); how many. A job kept longer that names one is counted no more."""
    return conn.execute(delete(batches_table).where(
        _b.tenant_id == tenant_id, _b.finished_at < cutoff)).rowcount
