#!/usr/bin/env python
"""Throughput and latency of the job engine, printed as ONE JSON object on stdout.

    python benchmarks/engine.py                                  # SQLite, fresh temp files
    python benchmarks/engine.py --database-url postgresql+psycopg://user@host:port/db
    python benchmarks/engine.py --scale 0.05                     # a quick CI-sized run
    python benchmarks/engine.py --only enqueue_one,drain --profile   # where the time goes

Progress goes to stderr. Every phase starts from a clean database: SQLite gets a fresh file (a
copy of a freshly migrated template); PostgreSQL has the engine's tables dropped and
``create_app`` migrates them again.

Phases (keys in the output). First as deployed: runners in the processes users start
(2 processes × 8 threads), jobs queued from this process:

- ``drain_workers_per_s``       10000×scale no-op jobs queued while every runner is paused
                                (``pause_all``), then resumed: jobs per second from the resume
                                to the last attempt's ``finished_at``, two
                                ``flask --app console worker`` processes.
- ``drain_gunicorn_per_s``      the same with gunicorn's two workers, each serving HTTP and
                                running its own runner (``benchmarks/cluster.py``).
- ``start_latency_deployed_ms``     attempt ``started_at`` − the instant before ``queue_job``,
                                    the two worker processes idle between jobs.
- ``delayed_lateness_deployed_ms``  as ``delayed_lateness_ms`` below, with the worker processes.
- ``noisy_neighbour_deployed_ms``   as ``noisy_neighbour_ms`` below, with the worker processes.

Then the engine's own paths, a runner in this process (``run_until_idle`` or a background
runner): secondary figures, for finding where time goes.

- ``enqueue_one_by_one_per_s``  ``service.queue_job`` N = 5000×scale times from one thread.
                                ``enqueue_one_by_one_8_threads_per_s``: N more calls shared by
                                8 threads queueing at once (a web process's request threads).
- ``enqueue_batched_per_s``     ``service.queue_batch_jobs`` of 1000 specs up to 20000×scale jobs.
- ``drain_noop_per_s``          10000×scale queued no-op jobs drained by ``run_until_idle``
                                (8 threads; ``drain_noop_16_threads_per_s`` with 16).
- ``start_latency_same_process_ms``   attempt ``started_at`` − the instant before ``queue_job``,
                                      background runner in this process, idle between jobs.
- ``start_latency_other_process_ms``  the same with ``flask --app console worker`` as runner.
- ``delayed_lateness_ms``       attempt ``started_at`` − the job's ``scheduled_for`` (1 s delays).
- ``noisy_neighbour_ms``        tenant A (tier4) queues 5000×scale 2 ms jobs; right after, tenant
                                B (tier2) queues 20: ms from B's first queue call to B's last
                                attempt's ``finished_at``.
- ``batch_callback_ms``         a 10000×scale-job batch of no-ops with an ``on_complete`` callback,
                                a background runner in this process: ms from the last job's
                                attempt ``finished_at`` to the callback's attempt ``started_at``
                                (3 batches, one after the other).
- ``low_priority_wait_ms``      bounded waits: one tenant floods critical 20 ms jobs at twice
                                what the runner can start, for 14 s (7 steps); 5 low jobs
                                queued into the flood wait this long to start (``bound_ms``:
                                4 priority steps × JOBS_PRIORITY_AGING_SECONDS = 2 s, plus up
                                to 1 s: runners look for aged jobs once a second). The same
                                flood with aging
                                off (``…_without_aging``: how many low jobs had not started when
                                the flood ended), and a quiet tier2 tenant's 20 jobs queued
                                mid-flood (``quiet_tenant_ms``, both ways: aging must not cost
                                other tenants their share).
- ``rate_limit``                three ``flask --app console worker`` processes drain a backlog of
                                one tenant limited to 50 starts per 1 s with a burst of 10, for
                                20 s×scale (at least 6 s): the most starts in any window of the
                                period (``max_in_any_period``, ≤ 50) and of the burst's 0.2 s
                                (``max_in_any_burst_window``, ≤ 10), the mean per period and the
                                share of the limit used. A start is the claim's time (the job's
                                ``last_attempt``), the moment the limit counted it.
- ``dependency_release_ms``     background runner in this process: 20×scale chains of 10 no-ops
                                and 20×scale fan-ins (10 no-ops, then one job that depends on
                                all of them), one workflow at a time: ms from the last
                                dependency's attempt ``finished_at`` to the dependent's attempt
                                ``started_at``. Details: the same 20 chains queued at once on 8
                                threads (``chains_at_once_ms``: that adds the wait for a thread).

Each deployed phase runs ``--repeat`` times (3 by default) and reports the medians, every
run's figures in its details. Timings on a small shared machine are noisy: compare runs on the
same machine only.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``console`` and ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.report import dig, log, nearest_rank, run_info  # noqa: E402
from console.jobs import JobExecutionResult, JobHandler, JobType, TenantConfig  # noqa: E402

UTC = timezone.utc
# As deployed: two runner processes of eight threads each (the configuration).
DEPLOYED_PROCESSES, DEPLOYED_THREADS = 2, 8
HANDLER_SPEC = "benchmarks.engine:Sleep2msHandler"
UNLIMITED = {"jobLimits": {"maxQueuedJobs": None, "maxDailyJobs": None,
                           "maxConcurrentJobs": None}}
PHASES = ["drain_deployed", "drain_gunicorn", "latency_deployed", "delayed_deployed",
          "noisy_deployed", "enqueue_one", "enqueue_batch", "drain", "drain16", "latency_same",
          "latency_other", "delayed", "noisy", "aging", "rate_limit", "batch_callback",
          "dependencies"]
TARGETS = {
    "drain_workers_per_s": (">=", 4000),
    "start_latency_deployed_ms.p50": ("<=", 3),
    "start_latency_deployed_ms.p99": ("<=", 10),
    "delayed_lateness_deployed_ms.p99": ("<=", 20),
    "noisy_neighbour_deployed_ms": ("<=", 100),
    "enqueue_one_by_one_per_s": (">=", 3500),
    "enqueue_batched_per_s": (">=", 20000),
    "drain_noop_per_s": (">=", 3000),
    "start_latency_same_process_ms.p50": ("<=", 3),
    "start_latency_same_process_ms.p99": ("<=", 10),
    "start_latency_other_process_ms.p50": ("<=", 5),
    "start_latency_other_process_ms.p99": ("<=", 10),
    "delayed_lateness_ms.p99": ("<=", 50),
    "noisy_neighbour_ms": ("<=", 250),
    # 4 aging steps of 2 s, plus the runner's once-a-second look for aged jobs, plus 0.5 s
    "low_priority_wait_ms.max": ("<=", 4 * 2000 + 1000 + 500),
    "rate_limit.max_in_any_period": ("<=", 50),
    "rate_limit.max_in_any_burst_window": ("<=", 10),
    "batch_callback_ms.max": ("<=", 100),
    "dependency_release_ms.p99": ("<=", 20),
}
POSTGRES_TARGETS = {"dependency_release_ms.p99": ("<=", 30),
                    "drain_workers_per_s": (">=", 3000)}
RATE_LIMIT = {"count": 50, "periodSeconds": 1.0, "burst": 10}
ENQUEUE_THREADS = 8
AGING_SECONDS = 2.0   # at --scale 1; smaller scales shorten the steps (and the flood) with it


class Sleep2msHandler(JobHandler):
    """Sleeps 2 ms (or ``payload["sleep_ms"]``) and succeeds: a short but real job for the
    noisy-neighbour and aging phases."""

    handler_name = "sleep_2ms"
    supported_job_types = {t.value for t in JobType}
    description = "Sleeps 2 ms (benchmarks)."

    def execute(self, context) -> JobExecutionResult:
        started = time.monotonic()
        time.sleep(context.job.payload.get("sleep_ms", 2) / 1000.0)
        return JobExecutionResult(success=True, executed_at=context.actual_start_time,
                                  execution_time=timedelta(seconds=time.monotonic() - started))


# -- small helpers ------------------------------------------------------------------------------

percentile = nearest_rank


def summary_ms(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    return {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2),
            "min": round(min(values), 2), "max": round(max(values), 2),
            "mean": round(sum(values) / len(values), 2), "n": len(values)}


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def scaled(base: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, int(round(base * scale)))


class Profiler:
    """cProfile of the calling thread and of every thread started while it is active."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.main = cProfile.Profile() if enabled else None
        self.threads: list[cProfile.Profile] = []

    @contextmanager
    def run(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return

        def bootstrap(*_):
            sys.setprofile(None)
            profile = cProfile.Profile()
            self.threads.append(profile)
            profile.enable()

        threading.setprofile(bootstrap)
        self.main.enable()
        try:
            yield
        finally:
            self.main.disable()
            threading.setprofile(None)

    def report(self, title: str, top: int = 15) -> dict[str, list[str]]:
        if not self.enabled:
            return {}
        out = {"calling_thread": _top(pstats.Stats(self.main), top)}
        if self.threads:
            stats = None
            for profile in self.threads:
                try:
                    s = pstats.Stats(profile)
                except (TypeError, ValueError):  # a thread that recorded nothing
                    continue
                stats = s if stats is None else stats.add(s) or stats
            if stats is not None:
                out["other_threads"] = _top(stats, top)
        for part, lines in out.items():
            log(f"profile {title} ({part}), top {top} by cumulative time:")
            for line in lines:
                print("    " + line, file=sys.stderr)
        return out


def _top(stats: pstats.Stats, top: int) -> list[str]:
    stats.sort_stats("cumulative")
    lines = []
    for func in stats.fcn_list[:top]:  # type: ignore[attr-defined]
        cc, nc, tt, ct, _ = stats.stats[func]  # type: ignore[attr-defined]
        filename, line, name = func
        where = f"{_short(filename)}:{line}({name})" if line else name
        lines.append(f"{ct:8.3f}s cum {tt:8.3f}s own {nc:>8} calls  {where}")
    return lines


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# -- databases and apps -------------------------------------------------------------------------

class Target:
    """Hands each phase a clean database."""

    def __init__(self, url: str | None, workdir: Path):
        self.workdir = workdir
        self.url = url
        self.postgres = bool(url) and url.split(":", 1)[0].startswith("postgres")
        self.kind = "postgresql" if self.postgres else "sqlite"
        self._template: Path | None = None

    def fresh(self, name: str) -> str:
        if self.postgres:
            self._drop_tables()
            return self.url  # create_app migrates the empty schema
        if self._template is None:
            self._template = self.workdir / "template.sqlite3"
            app = build_app(f"sqlite:///{self._template}")
            app.extensions["jobs"].engine.dispose()
        path = self.workdir / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self._template, path)
        return f"sqlite:///{path}"

    def _drop_tables(self) -> None:
        """Every table in the schema (the engine's, and any a later migration added)."""
        from sqlalchemy import create_engine, inspect, text

        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                tables = inspect(conn).get_table_names()
                if tables:
                    conn.execute(text(f"DROP TABLE IF EXISTS {', '.join(tables)} CASCADE"))
        finally:
            engine.dispose()


def build_app(url: str, threads: int = 8, **overrides: Any):
    from console import create_app

    config = {"SQLALCHEMY_DATABASE_URI": url, "JOBS_RUN_SCHEDULER": False, "SECRET_KEY": "bench",
              "JOBS_WORKER_THREADS": threads, "JOBS_HANDLERS": [HANDLER_SPEC]}
    config.update(overrides)
    return create_app(config)


@contextmanager
def phase_service(target: Target, name: str, threads: int = 8,
                  **overrides: Any) -> Iterator[Any]:
    """A fresh database and an app on it (``overrides``: settings); runners registered in
    ``service._bench_runners`` are stopped and the engine disposed at the end."""
    url = target.fresh(name)
    app = build_app(url, threads=threads, **overrides)
    service = app.extensions["jobs"]
    service._bench_url = url
    service._bench_runners = []
    try:
        yield service
    finally:
        for runner in service._bench_runners:
            try:
                runner.stop(grace=2)
            except Exception as exc:  # keep going: the next phase gets a new database anyway
                log(f"runner stop failed: {exc!r}")
        service.engine.dispose()


def start_runner(service, threads: int | None = None):
    from console.jobs.runner import Runner

    runner = Runner(service, threads=threads).start()
    service._bench_runners.append(runner)
    return runner


def make_tenant(service, tenant_id: str, tier: str, settings: dict | None = None) -> str:
    service.tenants.set_tenant_config(
        TenantConfig.for_tier(tenant_id, tenant_id.title(), tier, settings))
    return tenant_id


def queue_batches(service, tenant_id: str, count: int, handler: str = "noop",
                  batch: int = 1000) -> None:
    done = 0
    while done < count:
        size = min(batch, count - done)
        service.queue_batch_jobs([{"type": "immediate", "handler": handler,
                                   "payload": {"i": done + k, "note": "bench"}}
                                  for k in range(size)], tenant_id)
        done += size


def count_completed(service, tenant_id: str | None = None) -> int:
    return service.count_jobs(tenant_id=tenant_id, statuses=["completed"])


def attempt_times(service, job_ids: list[str]) -> dict[str, tuple[datetime, datetime]]:
    """job id → (started_at, finished_at) of its first attempt."""
    from sqlalchemy import select

    from console.jobs.models import attempts_table as a

    found: dict[str, tuple[datetime, datetime]] = {}
    with service.engine.connect() as conn:
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start:start + 500]
            rows = conn.execute(select(a.c.job_id, a.c.started_at, a.c.finished_at)
                                .where(a.c.job_id.in_(chunk)).order_by(a.c.attempt))
            for job_id, started, finished in rows:
                found.setdefault(job_id, (started, finished))
    return found


def attempt_span(service, tenant_id: str | None = None) -> tuple[int, datetime | None,
                                                                 datetime | None]:
    """(attempts, earliest started_at, latest finished_at)."""
    from sqlalchemy import func, select

    from console.jobs.models import attempts_table as a

    query = select(func.count(), func.min(a.c.started_at), func.max(a.c.finished_at))
    if tenant_id is not None:
        query = query.where(a.c.tenant_id == tenant_id)
    with service.engine.connect() as conn:
        count, first, last = conn.execute(query).one()
    return count, _aware(first), _aware(last)


def _aware(value):
    """``func.min``/``max`` bypass the column type on SQLite: parse and mark UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000.0


def warm_up(service, tenant_id: str, jobs: int = 3, timeout: float = 60.0) -> None:
    """Queue a few no-ops one at a time and wait for each: connections, caches, threads warm."""
    for _ in range(jobs):
        job = service.queue_job("immediate", "noop", {}, tenant_id)
        wait_until(lambda job=job: service.get_job_by_id(job.id).status.value == "completed",
                   timeout, 0.005, "a warm-up job to complete")


# -- phases -------------------------------------------------------------------------------------

def phase_enqueue_one(target: Target, scale: float, profiler: Profiler) -> dict[str, Any]:
    n = scaled(5000, scale, 50)
    with phase_service(target, "enqueue_one") as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        for i in range(50):
            service.queue_job("immediate", "noop", {"warmup": i}, tenant)
        log(f"enqueue one by one: {n} jobs")
        with profiler.run():
            started = time.perf_counter()
            for i in range(n):
                service.queue_job("immediate", "noop", {"i": i, "note": "bench"}, tenant)
            elapsed = time.perf_counter() - started
        threads_elapsed = queue_from_threads(service, tenant, n, ENQUEUE_THREADS)
        ceiling = commit_ceiling(service.engine) if target.postgres else None
    rate = n / elapsed
    threads_rate = n / threads_elapsed
    log(f"  {rate:,.0f} jobs/s ({elapsed * 1000 / n:.3f} ms per call); "
        f"{ENQUEUE_THREADS} threads at once: {threads_rate:,.0f} jobs/s"
        + (f"; the server commits at most {ceiling:,.0f} empty transactions/s one by one"
           if ceiling else ""))
    details = {"jobs": n, "seconds": round(elapsed, 3),
               "ms_per_call": round(elapsed * 1000 / n, 3),
               "threads_seconds": round(threads_elapsed, 3)}
    if ceiling:
        details["server_commits_one_by_one_per_s"] = round(ceiling, 1)
    return {"enqueue_one_by_one_per_s": round(rate, 1),
            f"enqueue_one_by_one_{ENQUEUE_THREADS}_threads_per_s": round(threads_rate, 1),
            "_details": details, "_profile": profiler.report("enqueue_one_by_one")}


def commit_ceiling(engine, commits: int = 1000) -> float:
    """Durable commits per second from one connection that write nothing but their commit
    record (an xid makes COMMIT flush the WAL): what one-by-one queueing cannot exceed on this
    server and disk, whatever the queue path does."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        started = time.perf_counter()
        for _ in range(commits):
            cursor.execute("SELECT pg_current_xact_id()")
            connection.commit()
        return commits / (time.perf_counter() - started)
    finally:
        connection.close()


def queue_from_threads(service, tenant: str, n: int, threads: int) -> float:
    """``n`` single ``queue_job`` calls shared by ``threads`` threads started together (as a
    web process's request threads queue); seconds from the start to the last call's return."""
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def queue(share: int, offset: int) -> None:
        start.wait()
        try:
            for i in range(share):
                service.queue_job("immediate", "noop", {"i": offset + i, "note": "bench"}, tenant)
        except BaseException as exc:   # reported below, not lost in the thread
            errors.append(exc)

    shares = [n // threads + (1 if k < n % threads else 0) for k in range(threads)]
    workers = [threading.Thread(target=queue, args=(share, sum(shares[:k])))
               for k, share in enumerate(shares)]
    for worker in workers:
        worker.start()
    start.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def phase_enqueue_batch(target: Target, scale: float, profiler: Profiler) -> dict[str, Any]:
    n = scaled(20000, scale, 100)
    batch = min(1000, n)
    with phase_service(target, "enqueue_batch") as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        queue_batches(service, tenant, 100)  # warm-up
        specs_list = []
        done = 0
        while done < n:
            size = min(batch, n - done)
            specs_list.append([{"type": "immediate", "handler": "noop",
                                "payload": {"i": done + k, "note": "bench"}} for k in range(size)])
            done += size
        log(f"enqueue batched: {n} jobs in {len(specs_list)} batches of {batch}")
        with profiler.run():
            started = time.perf_counter()
            for specs in specs_list:
                service.queue_batch_jobs(specs, tenant)
            elapsed = time.perf_counter() - started
    rate = n / elapsed
    log(f"  {rate:,.0f} jobs/s ({elapsed * 1000 / len(specs_list):.1f} ms per batch)")
    return {"enqueue_batched_per_s": round(rate, 1),
            "_details": {"jobs": n, "batch_size": batch, "seconds": round(elapsed, 3),
                         "ms_per_batch": round(elapsed * 1000 / len(specs_list), 2)},
            "_profile": profiler.report("enqueue_batched")}


def phase_drain(target: Target, scale: float, profiler: Profiler, threads: int) -> dict[str, Any]:
    n = scaled(10000, scale, 100)
    settle = 0.2
    key = "drain_noop_per_s" if threads == 8 else f"drain_noop_{threads}_threads_per_s"
    with phase_service(target, f"drain{threads}", threads=threads) as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        queue_batches(service, tenant, n)
        log(f"drain: {n} queued no-op jobs, {threads} threads")
        start = datetime.now(UTC)
        with profiler.run():
            wall_started = time.perf_counter()
            executed = service.run_until_idle(timeout=max(60.0, n / 50.0), settle=settle,
                                              threads=threads)
            wall = time.perf_counter() - wall_started
        completed = count_completed(service, tenant)
        attempts, first_started, last_finished = attempt_span(service, tenant)
    drain_s = (last_finished - start).total_seconds() if last_finished else float("nan")
    rate = completed / drain_s if drain_s > 0 else 0.0
    wall_rate = completed / max(1e-9, wall - settle)
    log(f"  {rate:,.0f} jobs/s to the last finished_at ({drain_s:.2f} s); wall−settle "
        f"{wall_rate:,.0f} jobs/s; completed {completed}/{n}, executed {executed}")
    details = {"jobs": n, "threads": threads, "completed": completed, "attempts": attempts,
               "executed": executed, "seconds_to_last_finished": round(drain_s, 3),
               "wall_seconds": round(wall, 3), "settle": settle,
               "per_s_wall_minus_settle": round(wall_rate, 1),
               "first_start_ms": round(ms(first_started - start), 2) if first_started else None}
    if completed != n:
        details["warning"] = f"only {completed} of {n} jobs completed"
    return {key: round(rate, 1), "_details": details,
            "_profile": profiler.report(f"drain ({threads} threads)")}


def _latency_run(service, tenant: str, n: int, gap: float) -> dict[str, Any]:
    """Queue ``n`` no-ops one at a time with an idle gap; latency = started_at − before queue."""
    queued: list[tuple[str, datetime]] = []
    call_ms: list[float] = []
    for i in range(n):
        time.sleep(gap)
        before = datetime.now(UTC)
        c0 = time.perf_counter()
        job = service.queue_job("immediate", "noop", {"i": i}, tenant)
        call_ms.append((time.perf_counter() - c0) * 1000)
        queued.append((job.id, before))
    ids = [job_id for job_id, _ in queued]
    wait_until(lambda: len(attempt_times(service, ids)) >= n, 60, 0.05,
               f"{n} latency jobs to run")
    times = attempt_times(service, ids)
    latencies = [ms(times[job_id][0] - before) for job_id, before in queued]
    # The part after queue_job returned: wake-up, claim transaction, hand-off to a thread.
    after_return = [lat - call for lat, call in zip(latencies, call_ms, strict=True)]
    return {"latency": summary_ms(latencies), "queue_call_ms": summary_ms(call_ms),
            "return_to_start_ms": summary_ms(after_return)}


def phase_latency(target: Target, scale: float, profiler: Profiler,
                  where: str) -> dict[str, Any]:
    n = scaled(200, scale, 20)
    key = {"here": "start_latency_same_process_ms",
           "workers": "start_latency_deployed_ms"}[where]
    with phase_service(target, f"latency_{where}") as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        with runners(service, target, where, tenant):
            log(f"start latency, runners {where}: {n} jobs, 20 ms apart")
            result = _latency_run(service, tenant, n, 0.02)
    log(f"  p50 {result['latency']['p50']} ms, p99 {result['latency']['p99']} ms")
    return {key: result["latency"],
            "_details": {"queue_call_ms": result["queue_call_ms"],
                         "return_to_start_ms": result["return_to_start_ms"]}}


@contextmanager
def worker_processes(service, target: Target, count: int = 1,
                     threads: int = 8) -> Iterator[list[Any]]:
    """``count`` ``flask --app console worker`` processes on the phase's database, stopped
    with SIGTERM at the end (their exit codes are then in ``exit_codes``)."""
    env = {**os.environ, "DATABASE_URL": service._bench_url, "CONSOLE_AUTO_MIGRATE": "false",
           "CONSOLE_JOBS_HANDLERS": json.dumps([HANDLER_SPEC]),
           "CONSOLE_SECRET_KEY": "bench", "CONSOLE_JOBS_WORKER_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(
               p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    workers, logs = [], []
    try:
        for index in range(count):
            log_path = target.workdir / f"worker-{index}-{time.monotonic_ns()}.log"
            logs.append(open(log_path, "wb"))
            worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "console",
                                       "worker"], cwd=str(ROOT), env=env,
                                      stdout=logs[-1], stderr=subprocess.STDOUT)
            worker.log_path = log_path
            workers.append(worker)
        yield workers
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.exit_code = worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.exit_code = worker.wait()
        for handle in logs:
            handle.close()


def warm_up_workers(service, tenant: str, workers: list[Any]) -> None:
    """Wait until a worker ran a job and every worker beats; name a worker that died."""
    try:
        warm_up(service, tenant, 1, timeout=60)
        wait_until(lambda: len(service.runners()["live"]) >= len(workers), 60, 0.05,
                   f"{len(workers)} live runners")
    except TimeoutError:
        dead = [w for w in workers if w.poll() is not None] or workers
        raise RuntimeError(f"a worker never ran (exit code {dead[0].poll()}); its log:\n"
                           f"{dead[0].log_path.read_text()[-2000:]}") from None


@contextmanager
def runners(service, target: Target, where: str, tenant: str) -> Iterator[None]:
    """The phase's runners, warmed up on ``tenant``: ``here`` — a background runner in this
    process; ``workers`` — ``DEPLOYED_PROCESSES`` ``flask --app console worker`` processes of
    ``DEPLOYED_THREADS`` threads, as users start them; ``gunicorn`` — gunicorn with
    ``DEPLOYED_PROCESSES`` workers, each serving HTTP and running its own runner."""
    if where == "here":
        start_runner(service)
        warm_up(service, tenant, 3)
        yield
    elif where == "workers":
        with worker_processes(service, target, DEPLOYED_PROCESSES,
                              DEPLOYED_THREADS) as workers:
            warm_up_workers(service, tenant, workers)
            warm_up(service, tenant, 4)
            yield
    else:
        from benchmarks.cluster import Cluster

        with Cluster(service._bench_url, web_workers=DEPLOYED_PROCESSES, workers=0,
                     handlers=[HANDLER_SPEC], log_dir=target.workdir / f"gunicorn-{tenant}",
                     settings={"JOBS_WORKER_THREADS": DEPLOYED_THREADS,
                               "AUTO_MIGRATE": False}):
            warm_up(service, tenant, 4)
            yield


def phase_drain_deployed(target: Target, scale: float, profiler: Profiler,
                         where: str) -> dict[str, Any]:
    """A backlog of no-ops queued from this process while every runner is paused, then
    resumed: jobs per second from the resume to the last attempt's end."""
    n = scaled(10000, scale, 100)
    key = f"drain_{where}_per_s"
    with phase_service(target, f"drain_{where}") as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        warm = make_tenant(service, "warm", "tier4", UNLIMITED)
        with runners(service, target, where, warm):
            service.pause_all("benchmark: queueing the backlog")
            time.sleep(0.2)   # a claim that read no pause has committed
            queue_batches(service, tenant, n)
            resumed = datetime.now(UTC)
            service.resume_all()
            wait_until(lambda: count_completed(service, tenant) >= n, max(60.0, n / 50.0),
                       0.05, f"{n} jobs drained")
        attempts, first_started, last_finished = attempt_span(service, tenant)
    drain_s = (last_finished - resumed).total_seconds()
    rate = n / drain_s
    log(f"  {rate:,.0f} jobs/s ({n} jobs in {drain_s:.2f} s, {DEPLOYED_PROCESSES} processes × "
        f"{DEPLOYED_THREADS} threads, {where})")
    return {key: round(rate, 1),
            "_details": {"jobs": n, "processes": DEPLOYED_PROCESSES, "threads": DEPLOYED_THREADS,
                         "attempts": attempts, "seconds": round(drain_s, 3),
                         "first_start_ms": round(ms(first_started - resumed), 2)}}


def phase_latency_other(target: Target, scale: float, profiler: Profiler) -> dict[str, Any]:
    n = scaled(200, scale, 20)
    with phase_service(target, "latency_other") as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        with worker_processes(service, target) as workers:
            started = time.perf_counter()
            warm_up_workers(service, tenant, workers)
            ready_s = time.perf_counter() - started
            warm_up(service, tenant, 4)
            log(f"start latency, runner in another process (ready after {ready_s:.2f} s): "
                f"{n} jobs, 20 ms apart")
            result = _latency_run(service, tenant, n, 0.02)
    exit_code = workers[0].exit_code
    log(f"  p50 {result['latency']['p50']} ms, p99 {result['latency']['p99']} ms "
        f"(worker exit code {exit_code})")
    return {"start_latency_other_process_ms": result["latency"],
            "_details": {"queue_call_ms": result["queue_call_ms"],
                         "return_to_start_ms": result["return_to_start_ms"],
                         "worker_ready_seconds": round(ready_s, 2),
                         "worker_exit_code": exit_code}}


def phase_delayed(target: Target, scale: float, profiler: Profiler,
                  where: str) -> dict[str, Any]:
    n = scaled(100, scale, 20)
    spread = 1.0
    key = {"here": "delayed_lateness_ms", "workers": "delayed_lateness_deployed_ms"}[where]
    with phase_service(target, f"delayed_{where}") as service, ExitStack() as stack:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        stack.enter_context(runners(service, target, where, tenant))
        log(f"delayed lateness: {n} jobs delayed 1 s, queued over {spread:g} s")
        scheduled: dict[str, datetime] = {}
        for i in range(n):
            job = service.queue_delayed_job("noop", {"i": i}, timedelta(seconds=1), tenant)
            scheduled[job.id] = job.scheduled_for
            time.sleep(spread / n)
        ids = list(scheduled)
        wait_until(lambda: len(attempt_times(service, ids)) >= n, 60, 0.05,
                   f"{n} delayed jobs to run")
        times = attempt_times(service, ids)
    lateness = [ms(times[job_id][0] - when) for job_id, when in scheduled.items()]
    result = summary_ms(lateness)
    log(f"  p50 {result['p50']} ms, p99 {result['p99']} ms")
    return {key: result}


def phase_noisy(target: Target, scale: float, profiler: Profiler,
                where: str) -> dict[str, Any]:
    n_a, n_b = scaled(5000, scale, 50), 20
    key = {"here": "noisy_neighbour", "workers": "noisy_neighbour_deployed"}[where]
    with phase_service(target, f"noisy_{where}") as service, ExitStack() as stack:
        tenant_a = make_tenant(service, "tenant-a", "tier4",
                               {"jobLimits": {"maxQueuedJobs": None, "maxDailyJobs": None}})
        tenant_b = make_tenant(service, "tenant-b", "tier2")
        warm = make_tenant(service, "warm", "tier4", UNLIMITED)
        stack.enter_context(runners(service, target, where, warm))
        specs = [{"type": "immediate", "handler": "sleep_2ms", "payload": {"i": i}}
                 for i in range(n_a)]
        log(f"noisy neighbour: tenant A queues {n_a} 2 ms jobs, then tenant B queues {n_b}")
        a_start = datetime.now(UTC)
        c0 = time.perf_counter()
        service.queue_batch_jobs(specs, tenant_a)
        a_queue_ms = (time.perf_counter() - c0) * 1000
        b_start = datetime.now(UTC)
        c0 = time.perf_counter()
        for i in range(n_b):
            service.queue_job("immediate", "sleep_2ms", {"i": i}, tenant_b)
        b_queue_ms = (time.perf_counter() - c0) * 1000
        wait_until(lambda: count_completed(service, tenant_b) >= n_b, 120, 0.01,
                   "tenant B's jobs")
        a_done_when_b_done = count_completed(service, tenant_a)
        _, b_first, b_last = attempt_span(service, tenant_b)
        wait_until(lambda: count_completed(service, tenant_a) >= n_a, max(120, n_a / 20), 0.1,
                   "tenant A's jobs")
        _, a_first, a_last = attempt_span(service, tenant_a)
    figure = ms(b_last - b_start)
    a_total = ms(a_last - a_start)
    log(f"  B done {figure:.0f} ms after its first queue call (A had {a_done_when_b_done} of "
        f"{n_a} done); A done after {a_total:.0f} ms")
    return {f"{key}_ms": round(figure, 1),
            f"{key}_tenant_a_completion_ms": round(a_total, 1),
            "_details": {"tenant_a_jobs": n_a, "tenant_b_jobs": n_b,
                         "tenant_a_batch_queue_ms": round(a_queue_ms, 1),
                         "tenant_b_queue_calls_ms": round(b_queue_ms, 1),
                         "tenant_b_first_start_ms": round(ms(b_first - b_start), 1),
                         "tenant_a_completed_when_b_done": a_done_when_b_done,
                         "tenant_a_per_s": round(n_a / (a_total / 1000), 1)}}


def phase_rate_limit(target: Target, scale: float, profiler: Profiler) -> dict[str, Any]:
    count, period, burst = RATE_LIMIT["count"], RATE_LIMIT["periodSeconds"], RATE_LIMIT["burst"]
    seconds = max(6.0, 20.0 * min(1.0, scale))
    backlog = int(count / period * seconds * 1.5)   # never runs dry while measured
    with phase_service(target, "rate_limit") as service:
        tenant = make_tenant(service, "bench", "tier4",
                             {"jobLimits": {**UNLIMITED["jobLimits"], "rateLimit": RATE_LIMIT}})
        warm = make_tenant(service, "warm", "tier4", UNLIMITED)
        with worker_processes(service, target, 3) as workers:
            warm_up_workers(service, warm, workers)
            log(f"rate limit: 3 workers drain {backlog} jobs of a tenant limited to {count} per "
                f"{period:g} s (burst {burst}) for {seconds:g} s")
            queue_batches(service, tenant, backlog)
            time.sleep(seconds + period)
            starts = claim_times(service, tenant)
    measured = [t for t in starts if t < starts[0] + timedelta(seconds=seconds)]
    result = {"limit": f"{count} per {period:g} s, burst {burst}",
              "max_in_any_period": most_in_a_window(starts, period),
              "max_in_any_burst_window": most_in_a_window(starts, period * burst / count),
              "mean_per_period": round(len(measured) / (seconds / period), 2),
              "share_of_limit_used": round(len(measured) / (seconds / period * count), 4),
              "starts": len(measured), "seconds": seconds,
              "worker_exit_codes": [w.exit_code for w in workers]}
    log(f"  most in any {period:g} s: {result['max_in_any_period']} (limit {count}); in any "
        f"{period * burst / count:g} s: {result['max_in_any_burst_window']} (burst {burst}); "
        f"mean {result['mean_per_period']} per period, {result['share_of_limit_used']:.1%} used")
    return {"rate_limit": result}


def claim_times(service, tenant_id: str) -> list[datetime]:
    """When the tenant's jobs were claimed (their ``last_attempt``: each ran once), in order."""
    from sqlalchemy import select

    from console.jobs.models import jobs_table as j

    with service.engine.connect() as conn:
        return sorted(conn.execute(select(j.c.last_attempt).where(
            j.c.tenant_id == tenant_id, j.c.last_attempt.is_not(None))).scalars())


def most_in_a_window(starts: list[datetime], seconds: float) -> int:
    """The most starts in any window [t, t + seconds): the busiest begins at a start."""
    most, last = 0, 0
    for first, moment in enumerate(starts):
        while last < len(starts) and starts[last] < moment + timedelta(seconds=seconds):
            last += 1
        most = max(most, last - first)
    return most


def phase_aging(target: Target, scale: float, profiler: Profiler) -> dict[str, Any]:
    step = AGING_SECONDS * min(1.0, max(0.25, scale))
    flood_seconds = 7 * step             # long enough for 4 steps, a second's look, and more
    runs = {aging: _flood_run(target, aging, flood_seconds) for aging in (step, 0.0)}
    aged, unaged = runs[step], runs[0.0]
    return {"low_priority_wait_ms": {**summary_ms(aged["waits"]),
                                     "bound_ms": 4 * step * 1000 + 1000},
            "low_priority_not_started_without_aging": unaged["not_started"],
            "quiet_tenant_ms": {"with_aging": aged["quiet_ms"],
                                "without_aging": unaged["quiet_ms"]},
            "_details": {f"aging_{aging:g}s": {k: v for k, v in run.items() if k != "waits"}
                         for aging, run in runs.items()}}


def _flood_run(target: Target, aging: float, flood_seconds: float) -> dict[str, Any]:
    """A steady critical flood in one tenant with low jobs queued into it (see the module's
    docstring); ``aging`` is JOBS_PRIORITY_AGING_SECONDS (0: off)."""
    job_ms, threads = 20, 8
    per_tick = int(2 * threads * 1000 / job_ms / 10)   # twice the runner's capacity, per 0.1 s
    with phase_service(target, f"aging-{aging:g}", threads=threads,
                       JOBS_PRIORITY_AGING_SECONDS=aging) as service:
        flood = make_tenant(service, "flood", "tier4", UNLIMITED)
        quiet = make_tenant(service, "quiet", "tier2")
        start_runner(service, threads)
        warm_up(service, flood, 3)
        stop = threading.Event()

        def flood_critical():
            while not stop.is_set():
                service.queue_batch_jobs([{"type": "immediate", "handler": "sleep_2ms",
                                           "payload": {"sleep_ms": job_ms}}] * per_tick,
                                         flood, priority="critical")
                stop.wait(0.1)

        flooder = threading.Thread(target=flood_critical, daemon=True)
        began = time.monotonic()
        flooder.start()
        time.sleep(min(1.0, flood_seconds / 7))   # a backlog of critical jobs first
        log(f"aging {aging:g} s: {per_tick * 10} critical jobs/s into tenant flood; 5 low jobs")
        low = [(service.queue_job("immediate", "sleep_2ms", {"sleep_ms": job_ms}, flood,
                                  priority="low"), datetime.now(UTC)) for _ in range(5)]
        time.sleep(min(2.0, flood_seconds / 7))
        quiet_start = datetime.now(UTC)
        quiet_ids = [service.queue_job("immediate", "sleep_2ms", {}, quiet).id
                     for _ in range(20)]
        low_ids = [job.id for job, _ in low]
        try:
            wait_until(lambda: len(attempt_times(service, low_ids)) == len(low_ids),
                       max(0.0, flood_seconds - (time.monotonic() - began)), 0.1,
                       "the low jobs to start")
        except TimeoutError:
            pass
        if time.monotonic() - began < flood_seconds and not aging:
            time.sleep(flood_seconds - (time.monotonic() - began))
        started = attempt_times(service, low_ids)
        backlog = service.count_jobs(tenant_id=flood, statuses=["queued"])
        stop.set()
        flooder.join()
        quiet_times = attempt_times(service, quiet_ids)
        quiet_ms = (round(ms(max(f for _, f in quiet_times.values()) - quiet_start), 1)
                    if len(quiet_times) == len(quiet_ids) else None)
    waits = [ms(started[job.id][0] - queued) for job, queued in low if job.id in started]
    log(f"  low jobs started {len(waits)}/5, waits {[round(w) for w in waits]} ms; "
        f"critical backlog at the end {backlog}; quiet tenant's 20 done in {quiet_ms} ms")
    return {"waits": waits, "not_started": len(low) - len(waits),
            "critical_backlog_at_end": backlog, "quiet_ms": quiet_ms,
            "flood_jobs_per_s": per_tick * 10}


def phase_batch_callback(target: Target, scale: float, profiler: Profiler) -> dict[str, Any]:
    n, rounds = scaled(10000, scale, 100), 3
    with phase_service(target, "batch_callback") as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        start_runner(service)
        warm_up(service, tenant, 3)
        log(f"batch callback: {rounds} batches of {n} no-op jobs with on_complete")
        runs = [_batch_callback_run(service, tenant, n) for _ in range(rounds)]
    gaps = [run["callback_ms"] for run in runs]
    log(f"  callback started {[round(g, 1) for g in gaps]} ms after the last job ended")
    return {"batch_callback_ms": summary_ms(gaps), "_details": {"jobs_per_batch": n,
                                                                "runs": runs}}


def _batch_callback_run(service, tenant: str, n: int) -> dict[str, Any]:
    """One batch to its end: (last job's finished_at → the callback's started_at) in ms."""
    started = time.perf_counter()
    jobs = service.queue_batch_jobs([{"type": "immediate", "handler": "noop",
                                      "payload": {"i": i}} for i in range(n)], tenant,
                                    on_complete={"type": "immediate", "handler": "noop"})
    queued_s = time.perf_counter() - started
    batch_id = jobs[0].batch_id

    def callback_started() -> bool:
        batch = service.get_batch(batch_id)
        return bool(batch.callback_job_ids) and bool(
            attempt_times(service, list(batch.callback_job_ids)))

    wait_until(callback_started, max(60.0, n / 50.0), 0.02, "the batch's callback to start")
    batch = service.get_batch(batch_id)
    callback_start = attempt_times(service, list(batch.callback_job_ids))[
        batch.callback_job_ids[0]][0]
    last_end = _last_finished(service, batch_id)
    return {"callback_ms": round(ms(callback_start - last_end), 2),
            "queue_call_s": round(queued_s, 3),
            "batch_seconds": round((batch.finished_at - batch.created_at).total_seconds(), 3)}


def _last_finished(service, batch_id: str) -> datetime:
    from sqlalchemy import func, select

    from console.jobs.models import attempts_table as a
    from console.jobs.models import jobs_table as j

    with service.engine.connect() as conn:
        return _aware(conn.execute(select(func.max(a.c.finished_at)).join(
            j, j.c.id == a.c.job_id).where(j.c.batch_id == batch_id)).scalar_one())


def phase_dependencies(target: Target, scale: float, profiler: Profiler) -> dict[str, Any]:
    chains, links, groups, fan = scaled(20, scale, 4), 10, scaled(20, scale, 4), 10
    with phase_service(target, "dependencies") as service:
        tenant = make_tenant(service, "bench", "tier4", UNLIMITED)
        start_runner(service)
        warm_up(service, tenant, 3)
        log(f"dependency release: {chains} chains of {links} no-ops and {groups} fan-ins of "
            f"{fan} no-ops into one, one workflow at a time; then the {chains} chains at once")
        chained = [gap for _ in range(chains) for gap in _chain_gaps(service, tenant, links)]
        fan_in = [gap for _ in range(groups) for gap in _fan_in_gap(service, tenant, fan)]
        with _held(service, tenant):
            queued = [service.queue_chain([{"type": "immediate", "handler": "noop"}] * links,
                                          tenant) for _ in range(chains)]
        together = [gap for chain in queued for gap in _release_gaps(
            service, [[job.id] for job in chain[:-1]], [job.id for job in chain[1:]])]
    alone = summary_ms(chained + fan_in)
    log(f"  p50 {alone['p50']} ms, p99 {alone['p99']} ms (chains: p99 "
        f"{summary_ms(chained)['p99']}, fan-ins: {summary_ms(fan_in)['p99']}); {chains} chains "
        f"at once on 8 threads: p99 {summary_ms(together)['p99']} ms")
    return {"dependency_release_ms": alone,
            "_details": {"chains_ms": summary_ms(chained), "fan_ins_ms": summary_ms(fan_in),
                         "chains_at_once_ms": summary_ms(together),
                         "chains": chains, "links": links, "fan_ins": groups, "fan": fan}}


def _chain_gaps(service, tenant: str, links: int) -> list[float]:
    chain = [job.id for job in service.queue_chain(
        [{"type": "immediate", "handler": "noop"}] * links, tenant)]
    return _release_gaps(service, [[job_id] for job_id in chain[:-1]], chain[1:])


def _fan_in_gap(service, tenant: str, fan: int) -> list[float]:
    with _held(service, tenant):   # the dependent is queued before any dependency ends
        dependencies = [job.id for job in service.queue_batch_jobs(
            [{"type": "immediate", "handler": "noop"}] * fan, tenant)]
        dependent = service.queue_job("immediate", "noop", {}, tenant, depends_on=dependencies)
    return _release_gaps(service, [dependencies], [dependent.id])


def _release_gaps(service, dependencies: list[list[str]], dependents: list[str]) -> list[float]:
    """ms from the end of each dependent's last dependency's attempt (``finished_at``) to the
    dependent's attempt start."""
    wanted = dependents + [job_id for group in dependencies for job_id in group]
    wait_until(lambda: len(attempt_times(service, wanted)) == len(set(wanted)), 60, 0.01,
               "the dependents to run")
    times = attempt_times(service, wanted)
    return [ms(times[dependent][0] - max(times[job_id][1] for job_id in group))
            for group, dependent in zip(dependencies, dependents, strict=True)]


@contextmanager
def _held(service, tenant: str) -> Iterator[None]:
    """Queue while the tenant is paused: everything then starts at once, on resume."""
    service.pause_tenant(tenant)
    try:
        yield
    finally:
        service.resume_tenant(tenant)


def median_of(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' figures merged: each number the median of its runs (a summary's p50 the
    median of the p50s, and so on); the last run's details, with every run's figures."""
    def merge(values: list[Any]) -> Any:
        if all(isinstance(v, dict) for v in values):
            return {k: merge([v[k] for v in values if k in v]) for k in values[-1]}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return round(statistics.median(values), 2)
        return values[-1]

    figures = [{k: v for k, v in out.items() if not k.startswith("_")} for out in outs]
    merged = merge(figures)
    merged["_details"] = {**(outs[-1].get("_details") or {}), "runs": figures}
    return merged


# The deployed phases' targets are medians of runs (--repeat); the others run once.
REPEATED = {"drain_deployed", "drain_gunicorn", "latency_deployed", "delayed_deployed",
            "noisy_deployed"}

RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "enqueue_one": phase_enqueue_one,
    "enqueue_batch": phase_enqueue_batch,
    "drain_deployed": lambda t, s, p: phase_drain_deployed(t, s, p, "workers"),
    "drain_gunicorn": lambda t, s, p: phase_drain_deployed(t, s, p, "gunicorn"),
    "latency_deployed": lambda t, s, p: phase_latency(t, s, p, "workers"),
    "delayed_deployed": lambda t, s, p: phase_delayed(t, s, p, "workers"),
    "noisy_deployed": lambda t, s, p: phase_noisy(t, s, p, "workers"),
    "drain": lambda t, s, p: phase_drain(t, s, p, 8),
    "drain16": lambda t, s, p: phase_drain(t, s, p, 16),
    "latency_same": lambda t, s, p: phase_latency(t, s, p, "here"),
    "latency_other": phase_latency_other,
    "delayed": lambda t, s, p: phase_delayed(t, s, p, "here"),
    "noisy": lambda t, s, p: phase_noisy(t, s, p, "here"),
    "aging": phase_aging,
    "rate_limit": phase_rate_limit,
    "batch_callback": phase_batch_callback,
    "dependencies": phase_dependencies,
}


# -- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="postgresql+psycopg://… (default: fresh SQLite temp files)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every job count (0.05 for a quick CI run)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated phases to run: {','.join(PHASES)}")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the enqueue and drain phases (top 15 to stderr and in "
                             "the JSON); their figures then include profiler overhead")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each deployed phase; their figures are the medians "
                             "(every run's figures are in the details)")
    args = parser.parse_args(argv)
    phases = PHASES if not args.only else [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in phases if p not in RUNNERS]
    if unknown:
        parser.error(f"unknown phase(s) {unknown}; choose from {PHASES}")

    import logging
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="console-bench-") as workdir:
        target = Target(args.database_url, Path(workdir))
        log(f"benchmark on {target.kind}, scale {args.scale:g}, phases {','.join(phases)}")
        for name in phases:
            profiler = Profiler(args.profile and name in ("enqueue_one", "enqueue_batch",
                                                          "drain", "drain16"))
            phase_started = time.monotonic()
            try:
                runs = max(1, args.repeat) if name in REPEATED else 1
                out = median_of([RUNNERS[name](target, args.scale, profiler)
                                 for _ in range(runs)]) if runs > 1 else \
                    RUNNERS[name](target, args.scale, profiler)
            except Exception as exc:
                import traceback
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
                log(f"phase {name} failed: {errors[name]}")
                continue
            if out.get("_details") is not None:
                details[name] = {**out.pop("_details"),
                                 "phase_seconds": round(time.monotonic() - phase_started, 2)}
            profile = out.pop("_profile", None)
            if profile:
                profiles[name] = profile
            results.update(out)

    targets = {**TARGETS, **(POSTGRES_TARGETS if target.postgres else {})}
    meets = {}
    for key, (op, bound) in targets.items():
        value = dig(results, key)
        if value is not None:
            meets[key] = value >= bound if op == ">=" else value <= bound
    report = {
        "database": target.kind,
        "scale": args.scale,
        "threads": 8,
        **results,
        "targets": {k: f"{op} {bound}" for k, (op, bound) in targets.items()},
        "meets_target": meets,
        "details": details,
        **run_info(args.database_url, load_before, started),
    }
    if profiles:
        report["profiles"] = profiles
        report["note"] += "; --profile was on, so profiled phases include cProfile overhead"
    if errors:
        report["errors"] = errors
    print(json.dumps(report, indent=2, default=str))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
