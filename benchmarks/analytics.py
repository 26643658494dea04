#!/usr/bin/env python
"""Analytics at scale: a generated job history, then each analytics call timed, as ONE JSON object.

    python benchmarks/analytics.py                              # 1,000,000 jobs, 30 days, SQLite
    python benchmarks/analytics.py --jobs 20000 --repeat 5      # a quick run
    python benchmarks/analytics.py --keep /tmp/history.sqlite3  # keep the generated file …
    python benchmarks/analytics.py --reuse /tmp/history.sqlite3 # … and time it again, no generation
    python benchmarks/analytics.py --database-url postgresql+psycopg://user@host:port/db
    python benchmarks/analytics.py --database-url postgresql+psycopg://… --keep-data  # again

Progress goes to stderr, the JSON to stdout.

**The history.** ``--jobs`` jobs over the last ``--days`` days for 20 tenants in all four tiers
(tier-4 tenants do most of the work; every tenant stays within its tier's daily quota and
allowed job types), 8 handlers and 9 job types, with a daily and weekly rhythm. About 93 % of
jobs completed at their first attempt or after retries, ~5 % failed after their retries (four
attempt rows, with error types), ~1 % were cancelled; a few thousand are live now (pending,
queued, and processing with live leases; a handful of leases ran out: stuck jobs), and limits
refused some work (``limit_rejections``). Rows are written as the runner would have written
them: ``jobs``, ``job_attempts``, ``tenant_daily_usage``, ``limit_rejections``, and the rollups
through ``console.jobs.rollups.RollupBatch`` (each attempt counted at its ``finished_at``), so
rollups and raw rows agree exactly. Each batch of ``--batch`` jobs (and its attempts and
rollups) is one transaction: raw driver ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

**The timings.** Each call runs once untimed (``first_ms``), then ``--repeat`` times: p50/p95 in
ms (nearest rank). ``checks`` compares the analytics with counts over the raw tables: a tenant's
usage totals against ``COUNT(*)`` over ``jobs``, the exact p95 against the nearest-rank p95
of ``job_attempts`` computed in SQL, and the rollups' totals against the raw tables.

SQLite gets a fresh file migrated by ``create_app`` (kept with ``--keep``); PostgreSQL has every
table dropped, is migrated by ``create_app``, loaded, then ``ANALYZE``d. A reused file keeps
its generation-time "now": 24-hour figures then cover less history, and live leases have expired.
"""
from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``console`` and ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.report import load_average, log, nearest_rank, run_info  # noqa: E402,F401

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TARGET_MS = 200.0
HOUR_US = 3_600_000_000

# id, name, tier, share of the work. Shares keep every tenant inside its tier's daily quota
# (tier1 100, tier2 1,000, tier3 10,000, tier4 100,000 jobs a day) at 1,000,000 jobs / 30 days.
TENANTS = [
    ("acme", "Acme Corporation", "tier4", 9.0),
    ("globex", "Globex Industries", "tier4", 7.0),
    ("soylent", "Soylent Foods", "tier4", 5.0),
    ("wayne", "Wayne Enterprises", "tier4", 3.0),
    ("initech", "Initech", "tier3", 1.2),
    ("hooli", "Hooli", "tier3", 1.0),
    ("stark", "Stark Industries", "tier3", 0.8),
    ("wonka", "Wonka Confectionery", "tier3", 0.7),
    ("tyrell", "Tyrell Corporation", "tier3", 0.5),
    ("cyberdyne", "Cyberdyne Systems", "tier2", 0.35),
    ("oscorp", "Oscorp", "tier2", 0.3),
    ("aperture", "Aperture Science", "tier2", 0.25),
    ("vandelay", "Vandelay Industries", "tier2", 0.2),
    ("pied-piper", "Pied Piper", "tier2", 0.15),
    ("dunder", "Dunder Mifflin", "tier2", 0.12),
    ("umbrella", "Umbrella Health", "tier1", 0.05),
    ("gringotts", "Gringotts", "tier1", 0.04),
    ("monarch", "Monarch Solutions", "tier1", 0.03),
    ("prestige", "Prestige Worldwide", "tier1", 0.03),
    ("bluth", "Bluth Company", "tier1", 0.02),
]
BUSY_TENANT = "acme"
BUSY_HANDLER, BUSY_TYPE = "email_handler", "notification"

# handler, type, share, median ms, log-sigma, final failure rate, retried-then-ok rate, errors
# (error type, message, weight). JobTimeoutError attempts run until the tier's duration limit.
MIX = [
    ("email_handler", "notification", 28, 180, 0.5, 0.05, 0.04, [
        ("SMTPTemporaryError", "451 4.7.1 Try again later", 5),
        ("SMTPAuthenticationError", "535 5.7.8 Authentication credentials invalid", 2),
        ("ConnectionError", "connection to smtp.example.com:587 refused", 2),
        ("TimeoutError", "smtp.example.com did not answer within 30 s", 1)]),
    ("sms_handler", "notification", 9, 250, 0.4, 0.04, 0.03, [
        ("ProviderError", "the SMS provider answered 503 Service Unavailable", 4),
        ("TimeoutError", "the SMS provider did not answer within 10 s", 2),
        ("InvalidRecipient", "+1555 is not a valid phone number", 1)]),
    ("push_handler", "notification", 10, 60, 0.5, 0.03, 0.02, [
        ("ProviderError", "the push gateway answered 502 Bad Gateway", 3),
        ("InvalidDeviceToken", "the device token is no longer registered", 2)]),
    ("webhook_handler", "immediate", 14, 350, 0.7, 0.08, 0.05, [
        ("TimeoutError", "the receiver did not answer within 10 s", 4),
        ("ConnectionError", "hooks.example.com:443 connection reset", 2),
        ("HTTPError", "the receiver answered 500 Internal Server Error", 3)]),
    ("data_processor", "immediate", 8, 240, 0.6, 0.05, 0.03, [
        ("DataProcessingError", "data set failed its checksum", 3),
        ("ConnectionError", "storage did not answer", 2)]),
    ("data_processor", "data_sync", 6, 2000, 0.7, 0.07, 0.04, [
        ("ConnectionError", "the remote store did not answer", 3),
        ("DataProcessingError", "the sync manifest is inconsistent", 2),
        ("JobTimeoutError", "attempt exceeded the tenant's max_job_duration", 1)]),
    ("data_processor", "file_processing", 3, 4000, 0.8, 0.06, 0.03, [
        ("DataProcessingError", "unsupported file format", 2),
        ("JobTimeoutError", "attempt exceeded the tenant's max_job_duration", 1),
        ("WorkerLost", "the runner stopped renewing the lease", 1)]),
    ("noop", "maintenance", 5, 3, 0.6, 0.005, 0.005, [
        ("WorkerLost", "the runner stopped renewing the lease", 1)]),
    ("noop", "cleanup", 3, 40, 0.8, 0.01, 0.01, [
        ("WorkerLost", "the runner stopped renewing the lease", 1)]),
    ("wait", "delayed", 5, 200, 0.1, 0.01, 0.01, [
        ("JobTimeoutError", "attempt exceeded the tenant's max_job_duration", 1)]),
    ("wait", "scheduled", 3, 1000, 0.1, 0.02, 0.01, [
        ("JobTimeoutError", "attempt exceeded the tenant's max_job_duration", 1)]),
    ("report_builder", "recurring", 4, 8000, 0.6, 0.06, 0.03, [
        ("JobTimeoutError", "attempt exceeded the tenant's max_job_duration", 2),
        ("MemoryError", "the report did not fit in memory", 1),
        ("DataProcessingError", "the report's query returned no rows", 1)]),
]
PERMANENT_SHARE = 0.2          # of failed jobs: failed at the first attempt, not retried
CANCELLED_SHARE = 0.01
MAX_RETRIES = 3
MAX_DURATION_MS = 120_000.0    # ordinary attempts' tail; timeouts run to the tier's limit
TIMEOUT_CAP_MS = 300_000.0
PAYLOADS = {
    "email_handler": '{"to":"user@example.com","subject":"Your weekly report","template":"weekly"}',
    "sms_handler": '{"to":"+15550001234","message":"Your code is 123456"}',
    "push_handler": '{"device":"a1b2c3d4e5f6","title":"New message","body":"You have mail"}',
    "webhook_handler": '{"url":"https://hooks.example.com/in","event":"order.created","id":42}',
    "data_processor": '{"data_id":"ds-17","processing_type":"standard"}',
    "noop": '{"task":"cleanup"}',
    "wait": '{"seconds":0.2}',
    "report_builder": '{"report":"monthly-usage","format":"pdf"}',
}
WORKERS = [f"host-{h}:{pid}" for h in ("a", "b") for pid in (4101, 4102, 4103)]
JOB_COLUMNS = (
    "id", "tenant_id", "type", "handler", "payload", "priority", "status", "scheduled_for",
    "cron_schedule", "timezone", "max_retries", "current_retries", "total_attempts",
    "last_attempt", "completed_at", "last_result", "metadata", "idempotency_key", "progress",
    "progress_message", "lease_owner", "lease_expires_at", "attempt_started_at", "created_at",
    "updated_at")
ATTEMPT_COLUMNS = ("job_id", "tenant_id", "job_type", "handler", "attempt", "started_at",
                   "finished_at", "duration_ms", "success", "error_type", "error_message",
                   "worker")

# -- the database ------------------------------------------------------------------------------

def build_app(url: str):
    from console import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "JOBS_RUN_SCHEDULER": False,
                       "SECRET_KEY": "x", "METRICS_TOKEN": "benchmark-scraper"})


def drop_tables(url: str) -> None:
    """Every table in the schema (the engine's, and any a later migration added)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = inspect(conn).get_table_names()
            if tables:
                conn.execute(text(f"DROP TABLE IF EXISTS {', '.join(tables)} CASCADE"))
    finally:
        engine.dispose()


class Writer:
    """Bulk rows on the driver's own cursor: executemany on SQLite, COPY on PostgreSQL. Times are
    written as SQLAlchemy writes them (SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text)."""

    def __init__(self, postgres: bool):
        self.postgres = postgres
        self._cut = None if postgres else 26   # PostgreSQL keeps the '+00:00'

    def text(self, moment: datetime) -> str:
        return moment.isoformat(" ", "microseconds")[:self._cut]

    def write(self, conn, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if self.postgres:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' for _ in columns)})", rows)
        finally:
            cursor.close()


# -- the history -------------------------------------------------------------------------------

def uuid7(ms: int, rand: int) -> str:
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (
        rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hour_weights(first_hour_us: int, hours: int, rng: random.Random) -> list[float]:
    """A day's rhythm (quiet at night, busy 9–17 UTC), quieter weekends, some noise."""
    weights = []
    for h in range(hours):
        moment = EPOCH + timedelta(microseconds=first_hour_us + h * HOUR_US)
        daily = 0.35 + 0.65 * max(0.0, math.sin(math.pi * (moment.hour - 5) / 16)) \
            if 5 <= moment.hour <= 21 else 0.35
        weekly = 0.6 if moment.weekday() >= 5 else 1.0
        weights.append(daily * weekly * rng.lognormvariate(0, 0.15))
    return weights


def allocate(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders)."""
    whole = sum(weights)
    shares = [total * w / whole for w in weights]
    counts = [int(s) for s in shares]
    rest = total - sum(counts)
    for i in sorted(range(len(weights)), key=lambda i: shares[i] - counts[i], reverse=True)[:rest]:
        counts[i] += 1
    return counts


class History:
    def __init__(self, engine, tenants, jobs: int, days: int, batch: int, seed: int):
        from console.jobs.limits import TenantConfig

        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.writer = Writer(self.postgres)
        self.rng = random.Random(seed)
        self.jobs, self.days, self.batch = jobs, days, batch
        self.now = datetime.now(UTC)
        self.now_us = (self.now - EPOCH) // timedelta(microseconds=1)
        self.stats: Counter = Counter()
        self.daily: Counter = Counter()
        self.configs = {}
        for tenant_id, name, tier, _ in TENANTS:
            config = TenantConfig.for_tier(tenant_id, name, tier)
            tenants.set_tenant_config(config)
            self.configs[tenant_id] = config
        # Per tenant: the mix entries its tier allows, as cumulative weights.
        self.tenant_cum = []
        total = 0.0
        for _, _, _, share in TENANTS:
            total += share
            self.tenant_cum.append(total)
        self.mix_for: list[tuple[list[int], list[float]]] = []
        for tenant_id, *_ in TENANTS:
            allowed = self.configs[tenant_id].job_limit.allowed_job_types
            entries = [i for i, m in enumerate(MIX) if allowed is None or m[1] in allowed]
            cum, acc = [], 0.0
            for i in entries:
                acc += MIX[i][2]
                cum.append(acc)
            self.mix_for.append((entries, cum))
        self.error_cum = []
        for m in MIX:
            acc, cum = 0, []
            for _, _, w in m[7]:
                acc += w
                cum.append(acc)
            self.error_cum.append(cum)

    # .. helpers ..

    def _pick_tenant(self) -> int:
        return bisect.bisect_right(self.tenant_cum, self.rng.random() * self.tenant_cum[-1])

    def _pick_mix(self, tenant: int) -> int:
        entries, cum = self.mix_for[tenant]
        return entries[bisect.bisect_right(cum, self.rng.random() * cum[-1])]

    def _pick_error(self, mix: int, allow_timeout: bool) -> tuple[str, str]:
        errors, cum = MIX[mix][7], self.error_cum[mix]
        for _ in range(5):
            error_type, message, _ = errors[bisect.bisect_right(cum, self.rng.random() * cum[-1])]
            if allow_timeout or error_type != "JobTimeoutError":
                return error_type, message
        return "ConnectionError", "the service did not answer"

    # .. generation ..

    def generate(self) -> dict[str, Any]:
        from console.jobs.rollups import hour_of

        live_plan = self._live_plan()
        n_live = sum(n for counts in live_plan.values() for n in counts.values())
        n_history = max(0, self.jobs - n_live)
        end_us = self.now_us - 10 * 60 * 1_000_000          # history ends 10 min ago
        first_hour = hour_of(self.now - timedelta(days=self.days))
        first_us = (first_hour - EPOCH) // timedelta(microseconds=1)
        hours = (end_us - first_us) // HOUR_US + 1
        weights = hour_weights(first_us, hours, self.rng)
        last_fraction = (end_us - (first_us + (hours - 1) * HOUR_US)) / HOUR_US
        weights[-1] *= last_fraction
        per_hour = allocate(n_history, weights)
        log(f"generating {n_history:,} finished jobs over {hours} hours and {n_live:,} live "
            f"jobs for {len(TENANTS)} tenants; batches of {self.batch:,} jobs")

        started = time.monotonic()
        written = 0
        for jobs, attempts, rollups in self._generated_batches(live_plan, per_hour, first_us,
                                                               end_us):
            self._flush(jobs, attempts, rollups)
            written += len(jobs)
            elapsed = time.monotonic() - started
            log(f"  {written:,} / {self.jobs:,} jobs ({written / elapsed:,.0f} jobs/s, "
                f"{self.stats['attempts']:,} attempts)")
        self._write_small_tables()
        seconds = time.monotonic() - started
        log(f"generated {written:,} jobs and {self.stats['attempts']:,} attempts in "
            f"{seconds:.1f} s ({written / seconds:,.0f} jobs/s)")
        if self.postgres:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                from sqlalchemy import text
                t = time.monotonic()
                conn.execute(text("ANALYZE"))
                log(f"ANALYZE in {time.monotonic() - t:.1f} s")
        return {"jobs_written": written, "seconds": round(time.monotonic() - started, 1),
                "by_status": {k[7:]: v for k, v in sorted(self.stats.items())
                              if k.startswith("status_")},
                "attempts": self.stats["attempts"],
                "failed_attempts": self.stats["failed_attempts"],
                "timed_out_attempts": self.stats["timeouts"],
                "limit_rejection_rows": self.stats["rejection_rows"],
                "generated_at": self.now.isoformat(timespec="seconds"),
                "loadavg_after": load_average()}

    def _batches(self, live_plan, per_hour: list[int], first_us: int, end_us: int):
        """(jobs, attempts, rollups) of ``self.batch`` jobs at a time, oldest first; the live
        jobs come in the last one."""
        from console.jobs.rollups import RollupBatch

        jobs, attempts, rollups = [], [], RollupBatch()
        for h, count in enumerate(per_hour):
            hour_start = first_us + h * HOUR_US
            span = min(HOUR_US, end_us - hour_start)
            if count == 0 or span <= 0:
                continue
            moments = sorted(hour_start + int(self.rng.random() * span) for _ in range(count))
            for created_us in moments:
                self._history_job(created_us, jobs, attempts, rollups)
                if len(jobs) >= self.batch:
                    yield jobs, attempts, rollups
                    jobs, attempts, rollups = [], [], RollupBatch()
        self._live_jobs(live_plan, jobs, rollups)
        yield jobs, attempts, rollups

    def _generated_batches(self, *plan):
        """``_batches``, made in a child process while this one writes the previous batch.

        Making the rows (Python) takes more than half of a batch's time, so on two cores the
        two overlap: 100,000 jobs on SQLite in 12.4 s instead of 16.6 s on the same busy
        machine, 19,000 jobs/s instead of 16,000 at the start of a 10-million run. Past a few
        million jobs the writer is the slower side (its indexes grow), and other work on the
        two cores decides the rest: 13–14 minutes for 10 million either way. The child is
        forked: it has the same random generator, and hands back the counters and the
        generator's state at the end, so the rows are the same as one process would make.
        """
        import multiprocessing
        import queue as queues

        context = multiprocessing.get_context("fork")
        channel = context.Queue(maxsize=4)
        producer = context.Process(target=self._produce, args=(channel, *plan), daemon=True)
        producer.start()
        try:
            while True:
                try:
                    kind, *payload = channel.get(timeout=5)
                except queues.Empty:
                    if not producer.is_alive():
                        raise RuntimeError(f"the history generator died (exit "
                                           f"{producer.exitcode})") from None
                    continue
                if kind == "done":
                    stats, daily, rng_state = payload
                    self.stats, self.daily = Counter(stats), Counter(daily)
                    self.rng.setstate(rng_state)
                    return
                jobs, attempts, rollup_state, attempt_count = payload
                self.stats["attempts"] = attempt_count
                yield jobs, attempts, _rollups_from(rollup_state)
        finally:
            producer.join(timeout=10)
            if producer.is_alive():
                producer.kill()

    def _produce(self, channel, *plan) -> None:
        for jobs, attempts, rollups in self._batches(*plan):
            channel.put(("batch", jobs, attempts, _rollup_state(rollups),
                         self.stats["attempts"]))
        channel.put(("done", dict(self.stats), dict(self.daily), self.rng.getstate()))

    def _history_job(self, created_us: int, jobs: list, attempts: list, rollups) -> None:
        rng = self.rng
        text = self.writer.text
        tenant = self._pick_tenant()
        tenant_id, _, tier, _ = TENANTS[tenant]
        mix = self._pick_mix(tenant)
        handler, job_type, _, median, sigma, fail_rate, retry_rate, _ = MIX[mix]
        config = self.configs[tenant_id]
        created = EPOCH + timedelta(microseconds=created_us)
        job_id = uuid7(created_us // 1000, rng.getrandbits(74))
        priority = config.job_limit.default_job_priority.rank
        if rng.random() < 0.15:
            priority = rng.choice((0, 1, 2, 3))
        self.daily[(tenant_id, created.date())] += 1
        rollups.add_jobs(created, tenant_id, handler, job_type, "jobs_created")

        # When it was due: immediate work at once, delayed and scheduled work later.
        if job_type == "delayed":
            due_us = created_us + int(rng.uniform(1, 600) * 1e6)
        elif job_type in ("scheduled", "recurring"):
            due_us = created_us + int(rng.uniform(60, 1800) * 1e6)
        else:
            due_us = created_us
        recent = created_us > self.now_us - 40 * 60 * 1_000_000
        if recent:   # nothing may finish in the future: short work only near "now"
            due_us = min(due_us, created_us + 60_000_000)

        r = rng.random()
        if r < CANCELLED_SHARE:
            cancel_us = min(created_us + int(rng.uniform(5, 3600) * 1e6), self.now_us - 1_000_000)
            cancelled = EPOCH + timedelta(microseconds=cancel_us)
            rollups.add_jobs(cancelled, tenant_id, handler, job_type, "jobs_cancelled")
            self.stats["status_cancelled"] += 1
            jobs.append((job_id, tenant_id, job_type, handler, PAYLOADS[handler], priority,
                         "cancelled", text(EPOCH + timedelta(microseconds=due_us)), None, "UTC",
                         MAX_RETRIES, 0, 0, None, text(cancelled), None, '{"source":"bench"}',
                         None, None, None, None, None, None, text(created), text(cancelled)))
            return
        r = rng.random()
        if r < fail_rate:
            tries = 1 if rng.random() < PERMANENT_SHARE else MAX_RETRIES + 1
            succeeded = False
        elif r < fail_rate + retry_rate:
            tries, succeeded = rng.randint(2, MAX_RETRIES + 1), True
        else:
            tries, succeeded = 1, True
        limit_ms = config.job_limit.max_job_duration.total_seconds() * 1000.0
        mu = math.log(median)
        small_tier = tier in ("tier1", "tier2")
        error = None
        for attempt in range(1, tries + 1):
            ok = succeeded and attempt == tries
            # Waiting to start: usually milliseconds; sometimes seconds behind a full
            # concurrency limit (more often on small tiers).
            wait_ms = rng.lognormvariate(2.7, 1.0)
            if rng.random() < (0.03 if small_tier else 0.005):
                wait_ms += rng.uniform(1000, 20000 if not recent else 5000)
            start_us = due_us + int(wait_ms * 1000)
            if ok:
                error = None
                duration = min(rng.lognormvariate(mu, sigma), MAX_DURATION_MS)
            else:
                error = self._pick_error(mix, allow_timeout=not recent)
                if error[0] == "JobTimeoutError":
                    duration = min(limit_ms, TIMEOUT_CAP_MS) + rng.uniform(0, 50)
                    self.stats["timeouts"] += 1
                else:
                    duration = min(rng.lognormvariate(mu, sigma) * rng.uniform(0.3, 1.5),
                                   MAX_DURATION_MS)
                self.stats["failed_attempts"] += 1
            duration = round(max(duration, 0.05), 3)
            finished_us = start_us + round(duration * 1000)
            started = EPOCH + timedelta(microseconds=start_us)
            finished = EPOCH + timedelta(microseconds=finished_us)
            last = attempt == tries
            outcome = ("completed" if ok else "failed") if last else None
            rollups.add_attempt(finished, tenant_id, handler, job_type, duration, ok,
                                error and error[0], error and error[1], outcome, wait_ms)
            attempts.append((job_id, tenant_id, job_type, handler, attempt, text(started),
                             text(finished), duration, ok, error and error[0],
                             error and error[1], WORKERS[created_us % len(WORKERS)]))
            self.stats["attempts"] += 1
            if not last:   # backoff: base · 2^(attempt-1) s with jitter
                due_us = finished_us + int(2.0 * 2 ** (attempt - 1) * rng.uniform(0.5, 1.5)
                                           * 1e6)
        status = "completed" if succeeded else "failed"
        self.stats["status_" + status] += 1
        finished_text = text(finished)
        result = (f'{{"success":{"true" if succeeded else "false"},"executed_at":'
                  f'"{started.isoformat()}","execution_time_ms":{duration},"result":null,'
                  f'"error_message":{json.dumps(error[1]) if error else "null"},'
                  f'"error_type":{json.dumps(error[0]) if error else "null"},"metadata":null}}')
        jobs.append((job_id, tenant_id, job_type, handler, PAYLOADS[handler], priority, status,
                     text(EPOCH + timedelta(microseconds=due_us)), None, "UTC", MAX_RETRIES,
                     tries - 1, tries, text(started), finished_text, result,
                     '{"source":"bench"}', None, 1.0 if succeeded else None, None, None, None,
                     None, text(created), finished_text))

    def _live_plan(self) -> dict[str, dict[str, int]]:
        """How many jobs each tenant has waiting and running now, within its limits; the
        busiest tenant's queue is over 80 % full (a warning)."""
        plan = {}
        rng = random.Random(self.rng.random())
        for tenant_id, _, _, _ in TENANTS:
            limits = self.configs[tenant_id].job_limit
            waiting = int(limits.max_queued_jobs * (0.85 if tenant_id == BUSY_TENANT
                                                    else rng.uniform(0.2, 0.7)))
            running = max(1, int(limits.max_concurrent_jobs * rng.uniform(0.5, 1.0)))
            pending = int(waiting * 0.2)
            plan[tenant_id] = {"pending": pending, "queued": waiting - pending,
                               "processing": running}
        scale = min(1.0, self.jobs / 200_000)   # small runs get small queues
        return {t: {s: max(1, int(n * scale)) for s, n in counts.items()}
                for t, counts in plan.items()}

    def _live_jobs(self, plan, jobs: list, rollups) -> None:
        rng, text = self.rng, self.writer.text
        now_us = self.now_us
        stuck_left = 3
        for tenant, (tenant_id, _, _, _) in enumerate(TENANTS):
            priority = self.configs[tenant_id].job_limit.default_job_priority.rank
            for status, count in plan[tenant_id].items():
                for _ in range(count):
                    mix = self._pick_mix(tenant)
                    handler, job_type = MIX[mix][0], MIX[mix][1]
                    if status == "pending":
                        created_us = now_us - int(rng.uniform(60, 3000) * 1e6)
                        due_us = now_us + int(rng.uniform(60, 7200) * 1e6)
                    else:
                        created_us = now_us - int(rng.uniform(1, 180) * 1e6)
                        due_us = created_us
                    created = EPOCH + timedelta(microseconds=created_us)
                    job_id = uuid7(created_us // 1000, rng.getrandbits(74))
                    self.daily[(tenant_id, created.date())] += 1
                    rollups.add_jobs(created, tenant_id, handler, job_type, "jobs_created")
                    self.stats["status_" + status] += 1
                    lease = lease_expires = attempt_started = None
                    attempts_so_far = 0
                    if status == "processing":
                        attempts_so_far = 1
                        start_us = max(due_us, now_us - int(rng.uniform(0.1, 20) * 1e6))
                        attempt_started = text(EPOCH + timedelta(microseconds=start_us))
                        lease = WORKERS[rng.randrange(len(WORKERS))]
                        if stuck_left and tenant_id != BUSY_TENANT:   # a runner died
                            stuck_left -= 1
                            expires_us = now_us - int(rng.uniform(60, 600) * 1e6)
                        else:
                            expires_us = now_us + 3600 * 1_000_000   # live (outlives the run)
                        lease_expires = text(EPOCH + timedelta(microseconds=expires_us))
                    jobs.append((job_id, tenant_id, job_type, handler, PAYLOADS[handler],
                                 priority, status, text(EPOCH + timedelta(microseconds=due_us)),
                                 None, "UTC", MAX_RETRIES, 0, attempts_so_far, attempt_started,
                                 None, None, '{"source":"bench"}', None, None, None, lease,
                                 lease_expires, attempt_started, text(created),
                                 attempt_started or text(created)))

    def _flush(self, jobs: list, attempts: list, rollups) -> None:
        """One transaction: the batch's jobs, attempts and rollups."""
        with self.engine.connect() as conn:
            if not self.postgres:   # set outside a transaction, on the loader's connection only
                raw = conn.connection.dbapi_connection
                # 2 GiB of page cache: at 10 million jobs the indexes outgrow 512 MiB and each
                # batch rereads their pages. No fsync while loading a throwaway history (as the
                # benchmarks' PostgreSQL runs with fsync=off); the timed calls get the app's
                # own connections (the engine is disposed after loading).
                raw.execute("PRAGMA cache_size=-2097152")
                raw.execute("PRAGMA synchronous=OFF")
            with conn.begin():
                self.writer.write(conn, "jobs", JOB_COLUMNS, jobs)
                self.writer.write(conn, "job_attempts", ATTEMPT_COLUMNS, attempts)
                rollups.write(conn)

    def _write_small_tables(self) -> None:
        """Daily usage, limit rejections (sparse, more on small tiers), runner heartbeats."""
        from console.jobs.models import (
            daily_usage_table,
            rejections_table,
            runners_table,
        )

        rng = self.rng
        first = (self.now - timedelta(days=self.days)).replace(minute=0, second=0,
                                                               microsecond=0)
        rejections = []
        scale = min(1.0, self.jobs / 1_000_000)
        for tenant_id, _, tier, _ in TENANTS:
            chance = {"tier1": 0.05, "tier2": 0.04, "tier3": 0.02, "tier4": 0.01}[tier] * \
                max(scale, 0.2)
            hour = first
            while hour <= self.now:
                if rng.random() < chance:
                    kinds = rng.sample(["max_queued_jobs", "max_concurrent_jobs",
                                        "max_job_payload_size", "allowed_job_types",
                                        "max_daily_jobs"], rng.randint(1, 2))
                    for kind in kinds:
                        rejections.append({"tenant_id": tenant_id, "hour": hour,
                                           "limit_type": kind,
                                           "count": int(rng.lognormvariate(1.5, 1.0)) + 1})
                hour += timedelta(hours=1)
        self.stats["rejection_rows"] = len(rejections)
        daily = [{"tenant_id": t, "day": d, "jobs_accepted": n, "recurring_runs": 0}
                 for (t, d), n in sorted(self.daily.items())]
        runners = [{"id": w, "hostname": w.split(":")[0], "pid": int(w.split(":")[1]),
                    "threads": 8, "started_at": self.now - timedelta(days=2),
                    "heartbeat_at": self.now} for w in WORKERS]
        with self.engine.begin() as conn:
            for table, rows in ((daily_usage_table, daily), (rejections_table, rejections),
                                (runners_table, runners)):
                for start in range(0, len(rows), 10_000):
                    conn.execute(table.insert(), rows[start:start + 10_000])


def _rollup_state(rollups) -> dict[str, dict]:
    """A RollupBatch's counters as plain dicts (its defaultdicts of lambdas do not pickle)."""
    return {part: dict(counters) for part, counters in vars(rollups).items()}


def _rollups_from(state: dict[str, dict]):
    from console.jobs.rollups import RollupBatch

    rollups = RollupBatch()
    for part, counters in state.items():
        getattr(rollups, part).update(counters)
    return rollups


# -- timings and checks ------------------------------------------------------------------------

def time_calls(app, repeat: int, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    service = app.extensions["jobs"]
    client = app.test_client()
    scraper = {"Authorization": f"Bearer {app.config['METRICS_TOKEN']}"}

    def http(path: str) -> Callable[[], Any]:
        def call():
            response = client.get(path, headers=scraper)
            assert response.status_code in (200, 503), (path, response.status_code)
            return response.status_code
        return call

    week_ago, month_ago, day_ago = (now - timedelta(days=7), now - timedelta(days=30),
                                    now - timedelta(hours=24))
    calls: dict[str, Callable[[], Any]] = {
        "get_tenant_job_usage.all_time": lambda: service.get_tenant_job_usage(BUSY_TENANT),
        "get_tenant_job_usage.7d": lambda: service.get_tenant_job_usage(
            BUSY_TENANT, week_ago, now),
        "get_job_performance_metrics.30d": lambda: service.get_job_performance_metrics(
            BUSY_TYPE, BUSY_HANDLER, month_ago, now),
        "get_job_performance_metrics.24h": lambda: service.get_job_performance_metrics(
            BUSY_TYPE, BUSY_HANDLER, day_ago, now),
        "get_tenant_job_health": lambda: service.get_tenant_job_health(BUSY_TENANT),
        "get_job_queue_status": service.get_job_queue_status,
        "get_system_job_statistics": service.get_system_job_statistics,
        "get_job_trends.tenant_24h_hourly": lambda: service.get_job_trends(
            tenant_id=BUSY_TENANT, start_date=day_ago, end_date=now, granularity="hour"),
        "get_job_trends.tenant_30d_daily": lambda: service.get_job_trends(
            tenant_id=BUSY_TENANT, start_date=month_ago, end_date=now, granularity="day"),
        "get_job_trends.handler_7d": lambda: service.get_job_trends(
            handler=BUSY_HANDLER, start_date=week_ago, end_date=now),
        "GET /metrics": http("/metrics"),
        "GET /healthz": http("/healthz"),
    }
    timings, outputs = {}, {}
    for name, call in calls.items():
        t = time.perf_counter()
        outputs[name] = call()
        first = (time.perf_counter() - t) * 1000
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            call()
            samples.append((time.perf_counter() - t) * 1000)
        timings[name] = {"p50": round(nearest_rank(samples, 50), 2),
                         "p95": round(nearest_rank(samples, 95), 2),
                         "min": round(min(samples), 2), "max": round(max(samples), 2),
                         "first_ms": round(first, 2), "n": len(samples)}
        log(f"  {name:40s} p50 {timings[name]['p50']:9.2f} ms  p95 {timings[name]['p95']:9.2f} ms"
            f"  (first {first:.1f} ms)")
    return timings, outputs


def run_checks(service, outputs: dict[str, Any], now: datetime) -> tuple[dict[str, bool],
                                                                         dict[str, Any]]:
    """The analytics against counts over the raw tables."""
    from sqlalchemy import func, select

    from console.analytics.reports import hour_range
    from console.jobs.models import attempts_table, jobs_table, rollups_table

    j, a, r = jobs_table.c, attempts_table.c, rollups_table.c
    checks, details = {}, {}
    with service.engine.connect() as conn:
        # Usage, all time: every count over the tenant's jobs.
        usage = outputs["get_tenant_job_usage.all_time"]
        by_status = dict(conn.execute(select(j.status, func.count())
                                      .where(j.tenant_id == BUSY_TENANT).group_by(j.status)).all())
        by_type = dict(conn.execute(select(j.type, func.count())
                                    .where(j.tenant_id == BUSY_TENANT).group_by(j.type)).all())
        raw = {"total_jobs": sum(by_status.values()),
               "jobs_by_status": {s: by_status.get(s, 0) for s in (
                   "completed", "failed", "cancelled", "pending", "queued", "processing")},
               "jobs_by_type": by_type}
        got = {"total_jobs": usage.total_jobs, "jobs_by_status": usage.jobs_by_status,
               "jobs_by_type": usage.jobs_by_type}
        checks["usage_all_time_equals_raw_counts"] = got == raw
        details["usage_all_time"] = {"analytics": got, "raw": raw}
        ended = raw["jobs_by_status"]["completed"] + raw["jobs_by_status"]["failed"]
        checks["usage_success_rate_equals_raw"] = math.isclose(
            usage.success_rate, raw["jobs_by_status"]["completed"] / ended if ended else 1.0)

        # Usage, last 7 days (whole hours): created in range, and ended or cancelled in range.
        usage7 = outputs["get_tenant_job_usage.7d"]
        start, end = hour_range(now - timedelta(days=7), now)
        mine = j.tenant_id == BUSY_TENANT
        created7 = conn.execute(select(func.count()).select_from(jobs_table).where(
            mine, j.created_at >= start, j.created_at < end)).scalar()
        ended7 = dict(conn.execute(select(j.status, func.count()).where(
            mine, j.status.in_(["completed", "failed", "cancelled"]), j.completed_at >= start,
            j.completed_at < end).group_by(j.status)).all())
        raw7 = {"total_jobs": created7, **{s: ended7.get(s, 0)
                                           for s in ("completed", "failed", "cancelled")}}
        got7 = {"total_jobs": usage7.total_jobs,
                **{s: usage7.jobs_by_status[s] for s in ("completed", "failed", "cancelled")}}
        checks["usage_7d_equals_raw_counts"] = got7 == raw7
        details["usage_7d"] = {"analytics": got7, "raw": raw7}

        # Exact p95: nearest rank over the handler's attempts in range, in SQL.
        for label, since in (("30d", now - timedelta(days=30)), ("24h", now - timedelta(hours=24))):
            metrics = outputs[f"get_job_performance_metrics.{label}"]
            start, end = hour_range(since, now)
            inside = (a.handler == BUSY_HANDLER, a.job_type == BUSY_TYPE, a.finished_at >= start,
                      a.finished_at < end)
            n = conn.execute(select(func.count()).select_from(attempts_table)
                             .where(*inside)).scalar()
            rank = max(1, math.ceil(0.95 * n))
            p95 = conn.execute(select(a.duration_ms).where(*inside).order_by(a.duration_ms)
                               .limit(1).offset(rank - 1)).scalar() if n else 0.0
            got_p95 = metrics.p95_execution_time / timedelta(milliseconds=1)
            checks[f"p95_{label}_equals_nearest_rank"] = (
                metrics.p95_is_exact and abs(got_p95 - float(p95)) < 0.0005)
            checks[f"executions_{label}_equal_attempt_rows"] = metrics.total_executions == n
            details[f"p95_{label}"] = {"analytics_ms": got_p95, "raw_ms": float(p95),
                                       "exact": metrics.p95_is_exact, "attempts": n,
                                       "analytics_executions": metrics.total_executions}

        # Rollups against the raw tables (nothing pruned here).
        rolled_attempts, rolled_created = conn.execute(
            select(func.sum(r.attempts), func.sum(r.jobs_created))).one()
        raw_attempts = conn.execute(select(func.count()).select_from(attempts_table)).scalar()
        raw_jobs = conn.execute(select(func.count()).select_from(jobs_table)).scalar()
        checks["rollup_attempts_equal_attempt_rows"] = int(rolled_attempts or 0) == raw_attempts
        checks["rollup_jobs_created_equal_job_rows"] = int(rolled_created or 0) == raw_jobs
    checks["healthz_ok"] = outputs["GET /healthz"] == 200
    checks["metrics_ok"] = outputs["GET /metrics"] == 200
    return checks, details


def row_counts(engine) -> dict[str, int]:
    from sqlalchemy import text

    counts = {}
    with engine.connect() as conn:
        for table in ("jobs", "job_attempts", "job_rollups", "error_rollups",
                      "tenant_daily_usage", "limit_rejections"):
            counts[table] = conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
    return counts


def _generated_now(engine) -> datetime:
    """A reused file's generation moment: its newest job."""
    from sqlalchemy import func, select

    from console.jobs.models import jobs_table

    with engine.connect() as conn:
        latest = conn.execute(select(func.max(jobs_table.c.created_at))).scalar()
    if isinstance(latest, str):
        latest = datetime.fromisoformat(latest)
    return latest.replace(tzinfo=UTC) if latest.tzinfo is None else latest


# -- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="postgresql+psycopg://… (its tables are dropped); default: SQLite")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10_000, help="jobs per transaction")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", metavar="PATH", default=None,
                        help="generate the SQLite file at PATH and keep it")
    parser.add_argument("--reuse", metavar="PATH", default=None,
                        help="time an SQLite file generated earlier with --keep (no generation)")
    parser.add_argument("--keep-data", action="store_true",
                        help="with --database-url: time the history already there (from an "
                             "earlier run) instead of dropping every table and generating one")
    args = parser.parse_args(argv)
    if args.database_url and (args.keep or args.reuse):
        parser.error("--keep and --reuse are for SQLite files; with --database-url use "
                     "--keep-data")
    if args.keep_data and not args.database_url:
        parser.error("--keep-data needs --database-url (for an SQLite file use --reuse)")

    import logging
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    load_before = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="console-analytics-bench-"))
    try:
        if args.database_url:
            url, kind = args.database_url, "postgresql"
            if not args.keep_data:
                log(f"dropping every table of {url.rsplit('@', 1)[-1]}")
                drop_tables(url)
        else:
            kind = "sqlite"
            path = Path(args.reuse or args.keep or workdir / "history.sqlite3").resolve()
            if args.reuse:
                if not path.exists():
                    parser.error(f"--reuse: {path} does not exist")
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        app = build_app(url)
        service = app.extensions["jobs"]
        if args.reuse or args.keep_data:
            generation = {"reused": str(path) if args.reuse else url.rsplit("@", 1)[-1]}
            now = _generated_now(service.engine)
            log(f"reusing {generation['reused']} (generated around {now:%Y-%m-%d %H:%M} UTC)")
        else:
            history = History(service.engine, service.tenants, args.jobs, args.days,
                              args.batch, args.seed)
            generation = history.generate()
            now = history.now
            service.engine.dispose()   # timed calls get fresh connections, not the loader's cache
        if kind == "sqlite":   # fold the WAL into the file, as a long-running app would have
            with service.engine.connect() as conn:
                conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = row_counts(service.engine)
        log(f"rows: {counts}")
        log(f"timing each call {args.repeat} times")
        timing_started = time.monotonic()
        timings, outputs = time_calls(app, args.repeat, now)
        timing_seconds = round(time.monotonic() - timing_started, 1)
        checks, check_details = run_checks(service, outputs, now)
        checks_seconds = round(time.monotonic() - timing_started - timing_seconds, 1)
        log(f"checks: {checks}")
        service.engine.dispose()
        if kind == "sqlite":
            db_bytes = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
                           if Path(f"{path}{s}").exists())
        else:
            db_bytes = None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    over = {name: t["p95"] for name, t in timings.items() if t["p95"] > TARGET_MS}
    report = {
        "database": kind,
        "jobs": args.jobs, "days": args.days, "repeat": args.repeat,
        "generation_seconds": generation.get("seconds"),   # None: a reused file
        "timing_seconds": timing_seconds, "checks_seconds": checks_seconds,
        "generation": generation,
        "rows": counts,
        "database_bytes": db_bytes,
        "calls_ms": timings,
        "target_ms": TARGET_MS,
        "meets_target": {name: t["p95"] <= TARGET_MS for name, t in timings.items()},
        "over_target": over,
        "checks": checks,
        "check_details": check_details,
        **run_info(args.database_url, load_before, started),
    }
    print(json.dumps(report, indent=2, default=str))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
