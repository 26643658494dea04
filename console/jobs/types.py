"""The engine's value types: enumerations, the job snapshot, results and exceptions."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


class JobStatus(str, enum.Enum):
    PENDING = "pending"          # waits for its time: delayed, cron, or a retry's backoff
    QUEUED = "queued"            # due, waiting for a slot
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


WAITING_STATUSES = (JobStatus.PENDING.value, JobStatus.QUEUED.value)
FINISHED_STATUSES = (JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)


class JobPriority(str, enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        """0 for low … 4 for critical: the value stored in the database and ordered on."""
        return _PRIORITY_ORDER.index(self)

    @classmethod
    def from_rank(cls, rank: int) -> JobPriority:
        return _PRIORITY_ORDER[rank]

    def __lt__(self, other):  # type: ignore[override]
        if isinstance(other, JobPriority):
            return self.rank < other.rank
        return NotImplemented

    def __le__(self, other):  # type: ignore[override]
        if isinstance(other, JobPriority):
            return self.rank <= other.rank
        return NotImplemented

    def __gt__(self, other):  # type: ignore[override]
        if isinstance(other, JobPriority):
            return self.rank > other.rank
        return NotImplemented

    def __ge__(self, other):  # type: ignore[override]
        if isinstance(other, JobPriority):
            return self.rank >= other.rank
        return NotImplemented


_PRIORITY_ORDER = [JobPriority.LOW, JobPriority.NORMAL, JobPriority.HIGH, JobPriority.URGENT,
                   JobPriority.CRITICAL]


class JobType(str, enum.Enum):
    NOTIFICATION = "notification"
    IMMEDIATE = "immediate"
    DELAYED = "delayed"
    SCHEDULED = "scheduled"
    RECURRING = "recurring"
    MAINTENANCE = "maintenance"
    CLEANUP = "cleanup"
    DATA_SYNC = "data_sync"
    FILE_PROCESSING = "file_processing"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class JobExecutionResult:
    """What one attempt produced. ``metadata={"retryable": False}`` on a failure ends the job."""

    success: bool
    executed_at: datetime
    execution_time: timedelta
    result: dict[str, Any] | None = None
    error_message: str | None = None
    metadata: dict[str, Any] | None = None
    error_type: str | None = None

    @property
    def retryable(self) -> bool:
        return bool((self.metadata or {}).get("retryable", True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "executed_at": self.executed_at.isoformat(),
            "execution_time_ms": round(self.execution_time.total_seconds() * 1000, 3),
            "result": self.result,
            "error_message": self.error_message,
            "error_type": self.error_type,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobExecutionResult | None:
        if not data:
            return None
        return cls(
            success=bool(data.get("success")),
            executed_at=datetime.fromisoformat(data["executed_at"]),
            execution_time=timedelta(milliseconds=data.get("execution_time_ms") or 0),
            result=data.get("result"),
            error_message=data.get("error_message"),
            metadata=data.get("metadata"),
            error_type=data.get("error_type"),
        )


def waits_for_dependencies(status: JobStatus, scheduled_for: datetime | None) -> bool:
    """Pending with no time yet: held until the jobs it depends on allow it to run
    (``console/jobs/dependencies.py``; its ``waiting`` is the same rule in SQL)."""
    return status is JobStatus.PENDING and scheduled_for is None


@dataclass(frozen=True)
class SystemJob:
    """A snapshot of one job as stored. Change jobs through ``JobService``, never by editing
    this."""

    id: str
    type: str
    handler: str
    payload: dict[str, Any]
    priority: JobPriority
    status: JobStatus
    tenant_id: str
    scheduled_for: datetime | None
    cron_schedule: str | None
    timezone: str
    max_retries: int
    current_retries: int
    last_attempt: datetime | None
    completed_at: datetime | None
    last_result: JobExecutionResult | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    total_attempts: int = 0
    batch_id: str | None = None
    depends_on: tuple[str, ...] = ()          # ids of the jobs it waits for
    on_dependency_failure: str = "cancel"     # or "run"
    not_before: datetime | None = None        # its own time, kept while it waits for them

    @property
    def can_retry(self) -> bool:
        """True while a failed attempt would be followed by another one."""
        return self.current_retries < self.max_retries

    @property
    def is_recurring(self) -> bool:
        return self.cron_schedule is not None

    @property
    def is_finished(self) -> bool:
        return self.status.value in FINISHED_STATUSES

    @property
    def waiting_for_dependencies(self) -> bool:
        return waits_for_dependencies(self.status, self.scheduled_for)


BLOCKER_CODES = ("due_later", "retry_backoff", "paused", "tenant_concurrency", "daily_limit",
                 "rate_limit", "no_live_runner", "handler_not_registered", "fair_share",
                 "dependencies", "lease")


@dataclass(frozen=True)
class JobBlocker:
    """One reason a job has not started (``JobService.explain_job``): ``code`` (one of
    ``BLOCKER_CODES``), ``message`` for people, ``details``: the figures behind it."""

    code: str
    message: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class JobValidationError(ValueError):
    """Input to a ``queue_*`` call is invalid; ``field`` names the argument at fault."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = f"{field_name}: {message}"
        super().__init__(self.message)


class PermanentJobError(Exception):
    """Raise from a handler for a failure that retrying cannot fix (bad input, a 4xx answer):
    the job fails at once instead of retrying."""

    job_metadata = {"retryable": False}


class JobNotAllowedError(PermanentJobError):
    """The job may never run as it is stored (a system handler of another tenant than the
    operations tenant, queued before that rule existed): it fails for good, and a recurring one
    is not re-armed to fail again at each of its times."""

    job_metadata = {"retryable": False, "rearm": False}


class JobNotFoundError(LookupError):
    """No job has that id."""


class JobStateError(ValueError):
    """A state change that the job's current status does not allow (retry a running job …)."""


class TenantLimitException(Exception):
    """A tenant's limit refused the work; nothing was stored."""

    def __init__(self, message: str, limit_type: str, current_usage: Any, limit: Any,
                 tenant_id: str):
        super().__init__(message)
        self.message = message
        self.limit_type = limit_type
        self.current_usage = current_usage
        self.limit = limit
        self.tenant_id = tenant_id

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "limit_type": self.limit_type,
                "current_usage": self.current_usage, "limit": self.limit,
                "tenant_id": self.tenant_id}


class DatabaseUnavailableError(Exception):
    """The database could not serve the call: unreachable (down, restarting, a network fault)
    or, on SQLite, busy past the wait for its write lock. The call did not happen; retry it
    (``retry_after`` seconds is a sensible pause). Over HTTP this is a 503.

    ``reason`` is ``"unreachable"`` or ``"busy"``; ``detail`` what the driver said.
    """

    retry_after = 5

    def __init__(self, reason: str, message: str, detail: str = ""):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail
