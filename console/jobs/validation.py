"""Turning ``queue_*`` arguments into a job row, refusing bad input with the field at fault.

Everything here is pure: no database. Tenant-dependent checks (limits, the tenant's default
priority) happen in the queue transaction, in ``service.py``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .cron import next_fire_time, parse_timezone, validate_cron
from .handlers import HandlerRegistry
from .limits import parse_priority
from .models import JOB_COLUMNS
from .records import JOB_ID_PATTERN
from .types import JobExecutionResult, JobPriority, JobStatus, JobValidationError, SystemJob

UTC = timezone.utc
MAX_RETRIES_CEILING = 100
MAX_DEPENDENCIES = 1000            # jobs one job may wait for (checked in one transaction)
DEPENDENCY_FAILURE_MODES = ("cancel", "run")
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


@dataclass
class PreparedJob:
    """A validated job, ready to insert once its tenant's limits allow it."""

    row: dict[str, Any]
    payload: dict[str, Any]
    metadata: dict[str, Any]
    priority: JobPriority | None       # None: the tenant's default, resolved in the transaction
    payload_size: int
    depends_on: tuple[str, ...] = ()   # ids of the jobs it waits for
    on_dependency_failure: str = "cancel"
    field_prefix: str = ""             # where its arguments are in the call ("job_specs[3].")
    asked: tuple[str, datetime | None] = ("queued", None)  # status and time, dependencies aside

    @property
    def is_recurring(self) -> bool:
        return self.row["cron_schedule"] is not None

    def snapshot(self) -> SystemJob:
        """The job as the queue path stored it."""
        row = self.row
        last_result = row["last_result"]   # set only on one born cancelled (dependencies.py)
        return SystemJob(
            id=row["id"], type=row["type"], handler=row["handler"], payload=self.payload,
            priority=JobPriority.from_rank(row["priority"]), status=JobStatus(row["status"]),
            tenant_id=row["tenant_id"], scheduled_for=row["scheduled_for"],
            cron_schedule=row["cron_schedule"], timezone=row["timezone"],
            max_retries=row["max_retries"], current_retries=0, last_attempt=None,
            completed_at=row["completed_at"],
            last_result=JobExecutionResult.from_dict(json.loads(last_result))
            if last_result else None,
            metadata=self.metadata, created_at=row["created_at"], updated_at=row["updated_at"],
            idempotency_key=row["idempotency_key"], batch_id=row["batch_id"],
            depends_on=self.depends_on,
            on_dependency_failure=self.on_dependency_failure, not_before=row["not_before"])


def encode_json_object(value: Any, field_name: str) -> str:
    if not isinstance(value, dict):
        raise JobValidationError(field_name, f"must be a JSON object (a dict), got "
                                             f"{type(value).__name__}")
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise JobValidationError(field_name, f"is not JSON-serialisable: {exc}") from None


def parse_datetime(value: Any, field_name: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise JobValidationError(field_name, f"{value!r} is not an ISO 8601 date-time such as "
                                                 "'2026-12-01T09:00:00Z'") from None
    if not isinstance(value, datetime):
        raise JobValidationError(field_name, "must be a datetime or an ISO 8601 string")
    if value.tzinfo is None or value.utcoffset() is None:
        raise JobValidationError(field_name, "must carry a time zone (e.g. '…T09:00:00Z' or "
                                             "datetime(..., tzinfo=timezone.utc))")
    return value.astimezone(UTC)


def prepare_job(registry: HandlerRegistry, *, job_type: Any, handler: Any, payload: Any,
                tenant_id: Any, priority: Any = None, scheduled_for: Any = None,
                cron_schedule: Any = None, max_retries: Any = 3, metadata: Any = None,
                timezone_name: Any = "UTC", idempotency_key: Any = None, delay: Any = None,
                depends_on: Any = None, on_dependency_failure: Any = "cancel",
                now: datetime, job_id: str) -> PreparedJob:
    """Validate one job's arguments and build its row (status, ``scheduled_for``, encodings)."""
    if not isinstance(tenant_id, str) or not tenant_id.strip():
        raise JobValidationError("tenant_id", "is required: the id of an existing tenant")
    if not isinstance(handler, str) or not handler.strip():
        raise JobValidationError("handler", "is required: the name of a registered handler")
    handler_obj = registry.get(handler)
    if handler_obj is None:
        known = ", ".join(registry.names()) or "none registered"
        raise JobValidationError("handler", f"unknown handler {handler!r}; registered: {known}")
    registry.check_allowed(handler_obj, tenant_id)
    job_type = getattr(job_type, "value", job_type)
    if not isinstance(job_type, str) or not job_type.strip():
        raise JobValidationError("type", "is required, e.g. 'immediate' or 'notification'")
    supported = {getattr(t, "value", t) for t in handler_obj.supported_job_types}
    if job_type not in supported:
        raise JobValidationError("type", f"handler {handler!r} does not run {job_type!r} jobs; "
                                         f"it supports {', '.join(sorted(supported))}")

    payload_json = encode_json_object(payload, "payload")
    if handler_obj.payload_schema is not None:
        _check_schema(handler_obj.payload_schema, payload)
    try:
        accepted = handler_obj.validate_payload(payload)
    except JobValidationError:   # the handler names the field itself ("recipient",
        raise                     # "payload['data_types']"), as a schema would
    except Exception as exc:  # a handler's validator that raises is a rejection, not a crash
        raise JobValidationError("payload", f"rejected by handler {handler!r}: {exc}") from None
    if not accepted:
        hint = getattr(handler_obj, "payload_hint", "") or ""
        raise JobValidationError("payload", f"rejected by handler {handler!r}"
                                            + (f": {hint}" if hint else ""))

    if metadata is None:
        metadata = {}
    metadata_json = encode_json_object(metadata, "metadata")

    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not (
            0 <= max_retries <= MAX_RETRIES_CEILING):
        raise JobValidationError("max_retries", f"must be a whole number from 0 to "
                                                f"{MAX_RETRIES_CEILING}, got {max_retries!r}")
    parsed_priority = None if priority is None else parse_priority(priority)
    tz_name = "UTC" if timezone_name is None else timezone_name
    parse_timezone(tz_name)

    if idempotency_key is not None and (not isinstance(idempotency_key, str)
                                        or not 0 < len(idempotency_key) <= 200):
        raise JobValidationError("idempotency_key", "must be a string of 1–200 characters")

    when: datetime | None = None
    if scheduled_for is not None:
        when = parse_datetime(scheduled_for, "scheduled_for")
    if delay is not None:
        if isinstance(delay, (int, float)) and not isinstance(delay, bool) and math.isfinite(delay):
            delay = timedelta(seconds=delay)
        if not isinstance(delay, timedelta):
            raise JobValidationError("delay", "must be a timedelta (or a number of seconds)")
        if delay < timedelta(0):
            raise JobValidationError("delay", f"must not be negative, got {delay}")
        if when is not None:
            raise JobValidationError("delay", "give either a delay or scheduled_for, not both")
        when = now + delay

    cron = None
    if cron_schedule is not None:
        cron = validate_cron(cron_schedule)
        if when is None:
            when = next_fire_time(cron, tz_name, now)
        status = JobStatus.PENDING
    elif when is not None and when > now:
        status = JobStatus.PENDING
    else:
        status = JobStatus.QUEUED
        when = when or now

    dependencies = check_dependencies(depends_on)
    mode = check_dependency_failure_mode(on_dependency_failure)

    row = dict.fromkeys(JOB_COLUMNS)   # a new job leaves the others NULL
    row.update(
        id=job_id, tenant_id=tenant_id, type=job_type, handler=handler, payload=payload_json,
        priority=None,  # set once the tenant's default is known
        status=status.value, scheduled_for=when, cron_schedule=cron, timezone=tz_name,
        max_retries=max_retries, current_retries=0, total_attempts=0, metadata=metadata_json,
        idempotency_key=idempotency_key, created_at=now, updated_at=now)
    prepared = PreparedJob(row=row, payload=payload, metadata=metadata, priority=parsed_priority,
                           payload_size=len(payload_json.encode("utf-8")),
                           on_dependency_failure=mode, asked=(status.value, when))
    set_dependencies(prepared, dependencies)
    return prepared


def check_dependencies(depends_on: Any) -> tuple[str, ...]:
    """``depends_on`` as distinct job ids, in the order given. Whether they exist (in the
    tenant, and not recurring) is checked in the queue transaction."""
    if depends_on is None:
        return ()
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, (list, tuple)):
        raise JobValidationError("depends_on", "must be a list of job ids")
    for job_id in depends_on:
        if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
            raise JobValidationError("depends_on", f"{str(job_id)[:60]!r} is not a job id")
    distinct = tuple(dict.fromkeys(depends_on))
    if len(distinct) > MAX_DEPENDENCIES:
        raise JobValidationError("depends_on", f"names {len(distinct)} jobs; a job may depend "
                                               f"on at most {MAX_DEPENDENCIES}")
    return distinct


def check_dependency_failure_mode(mode: Any) -> str:
    if mode is None:
        return "cancel"
    if mode not in DEPENDENCY_FAILURE_MODES:
        raise JobValidationError("on_dependency_failure", f"must be 'cancel' or 'run', got "
                                                          f"{str(mode)[:60]!r}")
    return mode


def set_dependencies(job: PreparedJob, depends_on: tuple[str, ...]) -> None:
    """Make ``job`` wait for ``depends_on`` (its state is settled in the queue transaction)."""
    job.depends_on = depends_on
    job.row["depends_on"] = _encode(list(depends_on)) if depends_on else None
    job.row["on_dependency_failure"] = job.on_dependency_failure if depends_on else None


def _check_schema(schema: dict[str, Any], payload: dict[str, Any]) -> None:
    import jsonschema  # only handlers that declare a schema pay for the import

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(payload))
    if error is not None:
        where = "payload" + "".join(f"[{p!r}]" for p in error.absolute_path)
        raise JobValidationError(where, error.message)
