"""Streams: job updates from other processes, metrics at a steady beat."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import env_for_subprocess
from tests.support import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def app_config(app_config):
    return {**app_config, "JOBS_METRICS_INTERVAL": 0.2}


@pytest.mark.slow
def test_job_updates_reach_this_process_when_another_process_runs_the_job(
        service, make_tenant, database_url, tmp_path):
    make_tenant()
    seen: dict[str, list] = {}
    lock = threading.Lock()

    def record(job):
        with lock:
            seen.setdefault(job.id, []).append((job.status.value, time.monotonic()))

    unsubscribe = service.job_updates.subscribe(record)
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "console", "worker",
                               "--threads", "2"], cwd=ROOT, env=env_for_subprocess(database_url),
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        def completed(job) -> bool:
            with lock:
                return any(s == "completed" for s, _ in seen.get(job.id, []))

        worker_log = tmp_path / "worker.log"
        warm = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
        wait_until(lambda: completed(warm), 30,
                   lambda: f"the worker to run a job; its log:\n{worker_log.read_text()}")
        queued_at = time.monotonic()
        job = service.queue_job("immediate", "sleeps", {"ms": 1500}, "acme")
        wait_until(lambda: completed(job), 8, "the job's completion to be published here",
                   interval=0.02)
        statuses = [s for s, _ in seen[job.id]]
        assert statuses[0] == "queued" and "processing" in statuses
        assert statuses.count("completed") == 1          # published once, not per path
        finished = next(t for s, t in seen[job.id] if s == "completed")
        assert finished - queued_at < 1.5 + 2.0           # within 2 s of the change
    finally:
        unsubscribe()
        worker.terminate()
        worker.wait(timeout=20)
        log.close()


def test_metrics_streams_publish_at_a_steady_interval(service, make_tenant):
    make_tenant("a")
    make_tenant("b")
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "a")
    service.run_until_idle(settle=0.2)
    service.queue_job("immediate", "sleeps", {}, "b")
    system, tenants = [], []
    stop_system = service.system_metrics_updates.subscribe(
        lambda stats: system.append((time.monotonic(), stats)))
    stop_tenants = service.tenant_metrics_updates.subscribe(tenants.append)
    wait_until(lambda: len(system) >= 6 and tenants, 5, "six beats of the metrics streams")
    stop_system()
    stop_tenants()
    count = len(system)
    # A beat starts 0.2 s after the one before and publishes once computed, so one slow beat
    # shortens the next gap: over five gaps the pace shows, whatever one beat took.
    pace = (system[5][0] - system[0][0]) / 5
    assert 0.15 <= pace < 0.5, [t for t, _ in system]
    assert system[-1][1].total_jobs == 4 and system[-1][1].total_queued_jobs == 1
    by_tenant = {m.tenant_id: m for m in tenants}
    assert by_tenant["a"].success_rate == 1.0 and by_tenant["a"].runs == 3
    assert by_tenant["b"].queued_jobs == 1
    time.sleep(0.5)
    assert len(system) == count       # unsubscribed: the publisher stopped
