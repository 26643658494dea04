"""Time series for charts: per tenant, per handler (and type), or the whole system.

Each point is an hour or a day: jobs queued, completed, failed and cancelled, run success rate,
attempts, timeouts, average wait, average and p95 duration, and (per tenant or system) limit
rejections and queue depth (the average and the largest number of waiting jobs that runners
sampled at each lease renewal; None where nobody sampled). Points with no activity are zeros,
so charts have no gaps. The p95 of a point comes from the duration histogram (the geometric
middle of the bucket that holds it: within 5 %); ``get_job_performance_metrics`` gives the
exact figure for a range.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, func, select

from ..jobs.models import queue_depth_table, rejections_table, rollups_table
from ..jobs.rollups import HELD_BACK_LIMITS, bucket_bounds, hour_of
from ..jobs.types import JobValidationError
from .histograms import histogram_spans, hourly_span, summed_histogram
from .reports import hour_range

UTC = timezone.utc
GRANULARITIES = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_POINTS = 24 * 93   # a quarter of hours; longer ranges must be by day


def job_trends(engine: Engine, *, tenant_id: str | None = None, handler: str | None = None,
               job_type: str | None = None, start_date=None, end_date=None,
               granularity: str | None = None, tenant_ids: Iterable[str] | None = None
               ) -> dict[str, Any]:
    """``tenant_ids``: only these tenants (the console's tenant-bound users); None: all."""
    now = datetime.now(UTC)
    tenants = None if tenant_ids is None else sorted(tenant_ids)
    start, end = hour_range(start_date or now - timedelta(hours=24), end_date or now)
    if granularity is None:
        granularity = "hour" if end - start <= timedelta(days=3) else "day"
    if granularity not in GRANULARITIES:
        raise JobValidationError("granularity", "use 'hour' or 'day'")
    step = GRANULARITIES[granularity]
    first = _point_of(start, granularity)
    points = []
    moment = first
    while moment < end:
        points.append(moment)
        moment += step
    if len(points) > MAX_POINTS:
        raise JobValidationError("granularity", f"{len(points)} points is too many; use 'day' "
                                                "or a shorter range")

    def scoped(table) -> list:
        conditions = []
        if tenant_id is not None:
            conditions.append(table.tenant_id == tenant_id)
        if tenants is not None:
            conditions.append(table.tenant_id.in_(tenants))
        if handler is not None:
            conditions.append(table.handler == handler)
        if job_type is not None:
            conditions.append(table.job_type == getattr(job_type, "value", job_type))
        return conditions

    r = rollups_table.c
    with engine.connect() as conn:
        # Counters by hour (at most one row an hour); the histogram grouped by point in SQL,
        # by day from the daily histogram (the hours at either end from the hourly one), so a
        # month by day reads a few thousand rows, not every hour × bucket.
        rows = conn.execute(
            select(r.hour, func.sum(r.jobs_created), func.sum(r.jobs_completed),
                   func.sum(r.jobs_failed), func.sum(r.jobs_cancelled), func.sum(r.attempts),
                   func.sum(r.attempts_timed_out), func.sum(r.duration_ms_sum),
                   func.sum(r.wait_ms_sum))
            .where(r.hour >= start, r.hour < end, *scoped(r)).group_by(r.hour)).all()
        histogram_rows = summed_histogram(
            conn, start, end, scoped,
            group_by=lambda d, at: [_point_expression(conn.dialect.name, at, granularity)],
            spans=histogram_spans if granularity == "day" else hourly_span)
        rejections: dict[datetime, int] = defaultdict(int)
        depth_by_hour: dict[datetime, list[float]] = defaultdict(lambda: [0.0, 0.0])
        if handler is None and job_type is None:
            d = queue_depth_table.c
            where = [d.hour >= start, d.hour < end]
            if tenant_id is not None:
                where.append(d.tenant_id == tenant_id)
            if tenants is not None:
                where.append(d.tenant_id.in_(tenants))
            for hour, samples, waiting_sum, waiting_max in conn.execute(
                    select(d.hour, d.samples, d.waiting_sum, d.waiting_max).where(*where)):
                if samples:
                    depth_by_hour[hour][0] += waiting_sum / samples
                    depth_by_hour[hour][1] += waiting_max
            q = rejections_table.c
            where = [q.hour >= start, q.hour < end, q.limit_type.not_in(HELD_BACK_LIMITS)]
            if tenant_id is not None:
                where.append(q.tenant_id == tenant_id)
            if tenants is not None:
                where.append(q.tenant_id.in_(tenants))
            for hour, count in conn.execute(select(q.hour, func.sum(q.count))
                                            .where(*where).group_by(q.hour)):
                rejections[_point_of(hour, granularity)] += int(count)

    points_of: dict[datetime, datetime] = {}   # hour → point, computed once per hour
    totals: dict[datetime, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (hour, created, completed, failed, cancelled, attempts, timed_out, duration,
         wait) in rows:
        moment = points_of.get(hour) or points_of.setdefault(hour, _point_of(hour, granularity))
        point_totals = totals[moment]
        for name, value in (("created", created), ("completed", completed), ("failed", failed),
                            ("cancelled", cancelled), ("attempts", attempts),
                            ("timed_out", timed_out), ("duration", duration), ("wait", wait)):
            point_totals[name] += value or 0
    histograms: dict[datetime, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for (raw_point, bucket), (attempts, _, _) in histogram_rows.items():
        histograms[_parse_point(raw_point)][bucket] += attempts

    depth_points: dict[datetime, list[list[float]]] = defaultdict(list)
    for hour, values in depth_by_hour.items():
        depth_points[_point_of(hour, granularity)].append(values)

    series: dict[str, list] = defaultdict(list)
    for moment in points:
        depths = depth_points.get(moment)
        series["queue_depth"].append(round(sum(v[0] for v in depths) / len(depths), 2)
                                     if depths else None)
        series["queue_depth_max"].append(int(max(v[1] for v in depths)) if depths else None)
        point = totals.get(moment, {})
        attempts = point.get("attempts", 0)
        ended = point.get("completed", 0) + point.get("failed", 0)
        series["jobs_created"].append(int(point.get("created", 0)))
        series["jobs_completed"].append(int(point.get("completed", 0)))
        series["jobs_failed"].append(int(point.get("failed", 0)))
        series["jobs_cancelled"].append(int(point.get("cancelled", 0)))
        series["attempts"].append(int(attempts))
        series["timeouts"].append(int(point.get("timed_out", 0)))
        series["success_rate"].append(point.get("completed", 0) / ended if ended else None)
        series["avg_duration_ms"].append(point.get("duration", 0) / attempts if attempts else None)
        series["avg_wait_ms"].append(point.get("wait", 0) / attempts if attempts else None)
        series["p95_duration_ms"].append(_histogram_p95(histograms.get(moment)))
        series["limit_rejections"].append(rejections.get(moment, 0))
    return {"granularity": granularity, "start": start, "end": end,
            "points": [p.isoformat() for p in points], **series}


def _point_expression(dialect: str, column, granularity: str):
    """SQL for the start of a row's point (its hour, or its UTC day)."""
    if granularity == "hour":
        return column
    if dialect == "postgresql":
        return func.date_trunc("day", func.timezone("UTC", column))
    return func.substr(column, 1, 10)   # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)


def _parse_point(value) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value[:10]).replace(tzinfo=UTC)
    if value.tzinfo is None:   # PostgreSQL's date_trunc of a UTC wall time
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _point_of(moment: datetime, granularity: str) -> datetime:
    moment = hour_of(moment)
    return moment.replace(hour=0) if granularity == "day" else moment


def _histogram_p95(histogram: dict[int, int] | None) -> float | None:
    if not histogram:
        return None
    total = sum(histogram.values())
    rank, seen = max(1, math.ceil(0.95 * total)), 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            low, high = bucket_bounds(bucket)
            return round(math.sqrt(low * high) if low > 0 else high / 2, 3)
    return None  # pragma: no cover
