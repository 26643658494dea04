"""The runner, in-process: order, fairness, caps, retries, timeouts, cron, recovery, events."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from console.jobs import JobNotFoundError, JobPriority, JobStateError, JobStatus
from console.jobs import runner as runner_module
from console.jobs.models import jobs_table, rejections_table
from console.jobs.runner import Runner
from tests.support import wait_until

UTC = timezone.utc


def attempts_of(service, job_id):
    return service.get_job_attempts(job_id)


def test_due_jobs_run_and_every_attempt_is_recorded(service, make_tenant):
    make_tenant()
    jobs = [service.queue_job("immediate", "sleeps", {"ms": 5}, "acme") for _ in range(20)]
    assert service.run_until_idle(settle=0.2) == 20
    for job in jobs:
        done = service.get_job_by_id(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.completed_at >= done.created_at and done.last_result.success
        assert done.lease_owner is None and done.progress == 1.0
        [attempt] = attempts_of(service, job.id)
        assert attempt["success"] and attempt["attempt"] == 1 and attempt["duration_ms"] >= 4
        assert attempt["worker"] and attempt["error_type"] is None


def test_critical_runs_before_low_in_one_tenant(service, make_tenant, handler):
    make_tenant()
    for i in range(5):
        service.queue_job("immediate", "record_order", {"label": f"low{i}"}, "acme",
                          priority=JobPriority.LOW)
    service.queue_job("immediate", "record_order", {"label": "normal"}, "acme",
                      priority="normal")
    service.queue_job("immediate", "record_order", {"label": "critical"}, "acme",
                      priority=JobPriority.CRITICAL)
    service.run_until_idle(settle=0.2, threads=1)
    assert handler("record_order").labels == ["critical", "normal", "low0", "low1", "low2",
                                              "low3", "low4"]


def test_critical_of_one_tenant_before_low_of_another(service, make_tenant, handler):
    make_tenant("a")
    make_tenant("b")
    service.queue_job("immediate", "record_order", {"label": "a-low"}, "a", priority="low")
    service.queue_job("immediate", "record_order", {"label": "b-critical"}, "b",
                      priority="critical")
    service.run_until_idle(settle=0.2, threads=1)
    assert handler("record_order").labels == ["b-critical", "a-low"]


def test_tenant_never_exceeds_its_concurrency_while_others_use_the_rest(service, make_tenant,
                                                                         handler):
    make_tenant("capped", "tier4", maxConcurrentJobs=3)
    make_tenant("free", "tier4", maxConcurrentJobs=None)
    for _ in range(24):
        service.queue_job("immediate", "probe_concurrency", {"ms": 30}, "capped")
        service.queue_job("immediate", "probe_concurrency", {"ms": 30}, "free")
    assert service.run_until_idle(settle=0.2, threads=8) == 48
    probe = handler("probe_concurrency")
    assert probe.peak["capped"] == 3          # used its slots, never more
    assert probe.peak["free"] >= 5            # and the rest of the pool went to the other tenant


def test_lone_busy_tenant_uses_all_free_capacity(service, make_tenant, handler):
    make_tenant("solo", "tier4", maxConcurrentJobs=None)
    for _ in range(32):
        service.queue_job("immediate", "probe_concurrency", {"ms": 40}, "solo")
    service.run_until_idle(settle=0.2, threads=8)
    assert handler("probe_concurrency").peak["solo"] == 8


def test_one_tenants_flood_does_not_hold_back_another(service, make_tenant, handler):
    make_tenant("noisy", "tier4", maxConcurrentJobs=None, maxQueuedJobs=None)
    make_tenant("quiet", "tier2")
    service.queue_batch_jobs([{"type": "immediate", "handler": "record_order",
                               "payload": {"label": "noisy", "ms": 3}}] * 600, "noisy")
    for _ in range(10):
        service.queue_job("immediate", "record_order", {"label": "quiet", "ms": 3}, "quiet")
    service.run_until_idle(settle=0.2, threads=4)
    labels = handler("record_order").labels
    quiet_positions = [i for i, label in enumerate(labels) if label == "quiet"]
    assert len(quiet_positions) == 10
    # Weighted by tier × priority (tier4 4 × high 4 against tier2 2 × normal 2): the quiet
    # tenant gets about one slot in five, so its 10 jobs are done within the first ~50 starts,
    # not after the 600.
    assert max(quiet_positions) < 80, quiet_positions


def test_fail_twice_then_succeed_on_the_third_attempt(service, make_tenant):
    make_tenant()
    job = service.queue_job("immediate", "fails_n_times", {"failures": 2}, "acme", max_retries=3)
    service.run_until_idle(settle=0.5)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.COMPLETED and done.current_retries == 2
    assert done.last_result.result == {"succeeded_on_attempt": 3}
    attempts = attempts_of(service, job.id)
    assert [a["success"] for a in attempts] == [False, False, True]
    assert [a["error_type"] for a in attempts] == ["ConnectionError", "ConnectionError", None]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    # Exponential backoff with jitter: base 0.05 s → ≥ 0.025 s, then ≥ 0.05 s between attempts.
    gaps = [(b["started_at"] - a["finished_at"]).total_seconds()
            for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.025 and gaps[1] >= 0.05


def test_retries_exhausted_fail_with_the_last_error(service, make_tenant):
    make_tenant()
    job = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=2)
    service.run_until_idle(settle=0.5)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.FAILED and not done.can_retry
    assert done.last_result.error_message == "boom on attempt 3"
    assert done.last_result.error_type == "RuntimeError"
    assert len(attempts_of(service, job.id)) == 3


def test_not_retryable_failure_fails_at_once(service, make_tenant):
    make_tenant()
    job = service.queue_job("immediate", "fails_permanently", {}, "acme", max_retries=5)
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.FAILED and done.current_retries == 0
    [attempt] = attempts_of(service, job.id)
    assert attempt["error_type"] == "InvalidRecipient" and attempt["error_message"] == "bad address"


@pytest.fixture
def slow_backoff(app_config):
    app_config.update(JOBS_RETRY_BASE_SECONDS=60.0, JOBS_RETRY_MAX_SECONDS=600.0)
    return app_config


def test_metadata_max_delay_caps_the_backoff(slow_backoff, service, make_tenant):
    make_tenant()
    capped = service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme",
                               metadata={"max_delay": 100})   # milliseconds
    uncapped = service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme")
    service.run_until_idle(settle=0.5)
    assert service.get_job_by_id(capped.id).status is JobStatus.COMPLETED
    waiting = service.get_job_by_id(uncapped.id)
    assert waiting.status is JobStatus.PENDING and waiting.current_retries == 1
    # 60 s base with equal jitter: 30 to 60 s from when the failure was recorded, which is
    # after the attempt ended and before now.
    [failed] = attempts_of(service, uncapped.id)
    assert failed["finished_at"] + timedelta(seconds=30) <= waiting.scheduled_for
    assert waiting.scheduled_for <= datetime.now(UTC) + timedelta(seconds=60)


def test_hung_handler_times_out_on_time_and_the_pool_keeps_its_capacity(service, make_tenant):
    make_tenant("acme", "tier4", maxJobDuration=500)   # milliseconds
    hung = service.queue_job("immediate", "hangs", {}, "acme", max_retries=0,
                             priority="critical")
    others = [service.queue_job("immediate", "sleeps", {"ms": 5}, "acme") for _ in range(10)]
    started = time.monotonic()
    service.run_until_idle(settle=0.3, threads=1, timeout=10)
    assert time.monotonic() - started < 8             # not held up by the hung one
    done = service.get_job_by_id(hung.id)
    assert done.status is JobStatus.FAILED
    assert done.last_result.error_type == "JobTimeoutError"
    [attempt] = attempts_of(service, hung.id)
    assert 0.5 <= attempt["duration_ms"] / 1000 < 3   # abandoned at its limit, not left to hang
    # One thread, hung for good, and yet every other job completed.
    assert all(service.get_job_by_id(j.id).status is JobStatus.COMPLETED for j in others)


def test_recurring_job_is_rearmed_after_success_and_after_failure(service, make_tenant):
    make_tenant()
    now = datetime.now(UTC)
    ok = service.queue_job("recurring", "sleeps", {"ms": 1}, "acme", cron_schedule="*/5 * * * *",
                           scheduled_for=now)
    bad = service.queue_job("recurring", "always_fails", {}, "acme", cron_schedule="0 * * * *",
                            scheduled_for=now, max_retries=0)
    assert ok.status is JobStatus.PENDING   # cron jobs wait for their time, here already due
    service.run_until_idle(settle=0.3)
    for job, minutes in ((ok, 5), (bad, 60)):
        again = service.get_job_by_id(job.id)
        assert again.status is JobStatus.PENDING and again.current_retries == 0
        assert now < again.scheduled_for <= now + timedelta(minutes=minutes)
        assert again.scheduled_for.second == 0 and again.scheduled_for.minute % minutes == 0
        assert len(attempts_of(service, job.id)) == 1
    assert service.get_job_by_id(bad.id).last_result.error_type == "RuntimeError"


def test_recurring_run_past_the_daily_limit_moves_to_its_next_time(service, make_tenant):
    make_tenant("acme", "tier2", maxDailyJobs=2)
    service.queue_job("immediate", "sleeps", {}, "acme")       # uses 1 of 2 today
    now = datetime.now(UTC)
    first = service.queue_job("recurring", "sleeps", {}, "acme", cron_schedule="0 * * * *",
                              scheduled_for=now, priority="high")
    second = service.queue_job("recurring", "sleeps", {}, "acme", cron_schedule="0 * * * *",
                               scheduled_for=now, priority="low")
    service.run_until_idle(settle=0.3, threads=1)
    assert len(attempts_of(service, first.id)) == 1
    assert attempts_of(service, second.id) == []
    moved = service.get_job_by_id(second.id)
    assert moved.status is JobStatus.PENDING and moved.scheduled_for > now
    with service.engine.connect() as conn:
        counted = conn.execute(select(rejections_table.c.count).where(
            rejections_table.c.limit_type == "max_daily_jobs")).scalar()
    assert counted == 1


def test_retry_and_cancel(service, make_tenant):
    make_tenant()
    failed = service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme",
                               max_retries=0)
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(failed.id).status is JobStatus.FAILED
    retried = service.retry_job(failed.id)
    assert retried.status is JobStatus.QUEUED and retried.current_retries == 0
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(failed.id).status is JobStatus.COMPLETED
    with pytest.raises(JobStateError, match="only failed or cancelled"):
        service.retry_job(failed.id)

    later = service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    assert service.cancel_job(later.id).status is JobStatus.CANCELLED
    with pytest.raises(JobStateError):
        service.cancel_job(later.id)
    assert service.retry_job(later.id).status is JobStatus.QUEUED   # cancelled jobs can rerun
    with pytest.raises(JobNotFoundError):
        service.cancel_job("no-such-job")


def test_every_status_change_is_published(service, make_tenant):
    make_tenant()
    seen = []
    unsubscribe = service.job_updates.subscribe(lambda job: seen.append(job.status.value))
    service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme")
    service.run_until_idle(settle=0.3)
    assert seen == ["queued", "processing", "pending", "queued", "processing", "completed"]
    unsubscribe()
    service.queue_job("immediate", "sleeps", {}, "acme")
    assert len(seen) == 6


def test_expired_lease_is_recovered_and_the_lost_attempt_counted(service, make_tenant):
    make_tenant()
    job = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    past = datetime.now(UTC) - timedelta(seconds=1)
    with service.engine.begin() as conn:   # what a runner that died mid-attempt leaves behind
        conn.execute(jobs_table.update().where(jobs_table.c.id == job.id).values(
            status="processing", lease_owner="dead-host:1:runner", lease_expires_at=past,
            attempt_started_at=past - timedelta(seconds=3), total_attempts=1))
    service.run_until_idle(settle=0.2)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.COMPLETED
    lost, ok = attempts_of(service, job.id)
    assert lost["error_type"] == "WorkerLost" and lost["worker"] == "dead-host:1:runner"
    assert ok["success"] and ok["attempt"] == 2


def test_a_result_whose_lease_was_lost_is_dropped(service, make_tenant, caplog):
    """Another runner took the job over while this one ran it (as recovery does after a lease
    lapsed): the late result changes nothing, and only the job that was still leased is
    recorded."""
    make_tenant("acme", "tier4", maxConcurrentJobs=None)
    runner = Runner(service, threads=2, poll_interval=30).start()
    try:
        taken = service.queue_job("immediate", "sleeps", {"ms": 600}, "acme")
        kept = service.queue_job("immediate", "sleeps", {"ms": 600}, "acme")
        wait_until(lambda: all(service.get_job_by_id(j.id).status is JobStatus.PROCESSING
                               for j in (taken, kept)), 5, "both jobs to start", interval=0.01)
        with service.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == taken.id)
                         .values(lease_owner="other-host:1:runner"))
        wait_until(lambda: service.get_job_by_id(kept.id).status is JobStatus.COMPLETED, 5,
                   "the job still leased to be recorded", interval=0.01)
        time.sleep(0.2)
    finally:
        runner.stop(grace=1)
    after = service.get_job_by_id(taken.id)
    assert after.status is JobStatus.PROCESSING and after.lease_owner == "other-host:1:runner"
    assert attempts_of(service, taken.id) == []
    assert [a["success"] for a in attempts_of(service, kept.id)] == [True]
    assert f"lost the lease of job {taken.id}" in caplog.text


def test_background_runner_wakes_at_once_for_queued_and_delayed_work(service, make_tenant,
                                                                       app_config):
    make_tenant()
    # A tick far too slow to explain speed: anything well under 30 s is a wake-up (the limits
    # below leave room for a busy machine).
    runner = Runner(service, poll_interval=30).start()
    try:
        job = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
        wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 5,
                   "the queued job to run", interval=0.01)
        delayed = service.queue_delayed_job("sleeps", {"ms": 1}, timedelta(milliseconds=300),
                                            "acme")
        wait_until(lambda: service.get_job_by_id(delayed.id).status is JobStatus.COMPLETED, 8,
                   "the delayed job to run", interval=0.01)
        [attempt] = attempts_of(service, delayed.id)
        lateness = (attempt["started_at"] - delayed.scheduled_for).total_seconds()
        assert 0 <= lateness < 3
    finally:
        runner.stop(grace=1)


def claim_transactions(service, job_ids) -> int:
    """How many claims started these jobs: one claim gives all its jobs the same start."""
    with service.engine.connect() as conn:
        return len(set(conn.execute(select(jobs_table.c.last_attempt)
                                    .where(jobs_table.c.id.in_(job_ids))).scalars()))


def test_pacing_holds_neither_an_idle_runner_nor_a_backlog(service, make_tenant, monkeypatch):
    """The pause between cycles is for a runner that keeps finding a little work: a job queued
    to an idle runner starts at once, even right after the runner recorded the last one, and a
    backlog is claimed again as soon as half the room is free."""
    monkeypatch.setattr(runner_module, "_MIN_CYCLE_INTERVAL", 2.0)
    make_tenant("acme", "tier4", maxConcurrentJobs=None)
    runner = Runner(service, threads=4, poll_interval=30).start()
    try:
        for _ in range(2):   # the second queued once the first was recorded
            job = service.queue_job("immediate", "sleeps", {"ms": 0}, "acme")
            wait_until(lambda job=job: service.get_job_by_id(job.id).status
                       is JobStatus.COMPLETED, 10, "the job to run and be recorded",
                       interval=0.01)
            claimed = service.get_job_by_id(job.id).last_attempt
            assert (claimed - job.created_at).total_seconds() < 1.0   # paced: up to 2 s
        backlog = service.queue_batch_jobs(
            [{"type": "immediate", "handler": "sleeps", "payload": {"ms": 0}}] * 200, "acme")
        # At most 20 jobs a claim (4 threads, 16 ahead): paced, 20 s or more.
        wait_until(lambda: service.count_jobs(statuses=["completed"]) >= 202, 6.0,
                   "the backlog to drain", interval=0.02)
        most = 4 * (1 + runner_module._MAX_AHEAD)
        assert claim_transactions(service, [job.id for job in backlog]) >= 200 / most
    finally:
        runner.stop(grace=1)


def test_a_runner_with_nothing_to_do_takes_no_writers_turn(service, make_tenant):
    """Every commit anywhere wakes every runner. One with nothing to record, claim or promote
    finds that out with a read, and leaves SQLite's turn to the writers that have work; it
    still reads when the next delayed job falls due, and runs it then."""
    make_tenant("acme", "tier4", maxConcurrentJobs=None)
    runner = Runner(service, threads=2, poll_interval=30).start()
    turns = []
    held = runner._connection.write_transaction

    def counted(*args, **kwargs):
        turns.append(time.monotonic())
        return held(*args, **kwargs)

    try:
        job = service.queue_job("immediate", "sleeps", {"ms": 0}, "acme")
        wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 10,
                   "the first job to run and be recorded", interval=0.01)
        time.sleep(0.2)
        runner._connection.write_transaction = counted
        later = service.queue_job("delayed", "sleeps", {"ms": 0}, "acme",
                                  scheduled_for=datetime.now(timezone.utc)
                                  + timedelta(seconds=1.5))
        for _ in range(20):   # commits that make no work due
            service.queue_job("delayed", "sleeps", {"ms": 0}, "acme",
                              scheduled_for=datetime.now(timezone.utc) + timedelta(hours=1))
            time.sleep(0.02)
        assert turns == []
        wait_until(lambda: service.get_job_by_id(later.id).status is JobStatus.COMPLETED, 10,
                   "the delayed job to run when due", interval=0.02)
        assert 1 <= len(turns) <= 4   # promote and claim; record
    finally:
        runner.stop(grace=1)


def test_a_trickle_of_work_is_claimed_a_few_jobs_per_cycle(service, make_tenant, monkeypatch):
    """What the pacing is for: jobs arriving one by one, faster than the interval, are claimed
    (and their results recorded) together, not one transaction per job."""
    monkeypatch.setattr(runner_module, "_MIN_CYCLE_INTERVAL", 0.3)
    make_tenant("acme", "tier4", maxConcurrentJobs=None)
    runner = Runner(service, threads=8, poll_interval=30).start()
    try:
        ids = []
        for _ in range(40):   # 2 s at 20 a second, 6 per interval: never the 8 threads' room
            ids.append(service.queue_job("immediate", "sleeps", {"ms": 0}, "acme").id)
            time.sleep(0.05)
        wait_until(lambda: service.count_jobs(statuses=["completed"]) >= 40, 10,
                   "the jobs to run", interval=0.02)
    finally:
        runner.stop(grace=1)
    assert claim_transactions(service, ids) <= 20   # about one a pause; unpaced, one a job


def test_stopping_a_runner_hands_back_jobs_it_had_not_finished(service, make_tenant):
    make_tenant("acme", "tier4", maxConcurrentJobs=None)
    jobs = [service.queue_job("immediate", "sleeps", {"ms": 400}, "acme") for _ in range(6)]
    runner = Runner(service, threads=2).start()
    wait_until(lambda: service.count_jobs(statuses=["processing"]), 5, "the runner to start jobs",
               interval=0.01)
    runner.stop(grace=0)
    statuses = {service.get_job_by_id(j.id).status for j in jobs}
    assert JobStatus.PROCESSING not in statuses
    for job in jobs:
        current = service.get_job_by_id(job.id)
        assert current.lease_owner is None
    service.run_until_idle(settle=0.3)
    assert all(service.get_job_by_id(j.id).status is JobStatus.COMPLETED for j in jobs)


def test_one_claim_takes_work_of_more_tenants_than_sqlite_allows_in_one_statement(service):
    """The candidates of every tenant with due work are read with UNION ALL; SQLite takes at
    most 500 terms in one compound SELECT, so 520 tenants must still be claimable at once."""
    from datetime import datetime, timezone

    from console.jobs import TenantConfig, db
    from console.jobs.claiming import FairShare, claim_due_jobs

    tenants = [f"t{n:03d}" for n in range(520)]
    for tenant_id in tenants:
        service.tenants.set_tenant_config(TenantConfig.for_tier(tenant_id, tenant_id, "tier4"))
        service.queue_job("immediate", "sleeps", {}, tenant_id)
    with db.write_transaction(service.engine) as conn:
        claim = claim_due_jobs(conn, runner_id="test", capacity=1000, lease_seconds=30,
                               handlers=service.handlers.names(), fairness=FairShare(),
                               now=datetime.now(timezone.utc),
                               daily_limit_check=lambda conn, chosen, limits, now: (chosen, []))
    assert sorted(row.tenant_id for row in claim.rows) == tenants
    assert all(row.status == "processing" and row.lease_owner == "test" for row in claim.rows)
    assert service.count_jobs(statuses=["processing"]) == 520
