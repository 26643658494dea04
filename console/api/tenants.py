"""``/api/v1/tenants/{id}/…``: usage, health, trends, and limits (changed by admin tokens).

A tenant token sees only its own tenant; any other id is 404, whether it exists or not.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import marshmallow as ma

from ..analytics.reports import hour_range
from ..analytics.trends import MAX_POINTS
from ..jobs import get_job_service
from ..jobs.limits import JobLimitConfig, RateLimit, TenantConfig
from .audit import token_actor
from .auth import require_admin, visible_tenant
from .errors import validation_problem
from .openapi import api_blueprint, problems
from .pausing import request_pauses
from .tenant_schemas import (
    HealthSchema,
    LimitsSchema,
    LimitsUpdateSchema,
    RangeQuerySchema,
    TrendsQuerySchema,
    TrendsSchema,
    UsageSchema,
)

bp = api_blueprint("api_tenants", "A tenant's usage, health, trends and limits.")
UTC = timezone.utc
# LimitValuesSchema's names → the camelCase keys of ``custom_settings["jobLimits"]``.
_LIMIT_KEYS = {"max_queued_jobs": "maxQueuedJobs", "max_concurrent_jobs": "maxConcurrentJobs",
               "max_daily_jobs": "maxDailyJobs", "max_job_payload_size": "maxJobPayloadSize",
               "max_job_duration_ms": "maxJobDuration", "allowed_job_types": "allowedJobTypes",
               "default_job_priority": "defaultJobPriority", "rate_limit": "rateLimit"}


def limit_values(limits: JobLimitConfig | dict[str, Any]) -> dict[str, Any]:
    """Limits as the API shows them (``JobLimitConfig.as_dict()`` with the duration in
    milliseconds)."""
    values = dict(limits.as_dict() if isinstance(limits, JobLimitConfig) else limits)
    duration = values.pop("max_job_duration", None)
    values["max_job_duration_ms"] = (None if duration is None
                                     else int(duration.total_seconds() * 1000))
    rate = values.get("rate_limit")
    values["rate_limit"] = rate.to_dict() if isinstance(rate, RateLimit) else rate
    return values


def _stored(name: str, value: Any) -> Any:
    """A limit as ``custom_settings["jobLimits"]`` keeps it (a rate limit in camelCase)."""
    return RateLimit(**value).to_camel() if name == "rate_limit" and value else value


def _limits_document(config: TenantConfig) -> dict[str, Any]:
    values = limit_values(config.job_limit)
    preset = limit_values(JobLimitConfig.for_tier(config.tier))
    return {"tenant_id": config.tenant_id, "name": config.name, "tier": config.tier.value,
            "limits": values, "overridden": [k for k in values if values[k] != preset[k]],
            "paused": request_pauses().of("tenant", tenant_id=config.tenant_id)}


@bp.get("/tenants/<tenant_id>/usage")
@bp.arguments(RangeQuerySchema, location="query", unknown=ma.RAISE)
@bp.response(200, UsageSchema)
@problems(401, 404, 422)
def usage(query, tenant_id: str):
    """A tenant's usage, rates and limits over [start, end) (default: all time)"""
    visible_tenant(tenant_id)
    start, end = hour_range(query.get("start"), query.get("end"))
    report = get_job_service().get_tenant_job_usage(tenant_id, start, end)
    return {**vars(report), "start": start, "end": end, "limits": limit_values(report.limits),
            "avg_execution_time_ms": report.avg_execution_time.total_seconds() * 1000}


@bp.get("/tenants/<tenant_id>/health")
@bp.response(200, HealthSchema)
@problems(401, 404)
def health(tenant_id: str):
    """A tenant's health score (0–100), status and recommendations (last 24 hours)"""
    visible_tenant(tenant_id)
    return get_job_service().get_tenant_job_health(tenant_id)


@bp.get("/tenants/<tenant_id>/trends")
@bp.arguments(TrendsQuerySchema, location="query", unknown=ma.RAISE)
@bp.response(200, TrendsSchema)
@problems(401, 404, 422)
def trends(query, tenant_id: str):
    """Hourly or daily series of a tenant's jobs (default: the last 24 hours)"""
    visible_tenant(tenant_id)
    now = datetime.now(UTC)
    start, end = query.get("start", now - timedelta(hours=24)), query.get("end", now)
    granularity = query.get("granularity")
    step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
    if end - start > step * MAX_POINTS:
        unit = "hours" if granularity == "hour" else "days"
        raise validation_problem([{"field": "start", "in": "query", "message": (
            f"the range is too long: at most {MAX_POINTS} {unit}"
            + ("; use granularity=day" if granularity == "hour" else ""))}])
    result = get_job_service().get_job_trends(
        tenant_id=tenant_id, handler=query.get("handler"), job_type=query.get("type"),
        start_date=start, end_date=end, granularity=granularity)
    return {**result, "tenant_id": tenant_id}


@bp.get("/tenants/<tenant_id>/limits")
@bp.response(200, LimitsSchema)
@problems(401, 404)
def get_limits(tenant_id: str):
    """A tenant's tier and limits"""
    return _limits_document(visible_tenant(tenant_id))


@bp.put("/tenants/<tenant_id>/limits")
@bp.arguments(LimitsUpdateSchema, example={"tier": "tier2", "limits": {"max_queued_jobs": 20}})
@bp.response(200, LimitsSchema)
@problems(400, 401, 403, 404, 415, 422)
def put_limits(body, tenant_id: str):
    """Replace a tenant's limits (admin tokens)

    Each limit given is set (null: unlimited); each one left out takes the tier's preset.
    `tier` left out keeps the current tier. In effect at once, for every process.
    """
    config = visible_tenant(tenant_id)     # another tenant's: 404 before any 403
    require_admin("Changing limits")
    tier = body.get("tier", config.tier.value)
    preset = limit_values(JobLimitConfig.for_tier(tier))
    overrides = {}
    for name, value in body["limits"].items():
        if name == "allowed_job_types" and value is not None:
            value = sorted(set(value))
        if name == "rate_limit" and value is not None:
            value = RateLimit(**value).to_dict()   # period as a float, burst spelled out
        if value != preset[name]:
            overrides[_LIMIT_KEYS[name]] = _stored(name, value)
    settings = {k: v for k, v in config.custom_settings.items() if k != "jobLimits"}
    if overrides:
        settings["jobLimits"] = overrides
    new = TenantConfig.for_tier(tenant_id, config.name, tier, settings)
    get_job_service().tenants.set_tenant_config(new, actor=token_actor())
    return _limits_document(new)

