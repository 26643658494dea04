"""Batches: every batch's jobs carry its id and are counted as they end; its callbacks run once
— in process here, across worker processes and a SIGKILL in test_batch_processes.py."""
from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, inspect, select

from console.jobs import JobStatus, JobValidationError, TenantLimitException, db
from console.jobs.batches import count_endings
from console.jobs.models import batches_table, rollups_table
from tests.conftest import BASE_CONFIG
from tests.jobs.test_processes import LEASE_SECONDS, read_log
from tests.support import schema_differences, wait_until

UTC = timezone.utc
OK = {"type": "immediate", "handler": "noop"}
FAILS = {"type": "immediate", "handler": "always_fails", "max_retries": 0}
ON_COMPLETE = {"type": "immediate", "handler": "noop", "payload": {"note": "all ended"}}
ON_SUCCESS = {"type": "immediate", "handler": "noop", "payload": {"note": "all completed"}}


@pytest.fixture
def app_config(database_url) -> dict:
    # The worker processes' lease (test_processes.py), so that recovery comes within seconds.
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url,
            "JOBS_LEASE_SECONDS": float(LEASE_SECONDS)}


def run(service):
    service.run_until_idle(timeout=20, settle=0.2)


def callbacks(service, batch):
    """The batch's callback jobs, by ``payload["batch"]["callback"]``."""
    jobs = [service.get_job_by_id(job_id) for job_id in batch.callback_job_ids]
    return {job.payload["batch"]["callback"]: job for job in jobs}


def test_migration_0016_matches_the_models(service):
    assert schema_differences(service.engine, {"batches"}) == []
    indexes = {index["name"] for index in inspect(service.engine).get_indexes("jobs")}
    assert "ix_jobs_batch_failures" in indexes and "ix_jobs_batch" not in indexes


def test_every_batch_gives_its_jobs_its_id_and_counts_them_as_they_end(service, make_tenant):
    make_tenant()
    jobs = service.queue_batch_jobs([OK, OK, FAILS, OK], "acme")
    batch_id = jobs[0].batch_id
    assert batch_id and {job.batch_id for job in jobs} == {batch_id}
    assert {service.get_job_by_id(job.id).batch_id for job in jobs} == {batch_id}
    batch = service.get_batch(batch_id)
    assert (batch.tenant_id, batch.total, batch.ended, batch.finished_at) == ("acme", 4, 0, None)
    assert batch.callback_job_ids == () and not batch.is_finished

    service.cancel_job(jobs[3].id)
    batch = service.get_batch(batch_id)
    assert (batch.completed, batch.failed, batch.cancelled) == (0, 0, 1)
    run(service)
    batch = service.get_batch(batch_id)
    assert (batch.completed, batch.failed, batch.cancelled) == (2, 1, 1)
    assert batch.is_finished and not batch.succeeded and batch.finished_at >= batch.created_at
    assert service.get_batch(service.queue_batch_jobs([OK], "acme")[0].batch_id).total == 1
    assert service.get_batch("no-such-batch") is None and service.get_batch(None) is None


def test_the_audit_entry_of_a_batch_names_it(service, make_tenant):
    from console.jobs.audit import Actor
    from console.jobs.models import audit_table

    make_tenant()
    jobs = service.queue_batch_jobs([OK, OK], "acme", actor=Actor("user", "ada"))
    with service.engine.connect() as conn:
        entry = conn.execute(select(audit_table)).one()
    assert (entry.action, entry.job_count) == ("jobs_created", 2)
    assert entry.details == {"handlers": ["noop"], "batch_id": jobs[0].batch_id}


def test_on_complete_runs_once_with_the_counts_and_on_success_only_without_failures(
        service, make_tenant):
    make_tenant()
    failing = service.queue_batch_jobs([OK, FAILS], "acme", on_complete=ON_COMPLETE,
                                       on_success=ON_SUCCESS)
    passing = service.queue_batch_jobs([OK, OK], "acme", on_complete=ON_COMPLETE,
                                       on_success=ON_SUCCESS)
    run(service)

    failed = service.get_batch(failing[0].batch_id)
    only = callbacks(service, failed)
    assert set(only) == {"on_complete"} and len(failed.callback_job_ids) == 1
    assert only["on_complete"].status is JobStatus.COMPLETED
    assert only["on_complete"].payload == {"note": "all ended", "batch": {
        "id": failed.id, "total": 2, "completed": 1, "failed": 1, "cancelled": 0,
        "callback": "on_complete"}}
    assert only["on_complete"].batch_id is None   # not a job of the batch it reports on

    succeeded = service.get_batch(passing[0].batch_id)
    both = callbacks(service, succeeded)
    assert set(both) == {"on_complete", "on_success"}
    assert both["on_success"].payload["batch"] == {
        "id": succeeded.id, "total": 2, "completed": 2, "failed": 0, "cancelled": 0,
        "callback": "on_success"}
    assert all(job.status is JobStatus.COMPLETED for job in both.values())
    assert service.count_jobs(statuses=["completed"]) == 1 + 2 + 1 + 2


def test_a_batch_finished_by_cancelling_stores_its_callback_in_the_cancel(service, make_tenant):
    make_tenant()
    jobs = service.queue_batch_jobs([OK, OK, OK], "acme", on_complete=ON_COMPLETE)
    service.cancel_job(jobs[0].id)
    outcome = service.cancel_jobs([job.id for job in jobs[1:]])
    assert outcome.changed == 2
    batch = service.get_batch(jobs[0].batch_id)
    assert (batch.cancelled, batch.is_finished, len(batch.callback_job_ids)) == (3, True, 1)
    callback = service.get_job_by_id(batch.callback_job_ids[0])
    assert callback.status is JobStatus.QUEUED
    assert callback.payload["batch"]["cancelled"] == 3


def test_a_callback_takes_a_delay_and_the_batch_priority_unless_it_names_one(
        service, make_tenant):
    make_tenant()   # tier4: default priority high
    jobs = service.queue_batch_jobs(
        [OK], "acme", priority="low",
        on_complete={**ON_COMPLETE, "delay": 600, "maxRetries": 1, "metadata": {"k": "v"}},
        on_success={**ON_SUCCESS, "priority": "critical"})
    service.cancel_job(jobs[0].id)
    found = callbacks(service, service.get_batch(jobs[0].batch_id))
    assert set(found) == {"on_complete"}   # cancelled: no on_success
    delayed = found["on_complete"]
    assert delayed.status is JobStatus.PENDING
    wait = delayed.scheduled_for - datetime.now(UTC)
    assert timedelta(seconds=590) < wait <= timedelta(seconds=600)
    assert (delayed.priority.value, delayed.max_retries, delayed.metadata) == ("low", 1,
                                                                               {"k": "v"})

    jobs = service.queue_batch_jobs([OK], "acme", on_success={**ON_SUCCESS,
                                                              "priority": "critical"})
    run(service)
    found = callbacks(service, service.get_batch(jobs[0].batch_id))
    assert found["on_success"].priority.value == "critical"


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"on_complete": {"type": "immediate", "handler": "nope"}}, "on_complete.handler",
     "unknown handler"),
    ({"on_complete": {"handler": "noop"}}, "on_complete.type", "is required"),
    ({"on_success": "noop"}, "on_success", "must be a dict"),
    ({"on_success": {**OK, "cron_schedule": "* * * * *"}}, "on_success.cron_schedule",
     "cannot recur"),
    ({"on_complete": {**OK, "cronSchedule": "* * * * *"}}, "on_complete.cronSchedule",
     "cannot recur"),
    ({"on_complete": {**OK, "idempotency_key": "k"}}, "on_complete.idempotency_key",
     "no idempotency key"),
    ({"on_complete": {**OK, "scheduled_for": "2030-01-01T00:00:00Z"}},
     "on_complete.scheduled_for", "give delay"),
    ({"on_complete": {**OK, "payload": {"batch": 1}}}, "on_complete.payload.batch",
     "use another key"),
    ({"on_complete": {**OK, "payload": []}}, "on_complete.payload", "JSON object"),
    ({"on_complete": {**OK, "delay": -1}}, "on_complete.delay", "negative"),
    ({"on_complete": {"type": "scheduled", "handler": "picky", "payload": {"ok": True}}},
     "on_complete.type", "does not run"),
    ({"on_complete": {"type": "immediate", "handler": "picky", "payload": {}}},
     "on_complete.payload", "rejected"),
    ({"on_complete": {**OK, "colour": "red"}}, "on_complete.colour", "unknown key"),
])
def test_bad_callbacks_are_refused_naming_the_field_and_nothing_is_stored(
        service, make_tenant, kwargs, field, words):
    make_tenant()
    with pytest.raises(JobValidationError) as refused:
        service.queue_batch_jobs([OK], "acme", **kwargs)
    assert refused.value.field == field and words in refused.value.message
    assert service.count_jobs() == 0 and _batch_count(service) == 0


def test_a_batch_with_callbacks_holds_no_recurring_job_and_one_without_does_not_count_them(
        service, make_tenant):
    make_tenant()
    recurring = {"type": "recurring", "handler": "noop", "cron_schedule": "0 2 * * *"}
    with pytest.raises(JobValidationError) as refused:
        service.queue_batch_jobs([OK, recurring], "acme", on_complete=ON_COMPLETE)
    assert refused.value.field == "job_specs[1].cron_schedule"
    assert "never ends" in refused.value.message

    jobs = service.queue_batch_jobs([OK, recurring], "acme")
    assert jobs[1].batch_id == jobs[0].batch_id
    run(service)
    service.cancel_job(jobs[1].id)   # a recurring job's end is not counted either
    batch = service.get_batch(jobs[0].batch_id)
    assert (batch.total, batch.completed, batch.cancelled, batch.is_finished) == (1, 1, 0, True)
    only_recurring = service.create_maintenance_jobs("acme")
    maintenance = service.get_batch(only_recurring[0].batch_id)
    assert (maintenance.total, maintenance.finished_at) == (0, maintenance.created_at)


def test_callbacks_are_counted_against_the_limits_with_their_batch(service, make_tenant):
    make_tenant("small", "tier2", maxQueuedJobs=3)
    with pytest.raises(TenantLimitException) as full:
        service.queue_batch_jobs([OK, OK], "small", on_complete=ON_COMPLETE,
                                 on_success=ON_SUCCESS)
    assert (full.value.limit_type, full.value.limit) == ("max_queued_jobs", 3)
    jobs = service.queue_batch_jobs([OK, OK], "small", on_complete=ON_COMPLETE)
    assert len(jobs) == 2
    with service.engine.connect() as conn:   # accepted with the batch: counted as created
        created = conn.execute(select(func.sum(rollups_table.c.jobs_created))).scalar_one()
    assert created == 3

    make_tenant("notify_only", "tier1")
    with pytest.raises(TenantLimitException) as not_allowed:
        service.queue_batch_jobs([{"type": "notification", "handler": "noop"}], "notify_only",
                                 on_complete=ON_COMPLETE)
    assert (not_allowed.value.limit_type, not_allowed.value.current_usage) == (
        "allowed_job_types", "immediate")
    assert service.count_jobs(tenant_id="notify_only") == 0


def test_a_retried_job_moves_the_counts_back_and_the_callbacks_do_not_run_again(
        service, make_tenant):
    make_tenant()
    jobs = service.queue_batch_jobs([OK, FAILS, OK], "acme", on_complete=ON_COMPLETE,
                                    on_success=ON_SUCCESS)
    run(service)
    batch = service.get_batch(jobs[0].batch_id)
    assert (batch.completed, batch.failed, len(batch.callback_job_ids)) == (2, 1, 1)

    service.retry_job(jobs[1].id)
    again = service.get_batch(batch.id)
    assert (again.completed, again.failed, again.finished_at, again.is_finished) == (
        2, 1 - 1, None, False)
    assert again.callback_job_ids == batch.callback_job_ids
    run(service)   # fails again
    again = service.get_batch(batch.id)
    assert (again.failed, again.is_finished) == (1, True)

    outcome = service.retry_jobs([jobs[1].id])
    assert outcome.changed == 1 and service.get_batch(batch.id).failed == 0
    service.cancel_job(jobs[1].id)
    final = service.get_batch(batch.id)
    assert (final.completed, final.failed, final.cancelled, final.is_finished) == (2, 0, 1, True)
    assert final.callback_job_ids == batch.callback_job_ids   # decided once, at the first end
    assert service.count_jobs() == 3 + 1


def test_repeating_a_batch_with_idempotency_keys_returns_the_first_one(service, make_tenant):
    make_tenant()
    specs = [{**OK, "idempotency_key": f"k{i}"} for i in range(3)]
    first = service.queue_batch_jobs(specs, "acme", on_complete=ON_COMPLETE)
    again = service.queue_batch_jobs(specs, "acme", on_complete=ON_COMPLETE)
    assert [job.id for job in again] == [job.id for job in first]
    assert {job.batch_id for job in again} == {first[0].batch_id}
    assert _batch_count(service) == 1
    partly = service.queue_batch_jobs([*specs[:1], {**OK, "idempotency_key": "new"}], "acme")
    assert partly[0].batch_id == first[0].batch_id != partly[1].batch_id
    assert service.get_batch(partly[1].batch_id).total == 1   # only what this call stored


def test_many_endings_of_one_batch_are_one_update_of_its_counts(service, make_tenant):
    make_tenant()
    a = service.queue_batch_jobs([OK] * 60, "acme", on_complete=ON_COMPLETE)
    b = service.queue_batch_jobs([OK] * 40, "acme")
    now = datetime.now(UTC)
    ended = [job.__class__(**{**job.__dict__, "status": JobStatus.COMPLETED})
             for job in [*a, *b]]
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.split()[:3])

    event.listen(service.engine, "before_cursor_execute", seen)
    try:
        with service.engine.begin() as conn:
            stored, _ = count_endings(conn, ended, now)
    finally:
        event.remove(service.engine, "before_cursor_execute", seen)
    counted = [s for s in statements if s[:2] == ["UPDATE", "batches"]]
    assert len(counted) == 2 + 1   # one per batch, and batch a's callback ids
    assert len(stored) == 1 and stored[0].payload["batch"]["completed"] == 60
    assert service.get_batch(b[0].batch_id).completed == 40


def test_two_transactions_ending_the_last_jobs_at_once_store_the_callbacks_once(
        service, make_tenant):
    """The first to update the counts holds the row until it commits; the second then reads
    the counts with both endings in them, and the callbacks as stored."""
    make_tenant()
    jobs = service.queue_batch_jobs([OK, OK], "acme", on_complete=ON_COMPLETE)
    ended = [job.__class__(**{**job.__dict__, "status": JobStatus.COMPLETED}) for job in jobs]
    together = threading.Barrier(2)
    stored: list[list] = []

    def end(job):
        together.wait()
        with db.write_transaction(service.engine) as conn:
            stored.append(count_endings(conn, [job], datetime.now(UTC))[0])
            time.sleep(0.2)   # hold the batch's row while the other one tries

    threads = [threading.Thread(target=end, args=(job,)) for job in ended]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(len(callbacks) for callbacks in stored) == [0, 1]
    batch = service.get_batch(jobs[0].batch_id)
    (callback,) = stored[0] or stored[1]
    assert (batch.completed, batch.callback_job_ids) == (2, (callback.id,))


def test_each_batch_counts_only_its_own_jobs(service, make_tenant):
    """Jobs of two tenants' batches end in one cycle; each batch counts only its own."""
    make_tenant("acme")
    make_tenant("globex")
    a = service.queue_batch_jobs([OK] * 5, "acme", on_complete=ON_COMPLETE)
    g = service.queue_batch_jobs([OK, FAILS], "globex", on_complete=ON_COMPLETE)
    run(service)
    batch_a, batch_g = service.get_batch(a[0].batch_id), service.get_batch(g[0].batch_id)
    assert (batch_a.tenant_id, batch_a.completed, batch_a.failed) == ("acme", 5, 0)
    assert (batch_g.tenant_id, batch_g.completed, batch_g.failed) == ("globex", 1, 1)
    assert service.get_job_by_id(batch_g.callback_job_ids[0]).tenant_id == "globex"


def test_pruning_deletes_the_batches_that_finished_before_the_retention(service, make_tenant):
    make_tenant()
    done = service.queue_batch_jobs([OK], "acme")
    waiting = service.queue_batch_jobs([{**OK, "delay": 3600}], "acme")
    run(service)
    prune = service.queue_job("maintenance", "prune_finished_jobs", {"retention_days": 0},
                              "acme")
    run(service)
    assert service.get_job_by_id(prune.id).last_result.result["batches_deleted"] == 1
    assert service.get_batch(done[0].batch_id) is None
    assert service.get_batch(waiting[0].batch_id).total == 1


def _batch_count(service) -> int:
    with service.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(batches_table)).scalar_one()


# -- worker processes: once across processes and crashes ------------------------------------------

def _record(log, sleep_ms: int, **extra) -> dict:
    return {"type": "immediate", "handler": "record",
            "payload": {"log": str(log), "sleep_ms": sleep_ms}, **extra}


def _callback_log(path) -> list[str]:
    return [job_id for job_id, _ in read_log(path)]


@pytest.mark.slow
def test_two_worker_processes_ending_a_batch_at_once_run_its_callback_once(
        service, make_tenant, workers, tmp_path):
    make_tenant("acme", "tier4", maxQueuedJobs=None, maxDailyJobs=None, maxConcurrentJobs=None)
    jobs_log, callback_log = tmp_path / "jobs.log", tmp_path / "callbacks.log"
    first, second = workers.start("a", threads=4), workers.start("b", threads=4)
    # 8 jobs of 300 ms per batch, 4 threads per worker: each batch's jobs run on both workers
    # side by side and end within moments of each other, so both race to end the batch.
    batch_ids = [service.queue_batch_jobs([_record(jobs_log, 300)] * 8, "acme",
                                          on_complete=_record(callback_log, 0))[0].batch_id
                 for _ in range(12)]
    wait_until(lambda: len(read_log(callback_log)) >= 12 and all(
        service.get_batch(b).callback_job_ids for b in batch_ids), timeout=90, interval=0.2,
        what=lambda: f"12 callbacks (now {len(read_log(callback_log))})")
    time.sleep(1.0)   # a second callback, if any, would show up meanwhile

    stored = [service.get_batch(batch_id) for batch_id in batch_ids]
    assert all((b.completed, b.failed, b.cancelled) == (8, 0, 0) for b in stored)
    assert all(len(b.callback_job_ids) == 1 for b in stored)
    ran = _callback_log(callback_log)
    assert sorted(ran) == sorted(b.callback_job_ids[0] for b in stored)
    assert len(read_log(jobs_log)) == 12 * 8
    both = sum(1 for b in stored if len(_workers_of(service, b.id)) == 2)
    print(f"batches whose jobs both workers ended: {both} of 12")
    assert both >= 6, "the workers should end most batches' jobs side by side"
    for worker in (first, second):
        assert workers.terminate(worker)[0] == 0


@pytest.mark.slow
def test_a_worker_killed_mid_batch_leaves_lease_recovery_to_end_it_and_the_callback_once(
        service, make_tenant, workers, tmp_path):
    make_tenant("acme", "tier4", maxConcurrentJobs=None)
    jobs_log, callback_log = tmp_path / "jobs.log", tmp_path / "callbacks.log"
    lease = {"CONSOLE_JOBS_LEASE_SECONDS": str(LEASE_SECONDS)}
    doomed = workers.start("doomed", threads=4, **lease)
    jobs = service.queue_batch_jobs([_record(jobs_log, 1500, max_retries=0)] * 8, "acme",
                                    on_complete=_record(callback_log, 0),
                                    on_success=_record(callback_log, 0))
    wait_until(lambda: service.count_jobs(statuses=["processing"]) == 4, timeout=15,
               interval=0.02, what="the doomed worker to run half of the batch")
    doomed.proc.send_signal(signal.SIGKILL)
    assert doomed.proc.wait(timeout=10) == -signal.SIGKILL

    survivor = workers.start("survivor", threads=4, **lease)
    batch_id = jobs[0].batch_id
    wait_until(lambda: service.get_batch(batch_id).callback_job_ids, timeout=30, interval=0.1,
               what=lambda: f"the batch to end (now {service.get_batch(batch_id)})")
    wait_until(lambda: read_log(callback_log), timeout=15, what="the callback to run")
    time.sleep(1.0)

    batch = service.get_batch(batch_id)
    # The 4 lost attempts had no retry left: lease recovery failed them, and counted them.
    assert (batch.completed, batch.failed, batch.cancelled) == (4, 4, 0)
    lost = [a for job in jobs for a in service.get_job_attempts(job.id)
            if a["error_type"] == "WorkerLost"]
    assert len(lost) == 4
    (callback_id,) = batch.callback_job_ids   # on_complete only: 4 failed
    assert _callback_log(callback_log) == [callback_id]
    assert service.get_job_by_id(callback_id).payload["batch"]["failed"] == 4
    assert workers.terminate(survivor)[0] == 0


def _workers_of(service, batch_id: str) -> set[str]:
    from console.jobs.models import attempts_table, jobs_table

    a, j = attempts_table.c, jobs_table.c
    with service.engine.connect() as conn:
        return set(conn.execute(select(a.worker).join(jobs_table, j.id == a.job_id)
                                .where(j.batch_id == batch_id).distinct()).scalars())
