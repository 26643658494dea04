"""The failures screen: failed jobs grouped by handler and error type, with counts and the
latest message; retry one job, a group, or every failed job.

Retrying a group or everything goes through the jobs screen's "all matching" step (a filter of
status, handler and error type, counted and confirmed), so there is one bulk path; one job
goes through its own retry action. Both come back here.

The groups have two sources, each bounded so the page stays fast however many jobs and
failures there are:

- **Failed now**: the newest ``FAILED_WINDOW`` jobs with status ``failed`` (the ``(status, id)``
  index, newest first), grouped by handler and their last error type. When more jobs than that
  have failed, the page says the groups cover the newest ones; the total comes from an
  index-only count capped at ``COUNT_CAP``.
- **Failed attempts, 24 h and 7 days**: ``error_rollups``, the hourly counts every runner keeps
  (console/jobs/rollups.py), so retried-and-recovered failures show up too, and the counts are
  complete whatever the window.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Blueprint
from flask_login import current_user
from sqlalchemy import Connection, case, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB

from ...jobs import get_job_service
from ...jobs.models import error_rollups_table, jobs_table
from ...jobs.records import job_from_row
from ...jobs.rollups import hour_of
from ...jobs.types import JobExecutionResult, JobStatus
from ..rendering import render_view
from ..scope import current_scope, tenant_scoped

UTC = timezone.utc
FAILED_WINDOW = 5_000      # newest failed jobs grouped on one page load
COUNT_CAP = 100_000        # failed jobs counted exactly up to here, then "100,000+"
RECENT_SHOWN = 20
NO_ERROR_TYPE = "JobFailed"   # what the runner and the rollups call a failure without a type


@dataclass
class FailureGroup:
    handler: str
    error_type: str
    failed_now: int = 0               # failed jobs in the window with this last error
    latest_job_id: str | None = None
    latest_message: str | None = None
    latest_at: datetime | None = None
    attempts_24h: int = 0             # failed attempts (rollups)
    attempts_7d: int = 0


def _error_type(column, dialect: str):
    """The ``error_type`` inside a job's ``last_result`` JSON text."""
    if dialect == "postgresql":
        return func.coalesce(cast(column, JSONB)["error_type"].astext, NO_ERROR_TYPE)
    return func.coalesce(func.json_extract(column, "$.error_type"), NO_ERROR_TYPE)


def _of(column, tenant_ids: frozenset[str] | None) -> list:
    return [] if tenant_ids is None else [column.in_(sorted(tenant_ids))]


def failure_overview(conn: Connection, now: datetime | None = None,
                     tenant_ids: frozenset[str] | None = None) -> dict[str, Any]:
    """Everything the failures page shows, from bounded, indexed queries; of ``tenant_ids``
    only when given (a tenant-bound user's)."""
    now = now or datetime.now(UTC)
    j = jobs_table.c
    failed = JobStatus.FAILED.value
    scope = _of(j.tenant_id, tenant_ids)
    total = conn.execute(select(func.count()).select_from(
        select(j.id).where(j.status == failed, *scope).limit(COUNT_CAP + 1).subquery())
    ).scalar_one()

    # The error type is read once per job, inside the window (grouping by the expression
    # would have SQLite parse the JSON twice).
    window = (select(j.id, j.handler,
                     _error_type(j.last_result, conn.dialect.name).label("error_type"))
              .where(j.status == failed, *scope).order_by(j.id.desc()).limit(FAILED_WINDOW)
              .subquery())
    groups: dict[tuple[str, str], FailureGroup] = {}
    for handler, kind, count, latest in conn.execute(
            select(window.c.handler, window.c.error_type, func.count(), func.max(window.c.id))
            .group_by(window.c.handler, window.c.error_type)):
        groups[(handler, kind)] = FailureGroup(handler, kind, count, latest)
    by_latest = {g.latest_job_id: g for g in groups.values()}
    if by_latest:
        for row in conn.execute(select(j.id, j.last_result, j.updated_at)
                                .where(j.id.in_(list(by_latest)))):
            group = by_latest[row.id]
            result = JobExecutionResult.from_dict(row.last_result)
            group.latest_message = result.error_message if result else None
            group.latest_at = row.updated_at

    _add_rollups(conn, groups, now, tenant_ids)
    recent = [job_from_row(row) for row in conn.execute(
        select(jobs_table).where(j.status == failed, *scope).order_by(j.id.desc())
        .limit(RECENT_SHOWN))]
    ordered = sorted(groups.values(), key=lambda g: (-g.failed_now, -g.attempts_7d,
                                                     g.handler, g.error_type))
    return {"groups": ordered, "failed_total": min(total, COUNT_CAP),
            "failed_total_capped": total > COUNT_CAP, "window": FAILED_WINDOW,
            "windowed": total > FAILED_WINDOW, "recent": recent}


def _add_rollups(conn: Connection, groups: dict[tuple[str, str], FailureGroup],
                 now: datetime, tenant_ids: frozenset[str] | None) -> None:
    """Failed attempts in the last 24 hours and 7 days, and each group's latest message when
    no failed job carries one."""
    e = error_rollups_table.c
    hour = hour_of(now)
    day_ago, week_ago = hour - timedelta(hours=23), hour - timedelta(days=7) + timedelta(hours=1)
    for handler, kind, week, day in conn.execute(
            select(e.handler, e.error_type, func.sum(e.count),
                   func.sum(case((e.hour >= day_ago, e.count), else_=0)))
            # error type first: SQLite then reads the hour range from the primary key instead
            # of the whole table through the (handler, job_type, hour) index
            .where(e.hour >= week_ago, *_of(e.tenant_id, tenant_ids))
            .group_by(e.error_type, e.handler)):
        group = groups.setdefault((handler, kind), FailureGroup(handler, kind))
        group.attempts_7d, group.attempts_24h = int(week or 0), int(day or 0)
    # Latest messages of groups without a failed job now: the newest hour's rows, few of them.
    missing = {key for key, g in groups.items() if g.latest_message is None}
    if missing:
        for handler, kind, message, at in conn.execute(
                select(e.handler, e.error_type, e.last_message, e.hour)
                .where(e.hour >= week_ago, *_of(e.tenant_id, tenant_ids))
                .order_by(e.hour.desc()).limit(5_000)):
            group = groups.get((handler, kind))
            if (handler, kind) in missing and group is not None:
                group.latest_message, group.latest_at = message, at
                missing.discard((handler, kind))
                if not missing:
                    break


bp = Blueprint("failures", __name__)


@bp.get("/failures")
@tenant_scoped
def index():
    with get_job_service().engine.connect() as conn:
        overview = failure_overview(conn, tenant_ids=current_scope())
    return render_view("failures/index.html", "failures/_groups.html", live=True,
                       may_act=current_user.may("operator"), **overview)
