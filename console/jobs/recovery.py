"""Lease recovery: jobs whose runner stopped renewing its lease (a crash, a lost machine) get
their lost attempt recorded and run again. Every runner does this on its housekeeping clock, and
the ``release_stuck_jobs`` maintenance verb does it once for one tenant."""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Engine, select

from . import db, webhooks
from .attempts import RetryPolicy, attempt_values, job_last_result, next_state, run_outcome
from .endings import record_endings
from .models import attempts_table, jobs_table
from .records import job_from_row
from .rollups import RollupBatch
from .runners import forget_old_runners, record_lost_jobs
from .types import JobExecutionResult, JobStatus, SystemJob
from .wakeup import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


def release_expired_leases(engine: Engine, policy: RetryPolicy, now: datetime, *,
                           tenant_id: str | None = None,
                           held: frozenset[str] | set[str] = frozenset()) -> list[SystemJob]:
    """Take back every job (only ``tenant_id``'s when given) still ``processing`` past its
    lease as of ``now`` (the engine's clock, which stamped the leases), except ``held`` (the
    caller's own, still running or being recorded). Each lost attempt is recorded as
    ``WorkerLost``; the job is queued again at once (not its fault), or fails when it has no
    retries left, or waits for its next time when it is recurring.

    Returns the released jobs in their new state, and the jobs their endings changed
    (``record_endings``); the caller publishes them.
    :raise: whatever the database raises (nothing is then changed).
    """
    j = jobs_table.c
    recovered: list[SystemJob] = []
    lost_by_runner: dict[str, list[str]] = {}
    lost_attempts = RollupBatch()
    outcomes: list[tuple[SystemJob, str | None]] = []
    with db.write_transaction(engine) as conn:
        expired = select(jobs_table).where(
            j.status == JobStatus.PROCESSING.value, j.lease_expires_at < now).order_by(j.id)
        if tenant_id is not None:
            expired = expired.where(j.tenant_id == tenant_id)
        if held:
            expired = expired.where(j.id.not_in(sorted(held)))
        if conn.dialect.name == "postgresql":   # two recoverers never take the same row
            expired = expired.with_for_update(skip_locked=True)
        for row in conn.execute(expired).all():
            job = job_from_row(row)
            started = row.attempt_started_at or row.last_attempt or now
            result = JobExecutionResult(
                success=False, executed_at=started, execution_time=now - started,
                error_type="WorkerLost",
                error_message=f"runner {row.lease_owner} stopped renewing its lease "
                              "(crashed or lost); the attempt was abandoned")
            changes = next_state(job, result, now, policy)
            last_result = job_last_result(changes, result)
            if changes["status"] == JobStatus.PENDING.value and not job.cron_schedule:
                # Not the job's fault: run it again at once, without a backoff.
                changes.update(status=JobStatus.QUEUED.value, scheduled_for=now)
            taken = conn.execute(
                jobs_table.update()
                .where(j.id == job.id, j.status == JobStatus.PROCESSING.value,
                       j.lease_owner == row.lease_owner, j.lease_expires_at < now)
                .values(**changes, last_result=last_result.to_dict(), lease_owner=None,
                        lease_expires_at=None, attempt_started_at=None,
                        updated_at=now)).rowcount
            if taken != 1:  # renewed or recovered meanwhile: not ours to count
                continue
            attempt = attempt_values(job, result, started,
                                     (now - started).total_seconds() * 1000, row.lease_owner)
            conn.execute(attempts_table.insert().values(**attempt))
            lost_by_runner.setdefault(row.lease_owner, []).append(job.id)
            outcome = run_outcome(job, changes, False)
            lost_attempts.add_attempt(
                now, job.tenant_id, job.handler, job.type, attempt["duration_ms"], False,
                "WorkerLost", attempt["error_message"], outcome)
            recovered.append(replace(job, status=JobStatus(changes["status"]),
                                     scheduled_for=changes.get("scheduled_for"),
                                     current_retries=changes["current_retries"],
                                     last_result=last_result, lease_owner=None,
                                     updated_at=now))
            outcomes.append((recovered[-1], outcome))
        consequences = record_endings(conn, recovered, now, lost_attempts)
        consequences += webhooks.record_job_events(conn, outcomes, now, lost_attempts)
        lost_attempts.write(conn)
        record_lost_jobs(conn, lost_by_runner)
        if tenant_id is None:
            forget_old_runners(conn, now)
        if recovered:
            db.notify_channel(conn, NOTIFY_CHANNEL)
    if recovered:
        log.warning("recovered %d jobs from runners that stopped renewing their leases",
                    len(recovered))
    return recovered + consequences
