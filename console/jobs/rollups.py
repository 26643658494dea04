"""Keeping the rollups (hourly counters, duration histogram, all-time totals, errors) as work
happens.

Every writer of a counted event adds to the rollups in its own transaction, so the rollups
agree with the rows they summarise at every commit: queueing (jobs created), recording an
attempt (attempt counts, durations, outcomes), recovering a lost attempt, cancelling.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import math
from collections import defaultdict
from datetime import datetime, timezone

from sqlalchemy import Connection

from . import db
from .models import (
    daily_duration_rollups_table,
    duration_rollups_table,
    error_rollups_table,
    rejections_table,
    rollups_table,
    totals_table,
)

NO_DURATION = -1
BUCKET_GROWTH = 1.1
_KEY = ["hour", "tenant_id", "handler", "job_type"]
_COUNTERS = ["attempts", "attempts_succeeded", "attempts_failed", "attempts_timed_out",
             "attempts_lost", "duration_ms_sum", "wait_ms_sum", "jobs_created",
             "jobs_completed", "jobs_failed", "jobs_cancelled"]
_DURATION_KEY = [*_KEY, "duration_bucket"]
_DAILY_DURATION_KEY = ["day", "tenant_id", "handler", "job_type", "duration_bucket"]
_DURATION_COUNTERS = ["attempts", "attempts_succeeded", "duration_ms_sum"]
_TOTALS_KEY = ["handler", "job_type", "duration_bucket"]
_TOTALS = ["attempts", "attempts_failed", "attempts_timed_out", "duration_ms_sum",
           "jobs_created"]
TIMEOUT_ERROR = "JobTimeoutError"
LOST_ERROR = "WorkerLost"


def hour_of(moment: datetime) -> datetime:
    """The whole hour a moment falls in: the key of every hourly rollup."""
    return moment.replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """The midnight that starts a moment's day (in its time zone: UTC for the rollups' keys)."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


# Limits that never refuse: what ``record_rejections`` counts for them is claims that passed a
# tenant's due work by (no free concurrency slot; no room left in a rate limit). Analytics shows
# them as waits, apart from the work other limits refused.
HELD_BACK_LIMITS = ("max_concurrent_jobs", "rate_limit")


def record_rejections(conn, tenant_id: str, limit_type: str, hour: datetime, count: int) -> None:
    """Count ``count`` refusals (or claims held back) by ``limit_type`` in the tenant's hour."""
    db.upsert(conn, rejections_table,
              {"tenant_id": tenant_id, "hour": hour, "limit_type": limit_type, "count": count},
              ["tenant_id", "hour", "limit_type"], ["count"])


# Bucket 0 holds durations under 1 ms; bucket b ≥ 1 holds [BOUNDS[b-1], BOUNDS[b]). The bounds
# are rounded like stored durations (3 decimals), so SQL range filters on job_attempts select
# exactly the attempts a bucket counted.
_BOUNDS = [round(BUCKET_GROWTH ** b, 3) for b in range(0, 280)]   # up to ~3 years in ms


def duration_bucket(duration_ms: float) -> int:
    return bisect.bisect_right(_BOUNDS, duration_ms)


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """[low, high) of a bucket, in milliseconds."""
    if bucket <= 0:
        return 0.0, _BOUNDS[0]
    high = _BOUNDS[bucket] if bucket < len(_BOUNDS) else math.inf
    return _BOUNDS[bucket - 1], high


class RollupBatch:
    """Counters gathered during one transaction, written with one upsert per table: hourly
    counters, the hourly and daily duration histograms, all-time totals (for /metrics),
    errors."""

    def __init__(self):
        self._rows: dict[tuple, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_COUNTERS, 0))
        self._durations: dict[tuple, dict[str, float]] = defaultdict(
            lambda: dict.fromkeys(_DURATION_COUNTERS, 0))
        self._daily_durations: dict[tuple, dict[str, float]] = defaultdict(
            lambda: dict.fromkeys(_DURATION_COUNTERS, 0))
        self._totals: dict[tuple, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_TOTALS, 0))
        self._errors: dict[tuple, list] = {}

    def add_attempt(self, moment: datetime, tenant_id: str, handler: str, job_type: str,
                    duration_ms: float, success: bool, error_type: str | None,
                    error_message: str | None, outcome: str | None,
                    wait_ms: float = 0.0) -> None:
        """One finished attempt, counted in the hour it finished (``moment``); ``outcome`` is
        "completed" or "failed" when it ended its run, ``wait_ms`` how long it waited to start."""
        hour = hour_of(moment)
        bucket = duration_bucket(duration_ms)
        row = self._rows[(hour, tenant_id, handler, job_type)]
        histogram = self._durations[(hour, tenant_id, handler, job_type, bucket)]
        daily = self._daily_durations[(day_of(hour.astimezone(timezone.utc)), tenant_id,
                                       handler, job_type, bucket)]
        total = self._totals[(handler, job_type, bucket)]
        for counters in (row, histogram, daily, total):
            counters["attempts"] += 1
            counters["duration_ms_sum"] += duration_ms
        row["wait_ms_sum"] += max(0.0, wait_ms)
        if success:
            row["attempts_succeeded"] += 1
            histogram["attempts_succeeded"] += 1
            daily["attempts_succeeded"] += 1
        else:
            row["attempts_failed"] += 1
            total["attempts_failed"] += 1
            if error_type == TIMEOUT_ERROR:
                row["attempts_timed_out"] += 1
                total["attempts_timed_out"] += 1
            elif error_type == LOST_ERROR:
                row["attempts_lost"] += 1
            key = (hour, tenant_id, handler, job_type, error_type or "JobFailed")
            entry = self._errors.setdefault(key, [0, None])
            entry[0] += 1
            entry[1] = (error_message or "")[:1000]
        if outcome == "completed":
            row["jobs_completed"] += 1
        elif outcome == "failed":
            row["jobs_failed"] += 1

    def add_jobs(self, moment: datetime, tenant_id: str, handler: str, job_type: str,
                 counter: str, count: int = 1) -> None:
        """Jobs created or cancelled (no attempt involved)."""
        self._rows[(hour_of(moment), tenant_id, handler, job_type)][counter] += count
        if counter == "jobs_created":
            self._totals[(handler, job_type, NO_DURATION)]["jobs_created"] += count

    def write(self, conn: Connection) -> None:
        """One upsert per table, the tables always in this order and the rows sorted by key.

        Every writer (runners recording attempts, queue calls, recovery, cancels) locks the
        rows it adds to until it commits, and hot rows (this hour, a busy tenant and handler)
        are shared by all of them: locking in one global order is what keeps two runners'
        transactions on PostgreSQL from waiting on each other in a cycle (a deadlock, which
        costs both a second of deadlock_timeout and one of them its whole cycle).

        On the driver's own cursor: every runner cycle that records attempts writes three or
        four of these, and SQLAlchemy's work per statement outweighs SQLite's.
        """
        postgres = conn.dialect.name == "postgresql"
        value = db.driver_value(postgres)
        dbapi = conn.connection.dbapi_connection
        cursor = dbapi.cursor()
        # PostgreSQL: the tables' upserts in one round trip, not one each.
        with dbapi.pipeline() if postgres else contextlib.nullcontext():
            for table, rows in ((rollups_table, self._rows),
                                (duration_rollups_table, self._durations),
                                (daily_duration_rollups_table, self._daily_durations),
                                (totals_table, self._totals)):
                if rows:
                    counters = _UPSERTS[table.name][1]
                    cursor.executemany(
                        _upsert_sql(table.name, postgres),
                        [(*map(value, k), *(values[c] for c in counters))
                         for k, values in sorted(rows.items())])
            if self._errors:
                cursor.executemany(_upsert_sql(error_rollups_table.name, postgres), [
                    (*map(value, k), count, message)
                    for k, (count, message) in sorted(self._errors.items())])
        self._rows.clear()
        self._durations.clear()
        self._daily_durations.clear()
        self._totals.clear()
        self._errors.clear()


@functools.cache
def _upsert_sql(table: str, postgres: bool) -> str:
    key, increments, replace = _UPSERTS[table]
    return db.upsert_sql(table, key, increments, replace, postgres)


_UPSERTS = {   # what RollupBatch.write adds to each table: (key, counters, replaced)
    rollups_table.name: (_KEY, _COUNTERS, ()),
    duration_rollups_table.name: (_DURATION_KEY, _DURATION_COUNTERS, ()),
    daily_duration_rollups_table.name: (_DAILY_DURATION_KEY, _DURATION_COUNTERS, ()),
    totals_table.name: (_TOTALS_KEY, _TOTALS, ()),
    error_rollups_table.name: ([*_KEY, "error_type"], ["count"], ["last_message"]),
}


def sample_queue_depth(conn: Connection, now: datetime) -> None:
    """Add one sample of every tenant's waiting and running jobs to this hour's depth rollup."""
    from .models import queue_depth_table
    from .usage import live_job_counts

    depth: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (tenant_id, status), count in live_job_counts(conn).items():
        depth[tenant_id][0 if status != "processing" else 1] += count
    if not depth:
        return
    hour = hour_of(now)
    db.upsert_many(conn, queue_depth_table, [   # sorted: one lock order for every runner
        {"hour": hour, "tenant_id": tenant_id, "samples": 1, "waiting_sum": waiting,
         "waiting_max": waiting, "running_sum": running}
        for tenant_id, (waiting, running) in sorted(depth.items())],
        ["hour", "tenant_id"], ["samples", "waiting_sum", "running_sum"],
        greatest=["waiting_max"])
