"""Every handler's performance over a range, read from the rollups (the Handlers screen).

``get_job_performance_metrics`` answers for one (job type, handler) pair. The Handlers screen
needs every handler at once, and a handler's figures across all the job types it runs, so this
groups the duration histogram and the error counts by handler in one query each instead of
calling it once per pair. Averages and rates are exact (sums of the rollups); the p95 is the
histogram's (the geometric middle of the bucket that holds it: within 5 %), or, with
``exact_p95``, made exact by reading the few attempts inside that bucket, as
``console.analytics.reports.percentile`` does for one pair. Analytics only reads.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, select

from ..jobs.models import (
    attempts_table,
    error_rollups_table,
    rollups_table,
    totals_table,
)
from ..jobs.rollups import bucket_bounds
from .histograms import summed_histogram
from .reports import _in_range, hour_range


@dataclass(frozen=True)
class HandlerPerformance:
    """One handler's attempts over a range, all job types together."""

    handler: str
    total_executions: int                   # attempts that ended in the range
    succeeded: int
    success_rate: float                     # 1.0 when nothing ran, as elsewhere in analytics
    failure_rate: float
    avg_execution_time: timedelta
    p95_execution_time: timedelta | None    # None when nothing ran
    p95_is_exact: bool
    errors_by_type: dict[str, int]
    executions_by_type: dict[str, int] = field(default_factory=dict)   # by job type

    @property
    def failed(self) -> int:
        return self.total_executions - self.succeeded


def handler_job_types(engine: Engine, handler: str | None = None) -> dict[str, list[str]]:
    """Every handler that ever had a job, with its job types, from the all-time totals (a few
    hundred rows however long the history): the keys that make the per-handler reads seeks."""
    t = totals_table.c
    query = select(t.handler, t.job_type).distinct().order_by(t.handler, t.job_type)
    if handler is not None:
        query = query.where(t.handler == handler)
    pairs: dict[str, list[str]] = defaultdict(list)
    with engine.connect() as conn:
        for name, job_type in conn.execute(query):
            pairs[name].append(job_type)
    return dict(pairs)


def handler_performance(engine: Engine, start_date=None, end_date=None,
                        handler: str | None = None, exact_p95: bool = False
                        ) -> list[HandlerPerformance]:
    """Every handler that ran an attempt in [start_date, end_date) (whole hours), by name;
    only ``handler`` when given (an empty list when it did not run).

    Each handler is read with its job types spelled out, so the histogram and error reads are
    seeks on their (handler, job_type, hour) indexes rather than scans of every handler's rows.

    :param exact_p95: read attempts to make each p95 exact (one or two more indexed queries per
        handler).
    :raise JobValidationError: a range that ends before it starts, or naive datetimes.
    """
    start, end = hour_range(start_date, end_date)
    results = []
    pairs = handler_job_types(engine, handler)
    with engine.connect() as conn:
        for name, job_types in pairs.items():
            performance = _one_handler(conn, name, job_types, start, end, exact_p95)
            if performance is not None:
                results.append(performance)
    return results


def _one_handler(conn, name: str, job_types: list[str], start, end,
                 exact_p95: bool) -> HandlerPerformance | None:
    e = error_rollups_table.c
    histogram: dict[int, int] = defaultdict(int)
    by_type: dict[str, int] = defaultdict(int)
    attempts, succeeded, duration_sum = 0, 0, 0.0
    rows = summed_histogram(conn, start, end,
                            lambda d: [d.handler == name, d.job_type.in_(job_types)],
                            group_by=lambda d, at: [d.job_type])
    for (job_type, bucket), (count, ok, duration) in rows.items():
        histogram[bucket] += count
        by_type[job_type] += count
        attempts += count
        succeeded += ok
        duration_sum += duration
    if not attempts:
        return None
    errors = {error_type: int(count or 0) for error_type, count in conn.execute(
        select(e.error_type, func.sum(e.count))
        .where(e.handler == name, e.job_type.in_(job_types), _in_range(e.hour, start, end))
        .group_by(e.error_type))}
    if exact_p95:
        p95, exact = _exact_percentile(conn, name, job_types, start, end, histogram, attempts,
                                       0.95)
    else:
        p95, exact = _histogram_percentile(histogram, attempts, 0.95)
    return HandlerPerformance(
        handler=name, total_executions=attempts, succeeded=succeeded,
        success_rate=succeeded / attempts, failure_rate=(attempts - succeeded) / attempts,
        avg_execution_time=timedelta(milliseconds=duration_sum / attempts),
        p95_execution_time=timedelta(milliseconds=p95), p95_is_exact=exact,
        errors_by_type=dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        executions_by_type=dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))))


def latest_error_messages(engine: Engine, handler: str, start_date=None, end_date=None
                          ) -> dict[str, dict[str, Any]]:
    """Per error type of ``handler`` in the range: its count, the last hour it happened and the
    message recorded then (what an operator reads first when a handler fails)."""
    start, end = hour_range(start_date, end_date)
    job_types = handler_job_types(engine, handler).get(handler)
    if not job_types:
        return {}
    e = error_rollups_table.c
    where = and_(e.handler == handler, e.job_type.in_(job_types), _in_range(e.hour, start, end))
    with engine.connect() as conn:
        summary = conn.execute(
            select(e.error_type, func.sum(e.count), func.max(e.hour)).where(where)
            .group_by(e.error_type)).all()
        latest = {error_type: last for error_type, _, last in summary}
        messages: dict[str, str | None] = {}
        if latest:
            for error_type, hour, message in conn.execute(
                    select(e.error_type, e.hour, e.last_message)
                    .where(where, e.error_type.in_(list(latest)),
                           e.hour.in_(sorted(set(latest.values()))))):
                if hour == latest[error_type] and message:
                    messages[error_type] = message
    return {error_type: {"count": int(count or 0), "last_seen": last,
                         "message": messages.get(error_type)}
            for error_type, count, last in sorted(summary, key=lambda row: -int(row[1] or 0))}


def handler_has_history(engine: Engine, handler: str) -> bool:
    """True when ``handler`` ever counted a job: one read of the rollups' handler index."""
    r = rollups_table.c
    with engine.connect() as conn:
        return conn.execute(select(r.hour).where(r.handler == handler).limit(1)).first() is not None


def _histogram_percentile(histogram: dict[int, int], total: int, fraction: float
                          ) -> tuple[float, bool]:
    rank, seen = max(1, math.ceil(fraction * total)), 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            low, high = bucket_bounds(bucket)
            return (math.sqrt(low * high) if low > 0 else high / 2), False
    return 0.0, False   # pragma: no cover - total is the histogram's sum


def _exact_percentile(conn, handler: str, job_types: list[str], start: datetime | None,
                      end: datetime | None, histogram: dict[int, int], total: int,
                      fraction: float) -> tuple[float, bool]:
    """The nearest-rank percentile over every job type of ``handler``: the histogram finds the
    bucket and the rank inside it; the attempts index (handler, job_type, duration_ms), read
    only inside that bucket, gives the value. The histogram's value if pruning removed some."""
    rank = max(1, math.ceil(fraction * total))
    below = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if below + count >= rank:
            break
        below += count
    low, high = bucket_bounds(bucket)
    a = attempts_table.c
    inside = and_(a.handler == handler, a.job_type.in_(job_types), a.duration_ms >= low,
                  a.duration_ms < high, _in_range(a.finished_at, start, end))
    kept = conn.execute(select(func.count()).select_from(attempts_table).where(inside)).scalar()
    if kept != count:
        return (math.sqrt(low * high) if low > 0 else high / 2), False
    value = conn.execute(select(a.duration_ms).where(inside).order_by(a.duration_ms)
                         .limit(1).offset(rank - below - 1)).scalar()
    return float(value), True
