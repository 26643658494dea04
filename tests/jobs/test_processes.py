"""Real worker processes on a real database: exactly-once execution across processes, recovery
of a killed worker's job, and a clean SIGTERM.

Each test starts ``flask --app console worker`` subprocesses against the test database (SQLite
file, or PostgreSQL with ``TEST_DATABASE_URL``) and checks the outcome three ways: the jobs
table, the attempts table, and the RecordingHandler's log file (independent evidence of every
execution, written with O_APPEND by whichever process ran the job).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from console.jobs.models import attempts_table, jobs_table
from tests.conftest import BASE_CONFIG, env_for_subprocess
from tests.support import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2


@pytest.fixture
def app_config(database_url) -> dict:
    # A short lease for this module's app, matching the workers' CONSOLE_JOBS_LEASE_SECONDS.
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url,
            "JOBS_LEASE_SECONDS": float(LEASE_SECONDS)}


# -- helpers ----------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    output: Path
    _handle: object = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def runner_id(self) -> str | None:
        """The id the worker announced on stderr (``worker <id> running …``)."""
        for line in self.text().splitlines():
            if line.startswith("worker ") and " running " in line:
                return line.split()[1]
        return None


class Workers:
    """Starts worker processes; ``cleanup()`` kills whatever is still alive and prints output."""

    def __init__(self, database_url: str, tmp_path: Path):
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.started: list[Worker] = []

    def start(self, name: str, *, threads: int = 4, wait_ready: bool = True,
              **env: str) -> Worker:
        output = self.tmp_path / f"worker-{name}.log"
        handle = open(output, "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "console", "worker", "--threads",
             str(threads)],
            cwd=str(REPO_ROOT), env=env_for_subprocess(self.database_url, **env),
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)
        worker = Worker(name, proc, output, handle)
        self.started.append(worker)
        if wait_ready:
            wait_until(lambda: worker.runner_id() is not None or proc.poll() is not None,
                       timeout=30, what=f"worker {name} to start")
            assert proc.poll() is None, f"worker {name} exited at start:\n{worker.text()}"
        return worker

    def terminate(self, worker: Worker, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to exit)."""
        began = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {worker.name} did not exit within {timeout} s of SIGTERM:\n"
                        f"{worker.text()}")
        return code, time.monotonic() - began

    def cleanup(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                worker.proc.kill()
            try:
                worker.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if worker._handle is not None:
                worker._handle.close()
            # Shown by pytest only when the test fails.
            print(f"----- worker {worker.name} (pid {worker.pid}, exit "
                  f"{worker.proc.returncode}) -----\n{worker.text()}")


def read_log(path: Path) -> list[tuple[str, int]]:
    """The RecordingHandler's log: one ``(job id, pid)`` per execution."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        job_id, pid = line.split()
        entries.append((job_id, int(pid)))
    return entries


def attempts_per_job(service) -> Counter:
    with service.engine.connect() as conn:
        rows = conn.execute(select(attempts_table.c.job_id, func.count())
                            .group_by(attempts_table.c.job_id)).all()
    return Counter({job_id: count for job_id, count in rows})


def job_rows(service) -> dict[str, object]:
    with service.engine.connect() as conn:
        return {row.id: row for row in conn.execute(select(jobs_table))}


def status_counts(service) -> Counter:
    with service.engine.connect() as conn:
        return Counter(dict(conn.execute(select(jobs_table.c.status, func.count())
                                         .group_by(jobs_table.c.status)).all()))


def queue_records(service, count: int, log: Path, sleep_ms: int = 0, tenant: str = "acme",
                  batch: int = 500, start_log: Path | None = None) -> list[str]:
    ids = []
    extra = {"start_log": str(start_log)} if start_log else {}
    for start in range(0, count, batch):
        specs = [{"type": "immediate", "handler": "record",
                  "payload": {"log": str(log), "sleep_ms": sleep_ms, "n": start + i, **extra}}
                 for i in range(min(batch, count - start))]
        ids += [job.id for job in service.queue_batch_jobs(specs, tenant)]
    return ids


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_worker_processes_run_2000_jobs_exactly_once(service, make_tenant, workers,
                                                         tmp_path):
    make_tenant("acme", "tier4", maxQueuedJobs=None, maxDailyJobs=None, maxConcurrentJobs=None)
    log = tmp_path / "executions.log"
    first = workers.start("a", threads=4)
    second = workers.start("b", threads=4)

    began = time.monotonic()
    ids = queue_records(service, 2000, log)
    assert len(set(ids)) == 2000

    wait_until(lambda: service.count_jobs(statuses=["completed"]) == 2000, timeout=120,
               interval=0.5,
               what=lambda: f"2000 completed jobs (now {dict(status_counts(service))})")
    elapsed = time.monotonic() - began
    print(f"2000 jobs by two workers in {elapsed:.1f} s")

    # Workers keep running: give a duplicate execution (if any) a moment to show up.
    time.sleep(0.5)
    for worker in (first, second):
        code, took = workers.terminate(worker)
        assert code == 0, f"worker {worker.name} exited {code}:\n{worker.text()}"
        assert took < 15

    assert status_counts(service) == Counter({"completed": 2000})
    entries = read_log(log)
    executions = Counter(job_id for job_id, _ in entries)
    assert len(entries) == 2000, (
        f"{len(entries)} executions; run twice: "
        f"{[job_id for job_id, n in executions.items() if n > 1][:10]}")
    assert set(executions) == set(ids)
    attempts = attempts_per_job(service)
    assert set(attempts) == set(ids)
    assert all(n == 1 for n in attempts.values()), {k: n for k, n in attempts.items() if n != 1}
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(attempts_table)
                            .where(attempts_table.c.success.is_(False))).scalar_one() == 0
    pids = Counter(pid for _, pid in entries)
    print(f"executions per worker pid: {dict(pids)}")
    assert set(pids) == {first.pid, second.pid}, f"executions per pid: {dict(pids)}"


@pytest.mark.slow
def test_killed_worker_job_is_recovered_by_another(service, make_tenant, workers, tmp_path):
    make_tenant("acme", "tier4")
    log = tmp_path / "executions.log"
    lease = {"CONSOLE_JOBS_LEASE_SECONDS": str(LEASE_SECONDS)}
    a = workers.start("a", threads=2, **lease)
    job = service.queue_job("immediate", "record", {"log": str(log), "sleep_ms": 5000}, "acme")

    owned = wait_until(
        lambda: (lambda j: j if j.status.value == "processing" and j.lease_owner else None)(
            service.get_job_by_id(job.id)),
        timeout=10, interval=0.05, what="worker A to claim the job")
    assert f":{a.pid}:" in owned.lease_owner, owned.lease_owner
    assert owned.lease_owner == a.runner_id()
    a_runner = owned.lease_owner

    a.proc.send_signal(signal.SIGKILL)
    assert a.proc.wait(timeout=10) == -signal.SIGKILL
    killed_at = time.monotonic()

    b = workers.start("b", threads=2, **lease)
    # Recovery waits for the lease to lapse (≤ LEASE_SECONDS), is noticed within a recovery
    # tick (≤ 1 s), then the attempt sleeps 5 s; slack for B's start-up on a loaded machine.
    limit = LEASE_SECONDS + 1 + 5 + 7
    wait_until(lambda: service.get_job_by_id(job.id).status.value == "completed",
               timeout=limit, interval=0.1,
               what=lambda: f"the job to complete after A was killed "
                            f"(now {service.get_job_by_id(job.id)})")
    print(f"recovered and completed {time.monotonic() - killed_at:.1f} s after the kill")

    done = service.get_job_by_id(job.id)
    assert done.lease_owner is None
    attempts = service.get_job_attempts(job.id)
    assert len(attempts) == 2, attempts
    lost, ok = attempts
    assert not lost["success"]
    assert lost["error_type"] == "WorkerLost"
    assert lost["worker"] == a_runner
    assert lost["attempt"] == 1
    assert bool(ok["success"]) is True
    assert ok["error_type"] is None
    assert f":{b.pid}:" in ok["worker"] and ok["worker"] == b.runner_id()
    assert ok["attempt"] == 2
    assert read_log(log) == [(job.id, b.pid)]

    code, _ = workers.terminate(b)
    assert code == 0


@pytest.mark.slow
@pytest.mark.parametrize("attempts_outlast_grace", [False, True],
                         ids=["attempts-finish-within-grace", "attempts-cut-off-by-grace"])
def test_sigterm_releases_or_finishes_running_jobs(service, make_tenant, workers, tmp_path,
                                                   attempts_outlast_grace):
    make_tenant("acme", "tier4", maxConcurrentJobs=None)
    log = tmp_path / "executions.log"
    threads = 3
    w = workers.start("a", threads=threads, CONSOLE_JOBS_SHUTDOWN_GRACE_SECONDS="1")
    if attempts_outlast_grace:
        # 3 s attempts, 1 s grace: the running ones are handed back, and the process exits
        # (killing their threads) long before they could finish.
        ids = queue_records(service, 2 * threads, log, sleep_ms=3000)
        wait_until(lambda: service.count_jobs(statuses=["processing"]) == threads,
                   timeout=15, interval=0.02, what="the worker to be busy")
        running: set[str] = set()
    else:
        # Stop while the worker is mid-way: some attempts done, some running, some queued.
        started_log = tmp_path / "started.log"
        ids = queue_records(service, 8 * threads, log, sleep_ms=300, start_log=started_log)

        def running_after_first_round():
            if service.count_jobs(statuses=["completed"]) < threads:
                return None
            # Started on a thread and not yet finished: a job only claimed (processing in the
            # database, still waiting for a thread) is rightly handed back untouched.
            started = {job_id for job_id, _ in read_log(started_log)}
            return (started - {job_id for job_id, _ in read_log(log)}) or None

        # Jobs running just before SIGTERM; each is at most 300 ms from its end.
        running = wait_until(running_after_first_round, timeout=15, interval=0.02,
                             what="the worker to be busy")
    code, took = workers.terminate(w, timeout=10)
    print(f"worker exited {code} {took:.2f} s after SIGTERM")
    assert code == 0, w.text()
    assert took < 6, f"took {took:.1f} s to stop with a 1 s grace"

    rows = job_rows(service)
    statuses = Counter(row.status for row in rows.values())
    print(f"after SIGTERM: {dict(statuses)}")
    assert statuses["processing"] == 0, statuses
    assert set(statuses) <= {"completed", "queued"}, statuses
    assert statuses["queued"] > 0, "the test should stop the worker before it finishes"
    if attempts_outlast_grace:
        assert statuses == Counter({"queued": len(ids)}), statuses
    else:
        # 300 ms attempts, 1 s grace: what was running at SIGTERM finished, not handed back.
        assert all(rows[job_id].status == "completed" for job_id in running), (
            {job_id: rows[job_id].status for job_id in running})
    for row in rows.values():
        assert row.lease_owner is None, row
        if row.status == "queued":
            assert row.lease_expires_at is None
    completed_by_worker = {i for i, row in rows.items() if row.status == "completed"}
    entries = read_log(log)
    assert {job_id for job_id, _ in entries} == completed_by_worker
    assert all(pid == w.pid for _, pid in entries)
    # A handed-back job kept no attempt: it never ran (or its run did not count).
    attempts = attempts_per_job(service)
    assert set(attempts) == completed_by_worker
    for job_id, row in rows.items():
        assert row.total_attempts == (1 if job_id in completed_by_worker else 0), row

    service.run_until_idle(timeout=30, settle=0.5)
    assert status_counts(service) == Counter({"completed": len(ids)})
    executions = Counter(job_id for job_id, _ in read_log(log))
    assert executions == Counter({job_id: 1 for job_id in ids})
    attempts = attempts_per_job(service)
    assert attempts == Counter({job_id: 1 for job_id in ids})
