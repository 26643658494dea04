"""Operators' verbs on the running system: pause and resume (everything, a tenant, a handler,
one job) and run now. ``JobService`` exposes them; each change and its audit entry are one
transaction, and a commit wakes every runner (``NOTIFY_CHANNEL``), so a resume starts claims
at once and a pause holds from the runners' next cycle.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from sqlalchemy import Connection, delete, select

from . import audit, db
from .audit import Actor
from .cron import next_fire_time
from .models import jobs_table, pauses_table, runners_table, tenants_table
from .pauses import LIFTED_KEPT, MAX_REASON_LENGTH, Pause, PauseSet, read_pauses
from .records import lock_job
from .types import JobStateError, JobStatus, JobValidationError, SystemJob
from .wakeup import NOTIFY_CHANNEL

UTC = timezone.utc
FINISHED = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
_AUDIT_TARGET = {"all": "system", "tenant": "tenant", "handler": "handler", "job": "job"}


def who(by: Actor | str | None) -> tuple[Actor | None, str | None]:
    """``by`` as the audit's actor (a person or token) and as the name stored on the pause
    (a plain string: a name, recorded on the pause only)."""
    if isinstance(by, Actor):
        return by, by.name
    return None, (str(by)[:100] if by else None)


def check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise JobValidationError("reason", "reason must be text")
    reason = reason.strip()
    if "\x00" in reason:   # PostgreSQL cannot store it
        raise JobValidationError("reason", "reason must not contain NUL characters")
    if len(reason) > MAX_REASON_LENGTH:
        raise JobValidationError("reason", f"reason is {len(reason)} characters; keep it to "
                                           f"{MAX_REASON_LENGTH}")
    return reason or None


def check_tenant(conn: Connection, tenant_id: str) -> None:
    if not isinstance(tenant_id, str) or "\x00" in tenant_id or conn.execute(
            select(tenants_table.c.id).where(tenants_table.c.id == tenant_id)).first() is None:
        raise JobValidationError("tenant_id", f"unknown tenant {tenant_id!r}")


def known_handlers(conn: Connection, registered: list[str]) -> set[str]:
    """Handlers registered in this process or published by any runner seen in the last day
    (a worker process may run handlers the web process does not load)."""
    names = set(registered)
    for handlers in conn.execute(select(runners_table.c.handlers)).scalars():
        names.update(handlers or [])
    return names


def check_handler(conn: Connection, handler: str, registered: list[str]) -> None:
    known = known_handlers(conn, registered)
    if not isinstance(handler, str) or handler not in known:
        raise JobValidationError("handler", f"unknown handler {str(handler)[:100]!r}; "
                                            f"use one of {', '.join(sorted(known))}")


def add_pause(conn: Connection, pause: Pause, actor: Actor | None, now: datetime) -> Pause:
    """Store ``pause`` unless the same thing is paused already (then that pause, unchanged,
    is returned and nothing is recorded)."""
    active = read_pauses(conn).of(pause.scope, tenant_id=pause.tenant_id, handler=pause.handler,
                                  job_id=pause.job_id)
    if active is not None:
        return active
    pause = replace(pause, paused_at=now)
    values = {"scope": pause.scope, "tenant_id": pause.tenant_id, "handler": pause.handler,
              "job_id": pause.job_id, "reason": pause.reason, "paused_by": pause.paused_by,
              "paused_at": now, "resumed_at": None, "resumed_by": None}
    db.upsert_many(conn, pauses_table, [{"key": pause.key, **values}], ["key"], [],
                   replace=list(values))   # a lifted pause's row is paused again
    _record(conn, actor, pause, "paused", now)
    db.notify_channel(conn, NOTIFY_CHANNEL)
    return pause


def remove_pause(conn: Connection, pause: Pause, actor: Actor | None, resumed_by: str | None,
                 now: datetime) -> Pause | None:
    """Lift the pause of what ``pause`` names; the pause that was lifted, or None. Its row
    keeps when it ended for ``LIFTED_KEPT`` (older lifted rows are deleted here)."""
    lifted = read_pauses(conn).of(pause.scope, tenant_id=pause.tenant_id,
                                  handler=pause.handler, job_id=pause.job_id)
    if lifted is None:
        return None
    conn.execute(pauses_table.update().where(pauses_table.c.key == pause.key)
                 .values(resumed_at=now, resumed_by=resumed_by))
    conn.execute(delete(pauses_table).where(pauses_table.c.resumed_at < now - LIFTED_KEPT))
    _record(conn, actor, lifted, "resumed", now)
    db.notify_channel(conn, NOTIFY_CHANNEL)
    return lifted


def _record(conn: Connection, actor: Actor | None, pause: Pause, verb: str,
            now: datetime) -> None:
    action = f"{pause.scope}_{verb}"
    target = {"all": None, "tenant": pause.tenant_id, "handler": pause.handler,
              "job": pause.job_id}[pause.scope]
    audit.record(conn, actor, action, tenant_id=pause.tenant_id,
                 target_type=_AUDIT_TARGET[pause.scope], target_id=target,
                 job_ids=[pause.job_id] if pause.job_id else None,
                 details={"reason": pause.reason} if pause.reason else None, now=now)


def pause_job(conn: Connection, job_id: str, reason: str | None, actor: Actor | None,
              paused_by: str | None, now: datetime) -> SystemJob:
    """Hold one job: a waiting job stays (or goes back to) ``pending`` with its time kept; a
    running one finishes its attempt and its next run or retry waits."""
    job = lock_job(conn, job_id)
    if job.status in FINISHED:
        raise JobStateError(f"job {job_id} is {job.status.value}; only a job that will still "
                            "run (pending, queued, or processing with runs to come) can be "
                            "paused")
    add_pause(conn, Pause("job", tenant_id=job.tenant_id, handler=job.handler, job_id=job.id,
                          reason=reason, paused_by=paused_by), actor, now)
    if job.status is JobStatus.QUEUED:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job.id)
                     .values(status=JobStatus.PENDING.value, updated_at=now))
        job = replace(job, status=JobStatus.PENDING, updated_at=now)
    return job


def resume_job(conn: Connection, job_id: str, actor: Actor | None, resumed_by: str | None,
               now: datetime) -> SystemJob:
    """Lift a job's pause. A recurring job whose time passed while paused runs at its next
    time (missed runs are not made up); a one-off job past its time is due at once."""
    job = lock_job(conn, job_id)
    lifted = remove_pause(conn, Pause("job", tenant_id=job.tenant_id, handler=job.handler,
                                      job_id=job.id), actor, resumed_by, now)
    if (lifted is not None and job.status is JobStatus.PENDING and job.cron_schedule
            and job.scheduled_for is not None and job.scheduled_for < now):
        when = next_fire_time(job.cron_schedule, job.timezone, now)
        conn.execute(jobs_table.update().where(jobs_table.c.id == job.id)
                     .values(scheduled_for=when, updated_at=now))
        job = replace(job, scheduled_for=when, updated_at=now)
    return job


def make_due_now(conn: Connection, job: SystemJob, pauses: PauseSet,
                 now: datetime) -> SystemJob:
    """Run now for a one-off job: a delayed job, or one waiting out a retry's backoff, is due
    at once. (A recurring job gets a one-off copy instead: ``JobService.run_now``.)"""
    if pauses.of("job", job_id=job.id) is not None:
        raise JobStateError(f"job {job.id} is paused; resume it to run it")
    if job.waiting_for_dependencies:   # run now would start it before they allow
        raise JobStateError(f"job {job.id} is waiting for the jobs it depends on; it starts "
                            "when they complete (cancel it, or them, to stop it waiting)")
    if job.status is not JobStatus.PENDING:
        raise JobStateError(
            f"job {job.id} is {job.status.value}; run now starts a pending job (delayed, "
            "scheduled, or waiting to retry)" + (
                "; a queued job is due already: its explanation says what holds it"
                if job.status is JobStatus.QUEUED else ""))
    conn.execute(jobs_table.update().where(jobs_table.c.id == job.id)
                 .values(status=JobStatus.QUEUED.value, scheduled_for=now, updated_at=now))
    db.notify_channel(conn, NOTIFY_CHANNEL)
    return replace(job, status=JobStatus.QUEUED, scheduled_for=now, updated_at=now)
