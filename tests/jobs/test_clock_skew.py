"""One clock across machines: the engine keeps the database's time (``console/jobs/clock.py``).

The process test runs two ``flask worker`` processes on one PostgreSQL database, one of them
under libfaketime 60 s ahead (a second machine with a drifted clock), with a 10 s lease: every
job runs once with its result kept, and a delayed job starts neither early nor late. The unit
tests check the offset's reading and how a skewed process is reported (log, ``/healthz``).
"""
from __future__ import annotations

import glob
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from console.jobs.clock import Clock, database_offset
from console.jobs.models import attempts_table, runners_table
from tests.conftest import BASE_CONFIG, ON_POSTGRES
from tests.jobs.test_processes import (
    attempts_per_job,
    queue_records,
    read_log,
    status_counts,
)
from tests.support import wait_until

LEASE_SECONDS = 10
SKEW_SECONDS = 60
# Debian's libfaketime (package faketime): preloaded, it shifts every clock the process reads.
LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)


@pytest.fixture
def app_config(database_url) -> dict:
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url,
            "JOBS_LEASE_SECONDS": float(LEASE_SECONDS)}


def skewed_env(seconds: int) -> dict[str, str]:
    """What ``faketime -f +60s`` sets, given to the worker itself (``faketime`` would run it as
    its child, out of reach of the test's signals). The monotonic clock stays true, as on a
    machine whose wall clock drifted: shifted by libfaketime, it makes Python's timed waits
    (``Event.wait(1.0)``) never return; true, it makes ``time.sleep`` fail (the recording
    handler waits on an Event instead)."""
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"{seconds:+d}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.mark.skipif(not ON_POSTGRES, reason="machines share a PostgreSQL database, not SQLite")
@pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime is not installed "
                                                "(apt-get install faketime)")
def test_a_worker_60_s_ahead_runs_jobs_once_and_delayed_jobs_on_time(
        app, service, make_tenant, workers, tmp_path):
    make_tenant("acme", "tier4", maxQueuedJobs=None, maxDailyJobs=None, maxConcurrentJobs=None)
    lease = {"CONSOLE_JOBS_LEASE_SECONDS": str(LEASE_SECONDS)}
    skewed = workers.start("skewed", threads=6, wait_ready=False,
                           **lease, **skewed_env(SKEW_SECONDS))
    normal = workers.start("normal", threads=6, wait_ready=False, **lease)
    for worker in (skewed, normal):
        wait_until(lambda w=worker: w.runner_id() is not None or w.proc.poll() is not None,
                   timeout=30, what=f"worker {worker.name} to start")
        assert worker.proc.poll() is None, f"{worker.name} exited at start:\n{worker.text()}"

    log, delayed_log = tmp_path / "executions.log", tmp_path / "delayed.log"
    queued_at = time.monotonic()
    delayed = service.queue_delayed_job("record", {"log": str(delayed_log)},
                                        timedelta(seconds=20), "acme")
    ids = queue_records(service, 12, log, sleep_ms=6000)

    # The skewed worker took its share, and its leases were not taken for lost meanwhile.
    wait_until(lambda: delayed_log.exists(), timeout=35, interval=0.05,
               what=lambda: f"the delayed job to run (jobs: {dict(status_counts(service))})")
    started_after = time.monotonic() - queued_at
    wait_until(lambda: service.count_jobs(statuses=["completed"]) == 13, timeout=20,
               what=lambda: f"13 completed jobs (now {dict(status_counts(service))})")
    assert 20.0 <= started_after <= 23.0, (
        f"the delayed job ran {started_after:.1f} s after; its attempt: "
        f"{service.get_job_attempts(delayed.id)}; the workers' clock lines: "
        + " | ".join(line for worker in (skewed, normal) for line in worker.text().splitlines()
                     if "clock" in line))

    entries = read_log(log)
    assert Counter(job_id for job_id, _ in entries) == Counter({job_id: 1 for job_id in ids})
    assert {pid for _, pid in entries} == {skewed.pid, normal.pid}, "both workers took jobs"
    assert set(attempts_per_job(service).values()) == {1}
    with service.engine.connect() as conn:
        attempts = conn.execute(select(attempts_table.c.success, attempts_table.c.started_at,
                                       attempts_table.c.job_id)).all()
    assert all(a.success for a in attempts), [a for a in attempts if not a.success]
    started = next(a.started_at for a in attempts if a.job_id == delayed.id)
    assert started >= delayed.scheduled_for
    for worker in (skewed, normal):
        assert "lost the lease" not in worker.text()
        assert "from runners that stopped renewing" not in worker.text()
    assert "clock is +60" in skewed.text()
    assert "clock is" not in normal.text()

    health = app.test_client().get("/healthz").get_json()
    assert health["status"] == "degraded"
    assert SKEW_SECONDS - 1 <= health["clock_skew_seconds"] <= SKEW_SECONDS + 1
    assert "details" not in health["runners"]   # anonymous: no host names or pids


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's clock_timestamp()")
def test_the_offset_to_a_database_on_this_machine_is_zero(service):
    assert database_offset(service.engine) == 0.0
    assert abs(service.clock.now() - datetime.now(UTC)) < timedelta(milliseconds=50)
    assert service.clock.skew_seconds == 0.0


def test_on_sqlite_the_clock_is_the_local_one_and_never_reads_the_database(tmp_path):
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    clock = Clock(engine)
    before = datetime.now(UTC)
    assert before <= clock.now() <= datetime.now(UTC)
    assert clock.skew_seconds == 0.0


class Offsets:
    """A database clock for ``Clock(read_offset=…)``: ``value`` seconds from ours, or down."""

    def __init__(self, value: float):
        self.value, self.reads, self.down = value, 0, False

    def __call__(self) -> float:
        self.reads += 1
        if self.down:
            raise ConnectionError("database away")
        return self.value


def test_the_clock_reads_the_offset_once_then_at_each_measure(service):
    offsets = Offsets(-SKEW_SECONDS)   # the database 60 s behind us
    clock = Clock(service.engine, read_offset=offsets)
    moment = clock.now()
    assert offsets.reads == 1
    assert abs(moment - (datetime.now(UTC) - timedelta(seconds=SKEW_SECONDS))) < \
        timedelta(seconds=1)
    assert clock.skew_seconds == SKEW_SECONDS
    for _ in range(100):
        clock.now()
    assert offsets.reads == 1      # the hot path never waits for the database
    clock.measure()
    assert offsets.reads == 2
    offsets.down = True
    clock.measure()                # the database away: the offset stays as it was
    assert clock.skew_seconds == SKEW_SECONDS


def test_a_skew_past_a_second_is_logged_once_per_change(service, caplog):
    offsets = Offsets(-SKEW_SECONDS)
    clock = Clock(service.engine, read_offset=offsets)
    with caplog.at_level(logging.WARNING, logger="console.jobs.clock"):
        clock.now()
        clock.measure()
        offsets.value = -SKEW_SECONDS - 0.5    # jitter: no new line
        clock.measure()
        offsets.value = -SKEW_SECONDS - 5
        clock.measure()
        offsets.value = -0.2
        clock.measure()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "+60.0 s off the database's" in messages[0]
    assert "+65.0 s off" in messages[1]
    assert "within 1 s of the database's again" in messages[2]


def test_healthz_reports_a_skewed_process_and_a_skewed_runner(app, service):
    client = app.test_client()
    assert "clock_skew_seconds" not in client.get("/healthz").get_json()

    service.clock = Clock(service.engine, read_offset=Offsets(-SKEW_SECONDS))
    health = client.get("/healthz").get_json()
    assert health["status"] == "degraded"
    assert health["clock_skew_seconds"] == SKEW_SECONDS
    assert any("clock is +60.0 s off" in w for w in health["warnings"])

    # Another process (a `flask worker` elsewhere) publishes its skew with its heartbeat.
    service.clock = Clock(service.engine)
    now = service.clock.now()
    with service.engine.begin() as conn:
        conn.execute(runners_table.insert().values(
            id="elsewhere:1:worker:abc", hostname="elsewhere", pid=1, threads=1,
            started_at=now, heartbeat_at=now, clock_skew_seconds=-42.5))
    health = client.get("/healthz").get_json()
    assert health["clock_skew_seconds"] == -42.5
    assert "elsewhere" not in str(health)   # anonymous: no host names or pids
    assert service.runners()["live"][0].clock_skew_seconds == -42.5
