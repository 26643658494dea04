""""Why isn't this job running?" — every reason a waiting job has not started, with figures.

Each reason is read through the code the runners use to decide (promotion's due time, the
dependencies' ``UNFINISHED`` predicate the release decides with, the
``PauseSet`` the claim filters with, ``tenant_slot`` and ``TenantSlot.full``, the rate limits'
``RateBook``, the daily limit's ``recurring_runs_allowed``, the handler names runners publish
with their heartbeat — the same list their claim filters on — and the claim's ordering), so the
explanation cannot say one thing while the runners do another.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from . import dependencies
from .claiming import PRIORITY_WEIGHT, effective_priority, tenant_slot, tenants_with_due_work
from .cron import next_fire_time
from .models import jobs_table, runners_table
from .pauses import read_pauses
from .rates import KeyState, job_limits, read_handler_limits, states_at
from .records import job_from_row
from .runners import RunnerInfo, live_runners
from .types import JobBlocker, JobNotFoundError, JobPriority, JobStatus, SystemJob
from .usage import recurring_runs_allowed

UTC = timezone.utc
COUNT_CAP = 10_000          # jobs ahead are counted up to this many (an index range each)
RUNNING_LISTED = 10         # running jobs named when a tenant is at its concurrency limit
COMPETITORS_LISTED = 10     # other tenants named when a job waits for its fair share
DEPENDENCIES_LISTED = 20    # unfinished dependencies named when a job waits for them
_PRIORITIES = list(JobPriority)


@dataclass
class JobExplanation:
    job: SystemJob
    blockers: list[JobBlocker]
    holder: RunnerInfo | None = None      # processing: the live runner that holds it
    checked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job.id, "status": self.job.status.value,
                "checked_at": self.checked_at.isoformat() if self.checked_at else None,
                "blockers": [b.to_dict() for b in self.blockers],
                "held_by": None if self.holder is None else {
                    "runner": self.holder.id, "hostname": self.holder.hostname,
                    "pid": self.holder.pid,
                    "since": self.job.last_attempt.isoformat() if self.job.last_attempt else None,
                    "progress": self.job.progress, "progress_message": self.job.progress_message}}


def explain(service, job_id: str) -> JobExplanation:
    now = service.clock.now()
    with service.engine.connect() as conn:
        row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first() \
            if isinstance(job_id, str) else None
        if row is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        job = job_from_row(row)
        runners = live_runners(conn, now, service.lease_seconds)
        if job.status is JobStatus.PROCESSING:
            return _explain_processing(conn, job, runners, now)
        if job.status not in (JobStatus.PENDING, JobStatus.QUEUED):
            return JobExplanation(job, [], checked_at=now)
        return JobExplanation(job, _waiting_blockers(conn, service, job, runners, now),
                              checked_at=now)


def _explain_processing(conn: Connection, job: SystemJob, runners: list[RunnerInfo],
                        now: datetime) -> JobExplanation:
    holder = next((r for r in runners if r.id == job.lease_owner), None)
    if holder is not None:
        return JobExplanation(job, [], holder, now)
    expires = job.lease_expires_at
    beat = conn.execute(select(runners_table.c.heartbeat_at)
                        .where(runners_table.c.id == job.lease_owner)).scalar()
    return JobExplanation(job, [JobBlocker(
        "lease",
        f"Held under a lease by runner {job.lease_owner}, which stopped renewing it"
        + (f" (last heartbeat {beat:%Y-%m-%d %H:%M:%S} UTC)" if beat else "")
        + (f"; the lease expires at {expires:%H:%M:%S} UTC and the job then returns to the "
           "queue" if expires and expires > now else
           "; the lease has expired: the next recovery (every few seconds) returns the job"),
        {"runner": job.lease_owner, "lease_expires_at": _iso(expires),
         "last_heartbeat_at": _iso(beat)})], None, now)


def _waiting_blockers(conn: Connection, service, job: SystemJob, runners: list[RunnerInfo],
                      now: datetime) -> list[JobBlocker]:
    blockers: list[JobBlocker] = []
    pauses = read_pauses(conn)
    # Promotion moves a pending job to the queue when its time has come (runner._PROMOTE_DUE).
    waiting_for_time = job.status is JobStatus.PENDING and job.scheduled_for is not None \
        and job.scheduled_for > now
    if waiting_for_time:
        blockers.append(_time_blocker(job, now))
    if job.waiting_for_dependencies:
        blockers += _dependencies_blocker(conn, job)
    for pause in pauses.holding(job.tenant_id, job.handler, job.id):
        blockers.append(JobBlocker(
            "paused", f"Paused: {pause.describe()}, by {pause.paused_by or 'unknown'} since "
                      f"{pause.paused_at:%Y-%m-%d %H:%M} UTC"
                      + (f" — {pause.reason}" if pause.reason else ""),
            pause.to_dict()))
    slot = tenant_slot(conn, job.tenant_id)
    if slot is not None and slot.full:
        running = conn.execute(select(jobs_table.c.id).where(
            jobs_table.c.tenant_id == job.tenant_id,
            jobs_table.c.status == JobStatus.PROCESSING.value)
            .order_by(jobs_table.c.id).limit(RUNNING_LISTED)).scalars().all()
        limit = slot.running + slot.free
        blockers.append(JobBlocker(
            "tenant_concurrency",
            f"Tenant {job.tenant_id} is at its concurrency limit: {slot.running} of {limit} "
            "running; a job starts when one of them ends",
            {"running": slot.running, "max_concurrent_jobs": limit, "running_job_ids": running}))
    if not waiting_for_time:
        blockers += _rate_blockers(conn, job, slot, now)
    if job.cron_schedule and slot is not None and recurring_runs_allowed(
            conn, job.tenant_id, slot.max_daily_jobs, now.date(), 1) == 0:
        deferred_to = next_fire_time(job.cron_schedule, job.timezone,
                                     max(now, job.scheduled_for or now))
        blockers.append(JobBlocker(
            "daily_limit",
            f"Tenant {job.tenant_id} has used its daily limit ({slot.max_daily_jobs} jobs); "
            f"this recurring run will be deferred to {deferred_to:%Y-%m-%d %H:%M:%S} UTC",
            {"max_daily_jobs": slot.max_daily_jobs, "day": now.date().isoformat(),
             "deferred_to": _iso(deferred_to)}))
    blockers += _runner_blockers(conn, job, runners)
    if not blockers:
        fair = _fair_share_blocker(conn, service, job, slot, runners, now)
        if fair is not None:
            blockers.append(fair)
    return blockers


def _rate_blockers(conn: Connection, job: SystemJob, slot, now: datetime) -> list[JobBlocker]:
    """The rate limits the job counts against that allow no start now: a claim now would pass
    it by for each of them (``rates.ClaimLimits`` reads them through the same ``RateBook``)."""
    limits = job_limits(job.tenant_id, slot.rate_limit if slot else None, job.handler,
                        read_handler_limits(conn))
    return [_rate_blocker(state) for state in states_at(conn, limits, now).values()
            if state.allowed == 0]


def _rate_blocker(state: KeyState) -> JobBlocker:
    when = state.next_start
    return JobBlocker(
        "rate_limit",
        f"Held by {state.describe()}, {state.limit}: {state.started:,} started in the last "
        f"{state.limit.period_text} s; the next start is allowed at "
        f"{when:%H:%M:%S}.{when.microsecond // 1000:03d} UTC, in "
        f"{(when - state.at).total_seconds():.1f} s",
        state.to_dict())


def _time_blocker(job: SystemJob, now: datetime) -> JobBlocker:
    when = job.scheduled_for
    last = job.last_result
    if job.current_retries and last is not None and not last.success:
        return JobBlocker(
            "retry_backoff",
            f"Waiting out a retry's backoff: attempt {job.current_retries + 1} of "
            f"{job.max_retries + 1} starts at {when:%Y-%m-%d %H:%M:%S} UTC; the last one "
            f"failed with {last.error_type or 'an error'}: {(last.error_message or '')[:200]}",
            {"next_attempt": job.current_retries + 1, "attempts_allowed": job.max_retries + 1,
             "retry_at": _iso(when), "in_seconds": round((when - now).total_seconds(), 1),
             "last_error_type": last.error_type, "last_error": last.error_message})
    recurring = f" (next run of '{job.cron_schedule}' in {job.timezone})" \
        if job.cron_schedule else ""
    return JobBlocker(
        "due_later", f"Due later: at {when:%Y-%m-%d %H:%M:%S} UTC{recurring}",
        {"due_at": _iso(when), "in_seconds": round((when - now).total_seconds(), 1),
         "cron_schedule": job.cron_schedule, "timezone": job.timezone})


def _dependencies_blocker(conn: Connection, job: SystemJob) -> list[JobBlocker]:
    """The jobs it waits for that have not ended (none: the release is due, as it happens in
    the very transaction that ends the last of them)."""
    unfinished, count = dependencies.unfinished_dependencies(conn, job, DEPENDENCIES_LISTED)
    if not count:
        return []
    named = ", ".join(f"job {n.id} ({n.handler}, {n.status.value})" for n in unfinished)
    more = f" and {count - len(unfinished)} more" if count > len(unfinished) else ""
    then = ("it is cancelled if one of them fails for good or is cancelled"
            if job.on_dependency_failure == "cancel" else
            "it runs once all have ended, even if some fail or are cancelled")
    when = f"; not before {job.not_before:%Y-%m-%d %H:%M:%S} UTC" if job.not_before else ""
    return [JobBlocker(
        "dependencies",
        f"Waiting for {count} of the {len(job.depends_on)} job(s) it depends on: "
        f"{named}{more}; {then}{when}",
        {"unfinished": [{"job_id": n.id, "handler": n.handler, "status": n.status.value}
                        for n in unfinished],
         "unfinished_count": count, "depends_on_count": len(job.depends_on),
         "on_dependency_failure": job.on_dependency_failure,
         "not_before": _iso(job.not_before)})]


def _runner_blockers(conn: Connection, job: SystemJob,
                     runners: list[RunnerInfo]) -> list[JobBlocker]:
    if not runners:
        last = conn.execute(select(func.max(runners_table.c.heartbeat_at))).scalar()
        return [JobBlocker(
            "no_live_runner",
            "No runner is alive: start the console (it runs one) or `flask --app console "
            "worker`" + (f"; the last heartbeat was at {last:%Y-%m-%d %H:%M:%S} UTC"
                         if last else "; no runner has ever beaten"),
            {"last_heartbeat_at": _iso(last)})]
    # A runner's claim takes only the handlers it has registered: the list it publishes.
    if not any(job.handler in runner.handlers for runner in runners):
        return [JobBlocker(
            "handler_not_registered",
            f"No live runner has the handler {job.handler!r} registered: "
            + "; ".join(f"{r.hostname} pid {r.pid} has {', '.join(r.handlers) or 'none'}"
                        for r in runners[:5]),
            {"handler": job.handler,
             "runners": [{"runner": r.id, "hostname": r.hostname, "pid": r.pid,
                          "handlers": r.handlers} for r in runners]})]
    return []


def _fair_share_blocker(conn: Connection, service, job: SystemJob, slot,
                        runners: list[RunnerInfo], now: datetime) -> JobBlocker | None:
    """Jobs the claim takes first: of the job's own tenant, those ahead in the claim's order
    (priority, then time due); of other tenants, everyone with due work shares capacity."""
    j = jobs_table.c
    rank = job.priority.rank
    due = job.scheduled_for or now
    ahead_rows = select(j.priority).where(
        j.tenant_id == job.tenant_id, j.status == JobStatus.QUEUED.value, j.id != job.id,
        or_(j.priority > rank, and_(j.priority == rank, or_(
            j.scheduled_for < due, and_(j.scheduled_for == due, j.id < job.id))))
    ).limit(COUNT_CAP).subquery()
    by_priority = {p: n for p, n in conn.execute(
        select(ahead_rows.c.priority, func.count()).group_by(ahead_rows.c.priority))}
    ahead = sum(by_priority.values())
    others = [other for other in tenants_with_due_work(conn) if other.tenant_id != job.tenant_id]
    if not ahead and not others:
        return None
    heads = {}
    for other in others:
        heads[other.tenant_id] = conn.execute(
            select(j.priority).where(j.tenant_id == other.tenant_id,
                                     j.status == JobStatus.QUEUED.value)
            .order_by(j.priority.desc()).limit(1)).scalar() or 0
    listed = sorted(others, key=lambda o: (-heads[o.tenant_id], o.tenant_id))[:COMPETITORS_LISTED]
    competitors = [(o.tenant_id, heads[o.tenant_id], conn.execute(
        select(func.count()).select_from(
            select(j.id).where(j.tenant_id == o.tenant_id, j.status == JobStatus.QUEUED.value)
            .limit(COUNT_CAP).subquery())).scalar_one()) for o in listed]
    throughput = sum(r.claims_per_minute for r in runners)   # jobs per minute, every tenant
    mine = (slot.weight if slot else 1) * PRIORITY_WEIGHT[effective_priority(
        rank, job.scheduled_for, now, service.priority_aging_seconds)]
    everyone = mine + sum(o.weight * PRIORITY_WEIGHT[heads[o.tenant_id]] for o in others)
    start = None
    if throughput:
        minutes = (ahead + 1) / (throughput * mine / everyone)
        start = now + timedelta(minutes=minutes)
    return JobBlocker(
        "fair_share",
        f"Waiting for its fair share: {ahead}{'+' if ahead >= COUNT_CAP else ''} job(s) of "
        f"tenant {job.tenant_id} ahead of it and {len(others)} other tenant(s) with due "
        "work; " + (f"estimated to start around {start:%H:%M:%S} UTC at the recent "
                    f"{throughput} starts per minute" if start else
                    "no recent throughput to estimate a start from"),
        {"ahead_in_tenant": ahead, "other_tenants_with_due_work": len(others),
         "ahead_by_priority": {_PRIORITIES[p].value: n for p, n in sorted(by_priority.items())},
         "competing_tenants": [{"tenant_id": t, "queued": n, "top_priority": _PRIORITIES[p].value}
                               for t, p, n in competitors],
         "starts_per_minute": throughput, "estimated_start": _iso(start)})


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
