"""Read models of the Tenants screen: one plain context per view, built from indexed live counts
and the analytics rollups, never from a scan of the jobs table.

The list reads every tenant's live counts in one grouped query and today's quota by primary
key; health (an analytics read per tenant) is left to lazily loaded fragments so the list
stays fast with many tenants. A tenant's page reads usage and health at once and loads its
trend charts as a fragment (the slowest read, growing with the range).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from ...alerts.queries import firing_alerts
from ...analytics import charts
from ...jobs import JobService
from ...jobs.limits import JobLimitConfig, TenantConfig
from .limits_form import LIMITS
from .usage import tenants_usage, usage_bars

UTC = timezone.utc


def tenant_rows(service: JobService, configs: list[TenantConfig]) -> list[dict[str, Any]]:
    """The tenants of ``configs`` (those the user may see) with their usage bars
    (console/web/tenants/usage.py)."""
    with service.engine.connect() as conn:
        usage = tenants_usage(conn, configs, datetime.now(UTC).date())
    return [{"config": config, "bars": usage[config.tenant_id]} for config in configs]


def limit_rows(limits: JobLimitConfig) -> list[tuple[str, str]]:
    """The limits as (name, value) for the read-only table, by their ``JobLimitConfig`` names
    (the ones the API and the limit messages use)."""
    rows = [(spec.name, _limit_text(spec, getattr(limits, spec.name))) for spec in LIMITS]
    rows.append(("default_job_priority", limits.default_job_priority.value))
    types = limits.allowed_job_types
    rows.append(("allowed_job_types", "any" if types is None else ", ".join(sorted(types))))
    rows.append(("rate_limit", str(limits.rate_limit) if limits.rate_limit else "unlimited"))
    return rows


def _limit_text(spec, value) -> str:
    if value is None:
        return "unlimited"
    if spec.seconds:
        return f"{spec.shown(value)} s"
    suffix = " bytes" if spec.name == "max_job_payload_size" else ""
    return f"{value:,}{suffix}"


def tenant_page(service: JobService, config: TenantConfig, start: date, end: date
                ) -> dict[str, Any]:
    """Usage over [start, end] (both days included), live usage, health and firing alerts."""
    usage = service.get_tenant_job_usage(config.tenant_id, start, end + timedelta(days=1))
    health = service.get_tenant_job_health(config.tenant_id)
    now = usage.current_usage
    return {"config": config, "usage": usage, "health": health,
            "bars": usage_bars(config.job_limit, now["queued_jobs"], now["concurrent_jobs"],
                               now["daily_jobs"], now.get("rate_limit_starts")),
            "limit_rows": limit_rows(config.job_limit),
            "rejected": sum(usage.limit_rejections.values()),
            "jobs_by_type": sorted(usage.jobs_by_type.items(), key=lambda kv: (-kv[1], kv[0])),
            "jobs_by_status": list(usage.jobs_by_status.items()),
            "firing": firing_alerts(service.engine, config.tenant_id),
            "rate_limits": handler_rate_limits_of(service, config.tenant_id)}


def handler_rate_limits_of(service: JobService, tenant_id: str) -> list[dict[str, Any]]:
    """The handlers' rate limits that hold the tenant's jobs (each for every tenant, or for
    it), with their current period as a claim now sees it."""
    rows = []
    for limit in service.handler_rate_limits():
        if limit.tenant_id in (None, tenant_id):
            state = next(s for s in service.rate_limit_states(tenant_id, limit.handler)
                         if s.key == limit.key)
            rows.append({"limit": limit, "state": state})
    return rows


def tenant_charts(service: JobService, tenant_id: str, start: date, end: date
                  ) -> list[dict[str, str]]:
    """Throughput, failures, duration and queue depth over [start, end]: by hour up to three
    days, by day beyond (``get_job_trends`` decides)."""
    trends = service.get_job_trends(tenant_id=tenant_id, start_date=start,
                                    end_date=end + timedelta(days=1))
    by = "hour" if trends["granularity"] == "hour" else "day"
    return [
        {"name": "throughput", "label": f"Jobs queued, completed, failed and cancelled per {by}",
         "json": charts.figure_json(charts.throughput_chart(trends, f"Jobs per {by}"))},
        {"name": "failures", "label": f"Failed jobs, timeouts and limit rejections per {by}",
         "json": charts.figure_json(charts.failure_chart(trends))},
        {"name": "duration", "label": f"Average and p95 run time and wait per {by}",
         "json": charts.figure_json(charts.duration_chart(trends))},
        {"name": "queue-depth", "label": f"Jobs waiting per {by}, average and largest",
         "json": charts.figure_json(charts.queue_depth_chart(trends))},
    ]
