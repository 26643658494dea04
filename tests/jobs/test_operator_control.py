"""Operator control in the engine: pauses hold work in every claim and lose nothing, run now,
and the job explainer naming each blocker exactly when the claim passes the job by for it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from console.jobs import JobStateError, JobStatus, JobValidationError, db
from console.jobs.audit import Actor
from console.jobs.models import audit_table, jobs_table, runners_table
from console.jobs.runner import Runner

UTC = timezone.utc
OPS = Actor("user", "ops")


@pytest.fixture
def app_config(app_config):
    # Long backoffs, so a job waiting to retry is still waiting when the test looks.
    return {**app_config, "JOBS_RETRY_BASE_SECONDS": 60.0, "JOBS_RETRY_MAX_SECONDS": 600.0}


@pytest.fixture
def idle_runner(service):
    """A real runner whose handler threads never start: ``cycle()`` runs its dispatch cycle
    (record, promote, claim), so claimed jobs stay ``processing`` under its lease, and its
    heartbeat row makes it a live runner with every registered handler."""
    runner = Runner(service, threads=4, name="idle")
    runner._register_heartbeat()
    runner.cycle = runner._cycle
    yield runner
    runner._pool.stop()


def status(service, job):
    return service.get_job_by_id(job.id).status


def codes(service, job):
    return [blocker.code for blocker in service.explain_job(job.id)]


def claimed_ids(runner) -> set[str]:
    runner.cycle()
    return {item.job.id for item in runner._pool.waiting_items()}


# -- pauses ----------------------------------------------------------------------------------

def test_a_paused_tenant_queues_but_starts_nothing_and_others_carry_on(service, make_tenant,
                                                                      idle_runner):
    make_tenant("acme")
    make_tenant("globex")
    service.pause_tenant("acme", reason="their SMTP is down", by=OPS)
    held = service.queue_job("immediate", "noop", {}, "acme")      # queueing still works
    other = service.queue_job("immediate", "noop", {}, "globex")
    assert claimed_ids(idle_runner) == {other.id}
    assert status(service, held) is JobStatus.QUEUED
    [blocker] = service.explain_job(held.id)
    assert blocker.code == "paused"
    assert blocker.details["scope"] == "tenant" and blocker.details["paused_by"] == "ops"
    assert "their SMTP is down" in blocker.message

    assert service.resume_tenant("acme", by=OPS).tenant_id == "acme"
    assert claimed_ids(idle_runner) == {other.id, held.id}
    assert service.resume_tenant("acme") is None   # not paused: nothing to lift


def test_a_handler_paused_for_one_tenant_holds_only_that_tenants_jobs(service, make_tenant,
                                                                     idle_runner):
    make_tenant("acme")
    make_tenant("globex")
    service.pause_handler("noop", tenant_id="acme", by=OPS)
    acme_noop = service.queue_job("immediate", "noop", {}, "acme")
    acme_other = service.queue_job("immediate", "sleeps", {"seconds": 0}, "acme")
    globex_noop = service.queue_job("immediate", "noop", {}, "globex")
    assert claimed_ids(idle_runner) == {acme_other.id, globex_noop.id}
    assert codes(service, acme_noop) == ["paused"]

    service.pause_handler("noop", by=OPS)                      # now for everyone
    later = service.queue_job("immediate", "noop", {}, "globex")
    assert claimed_ids(idle_runner) == {acme_other.id, globex_noop.id}
    assert codes(service, later) == ["paused"]
    assert codes(service, acme_noop) == ["paused", "paused"]   # both pauses hold it

    service.resume_handler("noop", by=OPS)
    service.resume_handler("noop", tenant_id="acme", by=OPS)
    assert claimed_ids(idle_runner) >= {acme_noop.id, later.id}


def test_pausing_everything_claims_nothing_until_resumed(service, make_tenant, idle_runner):
    make_tenant("acme")
    service.pause_all(reason="database upgrade", by=OPS)
    job = service.queue_job("immediate", "noop", {}, "acme")
    assert claimed_ids(idle_runner) == set()
    [blocker] = service.explain_job(job.id)
    assert blocker.code == "paused" and blocker.details["scope"] == "all"
    service.resume_all(by=OPS)
    assert claimed_ids(idle_runner) == {job.id}


def test_a_paused_delayed_job_is_not_promoted_when_due_and_runs_once_resumed(
        service, make_tenant, idle_runner):
    make_tenant("acme")
    job = service.queue_delayed_job("noop", {}, timedelta(milliseconds=1), "acme")
    paused = service.pause_job(job.id, reason="hold", by=OPS)
    assert paused.status is JobStatus.PENDING
    assert claimed_ids(idle_runner) == set()
    assert status(service, job) is JobStatus.PENDING       # due, but never promoted
    assert codes(service, job) == ["paused"]
    resumed = service.resume_job(job.id, by=OPS)
    assert resumed.status is JobStatus.PENDING
    assert claimed_ids(idle_runner) == {job.id}


def test_pausing_a_queued_job_takes_it_back_from_the_queue(service, make_tenant, idle_runner):
    make_tenant("acme")
    job = service.queue_job("immediate", "noop", {}, "acme")
    assert service.pause_job(job.id, by=OPS).status is JobStatus.PENDING
    assert claimed_ids(idle_runner) == set()
    service.resume_job(job.id, by=OPS)
    assert claimed_ids(idle_runner) == {job.id}


def test_a_paused_job_that_reaches_the_queue_anyway_is_held(service, make_tenant, idle_runner):
    """Lease recovery and shutdown hand jobs back as ``queued``: the next cycle holds them."""
    make_tenant("acme")
    job = service.queue_job("immediate", "noop", {}, "acme")
    service.pause_job(job.id, by=OPS)
    with db.write_transaction(service.engine) as conn:     # as lease recovery would
        conn.execute(update(jobs_table).where(jobs_table.c.id == job.id)
                     .values(status=JobStatus.QUEUED.value))
    assert claimed_ids(idle_runner) == set()
    assert status(service, job) is JobStatus.PENDING


def test_a_paused_recurring_job_does_not_fire_and_resumes_at_its_next_time(
        service, make_tenant, idle_runner):
    make_tenant("acme")
    job = service.queue_scheduled_job("minutely", "* * * * *", "noop", {}, "acme")
    service.pause_job(job.id, by=OPS)
    missed = datetime.now(UTC) - timedelta(minutes=5)
    with db.write_transaction(service.engine) as conn:     # its time passed while paused
        conn.execute(update(jobs_table).where(jobs_table.c.id == job.id)
                     .values(scheduled_for=missed))
    assert claimed_ids(idle_runner) == set()
    resumed = service.resume_job(job.id, by=OPS)
    assert resumed.scheduled_for > datetime.now(UTC)        # its next time: no catch-up run
    assert resumed.scheduled_for <= datetime.now(UTC) + timedelta(minutes=1)
    assert status(service, job) is JobStatus.PENDING


def test_a_running_recurring_job_paused_finishes_its_attempt_and_its_next_run_waits(
        service, make_tenant, idle_runner):
    make_tenant("acme")
    job = service.queue_scheduled_job("minutely", "* * * * *", "noop", {}, "acme")
    with db.write_transaction(service.engine) as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job.id)
                     .values(scheduled_for=datetime.now(UTC) - timedelta(seconds=1)))
    assert claimed_ids(idle_runner) == {job.id}
    service.pause_job(job.id, by=OPS)                 # while it is processing
    [item] = idle_runner._pool.waiting_items()
    item.begin()
    idle_runner._execute(item)                        # the attempt finishes
    idle_runner.cycle()                               # and is recorded
    after = service.get_job_by_id(job.id)
    assert after.status is JobStatus.PENDING and after.total_attempts == 1
    assert codes(service, job)[:2] == ["due_later", "paused"]


def test_pausing_never_loses_or_cancels_a_job(service, make_tenant):
    make_tenant("acme")
    jobs = [service.queue_job("immediate", "noop", {}, "acme") for _ in range(5)]
    service.pause_tenant("acme")
    service.run_until_idle(timeout=2, settle=0.3)
    assert {status(service, j) for j in jobs} == {JobStatus.QUEUED}
    service.resume_tenant("acme")
    service.run_until_idle(timeout=10, settle=0.3)
    assert {status(service, j) for j in jobs} == {JobStatus.COMPLETED}


def test_pauses_are_checked_and_recorded(service, make_tenant):
    make_tenant("acme")
    with pytest.raises(JobValidationError) as unknown:
        service.pause_tenant("nobody")
    assert unknown.value.field == "tenant_id"
    with pytest.raises(JobValidationError) as handler:
        service.pause_handler("no_such_handler")
    assert handler.value.field == "handler" and "noop" in str(handler.value)
    with pytest.raises(JobValidationError) as long_reason:
        service.pause_tenant("acme", reason="x" * 501)
    assert long_reason.value.field == "reason"
    assert not service.pauses()                          # nothing half-stored

    first = service.pause_tenant("acme", reason="first", by=OPS)
    again = service.pause_tenant("acme", reason="second", by=OPS)
    assert again == first                               # pausing twice changes nothing
    service.resume_tenant("acme", by=OPS)
    with service.engine.connect() as conn:
        actions = conn.execute(select(audit_table.c.action, audit_table.c.actor_name)
                               .order_by(audit_table.c.created_at)).all()
    assert actions == [("tenant_paused", "ops"), ("tenant_resumed", "ops")]


def test_a_finished_job_cannot_be_paused(service, make_tenant):
    make_tenant("acme")
    job = service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(timeout=5, settle=0.2)
    with pytest.raises(JobStateError):
        service.pause_job(job.id)


# -- run now ---------------------------------------------------------------------------------

def test_run_now_starts_a_delayed_job_now(service, make_tenant, idle_runner):
    make_tenant("acme")
    job = service.queue_delayed_job("noop", {}, timedelta(hours=2), "acme")
    assert claimed_ids(idle_runner) == set()
    now = service.run_now(job.id, by=OPS)
    assert now.id == job.id and now.status is JobStatus.QUEUED
    assert claimed_ids(idle_runner) == {job.id}


def test_run_now_of_a_recurring_job_runs_a_copy_and_keeps_the_schedule(service, make_tenant,
                                                                       idle_runner):
    make_tenant("acme")
    job = service.queue_scheduled_job("nightly", "0 3 * * *", "noop", {"x": 1}, "acme")
    copy = service.run_now(job.id, by=OPS)
    assert copy.id != job.id and copy.cron_schedule is None
    assert copy.metadata["run_now_of"] == job.id and copy.payload["x"] == 1
    assert claimed_ids(idle_runner) == {copy.id}
    original = service.get_job_by_id(job.id)
    assert original.scheduled_for == job.scheduled_for and original.status is JobStatus.PENDING


def test_run_now_refuses_what_it_cannot_do(service, make_tenant):
    make_tenant("acme")
    queued = service.queue_job("immediate", "noop", {}, "acme")
    with pytest.raises(JobStateError, match="due already"):
        service.run_now(queued.id)
    delayed = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    service.pause_job(delayed.id)
    with pytest.raises(JobStateError, match="paused"):
        service.run_now(delayed.id)


# -- the explainer names a blocker exactly when the claim passes the job by for it ------------

def test_due_later_and_retry_backoff(service, make_tenant, idle_runner):
    make_tenant("acme")
    later = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    assert claimed_ids(idle_runner) == set()
    [due] = service.explain_job(later.id)
    assert due.code == "due_later" and 3590 < due.details["in_seconds"] <= 3600

    failing = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=2)
    assert claimed_ids(idle_runner) == {failing.id}
    [item] = idle_runner._pool.waiting_items()
    item.begin()
    idle_runner._execute(item)
    assert claimed_ids(idle_runner) == set()       # recorded; not claimed again
    [backoff] = service.explain_job(failing.id)
    assert backoff.code == "retry_backoff"
    assert backoff.details["next_attempt"] == 2 and backoff.details["attempts_allowed"] == 3
    assert backoff.details["last_error_type"]

    service.run_now(later.id)
    assert service.explain_job(later.id) == []
    assert later.id in claimed_ids(idle_runner)


def test_tenant_concurrency(service, make_tenant, idle_runner):
    make_tenant("acme", maxConcurrentJobs=1)
    first = service.queue_job("immediate", "noop", {}, "acme")
    assert claimed_ids(idle_runner) == {first.id}
    second = service.queue_job("immediate", "noop", {}, "acme")
    assert claimed_ids(idle_runner) == {first.id}
    [blocker] = service.explain_job(second.id)
    assert blocker.code == "tenant_concurrency"
    assert blocker.details["running"] == 1 and blocker.details["max_concurrent_jobs"] == 1
    assert blocker.details["running_job_ids"] == [first.id]

    make_tenant("acme", maxConcurrentJobs=2)
    assert service.explain_job(second.id) == []
    assert claimed_ids(idle_runner) == {first.id, second.id}


def test_daily_limit_of_a_recurring_run(service, make_tenant, idle_runner):
    make_tenant("acme", maxDailyJobs=1)
    service.queue_job("immediate", "noop", {}, "acme")          # uses the day's one job
    recurring = service.queue_scheduled_job("minutely", "* * * * *", "noop", {}, "acme")
    with db.write_transaction(service.engine) as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == recurring.id)
                     .values(scheduled_for=datetime.now(UTC) - timedelta(seconds=1)))
    [blocker] = [b for b in service.explain_job(recurring.id) if b.code == "daily_limit"]
    claimed = claimed_ids(idle_runner)
    assert recurring.id not in claimed                           # deferred by the claim
    deferred = service.get_job_by_id(recurring.id)
    assert deferred.status is JobStatus.PENDING and deferred.scheduled_for > datetime.now(UTC)
    promised = datetime.fromisoformat(blocker.details["deferred_to"])
    assert abs((promised - deferred.scheduled_for).total_seconds()) <= 60   # the next minute


def test_no_live_runner_and_handler_not_registered(service, make_tenant, idle_runner):
    make_tenant("acme")
    job = service.queue_job("immediate", "noop", {}, "acme")
    with db.write_transaction(service.engine) as conn:   # the runner publishes fewer handlers
        conn.execute(update(runners_table).values(handlers=["sleeps"]))
    [blocker] = service.explain_job(job.id)
    assert blocker.code == "handler_not_registered"
    assert blocker.details["runners"][0]["handlers"] == ["sleeps"]
    # A runner with only that handler passes the job by: its claim filters on what it has.
    narrow = Runner(service, threads=2, name="narrow")
    narrow.service.handlers.names = lambda: ["sleeps"]
    try:
        narrow._cycle()
        assert narrow._pool.waiting_items() == []
    finally:
        del narrow.service.handlers.names
        narrow._pool.stop()

    with db.write_transaction(service.engine) as conn:   # every runner silent for a lease
        conn.execute(update(runners_table).values(
            heartbeat_at=datetime.now(UTC) - timedelta(seconds=service.lease_seconds + 1)))
    [blocker] = service.explain_job(job.id)
    assert blocker.code == "no_live_runner" and blocker.details["last_heartbeat_at"]
    idle_runner.renew_leases()                            # it beats again, with every handler
    assert service.explain_job(job.id) == []
    assert claimed_ids(idle_runner) == {job.id}


def test_fair_share_names_the_jobs_ahead(service, make_tenant, idle_runner):
    make_tenant("acme")
    make_tenant("globex")
    low = service.queue_job("immediate", "noop", {}, "acme", priority="low")
    high = service.queue_job("immediate", "noop", {}, "acme", priority="high")
    service.queue_job("immediate", "noop", {}, "globex", priority="normal")
    [blocker] = service.explain_job(low.id)
    assert blocker.code == "fair_share"
    assert blocker.details["ahead_in_tenant"] == 1
    assert blocker.details["ahead_by_priority"] == {"high": 1}
    assert [t["tenant_id"] for t in blocker.details["competing_tenants"]] == ["globex"]
    assert service.explain_job(high.id)[0].details["ahead_in_tenant"] == 0

    idle_runner._pool.size = 2    # room for two: the fair share takes acme's best and globex's
    claimed = claimed_ids(idle_runner)
    assert high.id in claimed and low.id not in claimed


def test_lease_held_by_a_runner_that_stopped_renewing(service, make_tenant, idle_runner):
    make_tenant("acme")
    job = service.queue_job("immediate", "noop", {}, "acme")
    assert claimed_ids(idle_runner) == {job.id}
    explanation = service.explanation(job.id)
    assert explanation.blockers == [] and explanation.holder.id == idle_runner.id

    with db.write_transaction(service.engine) as conn:   # the runner goes silent
        conn.execute(update(runners_table).values(
            heartbeat_at=datetime.now(UTC) - timedelta(seconds=service.lease_seconds + 1)))
    [blocker] = service.explain_job(job.id)
    assert blocker.code == "lease" and blocker.details["runner"] == idle_runner.id


# -- bounded waits ---------------------------------------------------------------------------

def test_a_low_job_that_waited_long_enough_outranks_fresh_critical_ones(service, make_tenant,
                                                                        idle_runner):
    make_tenant("acme")
    low = service.queue_job("immediate", "noop", {}, "acme", priority="low")
    critical = [service.queue_job("immediate", "noop", {}, "acme", priority="critical")
                for _ in range(3)]
    idle_runner._pool.size = 1
    assert claimed_ids(idle_runner) == {critical[0].id}     # fresh: priority decides
    waited = datetime.now(UTC) - timedelta(seconds=4 * service.priority_aging_seconds + 1)
    with db.write_transaction(service.engine) as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == low.id)
                     .values(scheduled_for=waited))
    idle_runner._aged_looked_at = float("-inf")           # its once-a-second look is due
    # A cycle with no free thread claims nothing, and keeps the look for one that can.
    assert claimed_ids(idle_runner) == {critical[0].id}
    idle_runner._pool.size = 2
    assert low.id in claimed_ids(idle_runner)              # aged four steps: critical, older
    stored = service.get_job_by_id(low.id)
    assert stored.priority.value == "low"                  # its own priority is unchanged
