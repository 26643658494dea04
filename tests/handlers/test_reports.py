"""``report_generator``: a tenant's usage as CSV in ``reports``, with figures that match the
jobs that actually ran, one report per job and range."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from console.handlers.models import reports_table
from console.handlers.reports import COLUMNS, report_range
from console.jobs import JobExecutionContext, JobStatus, JobValidationError
from console.jobs.models import attempts_table, jobs_table

UTC = timezone.utc


def reports(service, tenant_id="acme"):
    with service.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(reports_table).where(reports_table.c.tenant_id == tenant_id)
            .order_by(reports_table.c.created_at))]


def parse(content: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content)))


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_the_csv_matches_the_jobs_that_ran(service, make_tenant):
    make_tenant("acme", "tier2", maxDailyJobs=None)
    make_tenant("globex", "tier2")
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {"ms": 5}, "acme")
    service.queue_job("immediate", "always_fails", {}, "acme", max_retries=1)
    service.queue_job("delayed", "sleeps", {"ms": 1}, "acme")
    doomed = service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    service.cancel_job(doomed.id)
    service.queue_job("immediate", "sleeps", {"ms": 1}, "globex")   # another tenant's
    service.run_until_idle(settle=0.3)

    job = service.queue_job("immediate", "report_generator",
                            {"start_date": today(), "end_date": today()}, "acme")
    service.run_until_idle(settle=0.2)

    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.COMPLETED, done.last_result
    [report] = reports(service)
    assert report["job_id"] == job.id and report["report_type"] == "usage"
    assert report["range_start"] == datetime.combine(date.fromisoformat(today()),
                                                     datetime.min.time(), UTC)
    assert report["range_end"] - report["range_start"] == timedelta(days=1)
    assert report["size_bytes"] == len(report["content"].encode())
    assert report["content"].splitlines()[0] == ",".join(COLUMNS)
    rows = {(r["handler"], r["job_type"]): r for r in parse(report["content"])}
    assert report["row_count"] == len(rows)
    assert all(r["date"] == today() and r["tenant_id"] == "acme" for r in rows.values())

    # Cross-check every row with the jobs and attempts tables.
    with service.engine.connect() as conn:
        for (handler, job_type), row in rows.items():
            if handler == "report_generator":
                continue
            where = (jobs_table.c.tenant_id == "acme", jobs_table.c.handler == handler,
                     jobs_table.c.type == job_type)
            by_status = dict(conn.execute(select(jobs_table.c.status, func.count())
                                          .where(*where).group_by(jobs_table.c.status)).all())
            attempts = conn.execute(select(func.count(), func.avg(attempts_table.c.duration_ms))
                                    .where(attempts_table.c.tenant_id == "acme",
                                           attempts_table.c.handler == handler,
                                           attempts_table.c.job_type == job_type)).one()
            assert int(row["jobs_created"]) == sum(by_status.values())
            assert int(row["jobs_completed"]) == by_status.get("completed", 0)
            assert int(row["jobs_failed"]) == by_status.get("failed", 0)
            assert int(row["jobs_cancelled"]) == by_status.get("cancelled", 0)
            assert int(row["attempts"]) == attempts[0]
            if attempts[0]:
                assert float(row["avg_duration_ms"]) == pytest.approx(attempts[1], abs=0.001)
    sleeps = rows[("sleeps", "immediate")]
    assert (sleeps["jobs_created"], sleeps["jobs_completed"], sleeps["success_rate"]) == (
        "3", "3", "1.0000")
    assert float(sleeps["p95_duration_ms"]) >= 5 * 0.95
    fails = rows[("always_fails", "immediate")]
    assert (fails["jobs_failed"], fails["attempts"], fails["success_rate"]) == ("1", "2", "0.0000")
    cancelled = rows[("sleeps", "delayed")]
    assert (cancelled["jobs_created"], cancelled["jobs_cancelled"]) == ("2", "1")
    # The report job itself was queued that day, and was still running as it counted.
    assert rows[("report_generator", "immediate")]["jobs_completed"] == "0"
    assert done.last_result.result["rows"] == len(rows)
    assert done.last_result.result["total_jobs"] == 7   # the report job is one of them
    assert reports(service, "globex") == []


def test_a_retried_attempt_keeps_one_report(service, make_tenant):
    make_tenant("acme", "tier2")
    job = service.queue_job("immediate", "report_generator", {"last_days": 2}, "acme")
    handler = service.handlers.get("report_generator")
    tenant = service.tenants.get_tenant_config("acme")
    for _ in range(2):   # as if the first attempt wrote its report and then crashed
        context = JobExecutionContext(job=job, tenant_context={"tenant": tenant},
                                      actual_start_time=datetime.now(UTC), deadline=None,
                                      progress_reporter=lambda fraction, message: None)
        result = handler.execute(context)
        assert result.success
    [report] = reports(service)
    assert report["id"] == result.result["report_id"]
    assert report["name"].startswith("Usage report — Acme — ")


def test_the_weekly_report_covers_the_previous_seven_days(service, make_tenant):
    make_tenant("acme", "tier2")
    weekly = next(j for j in service.create_maintenance_jobs("acme")
                  if j.handler == "report_generator")
    with service.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == weekly.id).values(
            scheduled_for=datetime.now(UTC) - timedelta(seconds=1)))
    service.run_until_idle(settle=0.2)
    [report] = reports(service)
    first = datetime.now(UTC).date() - timedelta(days=7)
    assert report["range_start"].date() == first
    assert report["range_end"].date() == datetime.now(UTC).date()
    assert report["name"].startswith("Weekly usage report — Acme — ")
    assert service.get_job_by_id(weekly.id).status is JobStatus.PENDING   # next Monday


def test_the_reference_payloads_are_accepted(service, make_tenant):
    make_tenant("acme", "tier2")
    daily = service.queue_scheduled_job("Daily Report", "0 9 * * *", "report_generator",
                                        {"type": "usage"}, "acme")
    [later] = service.queue_batch_jobs([{"type": "scheduled", "handler": "report_generator",
                                         "payload": {"report_type": "usage"},
                                         "scheduledFor": datetime.now(UTC) + timedelta(hours=1)}],
                                       "acme")
    for job in (daily, later):
        stored = service.get_job_by_id(job.id)
        assert (stored.handler, stored.status) == ("report_generator", JobStatus.PENDING)
    assert service.get_job_by_id(daily.id).cron_schedule == "0 9 * * *"


@pytest.mark.parametrize("payload, message", [
    ({"report_type": "sales"}, "report_type"),
    ({"start_date": "2026-01-31"}, "start_date and end_date"),
    ({"start_date": "2026-02-01", "end_date": "2026-01-01"}, "end_date"),
    ({"start_date": "31/01/2026", "end_date": "2026-02-01"}, "start_date"),
    ({"last_days": 0}, "last_days"),
    ({"last_days": 400}, "last_days"),
    ({"start_date": "2024-01-01", "end_date": "2026-01-01"}, "at most 366 days"),
    ({"last_days": 7, "start_date": "2026-01-01", "end_date": "2026-01-02"}, "not both"),
])
def test_bad_payloads_are_refused_when_queued(service, make_tenant, payload, message):
    make_tenant("acme", "tier2")
    with pytest.raises(JobValidationError, match=message):
        service.queue_job("immediate", "report_generator", payload, "acme")


def test_report_range():
    day = date(2026, 3, 10)
    assert report_range({}, day) == (datetime(2026, 3, 3, tzinfo=UTC),
                                      datetime(2026, 3, 10, tzinfo=UTC))
    assert report_range({"last_days": 1}, day) == (datetime(2026, 3, 9, tzinfo=UTC),
                                                    datetime(2026, 3, 10, tzinfo=UTC))
    assert report_range({"start_date": "2026-02-27", "end_date": "2026-03-01"}, day) == (
        datetime(2026, 2, 27, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))


def test_text_a_spreadsheet_would_run_is_defused(service, make_tenant):
    from console.handlers.reports import _cell
    assert _cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert _cell("sleeps") == "sleeps" and _cell(3) == 3
