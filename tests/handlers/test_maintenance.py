"""The standard maintenance jobs (``create_maintenance_jobs``) and ``custom_cleanup_handler``:
created once, run by the engine, doing their work without changing what analytics reports."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from console.handlers.maintenance import compact_rollups
from console.handlers.models import (
    outbox_messages_table,
    reports_table,
    sent_messages_table,
)
from console.jobs import (
    JobExecutionContext,
    JobStatus,
    JobValidationError,
    TenantLimitException,
)
from console.jobs.models import (
    attempts_table,
    daily_usage_table,
    jobs_table,
    rejections_table,
    rollups_table,
)
from console.jobs.rollups import hour_of

UTC = timezone.utc
STANDARD = {"prune_finished_jobs", "release_stuck_jobs", "compact_rollups", "report_generator"}


def make_due(service, *job_ids):
    """The cron time of these pending jobs has come."""
    with service.engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id.in_(job_ids))
                     .values(scheduled_for=datetime.now(UTC) - timedelta(seconds=1)))


def count(service, table, **where):
    with service.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(
            *(table.c[k] == v for k, v in where.items()))).scalar()


def run_jobs(service, n, tenant="acme", handler="sleeps", **kwargs):
    jobs = [service.queue_job("immediate", handler, {"ms": 1}, tenant, **kwargs)
            for _ in range(n)]
    service.run_until_idle(settle=0.2)
    return jobs


def leave_stuck(service, job_id, owner="dead-host:1:runner"):
    """What a runner that died mid-attempt leaves behind."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with service.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(
            status="processing", lease_owner=owner, lease_expires_at=past,
            attempt_started_at=past - timedelta(seconds=3), total_attempts=1))


def context_for(job):
    return JobExecutionContext(job=job, tenant_context={}, actual_start_time=datetime.now(UTC),
                               deadline=None, progress_reporter=lambda fraction, message: None)


# -- create_maintenance_jobs ---------------------------------------------------------------

def test_maintenance_jobs_are_created_once(service, make_tenant):
    make_tenant("acme", "tier2")
    first = service.create_maintenance_jobs("acme")
    assert {job.handler for job in first} == STANDARD
    for job in first:
        assert job.type == "maintenance" and job.status is JobStatus.PENDING
        assert job.cron_schedule and job.scheduled_for > datetime.now(UTC)
        assert job.payload["name"] and job.metadata["maintenance"] is True
    weekly = next(job for job in first if job.handler == "report_generator")
    assert weekly.payload["last_days"] == 7 and weekly.cron_schedule.endswith(" 6 * * 1")

    again = service.create_maintenance_jobs("acme")
    assert [job.id for job in again] == [job.id for job in first]
    assert count(service, jobs_table, tenant_id="acme") == 4


def test_tenants_get_their_own_set_at_their_own_minute(service, make_tenant):
    make_tenant("acme", "tier2")
    make_tenant("globex", "tier3")
    acme = {job.handler: job for job in service.create_maintenance_jobs("acme")}
    globex = {job.handler: job for job in service.create_maintenance_jobs("globex")}
    assert not {job.id for job in acme.values()} & {job.id for job in globex.values()}
    assert count(service, jobs_table) == 8
    minutes = {job.cron_schedule.split()[0] for job in acme.values()}
    assert len(minutes) == 1   # one tenant's jobs share a minute


def test_tier1_may_not_have_maintenance_jobs(service, make_tenant):
    make_tenant("small", "tier1")
    with pytest.raises(TenantLimitException) as refused:
        service.create_maintenance_jobs("small")
    assert refused.value.limit_type == "allowed_job_types"
    assert "maintenance" in str(refused.value)
    assert count(service, jobs_table, tenant_id="small") == 0


def test_a_cancelled_maintenance_job_stays_cancelled_until_retried(service, make_tenant):
    make_tenant("acme", "tier2")
    report = next(j for j in service.create_maintenance_jobs("acme")
                  if j.handler == "report_generator")
    service.cancel_job(report.id)
    again = {j.handler: j for j in service.create_maintenance_jobs("acme")}
    assert again["report_generator"].id == report.id
    assert again["report_generator"].status is JobStatus.CANCELLED
    assert service.retry_job(report.id).status is JobStatus.PENDING


def test_unknown_tenant_is_a_validation_error(service):
    with pytest.raises(JobValidationError) as refused:
        service.create_maintenance_jobs("nobody")
    assert refused.value.field.endswith("tenant_id")


# -- each job does its work -----------------------------------------------------------------

def test_every_maintenance_job_runs_and_does_its_work(service, make_tenant):
    make_tenant("acme", "tier2", maxDailyJobs=None)
    run_jobs(service, 5)
    jobs = {job.handler: job for job in service.create_maintenance_jobs("acme")}
    service.tenants.set_tenant_config(service.tenants.get_tenant_config("acme").copy_with(
        custom_settings={"jobRetentionDays": 0}))
    stuck = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    leave_stuck(service, stuck.id)
    sleeps_before = service.get_job_trends(tenant_id="acme", handler="sleeps",
                                           granularity="hour")

    make_due(service, *(job.id for job in jobs.values()))
    service.run_until_idle(settle=0.3)

    for handler, job in jobs.items():
        done = service.get_job_by_id(job.id)
        assert done.last_result.success, (handler, done.last_result)
        assert done.status is JobStatus.PENDING and done.scheduled_for > datetime.now(UTC)
    pruned = service.get_job_by_id(jobs["prune_finished_jobs"].id).last_result.result
    assert pruned["retention_from"] == "tenant" and pruned["jobs_deleted"] >= 5
    assert count(service, jobs_table, tenant_id="acme", handler="sleeps") <= 1
    assert count(service, reports_table, tenant_id="acme") == 1
    # Pruned, the history still reads the same: the stuck job's lost attempt and its
    # completion are what was added.
    after = service.get_job_trends(tenant_id="acme", handler="sleeps", granularity="hour",
                                   start_date=sleeps_before["start"],
                                   end_date=sleeps_before["end"])
    assert sum(after["jobs_created"]) == sum(sleeps_before["jobs_created"]) == 6
    assert sum(after["jobs_completed"]) == sum(sleeps_before["jobs_completed"]) + 1 == 6
    assert sum(after["attempts"]) == sum(sleeps_before["attempts"]) + 2


def test_pruning_keeps_the_rollups(service, make_tenant):
    make_tenant("acme", "tier2")
    run_jobs(service, 4)
    service.queue_job("immediate", "always_fails", {}, "acme", max_retries=1)
    service.run_until_idle(settle=0.2)
    window = {"start_date": datetime.now(UTC) - timedelta(hours=2),
              "end_date": datetime.now(UTC) + timedelta(hours=1)}
    before = {name: service.get_job_performance_metrics("immediate", name, **window)
              for name in ("sleeps", "always_fails")}
    trends_before = {name: service.get_job_trends(tenant_id="acme", handler=name,
                                                  granularity="hour", **window)
                     for name in ("sleeps", "always_fails")}
    usage_before = service.get_tenant_job_usage("acme", **window)

    job = service.queue_job("maintenance", "prune_finished_jobs", {"retention_days": 0}, "acme")
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(job.id).last_result.result["jobs_deleted"] == 5
    assert count(service, attempts_table, tenant_id="acme", handler="always_fails") == 0

    for name, metrics in before.items():
        now = service.get_job_performance_metrics("immediate", name, **window)
        assert (now.total_executions, now.success_rate, now.avg_execution_time,
                now.errors_by_type) == (metrics.total_executions, metrics.success_rate,
                                        metrics.avg_execution_time, metrics.errors_by_type)
    for name, trends in trends_before.items():
        assert service.get_job_trends(tenant_id="acme", handler=name, granularity="hour",
                                      **window) == trends
    usage = service.get_tenant_job_usage("acme", **window)
    # The prune job itself was queued and completed in the window: it adds one of each.
    assert usage.total_jobs == usage_before.total_jobs + 1
    assert usage.jobs_by_status["completed"] == usage_before.jobs_by_status["completed"] + 1
    assert usage.jobs_by_status["failed"] == usage_before.jobs_by_status["failed"]
    assert sum(trends_before["always_fails"]["jobs_failed"]) == 1


def test_pruning_also_trims_the_history_of_jobs_that_never_finish(service, make_tenant):
    """A recurring job is never finished, so its attempts would pile up for ever (an evaluation a
    minute is 525,600 a year): pruning deletes its attempts past the retention, keeps the recent
    ones and the job itself."""
    make_tenant("acme", "tier2")
    make_tenant("globex", "tier2")
    # Made due by hand (make_due); their own time is a year away, so that no minute rolling
    # over while the test runs adds a run of its own.
    recurring = service.queue_scheduled_job("tick", "0 0 1 1 *", "sleeps", {"ms": 1}, "acme")
    theirs = service.queue_scheduled_job("tick", "0 0 1 1 *", "sleeps", {"ms": 1}, "globex")
    for job in (recurring, theirs):
        for _ in range(3):
            make_due(service, job.id)
            service.run_until_idle(settle=0.2)
    # Two of acme's three runs (and all of globex's) happened 40 days ago.
    old = datetime.now(UTC) - timedelta(days=40)
    with service.engine.begin() as conn:
        ids = conn.execute(select(attempts_table.c.id).where(
            attempts_table.c.job_id == recurring.id).order_by(attempts_table.c.id)
        ).scalars().all()
        assert len(ids) == 3
        conn.execute(update(attempts_table).where(attempts_table.c.id.in_(ids[:2]))
                     .values(started_at=old, finished_at=old))
        conn.execute(update(attempts_table).where(attempts_table.c.job_id == theirs.id)
                     .values(started_at=old, finished_at=old))

    prune = service.queue_job("maintenance", "prune_finished_jobs", {"retention_days": 30}, "acme")
    service.run_until_idle(settle=0.2)

    assert service.get_job_by_id(prune.id).last_result.result["attempts_deleted"] == 2
    assert [a["id"] for a in service.get_job_attempts(recurring.id)] == [ids[2]]
    assert service.get_job_by_id(recurring.id).status is JobStatus.PENDING
    assert count(service, attempts_table, job_id=theirs.id) == 3   # another tenant's: untouched


def test_stuck_jobs_of_the_tenant_are_released_through_the_engine(service, make_tenant):
    make_tenant("acme", "tier2")
    make_tenant("globex", "tier2")
    ours = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    theirs = service.queue_job("immediate", "sleeps", {"ms": 1}, "globex")
    leave_stuck(service, ours.id)
    leave_stuck(service, theirs.id)
    release = next(j for j in service.create_maintenance_jobs("acme")
                   if j.handler == "release_stuck_jobs")

    result = service.handlers.get("release_stuck_jobs").execute(context_for(release))

    assert result.success and result.result["released"] == 1
    assert result.result["jobs"][0]["id"] == ours.id
    released = service.get_job_by_id(ours.id)
    assert released.status is JobStatus.QUEUED and released.lease_owner is None
    [lost] = service.get_job_attempts(ours.id)
    assert lost["error_type"] == "WorkerLost" and lost["worker"] == "dead-host:1:runner"
    assert service.get_job_by_id(theirs.id).status is JobStatus.PROCESSING   # not ours
    # Counted as a lost attempt, like the runners' own recovery counts it.
    with service.engine.connect() as conn:
        lost_count = conn.execute(select(func.sum(rollups_table.c.attempts_lost)).where(
            rollups_table.c.tenant_id == "acme")).scalar()
    assert lost_count == 1
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(ours.id).status is JobStatus.COMPLETED


def test_compacting_rollups_deletes_only_what_nobody_reads(service, make_tenant):
    make_tenant("acme", "tier2")
    make_tenant("globex", "tier2")
    run_jobs(service, 3)
    run_jobs(service, 2, tenant="globex")
    service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(settle=0.2)
    now = datetime.now(UTC)
    today = now.date()
    with service.engine.begin() as conn:
        for tenant in ("acme", "globex"):
            for days_ago in (1, 2, 5):
                conn.execute(daily_usage_table.insert().values(
                    tenant_id=tenant, day=today - timedelta(days=days_ago), jobs_accepted=7,
                    recurring_runs=0))
    window = {"start_date": now - timedelta(days=6), "end_date": now + timedelta(hours=1)}
    readings = lambda: (  # noqa: E731
        service.get_tenant_job_usage("acme"), service.get_tenant_job_usage("acme", **window),
        service.get_job_trends(tenant_id="acme", granularity="hour", **window),
        service.get_job_trends(tenant_id="acme", granularity="day", **window),
        service.get_job_performance_metrics("immediate", "sleeps"),
        service.get_job_performance_metrics("immediate", "always_fails"),
        service.get_tenant_job_health("acme"), service.get_tenant_job_usage("globex"))
    before = readings()
    assert before[0].total_jobs == 4 and before[0].current_usage["daily_jobs"] == 4

    deleted = compact_rollups(service.engine, "acme", now)

    assert readings() == before
    assert deleted == {"tenant_daily_usage": 2}        # 2 and 5 days ago; yesterday is kept
    with service.engine.connect() as conn:
        days = set(conn.execute(select(daily_usage_table.c.day).where(
            daily_usage_table.c.tenant_id == "acme")).scalars())
    assert days == {today, today - timedelta(days=1)}
    assert count(service, daily_usage_table, tenant_id="globex") == 4   # not this tenant's


def test_compact_rollups_runs_as_a_job(service, make_tenant):
    make_tenant("acme", "tier2")
    job = service.queue_job("maintenance", "compact_rollups", {"daily_usage_days": 1}, "acme")
    service.run_until_idle(settle=0.2)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.last_result.result == {"deleted": {"tenant_daily_usage": 0},
                                       "daily_usage_days": 1}


def test_a_bad_retention_setting_fails_the_prune_without_retrying(service, make_tenant):
    make_tenant("acme", "tier2")
    service.tenants.set_tenant_config(service.tenants.get_tenant_config("acme").copy_with(
        custom_settings={"jobRetentionDays": "forever"}))
    job = service.queue_job("maintenance", "prune_finished_jobs", {}, "acme")
    service.run_until_idle(settle=0.2)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.FAILED and done.total_attempts == 1
    assert "jobRetentionDays" in done.last_result.error_message


# -- custom_cleanup_handler -----------------------------------------------------------------

REFERENCE_PARAMETERS = {"data_types": ["logs", "temp_files", "cache"],
                        "retention_policy": {"logs": 90, "temp_files": 7, "cache": 1}}


def test_the_references_custom_cleanup_job_works(service, make_tenant):
    make_tenant("acme", "tier2")
    today = datetime.now(UTC).date()
    with service.engine.begin() as conn:
        for days_ago in (0, 1, 3, 10):
            conn.execute(daily_usage_table.insert().values(
                tenant_id="acme", day=today - timedelta(days=days_ago), jobs_accepted=1,
                recurring_runs=0))
    job = service.queue_scheduled_job("Custom Data Cleanup", "0 3 1 * *",
                                      "custom_cleanup_handler", REFERENCE_PARAMETERS, "acme")
    assert job.status is JobStatus.PENDING and job.payload["name"] == "Custom Data Cleanup"
    make_due(service, job.id)
    service.run_until_idle(settle=0.2)

    done = service.get_job_by_id(job.id)
    assert done.last_result.success, done.last_result
    deleted = done.last_result.result["deleted"]
    assert set(deleted) == {"logs", "temp_files", "cache"}
    assert deleted["cache"]["rows"] == 2 and deleted["cache"]["retention_days"] == 1
    assert deleted["logs"]["attempts"] == 0 and deleted["temp_files"]["rows"] == 0
    assert done.status is JobStatus.PENDING   # recurring: waits for the 1st of next month
    assert done.scheduled_for.day == 1


def test_cleanup_deletes_each_data_type_past_its_retention(service, make_tenant):
    make_tenant("acme", "tier3")
    make_tenant("globex", "tier3")
    for tenant in ("acme", "globex"):
        run_jobs(service, 2, tenant=tenant)
        service.queue_notification("sms", "+14155550123", tenant, body="hello")
        service.queue_job("immediate", "report_generator",
                          {"last_days": 1}, tenant)
        service.run_until_idle(settle=0.2)
    old = datetime.now(UTC) - timedelta(days=40)
    with service.engine.begin() as conn:
        conn.execute(rejections_table.insert().values(
            tenant_id="acme", hour=hour_of(old), limit_type="max_queued_jobs", count=3))
        for table, column in ((sent_messages_table, "sent_at"),
                              (outbox_messages_table, "created_at"),
                              (reports_table, "created_at")):
            conn.execute(update(table).where(table.c.tenant_id == "acme").values(
                **{column: old}))
    parameters = {"data_types": ["finished_jobs", "sent_messages", "outbox_messages",
                                 "reports", "logs"],
                  "retention_policy": {"finished_jobs": 0, "sent_messages": 30,
                                       "outbox_messages": 30, "reports": 30, "logs": 0}}
    job = service.queue_job("cleanup", "custom_cleanup_handler", parameters, "acme")
    service.run_until_idle(settle=0.2)

    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.COMPLETED, done.last_result
    deleted = done.last_result.result["deleted"]
    assert deleted["finished_jobs"]["jobs"] == 4          # 2 sleeps, the sms, the report job
    assert deleted["sent_messages"]["rows"] == 1
    assert deleted["outbox_messages"]["rows"] == 1
    assert deleted["reports"]["rows"] == 1
    for table in (sent_messages_table, outbox_messages_table, reports_table):
        assert count(service, table, tenant_id="acme") == 0, table.name
    # The operators' record of what acme's limits refused is not acme's to delete.
    assert count(service, rejections_table, tenant_id="acme") == 1
    # Another tenant's data is not touched.
    assert count(service, outbox_messages_table, tenant_id="globex") == 1
    assert count(service, reports_table, tenant_id="globex") == 1
    assert count(service, jobs_table, tenant_id="globex") == 4


def test_an_unknown_data_type_is_refused_when_queued(service, make_tenant):
    make_tenant("acme", "tier2")
    with pytest.raises(JobValidationError) as refused:
        service.queue_scheduled_job("Cleanup", "0 3 * * *", "custom_cleanup_handler",
                                    {"data_types": ["logs", "bogus"]}, "acme")
    assert "'bogus'" in str(refused.value) and refused.value.field == "payload['data_types']"
    assert "what may be cleaned: finished_jobs, logs" in refused.value.message
    with pytest.raises(JobValidationError, match="retention_policy"):
        service.queue_scheduled_job("Cleanup", "0 3 * * *", "custom_cleanup_handler",
                                    {"data_types": ["logs"], "retention_policy": {"logs": -1}},
                                    "acme")
    assert count(service, jobs_table) == 0


@pytest.mark.parametrize("parameters, field", [
    ({"data_types": ["limit_rejections"]}, "payload['data_types']"),
    ({"data_types": ["logs", "limit_rejections"]}, "payload['data_types']"),
    ({"data_types": ["logs"], "retention_policy": {"limit_rejections": 1}},
     "payload['retention_policy']"),
])
def test_a_tenants_cleanup_cannot_delete_its_limit_rejections(service, make_tenant, parameters,
                                                              field):
    make_tenant("acme", "tier2")
    for queue in (
            lambda: service.queue_job("cleanup", "custom_cleanup_handler", parameters, "acme"),
            lambda: service.queue_scheduled_job("Cleanup", "0 3 * * *",
                                                "custom_cleanup_handler", parameters, "acme")):
        with pytest.raises(JobValidationError) as refused:
            queue()
        assert refused.value.field == field
        message = refused.value.message
        assert "'limit_rejections'" in message and "operators' records" in message
        assert "what may be cleaned: finished_jobs, logs, sent_messages" in message
        assert "cache, temp_files" in message and message.count("limit_rejections") == 1
    assert count(service, jobs_table) == 0


def test_a_stored_cleanup_of_limit_rejections_fails_without_deleting_them(service,
                                                                           make_tenant):
    make_tenant("acme", "tier2")
    with service.engine.begin() as conn:
        conn.execute(rejections_table.insert().values(
            tenant_id="acme", hour=hour_of(datetime.now(UTC) - timedelta(days=400)),
            limit_type="max_queued_jobs", count=3))
    job = service.queue_job("maintenance", "custom_cleanup_handler",
                            {"data_types": ["logs"]}, "acme", max_retries=3)
    with service.engine.begin() as conn:   # queued by an older version
        conn.execute(update(jobs_table).where(jobs_table.c.id == job.id).values(
            payload={"data_types": ["limit_rejections"],
                     "retention_policy": {"limit_rejections": 0}}))
    service.run_until_idle(settle=0.2)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.FAILED and done.total_attempts == 1
    assert done.last_result.error_type == "PermanentJobError"
    assert "operators' records" in done.last_result.error_message
    assert count(service, rejections_table, tenant_id="acme") == 1


def test_an_unknown_data_type_that_reaches_the_handler_fails_permanently(service, make_tenant):
    make_tenant("acme", "tier2")
    job = service.queue_job("maintenance", "custom_cleanup_handler",
                            {"data_types": ["logs"]}, "acme", max_retries=3)
    with service.engine.begin() as conn:   # written by an older version, or by hand
        conn.execute(update(jobs_table).where(jobs_table.c.id == job.id).values(
            payload={"data_types": ["logs", "bogus"]}))
    service.run_until_idle(settle=0.2)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.FAILED and done.total_attempts == 1
    assert "'bogus'" in done.last_result.error_message
    assert done.last_result.error_type == "PermanentJobError"


def test_cleanup_keeps_todays_daily_counter_whatever_the_retention(service, make_tenant):
    make_tenant("acme", "tier2")
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")   # counts today
    job = service.queue_job("maintenance", "custom_cleanup_handler",
                            {"data_types": ["cache"], "retention_policy": {"cache": 0}}, "acme")
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(job.id).status is JobStatus.COMPLETED
    with service.engine.connect() as conn:
        days = conn.execute(select(daily_usage_table.c.day).where(
            daily_usage_table.c.tenant_id == "acme")).scalars().all()
    assert days == [datetime.now(UTC).date()]
