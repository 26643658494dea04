"""A crash never leaves a dependent waiting for ever: its release is written in the transaction
that records its last dependency's end, so a worker SIGKILLed at any instant either wrote both
or neither — and then another worker recovers the dependency, runs it, and releases."""
from __future__ import annotations

import signal
import time

import pytest

from tests.jobs.test_processes import LEASE_SECONDS, app_config, read_log  # noqa: F401
from tests.support import wait_until


@pytest.mark.slow
def test_a_worker_killed_while_it_runs_the_last_dependency_leaves_no_dependent_waiting(
        service, make_tenant, workers, tmp_path):
    make_tenant("acme", "tier4")
    log = tmp_path / "executions.log"
    lease = {"CONSOLE_JOBS_LEASE_SECONDS": str(LEASE_SECONDS)}
    first = service.queue_job("immediate", "record", {"log": str(log)}, "acme")
    last = service.queue_job("immediate", "record", {"log": str(log), "sleep_ms": 3000},
                             "acme")
    dependent = service.queue_job("immediate", "record", {"log": str(log)}, "acme",
                                  depends_on=[first.id, last.id])
    a = workers.start("a", threads=2, **lease)

    def running_last():
        done = service.get_job_by_id(first.id).status.value == "completed"
        running = service.get_job_by_id(last.id)
        return done and running.status.value == "processing" and running.lease_owner
    wait_until(running_last, timeout=15, interval=0.05,
               what="worker A to complete the first dependency and run the last")
    assert service.get_job_by_id(dependent.id).waiting_for_dependencies

    a.proc.send_signal(signal.SIGKILL)
    assert a.proc.wait(timeout=10) == -signal.SIGKILL
    killed_at = time.monotonic()
    b = workers.start("b", threads=2, **lease)
    # The lease lapses (≤ LEASE_SECONDS), a recovery tick notices (≤ 1 s), the last dependency
    # runs again (3 s), then the dependent; slack for B's start-up on a loaded machine.
    wait_until(lambda: service.get_job_by_id(dependent.id).status.value == "completed",
               timeout=LEASE_SECONDS + 1 + 3 + 10, interval=0.1,
               what=lambda: f"the dependent to complete after A was killed "
                            f"(now {service.get_job_by_id(dependent.id)})")
    print(f"dependent completed {time.monotonic() - killed_at:.1f} s after the kill")

    time.sleep(0.5)   # a second run of the dependent, if any, would show up by now
    runs = [pid for job_id, pid in read_log(log) if job_id == dependent.id]
    assert runs == [b.pid]
    lost, recovered = service.get_job_attempts(last.id)
    assert lost["error_type"] == "WorkerLost" and bool(recovered["success"])
    [attempt] = service.get_job_attempts(dependent.id)
    assert attempt["started_at"] >= recovered["finished_at"]
    code, _ = workers.terminate(b)
    assert code == 0
