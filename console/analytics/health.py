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
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, and_, func, select

from ..jobs.limits import TenantStore
from ..jobs.models import error_rollups_table, rejections_table, rollups_table
from ..jobs.rollups import hour_of
from ..jobs.types import JobValidationError
from ..jobs.usage import daily_jobs_used, live_job_counts
from .reports import stuck_jobs

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


def tenant_job_health(engine: Engine, tenants: TenantStore, tenant_id: str) -> dict[str, Any]:
    config = tenants.get_tenant_config(tenant_id)
    if config is None:
        raise JobValidationError("tenant_id", f"unknown tenant {tenant_id!r}")
    limits = config.job_limit
    now = datetime.now(UTC)
    since = hour_of(now - WINDOW)
    r, e = rollups_table.c, error_rollups_table.c
    with engine.connect() as conn:
        mine = and_(r.tenant_id == tenant_id, r.hour >= since)
        completed, failed, attempts, timed_out, wait_sum = conn.execute(select(
            func.coalesce(func.sum(r.jobs_completed), 0), func.coalesce(func.sum(r.jobs_failed), 0),
            func.coalesce(func.sum(r.attempts), 0), func.coalesce(func.sum(r.attempts_timed_out), 0),
            func.coalesce(func.sum(r.wait_ms_sum), 0.0)).where(mine)).one()
        by_handler = conn.execute(
            select(r.handler, func.sum(r.jobs_completed), func.sum(r.jobs_failed))
            .where(mine).group_by(r.handler)).all()
        errors = conn.execute(
            select(e.handler, e.error_type, func.sum(e.count), func.max(e.last_message))
            .where(e.tenant_id == tenant_id, e.hour >= since)
            .group_by(e.handler, e.error_type)).all()
        live = {status: n for (_, status), n in live_job_counts(conn, tenant_id).items()}
        stuck = stuck_jobs(conn, now, tenant_id)
        rejected = dict(conn.execute(
            select(rejections_table.c.limit_type, func.sum(rejections_table.c.count))
            .where(rejections_table.c.tenant_id == tenant_id, rejections_table.c.hour >= since)
            .group_by(rejections_table.c.limit_type)).all())
        daily = daily_jobs_used(conn, tenant_id, now.date())

    ended = completed + failed
    success = completed / ended if ended else 1.0
    waiting = live.get("pending", 0) + live.get("queued", 0)
    backlog = waiting / limits.max_queued_jobs if limits.max_queued_jobs else 0.0
    avg_wait = wait_sum / attempts / 1000.0 if attempts else 0.0
    timeout_share = timed_out / attempts if attempts else 0.0
    held_back = int(rejected.pop("max_concurrent_jobs", 0))
    refused = int(sum(rejected.values()))
    quota = daily / limits.max_daily_jobs if limits.max_daily_jobs else 0.0

    penalties = {
        "success_rate": min(40.0, 80.0 * (1.0 - success)) if ended >= MIN_RUNS_FOR_RATE else 0.0,
        "backlog": min(15.0, max(0.0, 15.0 * (backlog - 0.5) / 0.5)),
        "wait": min(10.0, max(0.0, avg_wait - 1.0)),
        "timeouts": min(10.0, 50.0 * timeout_share),
        "rejections": min(10.0, refused / 10.0),
        "stuck": min(10.0, 5.0 * stuck),
        "daily_quota": min(5.0, max(0.0, 5.0 * (quota - 0.8) / 0.2)),
    }
    score = round(max(0.0, 100.0 - sum(penalties.values())), 1)
    status = "healthy" if score >= 80 else "warning" if score >= 60 else "critical"

    recommendations = []
    if ended >= MIN_RUNS_FOR_RATE and success < 0.95:
        recommendations += _failure_advice(by_handler, errors)
    if backlog >= 0.8:
        recommendations.append(
            f"the queue holds {waiting} of max_queued_jobs {limits.max_queued_jobs} "
            f"({backlog:.0%}): raise max_queued_jobs or add runner capacity")
    if held_back and avg_wait >= 1.0:
        tier = int(config.tier.value[-1])
        recommendations.append(
            f"jobs waited {avg_wait:.1f} s on average for a concurrency slot: raise "
            f"max_concurrent_jobs above {limits.max_concurrent_jobs}"
            + (f" or move to tier {tier + 1}" if tier < 4 else ""))
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
            "signals": {"runs_24h": int(ended), "attempts_24h": int(attempts),
                        "average_wait_seconds": round(avg_wait, 3),
                        "timed_out_24h": int(timed_out), "refused_24h": refused,
                        "held_back_claims_24h": held_back, "stuck_jobs": int(stuck),
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
