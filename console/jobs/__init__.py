"""The job engine: queueing, tenant limits, the fair runner, retries, cron and recovery.

No HTTP, templates or forms here (see README.md in this folder).
"""
from .batches import Batch
from .handlers import JobCancelled, JobExecutionContext, JobHandler
from .limits import JobLimitConfig, RateLimit, TenantConfig, TenantLimitTier
from .service import JobService
from .types import (
    DatabaseUnavailableError,
    JobBlocker,
    JobExecutionResult,
    JobNotFoundError,
    JobPriority,
    JobStateError,
    JobStatus,
    JobType,
    JobValidationError,
    PermanentJobError,
    SystemJob,
    TenantLimitException,
)

__all__ = [
    "get_job_service", "JobService", "SystemJob", "JobType", "JobStatus", "JobPriority",
    "JobHandler", "JobExecutionContext", "JobExecutionResult", "JobCancelled",
    "TenantLimitTier", "JobLimitConfig", "RateLimit", "TenantConfig", "TenantLimitException",
    "JobValidationError", "JobStateError", "JobNotFoundError", "PermanentJobError",
    "DatabaseUnavailableError", "JobBlocker", "Batch",
]


def get_job_service() -> JobService:
    """The current app's ``JobService`` (call inside an app context)."""
    from flask import current_app

    return current_app.extensions["jobs"]
