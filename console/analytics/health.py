"""A tenant's health score (0–100), status and recommendations, from the last 24 hours.

The score starts at 100 and loses points for each measurable problem, each capped so that no
single signal can hide the others:

| signal (last 24 h unless "now")                   | penalty                               | cap |
| ------------------------------------------------- | ------------------------------------- | --- |
| run success rate S (completed / ended runs)       | 80 × (1 − S)                          | 40  |
| backlog now: waiting / max_queued_jobs = B        | 15 × (B − 0.5) / 0.5, from half full  | 15  |
| average wait to start W (seconds)                 | W − 1, a point a second after the 1st | 10  |
| attempts timed out, fraction T                    | 50 × T                                | 10  |
| jobs refused by limits, count R                   | R / 10                                | 10  |
| stuck jobs now (processing past their lease) K    | 5 × K                                 | 10  |
| daily quota used now, fraction Q                  | 5 × (Q − 0.8) / 0.2, from 80 %        | 5   |

Status: ``healthy`` at 80 or more, ``warning`` from 60, ``critical`` below 60.
Each recommendation appears only when its cause is present and names the figure behind it.

Waits are not refusals: claims that passed a tenant by for ``max_concurrent_jobs`` or for a rate
limit (``HELD_BACK_LIMITS``) count in their own signals (``held_back_claims_24h``,
``rate_limited_claims_24h``), not in "refused"; their cost shows in the average wait, and each
gets its recommendation once jobs waited a second on average.

A tenant that operators paused (or everything paused) was asked to wait: its backlog and waits
are not penalised while the pause holds, and the report says "paused" (``paused``: the pauses
that touch its work, its handlers' included). Time spent paused never counts as waiting: the
runners measure a job's wait from when its pause was lifted.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, func, select

from ..jobs.limits import TenantConfig, TenantStore
from ..jobs.models import (
    daily_usage_table,
    error_rollups_table,
    jobs_table,
    rejections_table,
    rollups_table,
)
from ..jobs.pauses import Pause, read_pauses
from ..jobs.rollups import HELD_BACK_LIMITS, hour_of
from ..jobs.types import JobValidationError
from ..jobs.usage import live_job_counts
from .reports import STUCK_GRACE, rate_limit_named

UTC = timezone.utc
WINDOW = timedelta(hours=24)
MIN_RUNS_FOR_RATE = 10

ERROR_ADVICE = {
    "SMTPAuthenticationError": "check the SMTP credentials (MAIL_USERNAME, MAIL_PASSWORD)",
    "SMTPTemporaryError": "the mail server is refusing mail for now: check its status and queue",
    "JobTimeoutError": "raise max_job_duration or make the handler faster",
    "WorkerLost": "runners are crashing or being killed: check their logs and memory",
    "ConnectionError": "the service it calls is unreachable: check the network and that service",
    "TimeoutError": "the service it calls is too slow: check it, or raise the handler's timeout",
}


def tenant_job_health(engine: Engine, tenants: TenantStore, tenant_id: str,
                      now: datetime | None = None) -> dict[str, Any]:
    config = tenants.get_tenant_config(tenant_id)
    if config is None:
        raise JobValidationError("tenant_id", f"unknown tenant {tenant_id!r}")
    return tenants_job_health(engine, [config], now)[tenant_id]


def tenants_job_health(engine: Engine, configs: list[TenantConfig],
                       now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """The health of several tenants at once: each signal is one query grouped by tenant, so a
    dashboard of fifty tenants costs what one tenant's page does. ``now``: the engine's clock
    (``service.clock.now()``), which stamped the leases it reads."""
    if not configs:
        return {}
    ids = [config.tenant_id for config in configs]
    now = now or datetime.now(UTC)
    since = hour_of(now - WINDOW)
    r, e, q, j = (rollups_table.c, error_rollups_table.c, rejections_table.c, jobs_table.c)
    d = daily_usage_table.c
    with engine.connect() as conn:
        totals = {row[0]: row[1:] for row in conn.execute(
            select(r.tenant_id, func.sum(r.jobs_completed), func.sum(r.jobs_failed),
                   func.sum(r.attempts), func.sum(r.attempts_timed_out), func.sum(r.wait_ms_sum))
            .where(r.tenant_id.in_(ids), r.hour >= since).group_by(r.tenant_id))}
        by_handler = defaultdict(list)
        for tenant_id, *row in conn.execute(
                select(r.tenant_id, r.handler, func.sum(r.jobs_completed), func.sum(r.jobs_failed))
                .where(r.tenant_id.in_(ids), r.hour >= since).group_by(r.tenant_id, r.handler)):
            by_handler[tenant_id].append(row)
        errors = defaultdict(list)
        for tenant_id, *row in conn.execute(
                select(e.tenant_id, e.handler, e.error_type, func.sum(e.count),
                       func.max(e.last_message))
                .where(e.tenant_id.in_(ids), e.hour >= since)
                .group_by(e.tenant_id, e.handler, e.error_type)):
            errors[tenant_id].append(row)
        live = live_job_counts(conn)
        stuck = dict(conn.execute(
            select(j.tenant_id, func.count()).where(
                j.status == "processing", j.lease_expires_at < now - STUCK_GRACE,
                j.tenant_id.in_(ids)).group_by(j.tenant_id)).all())
        rejected = defaultdict(dict)
        for tenant_id, limit_type, count in conn.execute(
                select(q.tenant_id, q.limit_type, func.sum(q.count))
                .where(q.tenant_id.in_(ids), q.hour >= since).group_by(q.tenant_id, q.limit_type)):
            rejected[tenant_id][limit_type] = count
        daily = dict(conn.execute(select(d.tenant_id, d.jobs_accepted + d.recurring_runs)
                                  .where(d.tenant_id.in_(ids), d.day == now.date())).all())
        pauses = read_pauses(conn)
    return {config.tenant_id: _health(
        config, totals.get(config.tenant_id, (0, 0, 0, 0, 0.0)),
        by_handler[config.tenant_id], errors[config.tenant_id],
        {status: live.get((config.tenant_id, status), 0)
         for status in ("pending", "queued", "processing")},
        int(stuck.get(config.tenant_id, 0)), dict(rejected[config.tenant_id]),
        int(daily.get(config.tenant_id) or 0), pauses.for_tenant(config.tenant_id))
        for config in configs}


def _health(config: TenantConfig, totals, by_handler, errors, live: dict[str, int], stuck: int,
            rejected: dict[str, int], daily: int, pauses: list[Pause]) -> dict[str, Any]:
    """Score, status and recommendations from one tenant's signals (see the table above)."""
    tenant_id, limits = config.tenant_id, config.job_limit
    completed, failed, attempts, timed_out, wait_sum = (v or 0 for v in totals)
    ended = completed + failed
    success = completed / ended if ended else 1.0
    waiting = live.get("pending", 0) + live.get("queued", 0)
    backlog = waiting / limits.max_queued_jobs if limits.max_queued_jobs else 0.0
    avg_wait = wait_sum / attempts / 1000.0 if attempts else 0.0
    timeout_share = timed_out / attempts if attempts else 0.0
    waits = {name: int(rejected.pop(name, 0)) for name in HELD_BACK_LIMITS}
    held_back, rate_held = waits["max_concurrent_jobs"], waits["rate_limit"]
    refused = int(sum(rejected.values()))
    quota = daily / limits.max_daily_jobs if limits.max_daily_jobs else 0.0
    asked_to_wait = next((p for p in pauses if p.scope in ("all", "tenant")), None)

    penalties = {
        "success_rate": min(40.0, 80.0 * (1.0 - success)) if ended >= MIN_RUNS_FOR_RATE else 0.0,
        "backlog": min(15.0, max(0.0, 15.0 * (backlog - 0.5) / 0.5)),
        "wait": min(10.0, max(0.0, avg_wait - 1.0)),
        "timeouts": min(10.0, 50.0 * timeout_share),
        "rejections": min(10.0, refused / 10.0),
        "stuck": min(10.0, 5.0 * stuck),
        "daily_quota": min(5.0, max(0.0, 5.0 * (quota - 0.8) / 0.2)),
    }
    if asked_to_wait is not None:   # paused: its queue and waits are not held against it
        penalties["backlog"] = penalties["wait"] = 0.0
    score = round(max(0.0, 100.0 - sum(penalties.values())), 1)
    status = "healthy" if score >= 80 else "warning" if score >= 60 else "critical"

    recommendations = [
        f"paused: {p.describe()} by {p.paused_by or 'unknown'} since "
        f"{p.paused_at:%Y-%m-%d %H:%M} UTC" + (f" ({p.reason})" if p.reason else "")
        + " — resume it when the cause is fixed; its jobs wait meanwhile" for p in pauses]
    if ended >= MIN_RUNS_FOR_RATE and success < 0.95:
        recommendations += _failure_advice(by_handler, errors)
    if backlog >= 0.8 and asked_to_wait is None:
        recommendations.append(
            f"the queue holds {waiting} of max_queued_jobs {limits.max_queued_jobs} "
            f"({backlog:.0%}): raise max_queued_jobs or add runner capacity")
    if held_back and avg_wait >= 1.0 and asked_to_wait is None:
        tier = int(config.tier.value[-1])
        recommendations.append(
            f"jobs waited {avg_wait:.1f} s on average for a concurrency slot: raise "
            f"max_concurrent_jobs above {limits.max_concurrent_jobs}"
            + (f" or move to tier {tier + 1}" if tier < 4 else ""))
    if rate_held and avg_wait >= 1.0 and asked_to_wait is None:
        recommendations.append(
            f"jobs waited on a rate limit ({rate_limit_named(limits.rate_limit)}) in "
            f"{rate_held} claims, {avg_wait:.1f} s on average: raise the limit if the work may "
            "go faster, or spread the work out")
    if timed_out and timeout_share >= 0.05:
        limit = limits.max_job_duration
        recommendations.append(
            f"{timed_out} of {attempts} attempts ({timeout_share:.0%}) timed out at "
            f"max_job_duration {limit.total_seconds():g} s: raise it or split the work"
            if limit else f"{timed_out} attempts timed out: split the work")
    if refused:
        limit_type, count = max(rejected.items(), key=lambda kv: kv[1])
        current = getattr(limits, limit_type, None)
        shown = sorted(current) if isinstance(current, frozenset) else current
        recommendations.append(
            f"{refused} jobs were refused by limits in 24 h, most by {limit_type} ({int(count)}, "
            f"now {shown}): raise {limit_type} or move to a higher tier")
    if stuck:
        recommendations.append(
            f"{stuck} jobs are processing past their lease: check that runners are alive "
            "(flask --app console worker) — they are recovered when any runner runs")
    if quota >= 0.8:
        recommendations.append(
            f"{daily} of max_daily_jobs {limits.max_daily_jobs} used today ({quota:.0%}): raise "
            "max_daily_jobs or spread the work over the day")
    return {"tenant_id": tenant_id, "health_score": score, "health_status": status,
            "success_rate": success, "queue_length": waiting, "recommendations": recommendations,
            "paused": [p.to_dict() for p in pauses],
            "signals": {"runs_24h": int(ended), "attempts_24h": int(attempts),
                        "average_wait_seconds": round(avg_wait, 3),
                        "timed_out_24h": int(timed_out), "refused_24h": refused,
                        "held_back_claims_24h": held_back,
                        "rate_limited_claims_24h": rate_held, "stuck_jobs": int(stuck),
                        "daily_quota_used": round(quota, 4), "backlog": round(backlog, 4)},
            "penalties": {k: round(v, 2) for k, v in penalties.items()}}


def _failure_advice(by_handler, errors) -> list[str]:
    """For each handler failing 5 % or more of its runs: rate, count, main error and what to do."""
    advice = []
    for handler, completed, failed in sorted(by_handler, key=lambda row: -(row[2] or 0)):
        runs = (completed or 0) + (failed or 0)
        if not failed or runs < MIN_RUNS_FOR_RATE or failed / runs < 0.05:
            continue
        handler_errors = [row for row in errors if row[0] == handler]
        if handler_errors:
            _, error_type, _, message = max(handler_errors, key=lambda row: row[2])
            hint = ERROR_ADVICE.get(error_type) or f"the latest error says: {message!r}"
            advice.append(f"{handler} failed {failed / runs:.0%} of {runs} runs in 24 h, mostly "
                          f"{error_type}: {hint}")
        else:
            advice.append(f"{handler} failed {failed / runs:.0%} of {runs} runs in 24 h")
    return advice
