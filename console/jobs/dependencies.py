"""Jobs that wait for other jobs: ``depends_on`` (ids of the same tenant's jobs) and
``on_dependency_failure`` (``"cancel"`` or ``"run"``).

How a dependent is held. It is stored ``pending`` (so it counts against ``max_queued_jobs``)
with ``scheduled_for`` NULL: promotion (``scheduled_for <= now``) never takes it, and the
runners' next wake-up reads only pending jobs that have a time. The time it asked for (a delay,
a date, a cron expression's first run) waits in ``not_before``. ``job_dependencies`` holds a
row per (dependent, dependency), kept after both end: the release finds an ended job's
dependents through its index on ``depends_on_id``, and a job's page its downstream jobs.

How it is released. Every path that ends a job for good calls ``record_endings`` in the
ending's own transaction, and that calls ``release``: each waiting dependent of the ended jobs
is locked, then the states of its dependencies are read. One that failed for good or was
cancelled cancels a dependent with ``on_dependency_failure="cancel"`` at once, naming it (an
ending too: its own dependents follow, level by level); otherwise a dependent becomes due
(queued now, or pending until ``not_before``) once none of its dependencies is ``UNFINISHED``.
The job explainer names the unfinished ones by the same predicate.

Why none waits for ever. The release is written in the transaction that ends the last
dependency, so a crash keeps both or neither (a runner killed while it runs the dependency:
lease recovery runs it again, and that ending releases). Two dependencies ending at once in
two processes: each locks the dependent's row before it reads the states (PostgreSQL; SQLite's
write lock serialises writers anyway), so the second sees the first's commit. A dependent
queued while a dependency ends: the queue transaction reads its dependencies ``FOR SHARE``, so
either it sees the ending and starts accordingly, or the ending waits for its commit and then
finds it.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, and_, bindparam, func, select

from . import db
from .models import dependencies_table, jobs_table
from .records import job_from_row
from .rollups import RollupBatch
from .types import (
    JobExecutionResult,
    JobStatus,
    JobValidationError,
    SystemJob,
    waits_for_dependencies,
)
from .validation import PreparedJob
from .wakeup import NOTIFY_CHANNEL

# A dependency that has still to end: what holds a dependent (the release and the explainer).
UNFINISHED = (JobStatus.PENDING.value, JobStatus.QUEUED.value, JobStatus.PROCESSING.value)
# Endings that cancel a dependent with on_dependency_failure="cancel".
FAILED_ENDINGS = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)
DEPENDENCY_FAILED = "DependencyFailed"   # the error type of a job cancelled by a dependency
CHUNK = 500                              # ids per IN (…): far below every bound-variable limit

_j, _d = jobs_table.c, dependencies_table.c


def waiting(columns=_j):
    """``types.waits_for_dependencies`` in SQL: pending with no time."""
    return and_(columns.status == JobStatus.PENDING.value, columns.scheduled_for.is_(None))


def has_dependents():
    """SQL: whether any job waits (or waited) for the job of the row (a claim returns it, so
    the runner records that job's end without waiting out its cycle interval). SQLite's
    RETURNING names columns bare: ``depends_on_id`` and ``id`` still resolve, as
    ``job_dependencies`` has no ``id``."""
    return (select(_d.job_id).where(_d.depends_on_id == _j.id)
            .correlate(jobs_table).exists().label("has_dependents"))


def _build_statements():
    dependents = (select(jobs_table).where(_j.id.in_(bindparam("ids", expanding=True)),
                                           waiting()).order_by(_j.id))
    states = select(_j.id, _j.status).where(_j.id.in_(bindparam("ids", expanding=True)))
    free = (jobs_table.update().where(_j.id == bindparam("b_id"))
            .values(status=bindparam("b_status"), scheduled_for=bindparam("b_when"),
                    not_before=None, updated_at=bindparam("b_now")))
    cancel = (jobs_table.update().where(_j.id == bindparam("b_id"))
              .values(status=JobStatus.CANCELLED.value, completed_at=bindparam("b_now"),
                      last_result=bindparam("b_result"), not_before=None,
                      updated_at=bindparam("b_now")))
    return dependents, dependents.with_for_update(), states, free, cancel


_DEPENDENTS, _DEPENDENTS_LOCKED, _STATES, _FREE, _CANCEL = _build_statements()


@functools.lru_cache(maxsize=CHUNK)
def _waiting_dependents_sql(count: int, postgres: bool) -> str:
    """The dependents of ``count`` jobs that wait (``waiting()``), hand-written: the release
    asks it in every runner cycle that ends jobs, dependencies or not, and SQLAlchemy's
    expanding IN costs ten times SQLite's own work on it."""
    mark = "%s" if postgres else "?"
    return ("SELECT DISTINCT d.job_id FROM job_dependencies d JOIN jobs j ON j.id = d.job_id "
            f"WHERE d.depends_on_id IN ({', '.join([mark] * count)}) "
            f"AND j.status = '{JobStatus.PENDING.value}' AND j.scheduled_for IS NULL")


# -- queueing ---------------------------------------------------------------------------------

class _State(NamedTuple):
    status: str
    recurring: bool


def settle(conn: Connection, tenant_id: str, jobs: list[PreparedJob], now: datetime) -> None:
    """Check the dependencies of new jobs and set the state each starts in: waiting for them,
    as it asked (they all completed, or all ended and it runs anyway), or cancelled (one
    failed or was cancelled). A job may depend on an earlier one of the same call (a chain).

    :raise JobValidationError: a dependency that is no job of the tenant, or is recurring.
    """
    new_ids = {job.row["id"] for job in jobs}
    wanted = {dep for job in jobs for dep in job.depends_on} - new_ids
    states = _read_states(conn, tenant_id, sorted(wanted))
    for job in jobs:
        if job.depends_on:
            _settle_one(job, states, now)
        states[job.row["id"]] = _State(job.row["status"], job.is_recurring)


def _read_states(conn: Connection, tenant_id: str, job_ids: list[str]) -> dict[str, _State]:
    """The tenant's jobs among ``job_ids``, read ``FOR SHARE`` (PostgreSQL): an ending in
    flight commits first, or waits for this queue call (see the module's docstring)."""
    states = {}
    for start in range(0, len(job_ids), CHUNK):
        query = (select(_j.id, _j.status, _j.cron_schedule)
                 .where(_j.tenant_id == tenant_id, _j.id.in_(job_ids[start:start + CHUNK]))
                 .order_by(_j.id))
        if not db.is_sqlite(conn):
            query = query.with_for_update(read=True)
        for job_id, status, cron in conn.execute(query):
            states[job_id] = _State(status, cron is not None)
    return states


def _settle_one(job: PreparedJob, states: dict[str, _State], now: datetime) -> None:
    field = f"{job.field_prefix}depends_on"
    for dep in job.depends_on:
        state = states.get(dep)
        if state is None:   # another tenant's job reads exactly as a missing one
            raise JobValidationError(field, f"unknown job {dep}: a job may depend only on "
                                            "existing jobs of its own tenant")
        if state.recurring:
            raise JobValidationError(field, f"job {dep} is recurring: it never completes, "
                                            "so no job can wait for it")
    failed = [dep for dep in job.depends_on if states[dep].status in FAILED_ENDINGS]
    row = job.row
    status, when = job.asked   # settled afresh (a queue call may be tried again)
    row.update(status=status, scheduled_for=when, not_before=None, completed_at=None,
               last_result=None)
    if failed and job.on_dependency_failure == "cancel":
        row.update(status=JobStatus.CANCELLED.value, completed_at=now,
                   last_result=json.dumps(_cancellation(failed[0], states[failed[0]].status,
                                                        now).to_dict(), separators=(",", ":")))
    elif any(states[dep].status in UNFINISHED for dep in job.depends_on):
        # A job due now keeps no time: it is due the moment they allow.
        row.update(status=JobStatus.PENDING.value, scheduled_for=None,
                   not_before=when if status == JobStatus.PENDING.value else None)


def link(conn: Connection, jobs: Iterable[PreparedJob]) -> None:
    """Record who waits for whom, for the new jobs (after their insert)."""
    rows = [{"job_id": job.row["id"], "depends_on_id": dep}
            for job in jobs for dep in job.depends_on]
    if rows:
        conn.execute(dependencies_table.insert(), rows)


def count_cancelled(rollups: RollupBatch, jobs: list[SystemJob], now: datetime) -> None:
    """Count jobs cancelled by a dependency in the hour's rollups (as a cancel verb does)."""
    for job in jobs:
        rollups.add_jobs(now, job.tenant_id, job.handler, job.type, "jobs_cancelled")


def _cancellation(dep_id: str, status: str, now: datetime) -> JobExecutionResult:
    """The ``last_result`` of a job cancelled because ``dep_id`` ended as ``status``."""
    return JobExecutionResult(
        success=False, executed_at=now, execution_time=timedelta(0),
        error_type=DEPENDENCY_FAILED,
        error_message=f"not run: job {dep_id}, which it depends on, {status} "
                      "(on_dependency_failure is cancel)",
        metadata={"retryable": False, "dependency_id": dep_id, "dependency_status": status})


# -- endings ----------------------------------------------------------------------------------

def release(conn: Connection, ended: list[SystemJob], now: datetime, rollups: RollupBatch,
            then: Callable[[Connection, list[SystemJob], datetime, RollupBatch],
                           list[SystemJob]]) -> list[SystemJob]:
    """In the transaction that ended ``ended``: release or cancel their waiting dependents,
    and the dependents of those cancelled, level by level (a long chain does not recurse).
    ``then`` (``record_endings``) records the rest of what follows from the cancelled ones.
    Returns the jobs it changed."""
    changed: list[SystemJob] = []
    cancelled: list[SystemJob] = []
    level = ended
    while level:
        dependents = _lock_waiting_dependents(conn, [job.id for job in level])
        if not dependents:
            break
        states = _states(conn, sorted({dep for job in dependents for dep in job.depends_on}))
        ended_now = {job.id for job in level}
        freed, stopped = [], []
        for job in dependents:
            outcome = _outcome(job, states, ended_now, now)
            if outcome is not None:
                (stopped if outcome.status is JobStatus.CANCELLED else freed).append(outcome)
        _write(conn, freed, stopped, now, rollups)
        changed += freed + stopped
        cancelled += stopped
        level = stopped
    if cancelled:
        changed += then(conn, cancelled, now, rollups)
    return changed


def _lock_waiting_dependents(conn: Connection, job_ids: list[str]) -> list[SystemJob]:
    """The waiting dependents of these jobs, row-locked in id order (PostgreSQL): a second
    ending of the same dependent waits here, then reads the states after the first's commit
    (the lock re-checks that it still waits)."""
    postgres = not db.is_sqlite(conn)
    cursor = conn.connection.dbapi_connection.cursor()
    dependent_ids: set[str] = set()
    try:
        for start in range(0, len(job_ids), CHUNK):
            chunk = job_ids[start:start + CHUNK]
            cursor.execute(_waiting_dependents_sql(len(chunk), postgres), chunk)
            dependent_ids.update(row[0] for row in cursor.fetchall())
    finally:
        cursor.close()
    if not dependent_ids:
        return []
    statement = _DEPENDENTS_LOCKED if postgres else _DEPENDENTS
    ordered = sorted(dependent_ids)
    return [job_from_row(row) for start in range(0, len(ordered), CHUNK)
            for row in conn.execute(statement, {"ids": ordered[start:start + CHUNK]})]


def _states(conn: Connection, job_ids: list[str]) -> dict[str, str]:
    """Each job's status (a pruned one is missing: it had ended)."""
    states: dict[str, str] = {}
    for start in range(0, len(job_ids), CHUNK):
        states.update(conn.execute(_STATES, {"ids": job_ids[start:start + CHUNK]}).all())
    return states


def _outcome(job: SystemJob, states: dict[str, str], ended_now: set[str],
             now: datetime) -> SystemJob | None:
    """What becomes of a waiting dependent now: cancelled, due, or (None) it waits on."""
    if job.on_dependency_failure == "cancel":
        failed = [dep for dep in job.depends_on if states.get(dep) in FAILED_ENDINGS]
        if failed:
            dep = min(failed, key=lambda d: d not in ended_now)   # the one that just ended
            return replace(job, status=JobStatus.CANCELLED, completed_at=now, not_before=None,
                           last_result=_cancellation(dep, states[dep], now), updated_at=now)
    if any(states.get(dep) in UNFINISHED for dep in job.depends_on):
        return None
    when = max(now, job.not_before or now)
    status = JobStatus.QUEUED if when <= now else JobStatus.PENDING
    return replace(job, status=status, scheduled_for=when, not_before=None, updated_at=now)


def _write(conn: Connection, freed: list[SystemJob], stopped: list[SystemJob],
           now: datetime, rollups: RollupBatch) -> None:
    if freed:
        conn.execute(_FREE, [{"b_id": job.id, "b_status": job.status.value,
                              "b_when": job.scheduled_for, "b_now": now} for job in freed])
        db.notify_channel(conn, NOTIFY_CHANNEL)   # other processes' runners claim them
    if stopped:
        conn.execute(_CANCEL, [{"b_id": job.id, "b_result": job.last_result.to_dict(),
                                "b_now": now} for job in stopped])
        count_cancelled(rollups, stopped, now)


# -- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Neighbour:
    """A job upstream or downstream of another: what its page lists (no payload to read)."""

    id: str
    handler: str
    status: JobStatus
    scheduled_for: datetime | None
    progress: float | None
    progress_message: str | None

    @property
    def waiting_for_dependencies(self) -> bool:
        return waits_for_dependencies(self.status, self.scheduled_for)


_NEIGHBOUR_COLUMNS = (_j.id, _j.handler, _j.status, _j.scheduled_for, _j.progress,
                      _j.progress_message)


def _neighbours(rows) -> list[Neighbour]:
    return [Neighbour(r.id, r.handler, JobStatus(r.status), r.scheduled_for, r.progress,
                      r.progress_message) for r in rows]


def unfinished_dependencies(conn: Connection, job: SystemJob,
                            limit: int) -> tuple[list[Neighbour], int]:
    """The dependencies that hold ``job`` (at most ``limit``, in the order it named them) and
    how many there are: the release's own predicate (``UNFINISHED``)."""
    found: list[Neighbour] = []
    for start in range(0, len(job.depends_on), CHUNK):
        found += _neighbours(conn.execute(
            select(*_NEIGHBOUR_COLUMNS).where(_j.id.in_(job.depends_on[start:start + CHUNK]),
                                              _j.status.in_(UNFINISHED))))
    order = {dep: index for index, dep in enumerate(job.depends_on)}
    found.sort(key=lambda n: order[n.id])
    return found[:limit], len(found)


def upstream(conn: Connection, job: SystemJob, limit: int) -> list[Neighbour | str]:
    """The jobs ``job`` depends on, in the order it named them (at most ``limit``); the id
    alone for one since pruned."""
    named = job.depends_on[:limit]
    if not named:
        return []
    by_id = {n.id: n for n in _neighbours(conn.execute(
        select(*_NEIGHBOUR_COLUMNS).where(_j.id.in_(named))))}
    return [by_id.get(dep, dep) for dep in named]


def downstream(conn: Connection, job_id: str, limit: int) -> tuple[list[Neighbour], int]:
    """The jobs that depend on ``job_id`` (oldest first, at most ``limit``) and how many."""
    dependents = select(_d.job_id).where(_d.depends_on_id == job_id)
    rows = conn.execute(select(*_NEIGHBOUR_COLUMNS).where(_j.id.in_(dependents))
                        .order_by(_j.id).limit(limit))
    shown = _neighbours(rows)
    total = len(shown) if len(shown) < limit else conn.execute(
        select(func.count()).select_from(dependents.subquery())).scalar_one()
    return shown, total

