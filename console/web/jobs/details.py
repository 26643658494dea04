"""A job's page, read: its attempts (the newest few, however many it has had), its result, what
the operator may do to it now (retry, cancel, pause, resume, run now), and for a recurring job
its schedule."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask_login import current_user
from sqlalchemy import Connection, func, select

from ...jobs.cron import next_fire_time
from ...jobs.models import attempts_table
from ...jobs.service import RETRYABLE_STATUSES
from ...jobs.types import WAITING_STATUSES, JobStatus, JobValidationError, SystemJob
from ..control import current_pauses, may_control

UTC = timezone.utc
ATTEMPTS_SHOWN = 50   # a recurring job can have thousands; the page shows the newest


def job_activity(conn: Connection, job: SystemJob) -> dict[str, Any]:
    """What the activity fragment (actions, result, attempts) shows; refreshed on each change."""
    a = attempts_table.c
    attempts = [dict(row._mapping) for row in conn.execute(
        select(a.attempt, a.started_at, a.finished_at, a.duration_ms, a.success, a.error_type,
               a.error_message, a.worker)
        .where(a.job_id == job.id).order_by(a.attempt.desc(), a.id.desc())
        .limit(ATTEMPTS_SHOWN))]
    total = len(attempts)
    if total == ATTEMPTS_SHOWN:
        total = conn.execute(select(func.count()).select_from(attempts_table)
                              .where(a.job_id == job.id)).scalar_one()
    may_act = current_user.is_authenticated and current_user.may("operator")
    return {
        "job": job,
        "attempts": attempts,
        "attempts_total": total,
        "result": job.last_result.to_dict() if job.last_result else None,
        "can_retry": may_act and job.status.value in RETRYABLE_STATUSES,
        "can_cancel": may_act and job.status.value in WAITING_STATUSES,
        **job_controls(job),
    }


def job_controls(job: SystemJob) -> dict[str, Any]:
    """The job's own pause, and which of pause, resume and run now the operator may use now:
    pause and resume a pending, queued or recurring job; run now a pending one (delayed, or
    waiting out a retry's backoff) or a recurring one (a one-off copy: its schedule stays)."""
    own = current_pauses().of("job", job_id=job.id)
    allowed = may_control() and not job.is_finished
    waiting = job.status.value in WAITING_STATUSES
    return {
        "own_pause": own,
        "can_pause": allowed and own is None and (waiting or bool(job.cron_schedule)),
        "can_resume": allowed and own is not None,
        "can_run_now": allowed and (bool(job.cron_schedule) or (
            job.status is JobStatus.PENDING and own is None)),
    }


def schedule(job: SystemJob, now: datetime | None = None) -> dict[str, Any] | None:
    """A recurring job's cron expression, time zone and next run (None for one-off jobs)."""
    if not job.cron_schedule:
        return None
    now = now or datetime.now(UTC)
    if job.status.value in WAITING_STATUSES and job.scheduled_for:
        next_run = job.scheduled_for
    elif job.status.value == "processing":
        try:
            next_run = next_fire_time(job.cron_schedule, job.timezone, now)
        except JobValidationError:   # stored before it was checked: it never fires
            next_run = None
    else:
        next_run = None   # cancelled or failed: it runs again only if retried
    return {"cron": job.cron_schedule, "timezone": job.timezone, "next_run": next_run}
