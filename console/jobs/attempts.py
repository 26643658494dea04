"""What an attempt's end means for its job, and the attempt's own row: one rule for the runner's
finished attempts and for lease recovery's lost ones."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .cron import next_fire_time
from .retry import backoff_seconds
from .types import JobExecutionResult, JobStatus, JobValidationError, SystemJob

ERROR_MESSAGE_CHARS = 4000   # an attempt keeps this much of its error message


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff bounds for retries (``JOBS_RETRY_BASE_SECONDS``, ``JOBS_RETRY_MAX_SECONDS``)."""

    base_seconds: float
    max_seconds: float


def next_state(job: SystemJob, result: JobExecutionResult, now: datetime,
               policy: RetryPolicy) -> dict[str, Any]:
    """The job's fields after an attempt: completed, retried with backoff, re-armed, failed."""
    if result.success:
        if job.cron_schedule:
            return _rearm(job, now)
        return {"status": JobStatus.COMPLETED.value, "completed_at": now,
                "current_retries": job.current_retries, "progress": 1.0}
    if result.retryable and job.current_retries < job.max_retries:
        attempt = job.current_retries + 1
        delay = backoff_seconds(attempt, policy.base_seconds, policy.max_seconds, job.metadata)
        # A receiver that said when to come back (Retry-After) is not asked sooner.
        retry_after = (result.metadata or {}).get("retry_after")
        if isinstance(retry_after, (int, float)) and retry_after > delay:
            delay = min(float(retry_after), policy.max_seconds)
        return {"status": JobStatus.PENDING.value, "current_retries": attempt,
                "scheduled_for": now + timedelta(seconds=delay)}
    if job.cron_schedule and (result.metadata or {}).get("rearm", True):
        return _rearm(job, now)
    return {"status": JobStatus.FAILED.value, "completed_at": now,
            "current_retries": job.current_retries}


REARM_ERROR = "rearm_error"   # a key of next_state's answer only: see job_last_result
NEVER_FIRES = "CronNeverFires"   # the error type of a recurring job that has no next time


def not_rearmed(error: JobValidationError) -> str:
    """Why a recurring job stored earlier was failed instead of re-armed."""
    return f"not re-armed: {error.message}"


def _rearm(job: SystemJob, now: datetime) -> dict[str, Any]:
    after = max(now, job.scheduled_for or now)
    try:
        when = next_fire_time(job.cron_schedule, job.timezone, after)
    except JobValidationError as exc:
        # Stored before its expression was checked (e.g. '0 0 31 2 *' with an explicit first
        # run): there is no next time, so the job fails, saying why, instead of breaking the
        # runner that records this attempt.
        return {"status": JobStatus.FAILED.value, "completed_at": now,
                "current_retries": job.current_retries,
                REARM_ERROR: not_rearmed(exc)}
    return {"status": JobStatus.PENDING.value, "current_retries": 0, "scheduled_for": when}


def job_last_result(changes: dict[str, Any], result: JobExecutionResult) -> JobExecutionResult:
    """Take ``REARM_ERROR`` out of ``changes`` (it is no column) and return what the job keeps
    as its ``last_result``: the attempt's result, or, for a recurring job that could not be
    re-armed, a failure saying so (the attempt's own row keeps what the attempt did)."""
    error = changes.pop(REARM_ERROR, None)
    if error is None:
        return result
    return replace(result, success=False, error_type=NEVER_FIRES,
                   error_message=error if result.success
                   else f"{error}; the last attempt failed: {result.error_message}",
                   metadata={**(result.metadata or {}), "retryable": False})


def run_outcome(before: SystemJob, changes: dict, success: bool) -> str | None:
    """How an attempt ended its run: "completed", "failed", or None when another attempt follows.

    A recurring job's run counts like a job of its own: success completes the run, a failure
    with no retry left fails it (the job itself is re-armed for its next time either way).
    """
    if success:
        return "completed"
    if changes["current_retries"] > before.current_retries:
        return None
    return "failed"


def attempt_values(job: SystemJob, result: JobExecutionResult, started_at: datetime,
                   duration_ms: float, worker: str) -> dict[str, Any]:
    """The attempt's row in ``job_attempts``."""
    return {
        "job_id": job.id, "tenant_id": job.tenant_id, "job_type": job.type,
        "handler": job.handler, "attempt": job.total_attempts, "started_at": started_at,
        "finished_at": started_at + timedelta(milliseconds=duration_ms),
        "duration_ms": round(duration_ms, 3), "success": result.success,
        "error_type": None if result.success else result.error_type,
        "error_message": (None if result.success
                          else (result.error_message or "")[:ERROR_MESSAGE_CHARS]),
        "worker": worker,
    }
