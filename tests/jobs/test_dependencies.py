"""Dependencies: a job waits for other jobs of its tenant, is released in the transaction that
ends the last of them, or cancelled (naming the one that failed), or runs anyway; never lost,
never claimed early, and explained by the predicate the release decides with."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from console.jobs import (
    JobStateError,
    JobStatus,
    JobValidationError,
    TenantLimitException,
    db,
)
from console.jobs.dependencies import DEPENDENCY_FAILED
from console.jobs.endings import record_endings
from console.jobs.models import dependencies_table, jobs_table
from console.jobs.rollups import RollupBatch
from console.jobs.runner import Runner
from tests.conftest import ON_POSTGRES
from tests.jobs.test_operator_control import claimed_ids, idle_runner  # noqa: F401 (fixture)

UTC = timezone.utc


def stored(service, job):
    return service.get_job_by_id(job.id)


def finish(runner, job_id: str) -> None:
    """Run the claimed ``job_id``'s attempt on this thread; the next cycle records it."""
    [item] = [i for i in runner._pool.waiting_items() if i.job.id == job_id]
    item.begin()
    runner._execute(item)


def unfinished(service, job) -> list[tuple[str, str]]:
    [blocker] = [b for b in service.explain_job(job.id) if b.code == "dependencies"]
    return [(d["job_id"], d["status"]) for d in blocker.details["unfinished"]]


# -- waiting and release ----------------------------------------------------------------------

def test_a_dependent_waits_pending_without_a_time_and_runs_after_its_dependency(
        service, make_tenant):
    make_tenant("acme")
    first = service.queue_job("immediate", "sleeps", {"ms": 30}, "acme")
    then = service.queue_job("immediate", "noop", {}, "acme", depends_on=[first.id])
    assert then.status is JobStatus.PENDING and then.scheduled_for is None
    assert then.waiting_for_dependencies and then.depends_on == (first.id,)
    assert stored(service, then) == then

    service.run_until_idle(timeout=10, settle=0.3)
    assert stored(service, then).status is JobStatus.COMPLETED
    [dependency] = service.get_job_attempts(first.id)
    [dependent] = service.get_job_attempts(then.id)
    assert dependent["started_at"] >= dependency["finished_at"]


def test_the_claim_never_takes_a_waiting_dependent_and_the_explainer_names_the_unfinished(
        service, make_tenant, idle_runner):  # noqa: F811
    make_tenant("acme")
    done = service.queue_job("immediate", "noop", {}, "acme")
    assert claimed_ids(idle_runner) == {done.id}
    finish(idle_runner, done.id)
    one = service.queue_job("immediate", "noop", {}, "acme")
    two = service.queue_job("immediate", "noop", {}, "acme")
    waiting = service.queue_job("immediate", "noop", {}, "acme",
                                depends_on=[done.id, one.id, two.id])
    assert claimed_ids(idle_runner) == {one.id, two.id}          # `done` recorded meanwhile
    assert stored(service, done).status is JobStatus.COMPLETED
    assert unfinished(service, waiting) == [(one.id, "processing"), (two.id, "processing")]

    finish(idle_runner, one.id)
    assert claimed_ids(idle_runner) == {two.id}
    assert unfinished(service, waiting) == [(two.id, "processing")]
    assert stored(service, waiting).status is JobStatus.PENDING

    finish(idle_runner, two.id)
    # Released by the transaction that records `two`, and claimed by that same cycle.
    assert claimed_ids(idle_runner) == {waiting.id}
    assert service.explain_job(waiting.id) == []


def test_the_explainer_names_them_while_the_claim_passes_it_by(service, make_tenant,
                                                               idle_runner):  # noqa: F811
    make_tenant("acme")
    service.pause_handler("sleeps", by="ops")
    held = service.queue_job("immediate", "sleeps", {}, "acme")
    waiting = service.queue_job("immediate", "noop", {}, "acme", depends_on=[held.id])
    assert claimed_ids(idle_runner) == set()
    [blocker] = service.explain_job(waiting.id)
    assert blocker.code == "dependencies"
    assert blocker.details["unfinished"] == [
        {"job_id": held.id, "handler": "sleeps", "status": "queued"}]
    assert blocker.details["on_dependency_failure"] == "cancel"
    assert held.id in blocker.message


def test_a_failed_dependency_cancels_its_dependents_naming_it_and_theirs_follow(
        service, make_tenant):
    make_tenant("acme")
    seen = []
    unsubscribe = service.job_updates.subscribe(seen.append)
    failing = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    middle = service.queue_job("immediate", "noop", {}, "acme", depends_on=[failing.id])
    last = service.queue_job("immediate", "noop", {}, "acme", depends_on=[middle.id])
    anyway = service.queue_job("immediate", "noop", {}, "acme", depends_on=[middle.id],
                               on_dependency_failure="run")
    service.run_until_idle(timeout=10, settle=0.3)
    unsubscribe()

    assert stored(service, failing).status is JobStatus.FAILED
    for job, cause, how in ((middle, failing, "failed"), (last, middle, "cancelled")):
        job = stored(service, job)
        assert job.status is JobStatus.CANCELLED and job.completed_at is not None
        assert job.last_result.error_type == DEPENDENCY_FAILED
        assert cause.id in job.last_result.error_message
        assert job.last_result.metadata["dependency_id"] == cause.id
        assert job.last_result.metadata["dependency_status"] == how
        assert service.get_job_attempts(job.id) == []
    assert stored(service, anyway).status is JobStatus.COMPLETED
    cancelled = {job.id for job in seen if job.status is JobStatus.CANCELLED}
    assert {middle.id, last.id} <= cancelled


def test_with_run_it_runs_once_every_dependency_has_ended(service, make_tenant,
                                                          idle_runner):  # noqa: F811
    make_tenant("acme")
    failing = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    assert claimed_ids(idle_runner) == {failing.id}
    other = service.queue_job("immediate", "noop", {}, "acme")
    service.pause_job(other.id, by="ops")
    anyway = service.queue_job("immediate", "noop", {}, "acme",
                               depends_on=[failing.id, other.id], on_dependency_failure="run")
    finish(idle_runner, failing.id)
    assert claimed_ids(idle_runner) == set()
    assert unfinished(service, anyway) == [(other.id, "pending")]

    service.cancel_job(other.id)          # an ending too
    assert stored(service, anyway).status is JobStatus.QUEUED
    assert claimed_ids(idle_runner) == {anyway.id}


def test_cancelling_a_dependency_cancels_its_dependents(service, make_tenant):
    make_tenant("acme")
    later = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    dependent = service.queue_job("immediate", "noop", {}, "acme", depends_on=[later.id])
    service.cancel_job(later.id)
    assert stored(service, dependent).status is JobStatus.CANCELLED

    batch = [service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
             for _ in range(3)]
    dependents = [service.queue_job("immediate", "noop", {}, "acme", depends_on=[job.id])
                  for job in batch]
    outcome = service.cancel_jobs([job.id for job in batch])
    assert outcome.changed == 3
    assert {stored(service, job).status for job in dependents} == {JobStatus.CANCELLED}


def test_a_dependency_ended_already_is_taken_into_account_at_queue_time(
        service, make_tenant):
    make_tenant("acme")
    done = service.queue_job("immediate", "noop", {}, "acme")
    failed = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(timeout=10, settle=0.3)

    due = service.queue_job("immediate", "noop", {}, "acme", depends_on=[done.id])
    assert due.status is JobStatus.QUEUED and due.scheduled_for is not None
    cancelled = service.queue_job("immediate", "noop", {}, "acme", depends_on=[done.id, failed.id])
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.last_result.metadata["dependency_id"] == failed.id
    assert stored(service, cancelled) == cancelled
    anyway = service.queue_job("immediate", "noop", {}, "acme", depends_on=[failed.id],
                               on_dependency_failure="run")
    assert anyway.status is JobStatus.QUEUED
    later = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme",
                                      depends_on=[done.id])
    assert later.status is JobStatus.PENDING and later.scheduled_for > datetime.now(UTC)


def test_a_timed_dependent_waits_for_both_its_time_and_its_dependencies(service, make_tenant):
    make_tenant("acme")
    first = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    delayed = service.queue_delayed_job("noop", {}, timedelta(hours=2), "acme",
                                        depends_on=[first.id])
    assert delayed.scheduled_for is None
    assert delayed.not_before > datetime.now(UTC) + timedelta(minutes=119)
    nightly = service.queue_scheduled_job("Nightly", "0 3 * * *", "noop", {}, "acme",
                                          depends_on=[first.id])
    assert nightly.waiting_for_dependencies and nightly.not_before is not None

    service.run_now(first.id)
    service.run_until_idle(timeout=10, settle=0.3)
    for job in (delayed, nightly):
        after = stored(service, job)
        assert after.status is JobStatus.PENDING
        assert after.scheduled_for == job.not_before and after.not_before is None


def test_every_queue_verb_takes_dependencies(service, make_tenant):
    make_tenant("acme")
    first = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    note = service.queue_notification("email", "ada@example.com", "acme", subject="Hi",
                                      body="Hello", depends_on=[first.id],
                                      on_dependency_failure="run")
    assert note.waiting_for_dependencies and note.on_dependency_failure == "run"
    assert "depends_on" not in note.payload
    [spec_a, spec_b] = service.queue_batch_jobs([
        {"type": "immediate", "handler": "noop", "dependsOn": [first.id],
         "onDependencyFailure": "run"},
        {"type": "immediate", "handler": "noop", "depends_on": [first.id]}], "acme")
    assert spec_a.on_dependency_failure == "run" and spec_b.on_dependency_failure == "cancel"
    assert spec_a.waiting_for_dependencies and spec_b.waiting_for_dependencies


# -- refusals ---------------------------------------------------------------------------------

def test_dependencies_must_exist_in_the_tenant_and_nothing_is_stored_otherwise(
        service, make_tenant):
    make_tenant("acme")
    make_tenant("globex")
    theirs = service.queue_job("immediate", "noop", {}, "globex")
    recurring = service.queue_scheduled_job("Nightly", "0 3 * * *", "noop", {}, "acme")
    missing = "01890000-0000-7000-8000-000000000000"
    before = service.count_jobs()
    messages = {}
    for depends_on in ([theirs.id], [missing]):
        with pytest.raises(JobValidationError) as refused:
            service.queue_job("immediate", "noop", {}, "acme", depends_on=depends_on)
        assert refused.value.field == "depends_on"
        messages[depends_on[0]] = refused.value.message.replace(depends_on[0], "ID")
    assert messages[theirs.id] == messages[missing]        # another tenant's reads as missing
    for bad in (["nope"], "not-a-list", [recurring.id]):
        with pytest.raises(JobValidationError) as refused:
            service.queue_job("immediate", "noop", {}, "acme", depends_on=bad)
        assert refused.value.field == "depends_on"
    with pytest.raises(JobValidationError) as refused:
        service.queue_job("immediate", "noop", {}, "acme", depends_on=[recurring.id],
                          on_dependency_failure="maybe")
    assert refused.value.field == "on_dependency_failure"
    with pytest.raises(JobValidationError) as refused:
        service.queue_batch_jobs([{"type": "immediate", "handler": "noop"},
                                  {"type": "immediate", "handler": "noop",
                                   "depends_on": [missing]}], "acme")
    assert refused.value.field == "job_specs[1].depends_on"
    assert service.count_jobs() == before


def test_waiting_dependents_count_against_max_queued_jobs(service, make_tenant):
    make_tenant("acme", maxQueuedJobs=2)
    first = service.queue_job("immediate", "noop", {}, "acme")
    service.queue_job("immediate", "noop", {}, "acme", depends_on=[first.id])
    with pytest.raises(TenantLimitException) as refused:
        service.queue_job("immediate", "noop", {}, "acme", depends_on=[first.id])
    assert refused.value.limit_type == "max_queued_jobs"


def test_run_now_refuses_a_job_waiting_for_dependencies(service, make_tenant):
    make_tenant("acme")
    first = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    waiting = service.queue_job("immediate", "noop", {}, "acme", depends_on=[first.id])
    with pytest.raises(JobStateError, match="waiting for the jobs it depends on"):
        service.run_now(waiting.id)
    assert stored(service, waiting).waiting_for_dependencies


# -- chains -----------------------------------------------------------------------------------

def test_a_chain_runs_in_order(service, make_tenant):
    make_tenant("acme")
    specs = [{"type": "immediate", "handler": "sleeps", "payload": {"ms": 5}}] * 4
    chain = service.queue_chain(specs, "acme")
    assert [job.status for job in chain] == [JobStatus.QUEUED] + [JobStatus.PENDING] * 3
    assert [job.depends_on for job in chain[1:]] == [(job.id,) for job in chain[:-1]]
    service.run_until_idle(timeout=10, settle=0.3)
    attempts = [service.get_job_attempts(job.id)[0] for job in chain]
    for before, after in zip(attempts, attempts[1:], strict=False):
        assert after["started_at"] >= before["finished_at"]


def test_a_chain_is_all_or_nothing_and_a_failure_cancels_the_rest(service, make_tenant):
    make_tenant("acme")
    before = service.count_jobs()
    with pytest.raises(JobValidationError) as refused:
        service.queue_chain([{"type": "immediate", "handler": "noop"},
                             {"type": "immediate", "handler": "nope"}], "acme")
    assert refused.value.field == "job_specs[1].handler"
    assert service.count_jobs() == before

    chain = service.queue_chain([
        {"type": "immediate", "handler": "always_fails", "maxRetries": 0},
        {"type": "immediate", "handler": "noop"},
        {"type": "immediate", "handler": "noop", "onDependencyFailure": "run"},
        {"type": "immediate", "handler": "noop"}], "acme")
    service.run_until_idle(timeout=10, settle=0.3)
    assert [stored(service, job).status.value for job in chain] == [
        "failed", "cancelled", "completed", "completed"]


def test_a_chain_queued_again_with_its_idempotency_keys_is_the_same_chain(service,
                                                                          make_tenant):
    make_tenant("acme")
    specs = [{"type": "immediate", "handler": "noop", "idempotency_key": f"step-{i}"}
             for i in range(3)]
    first = service.queue_chain(specs, "acme")
    again = service.queue_chain(specs, "acme")
    assert [job.id for job in again] == [job.id for job in first]
    # A new last step joins the stored chain after its stored second step.
    longer = service.queue_chain(specs[:2] + [{"type": "immediate", "handler": "noop"}],
                                 "acme")
    assert longer[2].depends_on == (first[1].id,)


def test_a_long_chain_cancelled_at_its_head_unwinds_without_recursion(service, make_tenant):
    make_tenant("acme", maxQueuedJobs=None)
    chain = service.queue_chain([{"type": "immediate", "handler": "noop",
                                  "delay": 3600}] * 1500, "acme")
    service.cancel_job(chain[0].id)
    with service.engine.connect() as conn:
        statuses = set(conn.execute(select(jobs_table.c.status).where(
            jobs_table.c.id.in_([job.id for job in chain]))).scalars())
    assert statuses == {"cancelled"}


# -- the runner's clock and crashes -------------------------------------------------------------

def test_promotion_and_the_next_wake_up_pass_waiting_dependents_by(service, make_tenant):
    """A waiting dependent has no time (NULL sorts first on SQLite): the runner's next-due
    read must still see the delayed job behind it, and promotion must leave it alone."""
    make_tenant("acme")
    blocker = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    waiting = service.queue_job("immediate", "noop", {}, "acme", depends_on=[blocker.id])
    soon = service.queue_delayed_job("noop", {}, timedelta(milliseconds=300), "acme")
    runner = Runner(service, threads=2, name="clock")
    runner._register_heartbeat()
    try:
        runner._cycle()
        assert runner._next_due == soon.scheduled_for
        with db.write_transaction(service.engine) as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == soon.id)
                         .values(scheduled_for=datetime.now(UTC) - timedelta(seconds=1)))
        runner._next_due_read = False
        runner._cycle()
        assert {i.job.id for i in runner._pool.waiting_items()} == {soon.id}
        assert stored(service, waiting).waiting_for_dependencies
        assert runner._next_due == blocker.scheduled_for
    finally:
        runner._pool.stop()


def test_an_attempt_others_wait_for_is_recorded_without_waiting_out_the_cycle_interval(
        service, make_tenant, idle_runner):  # noqa: F811
    make_tenant("acme")
    awaited = service.queue_job("immediate", "noop", {}, "acme")
    alone = service.queue_job("immediate", "noop", {}, "acme")
    service.queue_job("immediate", "noop", {}, "acme", depends_on=[awaited.id])
    assert claimed_ids(idle_runner) == {awaited.id, alone.id}
    assert idle_runner._awaited == {awaited.id}      # the claim says who has dependents
    finish(idle_runner, alone.id)
    assert not idle_runner._hurry.is_set()           # the usual interval
    finish(idle_runner, awaited.id)
    assert idle_runner._hurry.is_set()               # the next cycle starts at once
    idle_runner.cycle()
    assert idle_runner._awaited == set()


def complete_side_by_side(service, jobs) -> list[Exception]:
    """Complete ``jobs`` in one transaction each, on threads; on PostgreSQL each marks its job
    completed before either records what follows (neither has committed: each sees the other
    pending). SQLite's write lock lets one transaction at a time, so there they simply race."""
    both_updated = threading.Barrier(len(jobs), timeout=10) if ON_POSTGRES else None
    errors: list[Exception] = []

    def complete(job):
        try:
            now = datetime.now(UTC)
            with db.write_transaction(service.engine) as conn:
                conn.execute(update(jobs_table).where(jobs_table.c.id == job.id)
                             .values(status="completed", completed_at=now))
                if both_updated is not None:
                    both_updated.wait()
                record_endings(conn, [replace(job, status=JobStatus.COMPLETED)], now,
                               RollupBatch())
        except Exception as exc:   # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=complete, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def test_two_dependencies_ending_at_once_release_the_dependent(service, make_tenant):
    """Whichever of the two endings reads the states second must see the other's (PostgreSQL:
    the dependent's row lock, taken before reading them)."""
    make_tenant("acme", maxQueuedJobs=None)
    for _ in range(10):
        one = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
        two = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
        waiting = service.queue_job("immediate", "noop", {}, "acme",
                                    depends_on=[one.id, two.id])
        assert complete_side_by_side(service, [one, two]) == []
        assert stored(service, waiting).status is JobStatus.QUEUED


def test_a_dependent_queued_while_its_dependency_ends_is_not_lost(service, make_tenant):
    """The ending looks for dependents before the queue call's commit, and the queue call
    reads the dependency before the ending's: the queue call must wait for the ending (its
    FOR SHARE read on PostgreSQL, the write lock on SQLite) and then see it completed."""
    make_tenant("acme")
    dependency = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    queued: list = []
    queuer = threading.Thread(target=lambda: queued.append(service.queue_job(
        "immediate", "noop", {}, "acme", depends_on=[dependency.id])))
    now = datetime.now(UTC)
    with db.write_transaction(service.engine) as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == dependency.id)
                     .values(status="completed", completed_at=now))
        assert record_endings(conn, [replace(dependency, status=JobStatus.COMPLETED)],
                              now, RollupBatch()) == []
        queuer.start()
        queuer.join(timeout=0.5)     # it waits for this commit (or would race past it)
    queuer.join(timeout=30)
    [dependent] = queued
    assert dependent.status is JobStatus.QUEUED
    assert stored(service, dependent).status is JobStatus.QUEUED


def test_pruning_finished_jobs_forgets_their_dependencies(service, make_tenant):
    from console.handlers.maintenance import prune_finished_jobs

    make_tenant("acme")
    first = service.queue_job("immediate", "noop", {}, "acme")
    then = service.queue_job("immediate", "noop", {}, "acme", depends_on=[first.id])
    service.run_until_idle(timeout=10, settle=0.3)
    prune_finished_jobs(service.engine, "acme", datetime.now(UTC) + timedelta(days=1))
    with service.engine.connect() as conn:
        assert conn.execute(select(dependencies_table)).all() == []
    assert service.get_job_by_id(then.id) is None
