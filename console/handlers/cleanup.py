"""``custom_cleanup_handler``: deletes a tenant's data of the kinds named, each past its own
retention: a tenant's own cleanup policy, scheduled like any cron job.

```python
service.queue_scheduled_job("Custom Data Cleanup", "0 3 1 * *", "custom_cleanup_handler",
                            {"data_types": ["logs", "temp_files", "cache"],
                             "retention_policy": {"logs": 90, "temp_files": 7, "cache": 1}},
                            tenant_id)
```

``data_types`` lists what to clean; ``retention_policy`` maps each to days kept (0 … 3650; a
type without an entry keeps ``DEFAULT_RETENTION_DAYS[type]``). The result names what was deleted
per type. An unknown type, or a retention that is not a number of days, is refused when the job
is queued (``JobValidationError``) and, should such a payload reach the handler anyway, fails
the run without retrying, naming it.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from ..jobs import (
    JobExecutionContext,
    JobExecutionResult,
    JobHandler,
    JobValidationError,
    PermanentJobError,
    db,
)
from ..jobs.attempt_logs import delete_lines_of_attempts
from ..jobs.models import attempts_table, daily_usage_table
from .maintenance import (
    BATCH,
    MAINTENANCE_TYPES,
    MAX_RETENTION_DAYS,
    delete_in_batches,
    prune_finished_jobs,
)
from .models import outbox_messages_table, reports_table, sent_messages_table

UTC = timezone.utc


@dataclass(frozen=True)
class DataType:
    meaning: str
    default_days: int
    clean: Callable[[Engine, str, datetime, JobExecutionContext], dict[str, int]]


def _finished_jobs(engine, tenant_id, cutoff, context):
    jobs, attempts = prune_finished_jobs(engine, tenant_id, cutoff, context)
    return {"jobs": jobs, "attempts": attempts}


def _attempts(engine, tenant_id, cutoff, context):
    a = attempts_table.c

    def delete_attempts(conn, ids):
        delete_lines_of_attempts(conn, ids)
        return conn.execute(delete(attempts_table).where(a.id.in_(ids))).rowcount
    return {"attempts": delete_in_batches(
        engine,
        lambda conn: conn.execute(select(a.id).where(a.tenant_id == tenant_id,
                                                     a.started_at < cutoff)
                                  .order_by(a.started_at).limit(BATCH)).scalars().all(),
        delete_attempts, context, "attempts")}


def _by_age(table, id_columns, age_column):
    """A cleaner for rows of ``table`` with ``tenant_id`` whose ``age_column`` < cutoff."""
    def clean(engine, tenant_id, cutoff, context):
        c = table.c
        keys = [c[name] for name in id_columns]

        def select_ids(conn):
            return conn.execute(select(*keys).where(c.tenant_id == tenant_id,
                                                    c[age_column] < cutoff)
                                .order_by(c[age_column]).limit(BATCH)).all()

        def delete_ids(conn, rows):
            if len(keys) == 1:
                return conn.execute(delete(table).where(keys[0].in_([row[0] for row in rows]))
                                    ).rowcount
            deleted = 0
            for row in rows:   # composite keys: single-row deletes by key, one transaction
                deleted += conn.execute(delete(table).where(
                    *(key == value for key, value in zip(keys, row, strict=True)))).rowcount
            return deleted
        return {"rows": delete_in_batches(engine, select_ids, delete_ids, context)}
    return clean


def _daily_counters(engine, tenant_id, cutoff, context):
    d = daily_usage_table.c
    with db.write_transaction(engine) as conn:   # one row a day: never a big batch
        # Today's row counts against max_daily_jobs: never deleted, whatever the retention.
        first_kept = min(cutoff.date(), datetime.now(UTC).date())
        deleted = conn.execute(delete(daily_usage_table).where(
            d.tenant_id == tenant_id, d.day < first_kept)).rowcount
    return {"rows": deleted}


def _nothing(engine, tenant_id, cutoff, context):
    return {"rows": 0}


DATA_TYPES: dict[str, DataType] = {
    "finished_jobs": DataType("completed, failed and cancelled jobs with their attempts", 30,
                              _finished_jobs),
    "logs": DataType("job attempt records (when each attempt ran, its error message, the "
                     "lines it logged); the jobs themselves stay", 90, _attempts),
    "sent_messages": DataType("the never-twice records of sent notifications (a retry of a job "
                              "older than this may send again)", 90,
                              _by_age(sent_messages_table, ["tenant_id", "message_id"],
                                      "sent_at")),
    "outbox_messages": DataType("SMS, push and caught webhook messages kept in the outbox", 30,
                                _by_age(outbox_messages_table, ["id"], "created_at")),
    "reports": DataType("generated reports", 365, _by_age(reports_table, ["id"], "created_at")),
    "cache": DataType("per-day counters kept for max_daily_jobs (only today's is read; today's "
                      "is always kept)", 1, _daily_counters),
    "temp_files": DataType("temporary files: the console writes none (reports live in the "
                           "database), so there is nothing to delete", 7, _nothing),
}


# Operators' records about a tenant, not the tenant's own data: no tenant's cleanup deletes
# them (a tenant must not erase the history of what its limits refused).
OPERATOR_RECORDS = {
    "limit_rejections": "the operators' hourly counts of work a limit refused",
}


def check_parameters(payload: dict[str, Any]) -> dict[str, float]:
    """``data_types`` and ``retention_policy`` → days kept per type; ``JobValidationError``
    (a ``ValueError``) naming the payload field and the first problem."""
    types = payload.get("data_types")
    known = ", ".join(DATA_TYPES)
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise JobValidationError("payload['data_types']",
                                 f"must be a non-empty list of names from: {known}")
    for name in types:
        _check_data_type(name, "payload['data_types']", known)
    policy = payload.get("retention_policy", {})
    if not isinstance(policy, dict):
        raise JobValidationError("payload['retention_policy']",
                                 "must be an object of data type → days kept")
    for name, days in policy.items():
        _check_data_type(name, "payload['retention_policy']", known)
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not (
                0 <= days <= MAX_RETENTION_DAYS):
            raise JobValidationError(f"payload['retention_policy'][{name!r}]",
                                     f"must be a number of days from 0 to "
                                     f"{MAX_RETENTION_DAYS}, got {days!r}")
    return {name: float(policy.get(name, DATA_TYPES[name].default_days)) for name in types}


def _check_data_type(name: str, field_name: str, known: str) -> None:
    if name in OPERATOR_RECORDS:
        raise JobValidationError(field_name, f"{name!r} ({OPERATOR_RECORDS[name]}) are "
                                             f"operators' records, not the tenant's data: a "
                                             f"tenant's cleanup cannot delete them; what may be "
                                             f"cleaned: {known}")
    if name not in DATA_TYPES:
        raise JobValidationError(field_name, f"unknown data type {name!r}; what may be "
                                             f"cleaned: {known}")


class CustomCleanupHandler(JobHandler):
    """Deletes the tenant's data of the given types past their retention (see the module)."""

    handler_name = "custom_cleanup_handler"
    supported_job_types = MAINTENANCE_TYPES
    description = ("Deletes the tenant's data past its retention, per data type: "
                   + ", ".join(DATA_TYPES) + ".")
    payload_hint = ("needs 'data_types' (list) and optional 'retention_policy' "
                    "({type: days kept})")

    def __init__(self, engine: Engine):
        self._engine = engine

    def validate_payload(self, payload: dict[str, Any]) -> bool:
        check_parameters(payload)
        return True

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        try:
            retention = check_parameters(context.job.payload)
        except ValueError as exc:
            raise PermanentJobError(str(exc)) from None
        now = datetime.now(UTC)
        deleted: dict[str, Any] = {}
        for index, (name, days) in enumerate(retention.items()):
            context.report_progress(index / len(retention), f"cleaning {name}")
            cutoff = now - timedelta(days=days)
            counts = DATA_TYPES[name].clean(self._engine, context.tenant_id, cutoff, context)
            deleted[name] = {**counts, "retention_days": days, "cutoff": cutoff.isoformat()}
        return JobExecutionResult(
            success=True, executed_at=context.actual_start_time,
            execution_time=timedelta(seconds=time.monotonic() - started),
            result={"deleted": deleted})
