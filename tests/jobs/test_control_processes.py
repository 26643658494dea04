"""Operator control across processes: a pause made in this process stops claims in a worker
process from its next cycle and a resume starts them again; the runners' rows tell what each
live worker has and what a stopped one left behind."""
from __future__ import annotations

import signal
import time

from tests.jobs.test_processes import (  # noqa: F401  (app_config: the short lease)
    LEASE_SECONDS,
    app_config,
    queue_records,
    read_log,
)
from tests.support import wait_until


def executed(log) -> set[str]:
    return {job_id for job_id, _ in read_log(log)}


def test_a_pause_here_stops_claims_in_a_worker_and_a_resume_starts_them(
        service, make_tenant, workers, tmp_path):
    make_tenant("acme")
    make_tenant("globex")
    log = tmp_path / "executions.log"
    workers.start("w", threads=4)
    warm_up = queue_records(service, 1, log)
    wait_until(lambda: executed(log) == set(warm_up), timeout=20, what="the worker to run")

    service.pause_tenant("acme", reason="provider down", by="ops")
    held = queue_records(service, 5, log)
    other = queue_records(service, 2, log, tenant="globex")
    wait_until(lambda: set(other) <= executed(log), timeout=20, what="globex's jobs to run")
    time.sleep(1.5)                        # three of the worker's poll intervals, and more
    assert not set(held) & executed(log)
    assert {service.get_job_by_id(j).status.value for j in held} == {"queued"}

    service.resume_tenant("acme", by="ops")
    wait_until(lambda: set(held) <= executed(log), timeout=20,
               what="acme's jobs to run after the resume")

    service.pause_all(reason="maintenance", by="ops")
    during = queue_records(service, 3, log, tenant="globex")
    time.sleep(1.5)
    assert not set(during) & executed(log)
    service.resume_all(by="ops")
    wait_until(lambda: set(during) <= executed(log), timeout=20, what="work after maintenance")


def test_runners_publish_their_handlers_and_a_stopped_one_says_what_became_of_its_jobs(
        service, make_tenant, workers, tmp_path):
    make_tenant("acme")
    log = tmp_path / "executions.log"
    worker = workers.start("w", threads=2, CONSOLE_JOBS_LEASE_SECONDS=str(LEASE_SECONDS))
    live = wait_until(lambda: service.runners()["live"], timeout=10, what="a live runner")
    [runner] = live
    assert runner.id == worker.runner_id() and runner.pid == worker.pid
    assert "record" in runner.handlers and runner.threads == 2

    slow = queue_records(service, 1, log, sleep_ms=60_000)
    wait_until(lambda: service.get_job_by_id(slow[0]).status.value == "processing",
               timeout=20, what="the slow job to start")
    explanation = service.explanation(slow[0])
    assert explanation.holder is not None and explanation.holder.id == worker.runner_id()

    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)
    # Another runner (this process's, on its housekeeping clock) recovers the lost attempt.
    lost = wait_until(lambda: service.runners()["stopped"], timeout=30,
                      what="the killed worker to be listed as stopped")
    assert service.explain_job(slow[0])[0].code in ("lease", "no_live_runner")
    from console.jobs.runner import Runner

    recoverer = Runner(service, name="recoverer")
    wait_until(lambda: recoverer.recover_expired_leases(), timeout=30,
               what="the lease to expire and be recovered")
    [stopped] = service.runners()["stopped"]
    assert stopped.id == lost[0].id and stopped.stopped_at is None   # it never said goodbye
    assert stopped.how_it_ended.startswith("stopped beating")
    assert [(j["job_id"], j["how"], j["status"]) for j in stopped.left_behind] == [
        (slow[0], "attempt recorded as lost", "queued")]


def test_a_cleanly_stopped_worker_lists_the_jobs_it_handed_back(service, make_tenant, workers,
                                                               tmp_path):
    make_tenant("acme")
    log = tmp_path / "executions.log"
    worker = workers.start("w", threads=1, CONSOLE_JOBS_SHUTDOWN_GRACE_SECONDS="0.5")
    slow = queue_records(service, 1, log, sleep_ms=30_000)
    wait_until(lambda: service.get_job_by_id(slow[0]).status.value == "processing",
               timeout=20, what="the slow job to start")
    code, _ = workers.terminate(worker)
    assert code == 0
    [stopped] = service.runners()["stopped"]
    assert stopped.stopped_at is not None and stopped.how_it_ended == "stopped cleanly"
    assert [(j["job_id"], j["how"], j["status"]) for j in stopped.left_behind] == [
        (slow[0], "handed back at shutdown", "queued")]
