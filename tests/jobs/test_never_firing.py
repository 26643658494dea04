"""A recurring job whose cron expression never fires ('0 0 31 2 *'), stored before such
expressions were refused (an explicit first run skipped the look-up that now refuses it): the
runner fails it, saying why, and carries on; retrying it is refused; nothing raises a croniter
error."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from console.jobs import JobStatus, JobValidationError
from console.jobs.models import jobs_table

UTC = timezone.utc
NEVER = "0 0 31 2 *"


def stored_never_firing(service, tenant_id="acme", **options):
    """Queued with a real expression and a first run now, then given the impossible one (what
    an older version stored for cron_schedule='0 0 31 2 *' with scheduled_for)."""
    job = service.queue_job("recurring", "sleeps", {"ms": 1}, tenant_id,
                            cron_schedule="0 9 * * *", scheduled_for=datetime.now(UTC),
                            **options)
    with service.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job.id)
                     .values(cron_schedule=NEVER))
    return job


def test_the_runner_fails_a_stored_never_firing_job_after_its_run_and_carries_on(
        service, make_tenant):
    make_tenant("acme", "tier3")
    job = stored_never_firing(service)
    service.run_until_idle(settle=0.2)
    failed = service.get_job_by_id(job.id)
    assert failed.status is JobStatus.FAILED and failed.completed_at is not None
    assert failed.last_result.error_type == "CronNeverFires"
    assert f"not re-armed: cron_schedule: '{NEVER}' never fires" in \
        failed.last_result.error_message
    attempts = service.get_job_attempts(job.id)
    assert len(attempts) == 1 and attempts[0]["success"]      # the run itself did its work
    # The runner is fine: the next job runs.
    other = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(other.id).status is JobStatus.COMPLETED


def test_a_failing_run_of_a_never_firing_job_says_both(service, make_tenant):
    make_tenant("acme", "tier3")
    job = service.queue_job("recurring", "always_fails", {}, "acme", cron_schedule="0 9 * * *",
                            scheduled_for=datetime.now(UTC), max_retries=0)
    with service.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job.id)
                     .values(cron_schedule=NEVER))
    service.run_until_idle(settle=0.2)
    failed = service.get_job_by_id(job.id)
    assert failed.status is JobStatus.FAILED
    assert "never fires" in failed.last_result.error_message
    assert "the last attempt failed" in failed.last_result.error_message


def test_retrying_a_never_firing_job_is_refused_naming_the_cron(service, make_tenant):
    make_tenant("acme", "tier3")
    job = stored_never_firing(service)
    service.cancel_job(job.id)
    with pytest.raises(JobValidationError) as refused:
        service.retry_job(job.id)
    assert refused.value.field == "cron_schedule" and "never fires" in refused.value.message
    outcome = service.retry_jobs([job.id])
    assert outcome.changed == 0
    assert outcome.left_alone == {"its cron expression never fires": 1}
    assert service.get_job_by_id(job.id).status is JobStatus.CANCELLED


def test_a_never_firing_run_over_the_daily_limit_fails_instead_of_moving_on(service,
                                                                          make_tenant):
    make_tenant("acme", "tier3", maxDailyJobs=1)
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")       # uses the day's one job
    service.run_until_idle(settle=0.2)
    job = stored_never_firing(service)
    service.run_until_idle(settle=0.2)
    failed = service.get_job_by_id(job.id)
    assert failed.status is JobStatus.FAILED and failed.total_attempts == 0
    assert failed.last_result.error_type == "CronNeverFires"
    assert "never fires" in failed.last_result.error_message
