"""Schemas of the tenant, system and error documents: usage, health, trends, limits, queue,
statistics, and the RFC 9457 problem body."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..jobs.limits import (
    JOB_TYPE_NAME,
    MAX_DURATION_SECONDS,
    MAX_INT,
    MIN_RATE_PERIOD_SECONDS,
    TenantLimitTier,
)
from .schemas import PRIORITIES, Number, PauseSchema, Text, supported_moment

TIERS = [t.value for t in TenantLimitTier]
COUNTS = fields.Dict(keys=fields.String(), values=fields.Integer())


class RangeQuerySchema(ma.Schema):
    start = fields.AwareDateTime(format="iso", validate=supported_moment, metadata={
        "description": "ISO 8601 with an offset; whole hours (default: all time for usage, "
                       "24 hours ago for trends)."})
    end = fields.AwareDateTime(format="iso", validate=supported_moment,
                               metadata={"description": "Exclusive; default now."})


class TrendsQuerySchema(RangeQuerySchema):
    granularity = fields.String(validate=validate.OneOf(["hour", "day"]), metadata={
        "description": "Default: hours for ranges up to 3 days, else days."})
    handler = Text(validate=validate.Length(1, 100))
    type = Text(validate=validate.Length(1, 64))


# -- limits --------------------------------------------------------------------------------

def _count(minimum: int, text: str):
    return fields.Integer(strict=True, allow_none=True,
                          validate=validate.Range(minimum, MAX_INT),
                          metadata={"description": f"{text} null: unlimited."})


class RateLimitSchema(ma.Schema):
    """Starts per period (``RateLimit``): at most ``count`` in any window of
    ``period_seconds``, and at most ``burst`` in any window of ``period_seconds × burst /
    count`` (how many may start back to back; null: ``count``). Counted when jobs start, so
    work past it waits in the queue: nothing is refused."""

    count = fields.Integer(strict=True, required=True, validate=validate.Range(1, MAX_INT),
                           metadata={"description": "Starts per period (to stop work, pause "
                                                    "it)."})
    period_seconds = Number(required=True, validate=validate.Range(
        MIN_RATE_PERIOD_SECONDS, MAX_DURATION_SECONDS), metadata={
        "description": "The period in seconds (a millisecond to 30 days)."})
    burst = fields.Integer(strict=True, allow_none=True, load_default=None,
                           validate=validate.Range(1, MAX_INT), metadata={
                               "description": "At most this many back to back (at most "
                                              "`count`); null: `count`."})

    @ma.validates_schema
    def burst_within_count(self, data, **_):
        burst, count = data.get("burst"), data.get("count")
        if burst is not None and count is not None and burst > count:
            raise ma.ValidationError(f"must be at most count ({count})", "burst")


class LimitValuesSchema(ma.Schema):
    """A tenant's limits by name (``JobLimitConfig``), durations in milliseconds."""

    max_queued_jobs = _count(0, "Jobs waiting at once (pending + queued); 0 stops new work.")
    max_concurrent_jobs = _count(1, "Jobs running at once; more wait their turn.")
    max_daily_jobs = _count(0, "Jobs accepted per UTC day, recurring runs included.")
    max_job_payload_size = _count(2, "The payload's JSON size in bytes.")
    max_job_duration_ms = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(1, MAX_DURATION_SECONDS * 1000),
        metadata={"description": "An attempt running longer fails as a timeout; null: none."})
    allowed_job_types = fields.List(
        fields.String(validate=validate.Regexp(JOB_TYPE_NAME.pattern, error=(
            "a job type is lower-case letters, digits and _, starting with a letter"))),
        allow_none=True, validate=validate.Length(1, 100),
        metadata={"description": "null: every type, custom ones included."})
    default_job_priority = fields.String(validate=validate.OneOf(PRIORITIES))
    rate_limit = fields.Nested(RateLimitSchema, allow_none=True, metadata={
        "description": "Starts per period, counted when jobs start; null: no rate limit."})


class LimitsSchema(ma.Schema):
    tenant_id = fields.String()
    name = fields.String()
    tier = fields.String(validate=validate.OneOf(TIERS))
    limits = fields.Nested(LimitValuesSchema)
    overridden = fields.List(fields.String(), metadata={
        "description": "The limits that differ from the tier's preset."})
    paused = fields.Nested(PauseSchema, allow_none=True, metadata={
        "description": "The tenant's pause (its jobs queue, none starts), or null."})


class LimitsUpdateSchema(ma.Schema):
    """PUT replaces the tenant's limits: each limit given is set, each one left out takes the
    tier's preset value. ``tier`` left out keeps the current tier."""

    tier = fields.String(validate=validate.OneOf(TIERS))
    limits = fields.Nested(LimitValuesSchema, load_default=dict)


# -- analytics -----------------------------------------------------------------------------

class UsageSchema(ma.Schema):
    tenant_id = fields.String()
    start = fields.DateTime(format="iso", allow_none=True)
    end = fields.DateTime(format="iso", allow_none=True)
    queued_jobs = fields.Integer()
    current_usage = COUNTS
    limits = fields.Nested(LimitValuesSchema)
    warnings = fields.List(fields.String())
    total_jobs = fields.Integer()
    success_rate = fields.Float()
    failure_rate = fields.Float()
    avg_execution_time_ms = fields.Float()
    jobs_by_type = COUNTS
    jobs_by_status = COUNTS
    limit_rejections = COUNTS


class HealthSchema(ma.Schema):
    tenant_id = fields.String()
    health_score = fields.Float(metadata={"description": "0–100."})
    health_status = fields.String(validate=validate.OneOf(["healthy", "warning", "critical"]))
    success_rate = fields.Float()
    queue_length = fields.Integer()
    recommendations = fields.List(fields.String())
    signals = fields.Dict(keys=fields.String(), values=fields.Float())
    penalties = fields.Dict(keys=fields.String(), values=fields.Float())


def _series(kind):
    return fields.List(kind(allow_none=True))


class TrendsSchema(ma.Schema):
    tenant_id = fields.String()
    granularity = fields.String(validate=validate.OneOf(["hour", "day"]))
    start = fields.DateTime(format="iso")
    end = fields.DateTime(format="iso")
    points = fields.List(fields.String(), metadata={"description": "Each point's start."})
    jobs_created = _series(fields.Integer)
    jobs_completed = _series(fields.Integer)
    jobs_failed = _series(fields.Integer)
    jobs_cancelled = _series(fields.Integer)
    attempts = _series(fields.Integer)
    timeouts = _series(fields.Integer)
    success_rate = _series(fields.Float)
    avg_duration_ms = _series(fields.Float)
    avg_wait_ms = _series(fields.Float)
    p95_duration_ms = _series(fields.Float)
    queue_depth = _series(fields.Float)
    queue_depth_max = _series(fields.Integer)
    limit_rejections = _series(fields.Integer)


class QueueStatusSchema(ma.Schema):
    queued_jobs = fields.Integer()
    pending_jobs = fields.Integer()
    processing_jobs = fields.Integer()
    oldest_queued_job_age = fields.Integer(metadata={"description": "Milliseconds."})


class StatsSchema(ma.Schema):
    total_jobs = fields.Integer(metadata={"description": "Jobs queued in the last 24 hours."})
    system_success_rate = fields.Float()
    active_tenants = fields.Integer()
    total_running_jobs = fields.Integer()
    total_queued_jobs = fields.Integer()
    system_warnings = fields.List(fields.String())


# -- errors --------------------------------------------------------------------------------

class FieldErrorSchema(ma.Schema):
    field = fields.String(metadata={"description": "`jobs[2].handler`, `limit` …"})
    message = fields.String()
    location = fields.String(data_key="in", metadata={
        "description": "json (the body), query, or path."})


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, with this API's extensions."""

    type = fields.String(metadata={"description": "Problem type URI (relative): GET it for "
                                                  "what it means."})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String(metadata={"description": "What was wrong and how to fix it."})
    instance = fields.String()
    errors = fields.List(fields.Nested(FieldErrorSchema), metadata={
        "description": "422: each field at fault."})
    limit_type = fields.String(metadata={"description": "429: the limit that refused."})
    current_usage = fields.Raw(metadata={"description": "429: usage when refused."})
    limit = fields.Raw(metadata={"description": "429: the limit's value."})
    tenant_id = fields.String(metadata={"description": "429: whose limit."})

