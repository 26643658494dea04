"""The PostgreSQL server stopped for a few seconds and started again while runners work through
a few thousand jobs: gunicorn workers, a ``flask worker`` process and a runner in this process
carry on without a restart of their own, every job ends completed, nothing runs twice, the
outage costs each process one log line (not a traceback a second) and no CPU, and afterwards
heartbeats and LISTEN/NOTIFY wake-ups work as before.

The server is the test's own (see conftest.py); the runners use it as users' processes would,
started by ``benchmarks/cluster.py`` from ``gunicorn.conf.py``.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.cluster import Cluster
from console.jobs.models import attempts_table, jobs_table, runners_table
from console.jobs.runner import Runner
from tests.conftest import BASE_CONFIG
from tests.support import wait_until

pytestmark = pytest.mark.slow
UTC = timezone.utc
JOBS = 3000
LEASE = 15.0     # longer than the outage: a live runner must not lose its jobs to it
POLL = 30.0      # longer than any wait below: only LISTEN/NOTIFY can wake a runner in time
OUTAGE = 5.0     # at least the runners' longest back-off between tries (5 s)
THREADS = 4
SETTINGS = {"JOBS_LEASE_SECONDS": LEASE, "JOBS_POLL_INTERVAL": POLL,
            "JOBS_WORKER_THREADS": THREADS, "ALERTS_ENABLED": False}


@pytest.fixture
def database_url(throwaway_database_url):
    return throwaway_database_url


@pytest.fixture
def app_config(database_url) -> dict:
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "JOBS_LEASE_SECONDS": LEASE,
            "JOBS_POLL_INTERVAL": POLL}


def count(service, status: str) -> int:
    return service.count_jobs(statuses=[status])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def executions(log: Path) -> Counter:
    """How many times each job ran, from the RecordingHandler's log (every process appends)."""
    return Counter(line.split()[0] for line in log.read_text().splitlines())


def test_runners_carry_on_after_the_server_restarts(service, make_tenant, postgres_server,
                                                    database_url, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="console")
    make_tenant("acme", "tier4", maxQueuedJobs=None, maxDailyJobs=None, maxConcurrentJobs=None)
    log = tmp_path / "executions.log"
    with Cluster(database_url, web_workers=2, workers=1, settings=SETTINGS, web_threads=4,
                 worker_threads=THREADS, log_dir=tmp_path / "logs") as cluster:
        processes = cluster.runners()
        local = Runner(service, threads=THREADS, name="in-test").start()
        try:
            ids = []
            for _ in range(0, JOBS, 500):
                ids += [job.id for job in service.queue_batch_jobs(
                    [{"type": "immediate", "handler": "record",
                      "payload": {"log": str(log), "sleep_ms": 5}}] * 500, "acme")]
            wait_until(lambda: count(service, "completed") >= JOBS // 3, 60,
                       "a third of the jobs to complete")
            in_flight = count(service, "processing")
            cpu_before = {p.pid: cpu_seconds(p.pid) for p in processes}
            postgres_server.stop()
            stopped = time.monotonic()
            time.sleep(OUTAGE)
            cpu_used = {pid: cpu_seconds(pid) - used for pid, used in cpu_before.items()}
            postgres_server.start()
            restarted, restarted_at = time.monotonic(), datetime.now(UTC)
            done_at_restart = count(service, "completed")
            wait_until(lambda: count(service, "completed") > done_at_restart, 30,
                       "a job to complete after the restart")
            recovered = time.monotonic() - restarted
            wait_until(lambda: count(service, "completed") == JOBS, 120,
                       f"all {JOBS} jobs to complete")
            drained = time.monotonic() - restarted
        finally:
            local.stop(grace=1)
        print(f"server down {restarted - stopped:.1f} s with {in_flight} attempts in flight; "
              f"first completion {recovered:.2f} s after it was back, all {JOBS} jobs done "
              f"{drained:.1f} s after; CPU during the outage per process (s): "
              f"{ {pid: round(used, 2) for pid, used in cpu_used.items()} }")

        # Every runner process rode the outage out: same processes, none restarted.
        cluster._check_alive()
        assert sorted(p.pid for p in cluster.runners()) == sorted(p.pid for p in processes)
        # ... without a busy loop while the server was away.
        assert all(used < 1.0 for used in cpu_used.values()), cpu_used

        # Every job completed, each with one successful attempt; no job ran twice.
        ran = executions(log)
        assert set(ran) == set(ids)
        twice = {job_id: n for job_id, n in ran.items() if n > 1}
        with service.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(jobs_table)
                                .where(jobs_table.c.status != "completed")).scalar_one() == 0
            attempts = Counter(dict(conn.execute(
                select(attempts_table.c.error_type, func.count())
                .group_by(attempts_table.c.error_type)).all()))
        print(f"attempts by error type: {dict(attempts)}; jobs run twice: {len(twice)}")
        assert attempts[None] == JOBS
        assert not twice, f"{len(twice)} jobs ran twice (leases outlast the outage): {twice}"

        # Heartbeats resumed: each runner renewed as soon as it reached the database again.
        def beats():
            with service.engine.connect() as conn:
                return dict(conn.execute(select(runners_table.c.id,
                                                runners_table.c.heartbeat_at)).all())
        wait_until(lambda: all(beats()[p.runner_id] > restarted_at for p in processes), 2,
                   "every runner's heartbeat after the restart")

        # LISTEN/NOTIFY reconnected: a job queued now starts at once, not at the 30 s poll.
        for _ in range(3):
            queued_at = time.monotonic()
            job = service.queue_job("immediate", "record", {"log": str(log)}, "acme")
            wait_until(lambda job=job: service.get_job_by_id(job.id).status.value == "completed",
                       5,
                       "a runner to be woken for a job queued after the restart")
            print(f"a job queued after the restart completed in "
                  f"{(time.monotonic() - queued_at) * 1000:.0f} ms")

        # One line per outage and process, never a traceback.
        logs = "\n".join(path.read_text(errors="replace")
                         for path in sorted((tmp_path / "logs").glob("*.log")))
    outage_lines = [line for line in logs.splitlines()
                    if "database is unavailable" in line or "LISTEN connection" in line]
    print("\n".join(outage_lines))
    assert "Traceback" not in logs, logs[-5000:]
    assert logs.count("the database is back after") >= len(processes)
    assert logs.count("database is unavailable") <= 2 * len(processes)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], (
        caplog.text)
