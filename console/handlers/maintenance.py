"""Maintenance handlers: keeping the tables small without changing what analytics reports.

- ``prune_finished_jobs`` deletes a tenant's finished jobs (completed, failed, cancelled) and
  their attempts once they are older than the retention period, its batches that finished
  before then, and its event webhooks' delivery log lines whose delivering job went with them.
  The hourly rollups are kept, so usage, rates, trends and metrics read the same before and
  after; only the exact p95 of pruned hours falls back to the duration histogram (within 5 %).
- ``release_stuck_jobs`` recovers the tenant's jobs still ``processing`` past their lease,
  through the runners' own recovery (``JobService.release_stuck_jobs``).
- ``compact_rollups`` deletes rollup rows nothing reads (see ``CompactRollupsHandler``: the
  hourly rollups themselves cannot shrink without changing hourly answers).

``service.create_maintenance_jobs(tenant_id)`` schedules all three and the weekly report.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from ..jobs import JobExecutionContext, JobExecutionResult, JobHandler, PermanentJobError, db
from ..jobs.attempt_logs import delete_lines_of_attempts, delete_lines_of_jobs
from ..jobs.audit import prune_entries
from ..jobs.batches import prune_batches
from ..jobs.models import attempts_table, daily_usage_table, dependencies_table, jobs_table
from ..jobs.records import job_id_floor
from ..jobs.types import FINISHED_STATUSES
from ..jobs.webhooks import delete_deliveries, prunable_deliveries
from .delivery import config_value

UTC = timezone.utc
DEFAULT_RETENTION_DAYS = 30
RETENTION_SETTING = "jobRetentionDays"   # custom_settings key: days finished jobs are kept
MAX_RETENTION_DAYS = 3650
BATCH = 2000   # rows per transaction: short write locks while a big backlog is pruned
MAINTENANCE_TYPES = {"maintenance", "cleanup", "scheduled", "recurring", "immediate", "delayed"}


def tenant_settings(context: JobExecutionContext) -> dict[str, Any]:
    tenant = context.tenant_context.get("tenant")
    return dict(getattr(tenant, "custom_settings", None) or {})


def retention_days(value: Any, where: str) -> float:
    """A retention in days (0 … 3650); ``PermanentJobError`` naming ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= MAX_RETENTION_DAYS):
        raise PermanentJobError(f"{where} must be a number of days from 0 to "
                                f"{MAX_RETENTION_DAYS}, got {value!r}")
    return float(value)


def delete_in_batches(engine: Engine, select_ids: Callable[[Any], list], delete_ids:
                      Callable[[Any, list], int], context: JobExecutionContext | None = None,
                      label: str = "rows") -> int:
    """Delete ``BATCH`` rows per write transaction until ``select_ids`` finds no more: a big
    backlog never holds the write lock for long. Returns how many were deleted."""
    deleted = 0
    while True:
        if context is not None:
            context.check_cancelled()
        with db.write_transaction(engine) as conn:
            ids = select_ids(conn)
            if ids:
                deleted += delete_ids(conn, ids)
        if len(ids) < BATCH:
            return deleted
        if context is not None:
            context.report_progress(0.5, f"{deleted} {label} deleted so far")


def prune_finished_jobs(engine: Engine, tenant_id: str, cutoff: datetime,
                        context: JobExecutionContext | None = None) -> tuple[int, int]:
    """Delete ``tenant_id``'s jobs that finished before ``cutoff``, with their attempts, and the
    attempts before ``cutoff`` of jobs that never finish (recurring jobs: an every-minute job
    leaves 525,600 attempts a year; the rollups keep their figures); each attempt's log lines
    go with it. Attempt rows are written when an attempt ends, so none of them belongs to a
    running attempt.
    Returns (jobs deleted, attempts deleted)."""
    j, a = jobs_table.c, attempts_table.c
    attempts_deleted = 0

    def select_ids(conn):
        # Oldest first along (tenant_id, id): ids are time-ordered, so the scan starts at the
        # prunable end and stops at jobs created after the cutoff.
        return conn.execute(
            select(j.id).where(j.tenant_id == tenant_id, j.id < job_id_floor(cutoff),
                               j.status.in_(FINISHED_STATUSES), j.completed_at < cutoff)
            .order_by(j.id).limit(BATCH)).scalars().all()

    def delete_ids(conn, ids):
        nonlocal attempts_deleted
        delete_lines_of_jobs(conn, ids)
        attempts_deleted += conn.execute(delete(attempts_table).where(a.job_id.in_(ids))).rowcount
        # What they waited for goes with them (the rows where they are waited for go with
        # their dependents, which end after them).
        conn.execute(delete(dependencies_table).where(dependencies_table.c.job_id.in_(ids)))
        return conn.execute(delete(jobs_table).where(j.id.in_(ids))).rowcount

    jobs_deleted = delete_in_batches(engine, select_ids, delete_ids, context, "jobs")

    def select_old_attempts(conn):
        return conn.execute(select(a.id).where(a.tenant_id == tenant_id, a.started_at < cutoff)
                            .order_by(a.started_at).limit(BATCH)).scalars().all()

    def delete_attempts(conn, ids):
        delete_lines_of_attempts(conn, ids)
        return conn.execute(delete(attempts_table).where(a.id.in_(ids))).rowcount

    attempts_deleted += delete_in_batches(engine, select_old_attempts, delete_attempts, context,
                                          "attempts")
    return jobs_deleted, attempts_deleted


def _result(context: JobExecutionContext, started: float, result: dict) -> JobExecutionResult:
    return JobExecutionResult(success=True, executed_at=context.actual_start_time,
                              execution_time=timedelta(seconds=time.monotonic() - started),
                              result=result)


class PruneFinishedJobsHandler(JobHandler):
    """Payload: ``retention_days``; without it, the tenant's ``custom_settings["jobRetentionDays"]``
    when it has one, else 30. Prunes the job's own tenant."""

    handler_name = "prune_finished_jobs"
    supported_job_types = MAINTENANCE_TYPES
    description = ("Deletes finished jobs with their attempts, batches and webhook delivery "
                   "log past the retention period, and older attempts of recurring jobs "
                   "(payload retention_days, else the tenant's jobRetentionDays, else 30).")
    payload_schema = {
        "type": "object",
        "properties": {"retention_days": {"type": "number", "minimum": 0,
                                          "maximum": MAX_RETENTION_DAYS}},
    }

    def __init__(self, engine: Engine, config: Mapping[str, Any] | None = None):
        self._engine = engine
        self._audit_days = int(config_value(config, "AUDIT_RETENTION_DAYS"))
        self._operations_tenant = config_value(config, "ALERTS_TENANT_ID")

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        payload = context.job.payload
        with db.write_transaction(self._engine) as conn:
            audit_deleted = prune_entries(
                conn, self._audit_days, context.tenant_id,
                with_untenanted=context.tenant_id == self._operations_tenant)
        if "retention_days" in payload:
            days = retention_days(payload["retention_days"], "retention_days")
            source = "payload"
        elif RETENTION_SETTING in (settings := tenant_settings(context)):
            days = retention_days(settings[RETENTION_SETTING],
                                  f"the tenant's custom_settings['{RETENTION_SETTING}']")
            source = "tenant"
        else:
            days, source = float(DEFAULT_RETENTION_DAYS), "default"
        cutoff = datetime.now(UTC) - timedelta(days=days)
        jobs_deleted, attempts_deleted = prune_finished_jobs(
            self._engine, context.tenant_id, cutoff, context)
        with db.write_transaction(self._engine) as conn:
            batches_deleted = prune_batches(conn, context.tenant_id, cutoff)
        deliveries_deleted = delete_in_batches(
            self._engine,
            lambda conn: prunable_deliveries(conn, context.tenant_id, cutoff, BATCH),
            delete_deliveries, context, "webhook deliveries")
        return _result(context, started, {
            "jobs_deleted": jobs_deleted, "attempts_deleted": attempts_deleted,
            "batches_deleted": batches_deleted, "webhook_deliveries_deleted": deliveries_deleted,
            "audit_entries_deleted": audit_deleted, "audit_retention_days": self._audit_days,
            "retention_days": days, "retention_from": source, "cutoff": cutoff.isoformat()})


class ReleaseStuckJobsHandler(JobHandler):
    """Recovers the tenant's jobs stuck in ``processing`` past their lease (a runner died).

    Runners already do this for everyone every half lease; this job is the tenant's scheduled
    safety net and record of it (how many it released shows in its result). It runs the engine's
    own recovery, so an abandoned attempt is counted exactly as a runner would count it.
    """

    handler_name = "release_stuck_jobs"
    supported_job_types = MAINTENANCE_TYPES
    description = "Queues again the tenant's jobs whose runner stopped renewing their lease."
    payload_schema = {"type": "object"}

    def __init__(self, service):
        self._service = service

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        released = self._service.release_stuck_jobs(context.tenant_id)
        return _result(context, started, {
            "released": len(released),
            "jobs": [{"id": job.id, "handler": job.handler, "status": job.status.value}
                     for job in released[:100]]})


class CompactRollupsHandler(JobHandler):
    """Deletes the tenant's rollup rows that no reader uses; analytics reads the same after.

    The hourly rollups are what every analytics figure is summed from, at hour resolution, for
    all time, and the engine writes a row only for an hour with activity: there is nothing
    redundant in them. Folding old hours into days would change the answer for any range that
    starts or ends inside a folded day (and hourly charts), and deleting rows that count
    nothing would still change what some readers list (an error type or limit with 0), so
    neither is done. What goes is what nothing reads:

    - ``tenant_daily_usage`` rows of days before yesterday (``daily_usage_days``, default 2,
      keeps today and yesterday): only today's row is ever read (``max_daily_jobs``, health),
      yet one is added per tenant and day forever.

    Planner statistics and file space are left to the database: PostgreSQL's autovacuum analyzes
    and vacuums; on SQLite the pages were tuned without statistics, and a ``VACUUM`` would lock
    the whole database while it rewrites it (freed pages are reused by new rows anyway).
    """

    handler_name = "compact_rollups"
    supported_job_types = MAINTENANCE_TYPES
    description = "Deletes rollup rows nothing reads (daily-usage counters of past days)."
    payload_schema = {
        "type": "object",
        "properties": {"daily_usage_days": {"type": "integer", "minimum": 1, "maximum": 3650}},
    }

    def __init__(self, engine: Engine):
        self._engine = engine

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        keep_days = int(context.job.payload.get("daily_usage_days", 2))
        now = datetime.now(UTC)
        result = compact_rollups(self._engine, context.tenant_id, now, keep_days)
        return _result(context, started, {"deleted": result, "daily_usage_days": keep_days})


def compact_rollups(engine: Engine, tenant_id: str, now: datetime,
                    daily_usage_days: int = 2) -> dict[str, int]:
    """What ``CompactRollupsHandler`` does, in one short transaction; rows deleted per table."""
    first_kept_day: date = now.date() - timedelta(days=max(1, daily_usage_days) - 1)
    u = daily_usage_table.c
    with db.write_transaction(engine) as conn:
        deleted = conn.execute(delete(daily_usage_table).where(
            u.tenant_id == tenant_id, u.day < first_kept_day)).rowcount
    return {"tenant_daily_usage": deleted}
