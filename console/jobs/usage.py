"""Live figures about a tenant's jobs that the runner, analytics and the console all read."""
from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, func, select

from .models import daily_usage_table, jobs_table
from .types import JobStatus

LIVE_STATUSES = (JobStatus.PENDING.value, JobStatus.QUEUED.value, JobStatus.PROCESSING.value)


def live_job_counts(conn: Connection, tenant_id: str | None = None) -> dict[tuple[str, str], int]:
    """Jobs waiting or running now, by (tenant, status); one tenant's when ``tenant_id`` is given.
    Reads only index entries of the live statuses, however many finished jobs there are."""
    j = jobs_table.c
    query = (select(j.tenant_id, j.status, func.count()).where(j.status.in_(LIVE_STATUSES))
             .group_by(j.tenant_id, j.status))
    if tenant_id is not None:
        query = query.where(j.tenant_id == tenant_id)
    return {(tenant, status): count for tenant, status, count in conn.execute(query)}


def daily_jobs_used(conn: Connection, tenant_id: str, day: date) -> int:
    """What counts against ``max_daily_jobs`` on ``day`` (UTC): jobs accepted + recurring runs."""
    d = daily_usage_table.c
    return conn.execute(select(d.jobs_accepted + d.recurring_runs)
                        .where(d.tenant_id == tenant_id, d.day == day)).scalar() or 0


def recurring_runs_allowed(conn: Connection, tenant_id: str, max_daily_jobs: int | None,
                           day: date, wanted: int) -> int:
    """How many of ``wanted`` recurring runs may start on ``day`` under ``max_daily_jobs``;
    the runs past it wait for their next time (the claim defers them)."""
    if max_daily_jobs is None:
        return wanted
    return max(0, min(wanted, max_daily_jobs - daily_jobs_used(conn, tenant_id, day)))
