"""Claiming due jobs fairly, in one short write transaction.

1. Tenants with due (``queued``) work are read with their running count and limits: one indexed
   look-up per tenant, never a scan of the backlog.
2. For each tenant with a free concurrency slot, its best due jobs (priority, then oldest
   ``scheduled_for``), at most as many as it has free slots and the runner has capacity.
3. ``FairShare`` picks among those heads by weighted fair queuing: each pick costs a tenant
   1 / (tier weight × priority weight) of virtual time and the tenant with the least virtual time
   goes next. Tenants with due work thus share capacity in proportion to tier × priority, a
   critical job overtakes a low one, a lone busy tenant still gets all free capacity up to its cap,
   and a newly active tenant starts at the current virtual time, so another tenant's backlog
   delays it by at most one pick per competing tenant.
4. The picks are marked ``processing`` under this runner's lease, by an ``UPDATE … RETURNING``
   that also reads their whole rows (steps 2–3 read only the columns that choosing needs).

Concurrency: on SQLite the transaction holds the write lock (BEGIN IMMEDIATE); on PostgreSQL a
transaction-scoped advisory lock serialises claimers, so running counts read in step 1 are exact
and ``max_concurrent_jobs`` holds across every process. Candidate rows are still read with
``FOR UPDATE SKIP LOCKED`` so a claim never waits on a job that a retry or cancel is changing.
"""
from __future__ import annotations

import functools
import heapq
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select

from . import db
from .limits import TenantLimitTier
from .models import jobs_table, tenants_table
from .types import JobStatus

CLAIM_LOCK_KEY = 7_301_733_001   # pg_advisory_xact_lock key for claimers
PRIORITY_WEIGHT = (1, 2, 4, 8, 16)  # low … critical

_PROCESSING = JobStatus.PROCESSING.value
_QUEUED = JobStatus.QUEUED.value


@dataclass
class TenantSlot:
    tenant_id: str
    weight: int
    free: int | None              # None: no concurrency limit
    max_job_duration_ms: int | None
    max_daily_jobs: int | None


def _build_statements():
    t, j = tenants_table.c, jobs_table.c
    running = (select(func.count()).select_from(jobs_table)
               .where(j.tenant_id == t.id, j.status == _PROCESSING).scalar_subquery())
    # A correlated probe (LIMIT 1 on the claim index), not EXISTS: PostgreSQL plans EXISTS as a
    # semi-join over every queued row when its statistics are stale. Ordered like the claim
    # index, so that the index is the cheap way to the first row: unordered, PostgreSQL may
    # expect (from statistics taken when most jobs were queued) a queued row within the first
    # few of a sequential scan, and then reads past every finished job before the first queued
    # one — a claim that slows as history grows, with every other runner waiting behind it.
    first_due = (select(j.id).where(j.tenant_id == t.id, j.status == _QUEUED)
                 .order_by(j.priority.desc(), j.scheduled_for, j.id)
                 .limit(1).scalar_subquery())
    tenants_with_due_work = select(t.id, t.tier, t.max_concurrent_jobs, t.max_job_duration_ms,
                                   t.max_daily_jobs, running.label("running")).where(
        first_due.is_not(None))
    mark_claimed = (jobs_table.update()
                    .where(j.id.in_(bindparam("ids", expanding=True)))
                    .values(status=_PROCESSING, lease_owner=bindparam("owner"),
                            lease_expires_at=bindparam("expires", type_=j.lease_expires_at.type),
                            attempt_started_at=bindparam("now", type_=j.attempt_started_at.type),
                            last_attempt=bindparam("now", type_=j.last_attempt.type),
                            total_attempts=j.total_attempts + 1,
                            updated_at=bindparam("now", type_=j.updated_at.type),
                            progress=None, progress_message=None)
                    .returning(jobs_table))
    return tenants_with_due_work, mark_claimed


_TENANTS_WITH_DUE_WORK, _MARK_CLAIMED = _build_statements()


class Candidate(NamedTuple):
    """A due job as choosing sees it: the fair share reads the ordering columns, the daily
    limit of recurring runs the schedule. Whole rows (payload, metadata, last result: JSON to
    decode, times to parse) are read only for the jobs chosen, by the claiming UPDATE itself;
    a tenant's candidates outnumber its picks whenever several tenants have work."""
    id: str
    tenant_id: str
    priority: int
    scheduled_for: datetime | None
    cron_schedule: str | None
    timezone: str | None


def _tenants_with_due_work(conn: Connection) -> list[TenantSlot]:
    slots = []
    for row in conn.execute(_TENANTS_WITH_DUE_WORK):
        free = None if row.max_concurrent_jobs is None else row.max_concurrent_jobs - row.running
        slots.append(TenantSlot(row.id, TenantLimitTier(row.tier).weight, free,
                                row.max_job_duration_ms, row.max_daily_jobs))
    return slots


@functools.lru_cache(maxsize=256)
def _candidates_sql(tenants: int, handlers: int, postgres: bool) -> str:
    """The best due jobs of each of ``tenants`` tenants in one statement: one indexed probe
    per tenant (LIMIT on the claim index), glued with UNION ALL — one round trip, not one per
    tenant. PostgreSQL locks the rows it returns and skips rows locked by a retry or cancel."""
    mark = "%s" if postgres else "?"
    one = ("SELECT id, tenant_id, priority, scheduled_for, cron_schedule, timezone FROM jobs "
           f"WHERE tenant_id = {mark} AND status = '{_QUEUED}' "
           f"AND handler IN ({', '.join([mark] * handlers)}) "
           f"ORDER BY priority DESC, scheduled_for, id LIMIT {mark}"
           + (" FOR UPDATE SKIP LOCKED" if postgres else ""))
    return " UNION ALL ".join(f"SELECT * FROM ({one}) AS tenant_{i}" for i in range(tenants))


def _due_jobs_of(conn: Connection, rooms: dict[str, int], handlers: list[str],
                 postgres: bool) -> dict[str, list[Candidate]]:
    """Each tenant's best ``rooms[tenant]`` due jobs, best first."""
    found: dict[str, list[Candidate]] = {tenant_id: [] for tenant_id in rooms}
    tenants = list(rooms)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        # SQLite allows 500 terms in one compound SELECT: a few statements when thousands
        # of tenants have due work at once.
        for start in range(0, len(tenants), _TENANTS_PER_STATEMENT):
            chunk = tenants[start:start + _TENANTS_PER_STATEMENT]
            parameters: list[Any] = []
            for tenant_id in chunk:
                parameters += [tenant_id, *handlers, rooms[tenant_id]]
            cursor.execute(_candidates_sql(len(chunk), len(handlers), postgres), parameters)
            for job_id, tenant_id, priority, scheduled_for, cron, zone in cursor.fetchall():
                if isinstance(scheduled_for, str):   # SQLite keeps UTC times as text
                    scheduled_for = datetime.fromisoformat(scheduled_for).replace(
                        tzinfo=timezone.utc)
                found[tenant_id].append(Candidate(job_id, tenant_id, priority, scheduled_for,
                                                  cron, zone))
    finally:
        cursor.close()
    return found


_TENANTS_PER_STATEMENT = 200


class FairShare:
    """Weighted fair queuing across tenants; one instance per runner, kept between claims."""

    def __init__(self):
        self._virtual_time: dict[str, float] = {}
        self._clock = 0.0
        self._sequence = itertools.count()
        self._waiting: set[str] = set()   # tenants left with due work after the last choice

    def choose(self, candidates: dict[str, list[Any]], weights: dict[str, int],
               capacity: int) -> list[Any]:
        heap: list[tuple] = []
        for tenant_id, rows in candidates.items():
            if rows:
                if tenant_id not in self._waiting:
                    # Newly active: start at the current virtual time, neither owed a burst for
                    # having been idle nor behind everyone who was busy meanwhile. A tenant that
                    # was already waiting keeps its place.
                    self._virtual_time[tenant_id] = max(
                        self._virtual_time.get(tenant_id, 0.0), self._clock)
                heapq.heappush(heap, self._entry(tenant_id, rows, 0, weights[tenant_id]))
        chosen = []
        while heap and len(chosen) < capacity:
            finish, _, _, _, row, tenant_id, index = heapq.heappop(heap)
            chosen.append(row)
            self._virtual_time[tenant_id] = finish
            self._clock = max(self._clock, finish - 1.0 / (weights[tenant_id]
                                                           * PRIORITY_WEIGHT[row.priority]))
            rows = candidates[tenant_id]
            if index + 1 < len(rows):
                heapq.heappush(heap, self._entry(tenant_id, rows, index + 1, weights[tenant_id]))
        self._waiting = {entry[5] for entry in heap}
        self._forget_idle()
        return chosen

    def _entry(self, tenant_id: str, rows: list[Any], index: int, weight: int):
        row = rows[index]
        finish = self._virtual_time[tenant_id] + 1.0 / (weight * PRIORITY_WEIGHT[row.priority])
        waited_since = row.scheduled_for.timestamp() if row.scheduled_for else 0.0
        # Ties: the higher priority, then the job that has waited longest.
        return (finish, -row.priority, waited_since, next(self._sequence), row, tenant_id, index)

    def _forget_idle(self) -> None:
        if len(self._virtual_time) > 10_000:
            self._virtual_time = {t: v for t, v in self._virtual_time.items() if v > self._clock}


@dataclass
class Claim:
    rows: list[Any]                            # the claimed jobs' rows, as now stored
    duration_limits: dict[str, float | None]   # tenant_id → seconds
    deferred: list[tuple[Any, datetime]]       # recurring runs moved on by the daily limit
                                               # (their rows as now stored, and their new time)
    held_back: list[str] = field(default_factory=list)  # tenants with due work, no free slot


def claim_due_jobs(conn: Connection, *, runner_id: str, capacity: int, lease_seconds: float,
                   handlers: list[str], fairness: FairShare, now: datetime,
                   daily_limit_check) -> Claim:
    """Mark up to ``capacity`` due jobs ``processing`` for ``runner_id``; return their rows."""
    if capacity <= 0 or not handlers:
        return Claim([], {}, [])
    postgres = not db.is_sqlite(conn)
    db.advisory_xact_lock(conn, CLAIM_LOCK_KEY)
    held_back = []
    rooms: dict[str, int] = {}
    slots: dict[str, TenantSlot] = {}
    for slot in _tenants_with_due_work(conn):
        room = capacity if slot.free is None else min(capacity, slot.free)
        if slot.free is not None and slot.free <= 0:
            held_back.append(slot.tenant_id)
        if room > 0:
            rooms[slot.tenant_id] = room
            slots[slot.tenant_id] = slot
    candidates = {tenant_id: rows for tenant_id, rows in
                  (_due_jobs_of(conn, rooms, handlers, postgres) if rooms else {}).items() if rows}
    if not candidates:
        return Claim([], {}, [], held_back)
    chosen = fairness.choose(candidates, {t: slots[t].weight for t in candidates}, capacity)
    chosen, deferred = daily_limit_check(conn, chosen, slots, now)
    claimed = []
    if chosen:
        ids = [row.id for row in chosen]
        by_id = {row.id: row for row in conn.execute(
            _MARK_CLAIMED, {"ids": ids, "owner": runner_id,
                            "expires": now + timedelta(seconds=lease_seconds), "now": now})}
        claimed = [by_id[job_id] for job_id in ids]   # in the order the fair share chose
    durations = {tenant_id: (slots[tenant_id].max_job_duration_ms / 1000.0
                             if slots[tenant_id].max_job_duration_ms is not None else None)
                 for tenant_id in candidates}
    return Claim(claimed, durations, deferred, held_back)
