"""Maintenance handlers: keeping the job tables small without losing what analytics reports.

``prune_finished_jobs`` deletes a tenant's finished jobs (completed, failed, cancelled) and their
attempts once they are older than the retention period. The hourly rollups are kept, so usage,
rates, trends and metrics read the same before and after; only the exact p95 of pruned hours
falls back to the duration histogram (within 5 %).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from ..jobs import JobExecutionContext, JobExecutionResult, JobHandler
from ..jobs import db
from ..jobs.models import attempts_table, jobs_table
from ..jobs.records import job_id_floor
from ..jobs.types import FINISHED_STATUSES

UTC = timezone.utc
DEFAULT_RETENTION_DAYS = 30
BATCH = 2000   # rows per transaction: short write locks while a big backlog is pruned


class PruneFinishedJobsHandler(JobHandler):
    """Payload: ``retention_days`` (default 30). Prunes the job's own tenant."""

    handler_name = "prune_finished_jobs"
    supported_job_types = {"maintenance", "cleanup", "scheduled", "recurring", "immediate"}
    description = "Deletes finished jobs and their attempts past the retention period."
    payload_schema = {
        "type": "object",
        "properties": {"retention_days": {"type": "number", "minimum": 0, "maximum": 3650}},
    }

    def __init__(self, engine: Engine):
        self._engine = engine

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        days = float(context.job.payload.get("retention_days", DEFAULT_RETENTION_DAYS))
        cutoff = datetime.now(UTC) - timedelta(days=days)
        jobs_deleted = attempts_deleted = 0
        j, a = jobs_table.c, attempts_table.c
        while True:
            context.check_cancelled()
            with db.write_transaction(self._engine) as conn:
                # Oldest first along (tenant_id, id): ids are time-ordered, so the scan starts
                # at the prunable end and stops at jobs created after the cutoff.
                ids = conn.execute(
                    select(j.id).where(j.tenant_id == context.tenant_id,
                                       j.id < job_id_floor(cutoff),
                                       j.status.in_(FINISHED_STATUSES), j.completed_at < cutoff)
                    .order_by(j.id).limit(BATCH)).scalars().all()
                if ids:
                    attempts_deleted += conn.execute(
                        delete(attempts_table).where(a.job_id.in_(ids))).rowcount
                    jobs_deleted += conn.execute(
                        delete(jobs_table).where(j.id.in_(ids))).rowcount
            if len(ids) < BATCH:
                break
            context.report_progress(0.5, f"{jobs_deleted} jobs pruned so far")
        return JobExecutionResult(
            success=True, executed_at=context.actual_start_time,
            execution_time=timedelta(seconds=time.monotonic() - started),
            result={"jobs_deleted": jobs_deleted, "attempts_deleted": attempts_deleted,
                    "cutoff": cutoff.isoformat()})
