"""Usage, performance, queue status and system statistics, read from the hourly rollups.

Ranges are whole hours: ``start`` is rounded down to its hour and ``end`` up, because the
rollups count by the hour. Without a range, all time. Figures about "now" (waiting, running,
today's quota) come from the live tables through their indexes. Analytics only reads.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, and_, func, select

from ..jobs.limits import TenantStore
from ..jobs.models import (
    attempts_table,
    error_rollups_table,
    jobs_table,
    rejections_table,
    rollups_table,
    tenants_table,
)
from ..jobs.rates import states_at, tenant_key
from ..jobs.rollups import HELD_BACK_LIMITS, bucket_bounds, hour_of
from ..jobs.runners import LIVE_RUNNER_SILENCE_SECONDS, count_live
from ..jobs.types import JobValidationError
from ..jobs.usage import daily_jobs_used, live_job_counts
from .histograms import summed_histogram
from .types import JobPerformanceMetrics, SystemJobStatistics, TenantJobUsage, TenantMetrics

UTC = timezone.utc
WARN_AT = 0.8                       # a limit this full gets a warning
STUCK_GRACE = timedelta(seconds=5)  # past its lease by this much, a processing job is stuck
r = rollups_table.c


def hour_range(start: datetime | date | None, end: datetime | date | None
               ) -> tuple[datetime | None, datetime | None]:
    """The whole hours covering [start, end)."""
    start, end = _as_datetime(start, "start_date"), _as_datetime(end, "end_date")
    if start is not None:
        start = hour_of(start)
    if end is not None and end != hour_of(end):
        end = hour_of(end) + timedelta(hours=1)
    if start is not None and end is not None and end < start:
        raise JobValidationError("end_date", "must not be before start_date")
    return start, end


def _as_datetime(value, field_name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise JobValidationError(field_name, "must carry a time zone (e.g. timezone.utc)")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise JobValidationError(field_name, "must be a datetime or a date")


def _in_range(column, start, end):
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return and_(True, *conditions)


def _ratio(part: float, whole: float, empty: float = 1.0) -> float:
    return part / whole if whole else empty


# -- tenant usage ------------------------------------------------------------------------------

def tenant_job_usage(engine: Engine, tenants: TenantStore, tenant_id: str,
                     start_date=None, end_date=None) -> TenantJobUsage:
    config = tenants.get_tenant_config(tenant_id)
    if config is None:
        raise JobValidationError("tenant_id", f"unknown tenant {tenant_id!r}")
    start, end = hour_range(start_date, end_date)
    now = datetime.now(UTC)
    with engine.connect() as conn:
        in_range = and_(r.tenant_id == tenant_id, _in_range(r.hour, start, end))
        totals = conn.execute(select(
            func.coalesce(func.sum(r.jobs_created), 0),
            func.coalesce(func.sum(r.jobs_completed), 0),
            func.coalesce(func.sum(r.jobs_failed), 0), func.coalesce(func.sum(r.jobs_cancelled), 0),
            func.coalesce(func.sum(r.attempts), 0), func.coalesce(func.sum(r.duration_ms_sum), 0.0),
        ).where(in_range)).one()
        created_by_type = dict(conn.execute(
            select(r.job_type, func.sum(r.jobs_created)).where(in_range, r.jobs_created > 0)
            .group_by(r.job_type)).all())
        live = {status: n for (_, status), n in live_job_counts(conn, tenant_id).items()}
        daily = daily_jobs_used(conn, tenant_id, now.date())
        rejections = dict(conn.execute(
            select(rejections_table.c.limit_type, func.sum(rejections_table.c.count))
            .where(rejections_table.c.tenant_id == tenant_id,
                   _in_range(rejections_table.c.hour, start, end))
            .group_by(rejections_table.c.limit_type)).all())
        rate = config.job_limit.rate_limit
        rate_starts = states_at(conn, {tenant_key(tenant_id): rate}, now)[
            tenant_key(tenant_id)].started if rate else None
    created, completed, failed, cancelled, attempts, duration_sum = totals
    waiting = live.get("pending", 0) + live.get("queued", 0)
    running = live.get("processing", 0)
    limits = config.job_limit
    ended = completed + failed
    jobs_by_status = {"completed": int(completed), "failed": int(failed),
                      "cancelled": int(cancelled), "pending": live.get("pending", 0),
                      "queued": live.get("queued", 0), "processing": running}
    usage = {"daily_jobs": int(daily), "concurrent_jobs": running, "queued_jobs": waiting}
    if rate_starts is not None:
        usage["rate_limit_starts"] = rate_starts
    return TenantJobUsage(
        tenant_id=tenant_id, queued_jobs=waiting, current_usage=usage,
        limits=limits.as_dict(),
        warnings=usage_warnings(limits, usage, rejections),
        total_jobs=int(created),
        success_rate=_ratio(completed, ended), failure_rate=_ratio(failed, ended, 0.0),
        avg_execution_time=timedelta(milliseconds=_ratio(duration_sum, attempts, 0.0)),
        jobs_by_type={k: int(v) for k, v in created_by_type.items()},
        jobs_by_status=jobs_by_status,
        limit_rejections={k: int(v) for k, v in rejections.items()})


def usage_warnings(limits, usage: dict[str, int], rejections: dict[str, int]) -> list[str]:
    """A warning for each limit over 80 % used, for waits on the concurrency limit and on
    rate limits, and for work other limits refused."""
    warnings = []
    rate = limits.rate_limit
    for name, used, limit in (
            ("max_queued_jobs", usage["queued_jobs"], limits.max_queued_jobs),
            ("max_daily_jobs", usage["daily_jobs"], limits.max_daily_jobs),
            ("max_concurrent_jobs", usage["concurrent_jobs"], limits.max_concurrent_jobs),
            ("rate_limit", usage.get("rate_limit_starts", 0), rate.count if rate else None)):
        if limit and used / limit > WARN_AT:
            warnings.append(f"{name}: {used} of {limit} used ({used / limit:.0%})"
                            + (f" in the last {rate.period_text} s"
                               if name == "rate_limit" else ""))
    held_back = rejections.get("max_concurrent_jobs", 0)
    if held_back:
        warnings.append(f"jobs waited on the concurrency limit (max_concurrent_jobs "
                        f"{limits.max_concurrent_jobs}) in {held_back} claims")
    rate_held = rejections.get("rate_limit", 0)
    if rate_held:
        warnings.append(f"jobs waited on a rate limit ({rate_limit_named(rate)}) in "
                        f"{rate_held} claims")
    for limit_type, count in sorted(rejections.items()):
        if limit_type not in HELD_BACK_LIMITS and count:
            warnings.append(f"{count} jobs refused by {limit_type}")
    return warnings


def rate_limit_named(rate) -> str:
    """Which rate limits a tenant's rate-limited waits are about, for people."""
    return (f"the tenant's rate_limit {rate}, or a handler's" if rate
            else "a handler's; the tenant has none of its own")


# -- performance -------------------------------------------------------------------------------

def job_performance_metrics(engine: Engine, job_type: str, handler: str, start_date=None,
                            end_date=None) -> JobPerformanceMetrics:
    job_type = getattr(job_type, "value", job_type)
    start, end = hour_range(start_date, end_date)
    with engine.connect() as conn:
        merged = summed_histogram(conn, start, end, lambda d: [d.handler == handler,
                                                               d.job_type == job_type])
        buckets = [(bucket, *merged[(bucket,)]) for (bucket,) in sorted(merged)]
        e = error_rollups_table.c
        errors = dict(conn.execute(
            select(e.error_type, func.sum(e.count))
            .where(e.handler == handler, e.job_type == job_type, _in_range(e.hour, start, end))
            .group_by(e.error_type)).all())
        total = sum(int(b[1]) for b in buckets)
        succeeded = sum(int(b[2]) for b in buckets)
        duration_sum = sum(float(b[3]) for b in buckets)
        p95, exact = (percentile(conn, handler, job_type, start, end,
                                 [(int(b[0]), int(b[1])) for b in buckets], total, 0.95)
                      if total else (0.0, True))
    return JobPerformanceMetrics(
        job_type=job_type, handler=handler, total_executions=total,
        success_rate=_ratio(succeeded, total), failure_rate=_ratio(total - succeeded, total, 0.0),
        avg_execution_time=timedelta(milliseconds=_ratio(duration_sum, total, 0.0)),
        p95_execution_time=timedelta(milliseconds=p95),
        errors_by_type={k: int(v) for k, v in errors.items()}, p95_is_exact=exact)


def percentile(conn, handler: str, job_type: str, start, end,
               buckets: list[tuple[int, int]], total: int, fraction: float) -> tuple[float, bool]:
    """The nearest-rank percentile of attempt durations, exact where attempts are kept.

    The histogram says which bucket holds the k-th duration and how many come before it;
    the attempts table, read only inside that bucket's range, gives the exact value. If pruning
    removed those attempts, the bucket's geometric middle is returned (within 5 %).
    """
    rank = max(1, math.ceil(fraction * total))
    below = 0
    for bucket, count in buckets:  # noqa: B007 (the bucket that holds the rank is read below)
        if below + count >= rank:
            break
        below += count
    low, high = bucket_bounds(bucket)
    a = attempts_table.c
    inside = and_(a.handler == handler, a.job_type == job_type, a.duration_ms >= low,
                  a.duration_ms < high, _in_range(a.finished_at, start, end))
    kept = conn.execute(select(func.count()).select_from(attempts_table).where(inside)).scalar()
    if kept == count:
        value = conn.execute(select(a.duration_ms).where(inside).order_by(a.duration_ms)
                             .limit(1).offset(rank - below - 1)).scalar()
        return float(value), True
    return (math.sqrt(low * high) if low > 0 else high / 2), False


# -- queue and system --------------------------------------------------------------------------

def _of_tenants(column, tenant_ids: Iterable[str] | None) -> list:
    """Rows of ``tenant_ids`` only (None: every tenant): the console's tenant-bound users."""
    return [] if tenant_ids is None else [column.in_(sorted(tenant_ids))]


def job_queue_status(engine: Engine, tenant_ids: Iterable[str] | None = None,
                     now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    j = jobs_table.c
    scope = _of_tenants(j.tenant_id, tenant_ids)
    with engine.connect() as conn:
        counts = dict(conn.execute(
            select(j.status, func.count()).where(j.status.in_(["pending", "queued", "processing"]),
                                                 *scope)
            .group_by(j.status)).all())
        oldest = conn.execute(select(func.min(j.scheduled_for))
                              .where(j.status == "queued", *scope)).scalar()
    return {"queued_jobs": counts.get("queued", 0), "pending_jobs": counts.get("pending", 0),
            "processing_jobs": counts.get("processing", 0),
            "oldest_queued_job_age": (int((now - oldest).total_seconds() * 1000)
                                      if oldest else 0)}


def stuck_jobs(conn, now: datetime, tenant_id: str | None = None,
               tenant_ids: Iterable[str] | None = None) -> int:
    """Processing jobs whose lease ran out: their runner is gone and nobody recovered them yet."""
    j = jobs_table.c
    query = select(func.count()).select_from(jobs_table).where(
        j.status == "processing", j.lease_expires_at < now - STUCK_GRACE,
        *_of_tenants(j.tenant_id, tenant_ids))
    if tenant_id is not None:
        query = query.where(j.tenant_id == tenant_id)
    return conn.execute(query).scalar()


def system_job_statistics(engine: Engine, window: timedelta = timedelta(hours=24),
                          tenant_ids: Iterable[str] | None = None,
                          now: datetime | None = None) -> SystemJobStatistics:
    """The last ``window`` (24 h) across tenants (or ``tenant_ids`` only), and the system
    health check as warnings: backlog over 1,000, success rate under 90 %, stuck jobs, an old
    queue, no live runner. ``now``: the engine's clock, which stamped leases and heartbeats."""
    now = now or datetime.now(UTC)
    since = hour_of(now - window)
    queue = job_queue_status(engine, tenant_ids, now)
    scope = _of_tenants(r.tenant_id, tenant_ids)
    with engine.connect() as conn:
        created, completed, failed = conn.execute(select(
            func.coalesce(func.sum(r.jobs_created), 0),
            func.coalesce(func.sum(r.jobs_completed), 0),
            func.coalesce(func.sum(r.jobs_failed), 0)).where(r.hour >= since, *scope)).one()
        active = conn.execute(select(func.count(func.distinct(r.tenant_id)))
                              .where(r.hour >= since, *scope)).scalar()
        stuck = stuck_jobs(conn, now, tenant_ids=tenant_ids)
        live_runners = count_live(conn, now, LIVE_RUNNER_SILENCE_SECONDS)
    waiting = queue["queued_jobs"] + queue["pending_jobs"]
    success = _ratio(completed, completed + failed)
    warnings = []
    if waiting > 1000:
        warnings.append(f"High queue backlog: {waiting} jobs waiting")
    if completed + failed and success < 0.9:
        warnings.append(f"Low system success rate: {success:.1%} of {completed + failed} runs "
                        f"in the last {window.total_seconds() / 3600:g} h")
    if stuck:
        warnings.append(f"{stuck} jobs are stuck in processing past their lease: a runner died "
                        "and no other runner is recovering them")
    if queue["oldest_queued_job_age"] > 5 * 60 * 1000:
        warnings.append(f"The oldest queued job has waited "
                        f"{queue['oldest_queued_job_age'] / 60000:.0f} min")
    if queue["queued_jobs"] and not live_runners:
        warnings.append("Jobs are queued but no runner has a recent heartbeat: start "
                        "`flask --app console worker` or the web app with its runner")
    return SystemJobStatistics(
        total_jobs=int(created), system_success_rate=success,
        active_tenants=int(active), total_running_jobs=queue["processing_jobs"],
        total_queued_jobs=waiting, system_warnings=warnings)


def tenant_metrics(engine: Engine, window: timedelta = timedelta(hours=24)) -> list[TenantMetrics]:
    """Every tenant's success rate, average duration and queue, in two grouped queries."""
    since = hour_of(datetime.now(UTC) - window)
    with engine.connect() as conn:
        tenant_ids = conn.execute(select(tenants_table.c.id).order_by(tenants_table.c.id)
                                  ).scalars().all()
        rolled = {row[0]: row[1:] for row in conn.execute(
            select(r.tenant_id, func.sum(r.jobs_completed), func.sum(r.jobs_failed),
                   func.sum(r.attempts), func.sum(r.duration_ms_sum))
            .where(r.hour >= since).group_by(r.tenant_id))}
        live: dict[str, dict[str, int]] = {}
        for (tenant_id, status), count in live_job_counts(conn).items():
            live.setdefault(tenant_id, {})[status] = count
    metrics = []
    for tenant_id in tenant_ids:
        completed, failed, attempts, duration = (int(v or 0) for v in rolled.get(
            tenant_id, (0, 0, 0, 0)))
        now_counts = live.get(tenant_id, {})
        metrics.append(TenantMetrics(
            tenant_id=tenant_id, success_rate=_ratio(completed, completed + failed),
            avg_execution_time=timedelta(milliseconds=_ratio(duration, attempts, 0.0)),
            queued_jobs=now_counts.get("pending", 0) + now_counts.get("queued", 0),
            running_jobs=now_counts.get("processing", 0), runs=completed + failed))
    return metrics
