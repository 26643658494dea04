"""Bulk retry and cancel: each job by retry_job's and cancel_job's rules, in batches, with an
outcome that says how many changed and why the others were left alone."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from console.jobs import JobStatus
from console.jobs.models import rejections_table, rollups_table

UTC = timezone.utc


def failed_jobs(service, tenant: str, count: int) -> list[str]:
    ids = [service.queue_job("immediate", "always_fails", {"n": i}, tenant, max_retries=0).id
           for i in range(count)]
    service.run_until_idle(settle=0.2)
    assert {service.get_job_by_id(i).status for i in ids} == {JobStatus.FAILED}
    return ids


def test_retry_jobs_revives_failed_and_cancelled_and_says_why_others_were_left(service,
                                                                               make_tenant):
    make_tenant("acme")
    failed = failed_jobs(service, "acme", 3)
    cancelled = service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    service.cancel_job(cancelled.id)
    waiting = service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")

    outcome = service.retry_jobs([*failed, cancelled.id, waiting.id, "no-such-job", failed[0]],
                                 batch_size=2)

    assert sorted(outcome.changed_ids) == sorted([*failed, cancelled.id])
    assert outcome.left_alone == {"not failed or cancelled": 1, "not found": 1}
    for job_id in [*failed, cancelled.id]:
        job = service.get_job_by_id(job_id)
        assert job.status is JobStatus.QUEUED and job.current_retries == 0
        assert job.completed_at is None
    assert service.get_job_by_id(waiting.id).status is JobStatus.PENDING


def test_retried_jobs_run_again(service, make_tenant):
    make_tenant("acme")
    ids = [service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme",
                             max_retries=0).id for _ in range(4)]
    service.run_until_idle(settle=0.2)
    assert service.retry_jobs(ids).changed == 4
    service.run_until_idle(settle=0.2)
    assert {service.get_job_by_id(i).status for i in ids} == {JobStatus.COMPLETED}


def test_retry_jobs_stops_at_the_tenants_queue_limit_and_counts_the_rejections(service,
                                                                               make_tenant):
    make_tenant("small", "tier2", maxQueuedJobs=3)
    make_tenant("big", "tier4")
    small = failed_jobs(service, "small", 3)
    big = failed_jobs(service, "big", 2)
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "small")   # one place taken

    outcome = service.retry_jobs([*small, *big])

    assert outcome.changed == 4 and set(big) <= set(outcome.changed_ids)
    assert outcome.left_alone == {"held back by tenant small's max_queued_jobs": 1}
    assert sum(service.get_job_by_id(i).status is JobStatus.QUEUED for i in small) == 2
    with service.engine.connect() as conn:
        refused = conn.execute(select(func.sum(rejections_table.c.count)).where(
            rejections_table.c.tenant_id == "small",
            rejections_table.c.limit_type == "max_queued_jobs")).scalar()
    assert refused == 1


def test_a_retried_recurring_job_waits_for_its_next_time(service, make_tenant):
    make_tenant("acme")
    job = service.queue_scheduled_job("nightly", "0 3 * * *", "sleeps", {}, "acme")
    service.cancel_job(job.id)
    outcome = service.retry_jobs([job.id])
    again = service.get_job_by_id(job.id)
    assert outcome.changed_ids == [job.id]
    assert again.status is JobStatus.PENDING
    assert again.scheduled_for > datetime.now(UTC)
    assert (again.scheduled_for.hour, again.scheduled_for.minute) == (3, 0)


def test_cancel_jobs_cancels_waiting_jobs_only_and_counts_them(service, make_tenant):
    make_tenant("acme")
    waiting = [service.queue_delayed_job("sleeps", {"i": i}, timedelta(hours=1), "acme").id
               for i in range(3)]
    done = service.queue_job("immediate", "sleeps", {}, "acme")
    service.run_until_idle(settle=0.2)
    seen = []
    unsubscribe = service.job_updates.subscribe(lambda job: seen.append((job.id, job.status)))

    outcome = service.cancel_jobs([*waiting, done.id, 42], batch_size=2)

    unsubscribe()
    assert sorted(outcome.changed_ids) == sorted(waiting)
    assert outcome.left_alone == {"not pending or queued": 1, "not found": 1}
    assert outcome.left_alone_count == 2
    assert {service.get_job_by_id(i).status for i in waiting} == {JobStatus.CANCELLED}
    assert service.get_job_by_id(done.id).status is JobStatus.COMPLETED
    assert sorted(seen) == sorted((i, JobStatus.CANCELLED) for i in waiting)
    with service.engine.connect() as conn:
        counted = conn.execute(select(func.sum(rollups_table.c.jobs_cancelled))).scalar()
    assert counted == 3
    assert service.cancel_jobs(waiting).left_alone == {"not pending or queued": 3}


def test_bulk_verbs_with_nothing_to_do(service, make_tenant):
    make_tenant("acme")
    assert service.retry_jobs([]).changed == 0
    assert service.cancel_jobs(iter(())).left_alone == {}
