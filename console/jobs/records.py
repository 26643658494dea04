"""Conversions between job rows and ``SystemJob`` snapshots, and fresh job ids."""
from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from . import db
from .models import jobs_table
from .types import JobExecutionResult, JobNotFoundError, JobPriority, JobStatus, SystemJob

# What ``new_job_id`` makes: a job id, as links, cursors and dependencies spell it.
JOB_ID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_job_id(at: datetime | None = None) -> str:
    """A UUIDv7: time-ordered (so inserts stay local in the index) with 74 random bits.

    ``at`` stamps another moment (history written after the fact keeps ids in time order).
    """
    ms = int(at.timestamp() * 1000) if at is not None else time.time_ns() // 1_000_000
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (
        rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def job_id_floor(moment: datetime) -> str:
    """The smallest id a job created at ``moment`` can have: ``id < job_id_floor(t)`` selects
    jobs created before t through the primary key or any (…, id) index."""
    digits = f"{int(moment.timestamp() * 1000) & ((1 << 48) - 1):012x}"
    return f"{digits[:8]}-{digits[8:]}-0000-0000-000000000000"


def job_from_row(row: Any) -> SystemJob:
    m = row._mapping if hasattr(row, "_mapping") else row
    return SystemJob(
        id=m["id"],
        type=m["type"],
        handler=m["handler"],
        payload=m["payload"] or {},
        priority=JobPriority.from_rank(m["priority"]),
        status=JobStatus(m["status"]),
        tenant_id=m["tenant_id"],
        scheduled_for=m["scheduled_for"],
        cron_schedule=m["cron_schedule"],
        timezone=m["timezone"] or "UTC",
        max_retries=m["max_retries"],
        current_retries=m["current_retries"] or 0,
        last_attempt=m["last_attempt"],
        completed_at=m["completed_at"],
        last_result=JobExecutionResult.from_dict(m["last_result"]),
        metadata=m["metadata"] or {},
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        idempotency_key=m["idempotency_key"],
        progress=m["progress"],
        progress_message=m["progress_message"],
        lease_owner=m["lease_owner"],
        lease_expires_at=m["lease_expires_at"],
        total_attempts=m["total_attempts"] or 0,
        batch_id=m["batch_id"],
        depends_on=tuple(m["depends_on"] or ()),
        on_dependency_failure=m["on_dependency_failure"] or "cancel",
        not_before=m["not_before"],
    )


def lock_job(conn: Connection, job_id: str) -> SystemJob:
    """The job ``job_id`` (row-locked on PostgreSQL until the transaction ends).

    :raise JobNotFoundError: no such job.
    """
    query = select(jobs_table).where(jobs_table.c.id == job_id)
    if not db.is_sqlite(conn):
        query = query.with_for_update()
    row = conn.execute(query).first() if isinstance(job_id, str) else None
    if row is None:
        raise JobNotFoundError(f"no job with id {job_id!r}")
    return job_from_row(row)
