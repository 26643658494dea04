"""Claiming due jobs fairly, in one short write transaction.

1. Tenants with due (``queued``) work are read with their running count and limits: one indexed
   look-up per tenant, never a scan of the backlog. Paused work (``console/jobs/pauses.py``)
   is left out: a paused tenant entirely, a paused handler from the tenant's handler list.
   Rate limits (``console/jobs/rates.py``) leave room for so many more starts: a tenant whose
   own limit allows none is left out like a tenant at ``max_concurrent_jobs``, a handler whose
   limit allows none is passed by like a paused one, and a limit with some room left caps how
   many of its jobs the claim may take.
2. For each tenant with a free concurrency slot, its best due jobs (priority, then oldest
   ``scheduled_for``), at most as many as it has free slots and the runner has capacity.
   Priority here is the effective one: a waiting job rises a step per
   ``JOBS_PRIORITY_AGING_SECONDS`` (``effective_priority``), so a low job is not starved by
   its own tenant's stream of higher ones.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select

from . import db
from .dependencies import has_dependents
from .limits import RateLimit, TenantLimitTier, rate_limit_of
from .models import handler_rate_limits_table, jobs_table, tenants_table
from .pauses import PauseSet
from .rates import ClaimLimits
from .types import JobStatus

CLAIM_LOCK_KEY = 7_301_733_001   # pg_advisory_xact_lock key for claimers
AGED_LOOK_INTERVAL = 1.0          # seconds between a runner's claims that look for aged jobs
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
    running: int = 0
    rate_limit: RateLimit | None = None
    # Whether any handler has a rate limit: read with the slots, so that a claim makes no
    # round trip for handlers' limits when there are none.
    handler_limits_set: bool = False

    @property
    def full(self) -> bool:
        """At ``max_concurrent_jobs``: the claim passes the tenant by this time."""
        return self.free is not None and self.free <= 0


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
    # Uncorrelated: evaluated once per statement, not per tenant.
    any_handler_limit = select(handler_rate_limits_table.c.key).limit(1).scalar_subquery()
    tenant_slots = select(t.id, t.tier, t.max_concurrent_jobs, t.max_job_duration_ms,
                          t.max_daily_jobs, running.label("running"), t.rate_limit_count,
                          t.rate_limit_period_seconds, t.rate_limit_burst,
                          any_handler_limit.label("any_handler_limit"))
    tenants_with_due_work = tenant_slots.where(first_due.is_not(None))
    one_tenant = tenant_slots.where(t.id == bindparam("tenant_id"))
    mark_claimed = (jobs_table.update()
                    .where(j.id.in_(bindparam("ids", expanding=True)))
                    .values(status=_PROCESSING, lease_owner=bindparam("owner"),
                            lease_expires_at=bindparam("expires", type_=j.lease_expires_at.type),
                            attempt_started_at=bindparam("claimed_at",
                                                         type_=j.attempt_started_at.type),
                            last_attempt=bindparam("claimed_at", type_=j.last_attempt.type),
                            total_attempts=j.total_attempts + 1,
                            updated_at=bindparam("now", type_=j.updated_at.type),
                            progress=None, progress_message=None)
                    .returning(jobs_table, has_dependents()))
    return tenants_with_due_work, one_tenant, mark_claimed


_TENANTS_WITH_DUE_WORK, _ONE_TENANT, _MARK_CLAIMED = _build_statements()


class Candidate(NamedTuple):
    """A due job as choosing sees it: the fair share reads the ordering columns, the daily
    limit of recurring runs the schedule. Whole rows (payload, metadata, last result: JSON to
    decode, times to parse) are read only for the jobs chosen, by the claiming UPDATE itself;
    a tenant's candidates outnumber its picks whenever several tenants have work.

    ``priority`` is the rank the job competes with: its own, raised one step for every
    ``aging_seconds`` it has waited (``effective_priority``); the stored priority is unchanged.
    """
    id: str
    tenant_id: str
    handler: str
    priority: int
    scheduled_for: datetime | None
    cron_schedule: str | None
    timezone: str | None


def effective_priority(priority: int, scheduled_for: datetime | None, now: datetime,
                       aging_seconds: float | None) -> int:
    """A waiting job's priority, one step higher per ``aging_seconds`` waited since it fell
    due (at most critical): within a tenant, a low job behind a steady stream of higher ones
    starts within ``(critical - priority) × aging_seconds`` plus the wait of older critical
    jobs. ``None`` or 0: no aging."""
    if not aging_seconds or scheduled_for is None or priority >= _CRITICAL:
        return priority
    waited = (now - scheduled_for).total_seconds()
    return min(_CRITICAL, priority + max(0, int(waited // aging_seconds)))


_CRITICAL = len(PRIORITY_WEIGHT) - 1


def _slot(row) -> TenantSlot:
    free = None if row.max_concurrent_jobs is None else row.max_concurrent_jobs - row.running
    return TenantSlot(row.id, TenantLimitTier(row.tier).weight, free, row.max_job_duration_ms,
                      row.max_daily_jobs, row.running, rate_limit_of(row),
                      row.any_handler_limit is not None)


def tenants_with_due_work(conn: Connection) -> list[TenantSlot]:
    return [_slot(row) for row in db.fetch_all(conn, _TENANTS_WITH_DUE_WORK)]


def tenant_slot(conn: Connection, tenant_id: str) -> TenantSlot | None:
    """One tenant's running count and limits, read as the claim reads them."""
    row = conn.execute(_ONE_TENANT, {"tenant_id": tenant_id}).first()
    return _slot(row) if row is not None else None


@functools.lru_cache(maxsize=256)
def _candidates_sql(handler_counts: tuple[int, ...], aged: bool, postgres: bool) -> str:
    """The best due jobs of each tenant in one statement: indexed probes (LIMIT on the claim
    index), glued with UNION ALL — one round trip, not one per tenant. ``handler_counts``:
    how many handlers each probe names (a paused handler leaves some out; a handler whose rate
    limit caps the claim has a probe of its own). With ``aged``, each probe also has one per
    priority below critical, oldest first: the only jobs that aging can lift above its own.
    Every probe is an equality prefix of the claim index read in its order (no time condition
    that another index could serve).
    PostgreSQL locks the rows it returns and skips rows locked by a retry or cancel."""
    mark = "%s" if postgres else "?"
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    columns = ("SELECT id, tenant_id, handler, priority, scheduled_for, cron_schedule, timezone "
               "FROM jobs ")
    order = f"ORDER BY priority DESC, scheduled_for, id LIMIT {mark}{lock}"
    probes = []
    for handlers in handler_counts:
        where = (f"WHERE tenant_id = {mark} AND status = '{_QUEUED}' "
                 f"AND handler IN ({', '.join([mark] * handlers)}) ")
        probes.append(f"{columns}{where}{order}")
        if aged:
            probes += [f"{columns}{where}AND priority = {level} {order}"
                       for level in range(_CRITICAL)]
    return " UNION ALL ".join(f"SELECT * FROM ({probe}) AS probe_{i}"
                              for i, probe in enumerate(probes))


class Probe(NamedTuple):
    """A tenant's best due jobs run by ``handlers``, at most ``limit`` of them."""
    tenant_id: str
    handlers: list[str]
    limit: int


def _due_jobs_of(conn: Connection, probes: list[Probe], postgres: bool, now: datetime,
                 aging_seconds: float | None, look_for_aged: bool) -> dict[str, list[Candidate]]:
    """Each probed tenant's due jobs that its probes found, best first by effective priority."""
    found: dict[str, dict[str, Candidate]] = {probe.tenant_id: {} for probe in probes}
    aged = bool(aging_seconds) and look_for_aged
    # SQLite allows 500 terms in one compound SELECT: a few statements when thousands of
    # tenants have due work at once.
    per_statement = _COMPOUND_TERMS // (1 + _CRITICAL if aged else 1)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for start in range(0, len(probes), per_statement):
            chunk = probes[start:start + per_statement]
            parameters: list[Any] = []
            for probe in chunk:
                terms = [probe.tenant_id, *probe.handlers, probe.limit]
                parameters += terms * (1 + _CRITICAL) if aged else terms
            sql = _candidates_sql(tuple(len(probe.handlers) for probe in chunk), aged, postgres)
            cursor.execute(sql, parameters)
            for job_id, tenant_id, handler, priority, scheduled_for, cron, zone in (
                    cursor.fetchall()):
                if isinstance(scheduled_for, str):   # SQLite keeps UTC times as text
                    scheduled_for = datetime.fromisoformat(scheduled_for).replace(
                        tzinfo=timezone.utc)
                found[tenant_id][job_id] = Candidate(
                    job_id, tenant_id, handler,
                    effective_priority(priority, scheduled_for, now, aging_seconds),
                    scheduled_for, cron, zone)
    finally:
        cursor.close()
    return {tenant_id: sorted(jobs.values(), key=_claim_order)
            for tenant_id, jobs in found.items()}


def _claim_order(job: Candidate) -> tuple:
    return (-job.priority, job.scheduled_for or _EPOCH, job.id)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COMPOUND_TERMS = 500


class FairShare:
    """Weighted fair queuing across tenants; one instance per runner, kept between claims."""

    def __init__(self):
        self._virtual_time: dict[str, float] = {}
        self._clock = 0.0
        self._sequence = itertools.count()
        self._waiting: set[str] = set()   # tenants left with due work after the last choice

    def choose(self, candidates: dict[str, list[Any]], weights: dict[str, int],
               capacity: int, admit: Callable[[Any], bool] | None = None) -> list[Any]:
        """Up to ``capacity`` rows. A row that ``admit`` turns down (a rate limit shared
        with other tenants has no room left) is passed by at no cost to its tenant."""
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
            if admit is None or admit(row):
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
    rate_held: list[str] = field(default_factory=list)  # tenants some of whose due work a
                                                        # rate limit held back
    rate_wake: datetime | None = None          # when such work may start


def claim_due_jobs(conn: Connection, *, runner_id: str, capacity: int, lease_seconds: float,
                   handlers: list[str], fairness: FairShare, now: datetime,
                   daily_limit_check, pauses: PauseSet | None = None,
                   aging_seconds: float | None = None, look_for_aged: bool = True) -> Claim:
    """Mark up to ``capacity`` due jobs ``processing`` for ``runner_id``; return their rows.

    Paused work (``pauses``) is passed by, rate-limited work past its limits' room too.
    ``aging_seconds`` raises waiting jobs' priority; with ``look_for_aged`` the claim also
    reads each tenant's oldest jobs of every priority below critical (four more index probes
    per tenant), the ones aging may have lifted: a runner asks for that once a second, not
    every cycle (``AGED_LOOK_INTERVAL``)."""
    pauses = pauses or PauseSet([])
    if capacity <= 0 or not handlers or pauses.everything is not None:
        return Claim([], {}, [])
    db.advisory_xact_lock(conn, CLAIM_LOCK_KEY)
    held_back, slots, rooms, runnable = _tenants_with_room(conn, capacity, handlers, pauses)
    limits = ClaimLimits.read(conn, {t: slots[t].rate_limit for t in rooms}, runnable, now,
                              any(slot.handler_limits_set for slot in slots.values())) \
        if rooms else None
    candidates = _candidates(conn, rooms, runnable, limits, now, aging_seconds, look_for_aged)
    claimed: list[Any] = []
    deferred: list[tuple[Any, datetime]] = []
    if candidates:
        chosen = fairness.choose(candidates, {t: slots[t].weight for t in candidates}, capacity,
                                 limits.admit if limits is not None else None)
        chosen, deferred = daily_limit_check(conn, chosen, slots, now)
        if limits is not None:
            limits.record(conn, chosen)
        claimed = _mark_claimed(conn, chosen, runner_id, lease_seconds, now,
                                limits.at if limits is not None else now)
    durations = {tenant_id: (slots[tenant_id].max_job_duration_ms / 1000.0
                             if slots[tenant_id].max_job_duration_ms is not None else None)
                 for tenant_id in candidates}
    rate_held, rate_wake = ([], None) if limits is None else (sorted(limits.held),
                                                              limits.wake_at())
    return Claim(claimed, durations, deferred, held_back, rate_held, rate_wake)


def _tenants_with_room(conn: Connection, capacity: int, handlers: list[str], pauses: PauseSet
                       ) -> tuple[list[str], dict[str, TenantSlot], dict[str, int],
                                  dict[str, list[str]]]:
    """Tenants with due work, paused ones left out: those at ``max_concurrent_jobs`` (held
    back), and of those with a free slot their limits, room (how many may start) and the
    handlers whose jobs may start."""
    held_back: list[str] = []
    slots: dict[str, TenantSlot] = {}
    rooms: dict[str, int] = {}
    runnable: dict[str, list[str]] = {}
    for slot in tenants_with_due_work(conn):
        room = capacity if slot.free is None else min(capacity, slot.free)
        tenant_handlers = pauses.runnable_handlers(slot.tenant_id, handlers)
        if not tenant_handlers:
            continue   # paused: not held back by its limit, asked to wait
        if slot.full:
            held_back.append(slot.tenant_id)
        if room > 0:
            rooms[slot.tenant_id] = room
            slots[slot.tenant_id] = slot
            runnable[slot.tenant_id] = tenant_handlers
    return held_back, slots, rooms, runnable


def _candidates(conn: Connection, rooms: dict[str, int], runnable: dict[str, list[str]],
                limits: ClaimLimits | None, now: datetime, aging_seconds: float | None,
                look_for_aged: bool) -> dict[str, list[Candidate]]:
    """Each tenant's due jobs this claim may take, best first: at most its room, and within
    its rate limits' room."""
    if limits is None:
        probes = [Probe(tenant_id, runnable[tenant_id], room) for tenant_id, room in rooms.items()]
    else:
        plan, rooms = limits.probes(rooms, runnable)
        probes = [Probe(*probe) for probe in plan]
    if not probes:
        return {}
    found = _due_jobs_of(conn, probes, not db.is_sqlite(conn), now, aging_seconds,
                         look_for_aged)
    kept = {tenant_id: rows[:rooms[tenant_id]] if limits is None
            else limits.keep(tenant_id, rows, rooms[tenant_id])
            for tenant_id, rows in found.items()}
    return {tenant_id: rows for tenant_id, rows in kept.items() if rows}


def _mark_claimed(conn: Connection, chosen: list[Any], runner_id: str, lease_seconds: float,
                  now: datetime, claimed_at: datetime) -> list[Any]:
    """The chosen jobs marked ``processing`` under the runner's lease, their rows in the order
    the fair share chose. ``claimed_at`` (the jobs' start) is the time the rate limits counted
    them at: ``now``, or a start a moment later already logged (``RateBook.at``)."""
    if not chosen:
        return []
    ids = [row.id for row in chosen]
    by_id = {row.id: row for row in conn.execute(
        _MARK_CLAIMED, {"ids": ids, "owner": runner_id, "claimed_at": claimed_at,
                        "expires": now + timedelta(seconds=lease_seconds), "now": now})}
    return [by_id[job_id] for job_id in ids]
