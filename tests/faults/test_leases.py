"""Leases across an outage, from the runner's side: a job the runner still holds is not taken
from it by its own recovery when its lease lapsed while the database was away; a job leased to
it that it never received (a claim committed while the connection broke) is not renewed for
ever, but lapses and is recovered.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from console.jobs.models import jobs_table
from console.jobs.runner import Runner
from tests.support import wait_until

UTC = timezone.utc


def set_lease(service, job_id: str, **values) -> None:
    with service.engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(**values))


def test_a_runner_keeps_the_jobs_it_runs_when_their_leases_lapsed(service, make_tenant,
                                                                   tmp_path):
    make_tenant("acme", "tier4")
    log = tmp_path / "executions.log"
    runner = Runner(service, threads=2, name="keeps").start()
    try:
        job = service.queue_job("immediate", "record", {"log": str(log), "sleep_ms": 1500},
                                "acme")
        wait_until(lambda: service.get_job_by_id(job.id).lease_owner == runner.id, 10,
                   "the runner to claim the job")
        # As if every renewal failed during an outage longer than the lease.
        set_lease(service, job.id, lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))

        assert runner.recover_expired_leases() == 0
        held = service.get_job_by_id(job.id)
        assert held.status.value == "processing" and held.lease_owner == runner.id

        wait_until(lambda: service.get_job_by_id(job.id).status.value == "completed", 10,
                   "the job to complete")
    finally:
        runner.stop(grace=1)
    attempts = service.get_job_attempts(job.id)
    assert [(a["attempt"], bool(a["success"])) for a in attempts] == [(1, True)]
    assert log.read_text().count(job.id) == 1


def test_a_job_leased_to_a_runner_that_never_got_it_is_recovered(service, make_tenant,
                                                                  tmp_path):
    make_tenant("acme", "tier4")
    log = tmp_path / "executions.log"
    runner = Runner(service, threads=2, name="never-got-it")
    job = service.queue_job("immediate", "record", {"log": str(log)}, "acme")
    now = datetime.now(UTC)
    lapses = now + timedelta(seconds=0.5)
    # What a claim writes, committed on the server while the runner's connection broke.
    set_lease(service, job.id, status="processing", lease_owner=runner.id,
              lease_expires_at=lapses, attempt_started_at=now, last_attempt=now,
              total_attempts=1)

    runner.renew_leases()
    renewed = service.get_job_by_id(job.id).lease_expires_at
    assert abs((renewed - lapses).total_seconds()) < 0.01, (
        f"the lease of a job the runner does not hold was renewed to {renewed}")

    wait_until(lambda: datetime.now(UTC) > lapses, 5, "the lease to lapse")
    assert runner.recover_expired_leases() == 1
    service.run_until_idle(settle=0.2)
    assert service.get_job_by_id(job.id).status.value == "completed"
    attempts = service.get_job_attempts(job.id)
    assert [(a["error_type"], bool(a["success"])) for a in attempts] == [
        ("WorkerLost", False), (None, True)]
