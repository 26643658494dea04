"""``report_generator``: a tenant's usage report as CSV, kept in the ``reports`` table.

Payload: ``report_type`` (``type`` is read as another name for it): ``"usage"``, the only
kind so far; the range as ``start_date`` and ``end_date`` (ISO dates, both included) or
``last_days`` (the whole UTC days before the run's day); neither: the previous 7 days.
Optional ``name``.

The CSV has one row per UTC day, handler and job type with any activity, read from the
analytics read model (``service.get_job_trends`` by day, one handler and type at a time), so it
agrees with every chart and survives pruning: jobs queued, completed, failed and cancelled
that day, attempts, timeouts, success rate (completed / ended), average and p95 attempt
duration (p95 from the duration histogram: within 5 %), average wait. The job's result adds
the range's totals from ``service.get_tenant_job_usage``.

One report per job and range: a retried attempt replaces the report of its first try. A
recurring job (the weekly report) adds one report per run.
"""
from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select

from ..jobs import JobExecutionContext, JobExecutionResult, JobHandler, PermanentJobError, db
from ..jobs.models import rollups_table
from ..jobs.records import new_job_id
from .maintenance import MAINTENANCE_TYPES
from .models import reports_table

UTC = timezone.utc
REPORT_TYPES = ("usage",)
DEFAULT_DAYS = 7
MAX_DAYS = 366
COLUMNS = ["date", "tenant_id", "handler", "job_type", "jobs_created", "jobs_completed",
           "jobs_failed", "jobs_cancelled", "attempts", "timeouts", "success_rate",
           "avg_duration_ms", "p95_duration_ms", "avg_wait_ms"]
_COUNTS = ["jobs_created", "jobs_completed", "jobs_failed", "jobs_cancelled", "attempts",
           "timeouts"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def report_type_of(payload: dict[str, Any]) -> str:
    kind = payload.get("report_type", payload.get("type", "usage"))
    if kind not in REPORT_TYPES:
        raise ValueError(f"report_type {kind!r} is not one this console makes; use: "
                         f"{', '.join(REPORT_TYPES)}")
    return kind


def _parse_day(value: Any, field: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise ValueError(f"{field} must be a date such as 2026-01-31, got {value!r}")


def report_range(payload: dict[str, Any], today: date) -> tuple[datetime, datetime]:
    """[start, end) in whole UTC days; ``ValueError`` naming the field that is wrong."""
    has_dates = "start_date" in payload or "end_date" in payload
    if has_dates and "last_days" in payload:
        raise ValueError("give either start_date and end_date, or last_days, not both")
    if has_dates:
        if "start_date" not in payload or "end_date" not in payload:
            raise ValueError("start_date and end_date go together (both days included)")
        first = _parse_day(payload["start_date"], "start_date")
        last = _parse_day(payload["end_date"], "end_date")
        if last < first:
            raise ValueError("end_date must not be before start_date")
    else:
        days = payload.get("last_days", DEFAULT_DAYS)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise ValueError(f"last_days must be a whole number from 1 to {MAX_DAYS}, "
                             f"got {days!r}")
        first, last = today - timedelta(days=days), today - timedelta(days=1)
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"a report covers at most {MAX_DAYS} days; shorten the range")
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, start + timedelta(days=(last - first).days + 1)


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def usage_rows(service, tenant_id: str, start: datetime, end: datetime,
               check_cancelled: Callable[[], None] = lambda: None) -> list[list[Any]]:
    """The CSV rows (without the header) of ``tenant_id``'s usage over [start, end).

    :param check_cancelled: called before each query; raises to stop (a job's
        ``context.check_cancelled``: a timed-out report stops reading, not only its slot)."""
    r = rollups_table.c
    with service.engine.connect() as conn:
        pairs = conn.execute(
            select(r.handler, r.job_type).where(r.tenant_id == tenant_id, r.hour >= start,
                                                r.hour < end)
            .group_by(r.handler, r.job_type).order_by(r.handler, r.job_type)).all()
    rows = []
    for handler, job_type in pairs:
        check_cancelled()
        trends = service.get_job_trends(tenant_id=tenant_id, handler=handler, job_type=job_type,
                                        start_date=start, end_date=end, granularity="day")
        for index, point in enumerate(trends["points"]):
            counts = [trends[name][index] for name in _COUNTS]
            if not any(counts):
                continue
            rows.append([point[:10], _cell(tenant_id), _cell(handler), _cell(job_type), *counts,
                         _number(trends["success_rate"][index], 4),
                         _number(trends["avg_duration_ms"][index], 3),
                         _number(trends["p95_duration_ms"][index], 3),
                         _number(trends["avg_wait_ms"][index], 3)])
    rows.sort(key=lambda row: (row[0], row[2], row[3]))
    return rows


def to_csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


class ReportGeneratorHandler(JobHandler):
    """Writes a tenant's usage report (CSV) into ``reports``; see the module."""

    handler_name = "report_generator"
    supported_job_types = MAINTENANCE_TYPES
    description = "Writes the tenant's usage report (CSV, one row per day, handler and type)."
    payload_hint = ("optional 'report_type' ('usage'), 'start_date' and 'end_date' (dates, both "
                    "included) or 'last_days' (default 7), 'name'")

    def __init__(self, service):
        self._service = service

    def validate_payload(self, payload: dict[str, Any]) -> bool:
        report_type_of(payload)
        report_range(payload, datetime.now(UTC).date())
        name = payload.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError("name must be a string")
        return True

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        job, payload = context.job, context.job.payload
        try:
            report_type = report_type_of(payload)
            start, end = report_range(payload, context.actual_start_time.astimezone(UTC).date())
        except ValueError as exc:
            raise PermanentJobError(str(exc)) from None
        tenant = context.tenant_context.get("tenant")
        report = write_usage_report(
            self._service, context.tenant_id, start, end, payload.get("name"),
            tenant_name=getattr(tenant, "name", None), job_id=job.id,
            recurring=bool(job.cron_schedule), report_type=report_type,
            check_cancelled=context.check_cancelled)
        usage = self._service.get_tenant_job_usage(context.tenant_id, start, end)
        return JobExecutionResult(
            success=True, executed_at=context.actual_start_time,
            execution_time=timedelta(seconds=time.monotonic() - started),
            result={**report, "start": start.isoformat(), "end": end.isoformat(),
                    "total_jobs": usage.total_jobs,
                    "success_rate": round(usage.success_rate, 4),
                    "jobs_by_status": {k: v for k, v in usage.jobs_by_status.items()
                                       if k in ("completed", "failed", "cancelled")}})


def write_usage_report(service, tenant_id: str, start: datetime, end: datetime,
                       name: str | None = None, *, tenant_name: str | None = None,
                       job_id: str | None = None, recurring: bool = False,
                       report_type: str = "usage",
                       check_cancelled: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Build and store ``tenant_id``'s usage report over [start, end); what the job's result
    shows of it (``report_id``, ``name``, ``rows``, ``size_bytes``). ``check_cancelled`` as in
    ``usage_rows``; it is called once more before storing, so a cancelled run stores nothing."""
    rows = usage_rows(service, tenant_id, start, end, check_cancelled)
    content = to_csv(rows)
    check_cancelled()
    last_day = (end - timedelta(days=1)).date()
    full_name = (f"{name or 'Usage report'} — {tenant_name or tenant_id} — "
                 f"{start.date().isoformat()} to {last_day.isoformat()}")[:200]
    report_id = store_report(service.engine, tenant_id=tenant_id, job_id=job_id,
                             recurring=recurring, name=full_name, report_type=report_type,
                             start=start, end=end, content=content, row_count=len(rows))
    return {"report_id": report_id, "name": full_name, "rows": len(rows),
            "size_bytes": len(content.encode())}


def store_report(engine, *, tenant_id: str, job_id: str | None, recurring: bool, name: str,
                 report_type: str, start: datetime, end: datetime, content: str,
                 row_count: int) -> str:
    """Insert the report, replacing what an earlier attempt of the same run wrote (a one-off
    job: any report of the job; a recurring one: the report of the same range)."""
    t = reports_table.c
    report_id = new_job_id()
    with db.write_transaction(engine) as conn:
        if job_id is not None:
            earlier = delete(reports_table).where(t.job_id == job_id)
            if recurring:
                earlier = earlier.where(t.range_start == start, t.range_end == end)
            conn.execute(earlier)
        conn.execute(reports_table.insert().values(
            id=report_id, tenant_id=tenant_id, job_id=job_id, name=name,
            report_type=report_type, range_start=start, range_end=end,
            created_at=datetime.now(UTC), content=content, row_count=row_count,
            size_bytes=len(content.encode())))
    return report_id
