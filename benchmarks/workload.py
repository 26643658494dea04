"""What the scale benchmarks (``exactly_once.py``, ``crash.py``) and ``tests/scale`` share: a
database to run on, tenants, jobs queued fast, waiting until every job has ended, and the
evidence of what ran.

The evidence is read from three independent places, so that no single bookkeeping error can hide
a double execution or a lost job:

- the RecordingHandler's log (``tests/jobs/handlers.py``): one ``<job id> <pid>`` line appended
  (O_APPEND) by whichever process ran the handler, before the runner records anything;
- the attempts table: one row per attempt, with the runner id (``host:pid:name:hex``) and, for
  an attempt whose runner died, ``error_type = "WorkerLost"``;
- for notification jobs, the outbox: the message row and its sent-record are committed together
  by the handler, so their count per job is the effect a user would see.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, inspect, select, text

from benchmarks.cluster import TEST_HANDLERS
from benchmarks.report import log

TERMINAL = ("completed", "failed", "cancelled")
UNLIMITED = {"maxQueuedJobs": None, "maxDailyJobs": None, "maxJobPayloadSize": None}


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].startswith("postgres")


def sizes_from(args, defaults: dict[str, dict[str, int]]) -> dict[str, int]:
    """The run's sizes: each one given on the command line, else the default for the database
    (``defaults["postgresql"]`` or ``defaults["sqlite"]``)."""
    kind = "postgresql" if args.database_url and is_postgres(args.database_url) else "sqlite"
    return {key: value if getattr(args, key) is None else getattr(args, key)
            for key, value in defaults[kind].items()}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def empty_database(url: str | None, folder: Path) -> str:
    """A migrated database with no rows; returns its URL.

    Without ``url``: a new SQLite file in ``folder``. With a PostgreSQL URL: its tables are
    emptied (every row of the console's tables is deleted: use a database of its own). An SQLite
    URL is used as given (its rows are deleted likewise).
    """
    if url is None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "scale.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = sqlite_url(path)
    app = build_app(url)     # migrates
    app.extensions["jobs"].engine.dispose()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
            if is_postgres(url):
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                conn.execute(text("PRAGMA foreign_keys=OFF"))
                for table in tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))
    finally:
        engine.dispose()
    return url


def build_app(url: str):
    """An app on ``url`` for queueing and reading: no runner of its own."""
    from console import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "JOBS_RUN_SCHEDULER": False,
                       "SECRET_KEY": "scale", "JOBS_HANDLERS": TEST_HANDLERS,
                       "JOBS_LOAD_PLUGINS": False})


def make_tenants(service, count: int, prefix: str = "scale") -> list[str]:
    """``count`` tier4 tenants with no queue, daily or payload limit (concurrency stays at
    tier4's 100, above what the cluster's threads can run at once)."""
    from console.jobs import TenantConfig

    ids = []
    for n in range(1, count + 1):
        tenant_id = f"{prefix}-{n}"
        service.tenants.set_tenant_config(TenantConfig.for_tier(
            tenant_id, f"Scale {n}", "tier4", {"jobLimits": dict(UNLIMITED)}))
        ids.append(tenant_id)
    return ids


def queue_in_batches(service, tenants: list[str], count: int,
                     spec: Callable[[int], dict[str, Any]], batch: int = 1000) -> list[str]:
    """Queue ``count`` jobs built by ``spec(n)``, ``batch`` per ``queue_batch_jobs`` call, the
    batches dealt round-robin to ``tenants``; returns the job ids in queue order."""
    ids: list[str] = []
    for number, start in enumerate(range(0, count, batch)):
        specs = [spec(n) for n in range(start, min(count, start + batch))]
        ids += [job.id for job in service.queue_batch_jobs(specs, tenants[number % len(tenants)])]
    return ids


def recording_spec(log_path: Path, sleep_ms: int = 0) -> Callable[[int], dict[str, Any]]:
    """Jobs of the RecordingHandler: each execution appends a line to ``log_path``."""
    def spec(n: int) -> dict[str, Any]:
        return {"type": "immediate", "handler": "record",
                "payload": {"log": str(log_path), "sleep_ms": sleep_ms, "n": n}}
    return spec


def message_spec(n: int) -> dict[str, Any]:
    """An SMS (even n) or push notification (odd n) to the outbox: an idempotent handler."""
    if n % 2 == 0:
        return {"type": "notification", "handler": "sms_handler",
                "payload": {"recipient": f"+1415555{n % 10000:04d}", "body": f"message {n}"}}
    return {"type": "notification", "handler": "push_handler",
            "payload": {"recipient": f"device-{n}", "body": f"message {n}"}}


def status_counts(engine, tenants: list[str] | None = None) -> Counter:
    """Jobs per status (only ``tenants``' when given: the app may queue jobs of its own, such
    as a recurring maintenance job)."""
    from console.jobs.models import jobs_table

    query = select(jobs_table.c.status, func.count()).group_by(jobs_table.c.status)
    if tenants is not None:
        query = query.where(jobs_table.c.tenant_id.in_(tenants))
    with engine.connect() as conn:
        return Counter(dict(conn.execute(query).all()))


def wait_until_terminal(engine, expected: int, timeout: float, tenants: list[str] | None = None,
                        interval: float = 0.5,
                        on_tick: Callable[[Counter], None] | None = None) -> Counter:
    """Poll until ``expected`` jobs (of ``tenants``) are completed, failed or cancelled;
    returns the counts.

    :raise TimeoutError: naming the counts at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        counts = status_counts(engine, tenants)
        if sum(counts[s] for s in TERMINAL) >= expected:
            return counts
        if on_tick is not None:
            on_tick(counts)
        if time.monotonic() - last_report >= 5:
            log(f"jobs: {dict(counts)}")
            last_report = time.monotonic()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"after {timeout:g} s, {sum(counts[s] for s in TERMINAL)} of "
                               f"{expected} jobs had ended: {dict(counts)}")
        time.sleep(interval)


def read_executions(log_path: Path) -> list[tuple[str, int]]:
    """The RecordingHandler's log: ``(job id, pid)`` per execution."""
    if not log_path.exists():
        return []
    entries = []
    for line in log_path.read_text().splitlines():
        job_id, pid = line.split()
        entries.append((job_id, int(pid)))
    return entries


@dataclass
class Evidence:
    """What the database and the log say happened, read once after the run."""

    jobs: dict[str, Any]                        # id → row (status, created_at, lease_owner…)
    attempts: list[Any]                         # every attempt row, in id order
    executions: list[tuple[str, int]]           # the handler log (record jobs only)
    outbox_per_job: Counter = field(default_factory=Counter)
    sent_per_job: Counter = field(default_factory=Counter)

    def attempts_by_job(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for attempt in self.attempts:
            found.setdefault(attempt.job_id, []).append(attempt)
        return found


def read_evidence(engine, log_path: Path | None) -> Evidence:
    from console.handlers.models import outbox_messages_table, sent_messages_table
    from console.jobs.models import attempts_table, jobs_table

    j, a = jobs_table.c, attempts_table.c
    with engine.connect() as conn:
        jobs = {row.id: row for row in conn.execute(
            select(j.id, j.tenant_id, j.handler, j.status, j.created_at, j.scheduled_for,
                   j.total_attempts, j.lease_owner, j.completed_at))}
        attempts = conn.execute(select(a.job_id, a.attempt, a.started_at, a.finished_at,
                                       a.success, a.error_type, a.worker)
                                .order_by(a.id)).all()
        outbox = Counter(dict(conn.execute(
            select(outbox_messages_table.c.job_id, func.count())
            .group_by(outbox_messages_table.c.job_id)).all()))
        sent = Counter(dict(conn.execute(
            select(sent_messages_table.c.job_id, func.count())
            .group_by(sent_messages_table.c.job_id)).all()))
    return Evidence(jobs, attempts, read_executions(log_path) if log_path else [], outbox, sent)


def runner_pid(runner_id: str | None) -> int | None:
    from benchmarks.cluster import runner_pid as pid_of

    return pid_of(runner_id) if runner_id else None


def throughput(evidence: Evidence, job_ids: list[str]) -> dict[str, Any]:
    """Wall time from the first job's creation to the last attempt's end (database clocks),
    jobs per second over it, and how long jobs waited before their first attempt started."""
    from benchmarks.report import latency_summary

    wanted = set(job_ids)
    first_start: dict[str, datetime] = {}
    last_end = None
    for attempt in evidence.attempts:
        if attempt.job_id not in wanted:
            continue
        if attempt.job_id not in first_start:
            first_start[attempt.job_id] = attempt.started_at
        if last_end is None or attempt.finished_at > last_end:
            last_end = attempt.finished_at
    created = [evidence.jobs[i].created_at for i in job_ids if i in evidence.jobs]
    if not created or last_end is None:
        return {"wall_s": None, "jobs_per_s": None, "queue_wait_s": latency_summary([])}
    wall = (last_end - min(created)).total_seconds()
    waits = [(first_start[i] - evidence.jobs[i].created_at).total_seconds()
             for i in job_ids if i in first_start]
    return {"wall_s": round(wall, 2), "jobs_per_s": round(len(job_ids) / wall, 1) if wall else None,
            "queue_wait_s": latency_summary(waits)}


def executions_per_process(evidence: Evidence, kinds: dict[int, str],
                           job_ids: list[str]) -> list[dict[str, Any]]:
    """Successful attempts of ``job_ids`` per runner (the attempts table), with the process kind
    (``kinds``: pid → "web"/"worker") and its share of the total."""
    wanted = set(job_ids)
    counts = Counter(a.worker for a in evidence.attempts if a.success and a.job_id in wanted)
    total = sum(counts.values()) or 1
    return [{"runner": runner, "kind": kinds.get(runner_pid(runner), "?"),
             "pid": runner_pid(runner), "executions": n, "share": round(n / total, 3)}
            for runner, n in sorted(counts.items(), key=lambda item: -item[1])]

