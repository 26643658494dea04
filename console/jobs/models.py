"""The engine's tables. Plain SQLAlchemy: Flask-SQLAlchemy uses ``Base`` as its model class.

Times are stored in UTC (``timestamptz`` on PostgreSQL, ISO text on SQLite) and always come back
timezone-aware. JSON is stored as compact text so that both databases behave the same and a
payload's stored size is its encoded size.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

UTC = timezone.utc


class UTCDateTime(TypeDecorator):
    """An aware datetime in, an aware UTC datetime out, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator):
    """JSON encoded compactly into a text column."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # already encoded by the caller (the queue path encodes once)
            return value
        return json.dumps(value, separators=(",", ":"), default=str)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return json.loads(value)


# What ``ix_jobs_batch_failures`` holds; queries spell it the same, so that SQLite uses it.
BATCH_FAILURES = text("batch_id IS NOT NULL AND status IN ('failed', 'cancelled')")


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(16))
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    max_daily_jobs: Mapped[int | None] = mapped_column(Integer)
    max_job_payload_size: Mapped[int | None] = mapped_column(Integer)
    allowed_job_types: Mapped[list | None] = mapped_column(JSONText)   # None: every type
    max_job_duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    default_job_priority: Mapped[str] = mapped_column(String(16), default="normal")
    custom_settings: Mapped[dict | None] = mapped_column(JSONText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Starts per period (console/jobs/rates.py); no count: no rate limit.
    rate_limit_count: Mapped[int | None] = mapped_column(Integer)
    rate_limit_period_seconds: Mapped[float | None] = mapped_column(Float)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    type: Mapped[str] = mapped_column(String(64))
    handler: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict] = mapped_column(JSONText)
    priority: Mapped[int] = mapped_column(SmallInteger)   # JobPriority.rank: 0 low … 4 critical
    status: Mapped[str] = mapped_column(String(16))
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cron_schedule: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    max_retries: Mapped[int] = mapped_column(Integer)
    current_retries: Mapped[int] = mapped_column(Integer, default=0)
    total_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_result: Mapped[dict | None] = mapped_column(JSONText)
    meta: Mapped[dict | None] = mapped_column("metadata", JSONText)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    progress: Mapped[float | None] = mapped_column(Float)
    progress_message: Mapped[str | None] = mapped_column(String(500))
    # Ownership while processing: who runs it, until when, and since when (the attempt's start).
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Workflows: the batch it was queued in, the jobs it waits for (ids, same tenant) and
    # what it does when one of them fails for good or is cancelled ("cancel" or "run").
    batch_id: Mapped[str | None] = mapped_column(String(36))
    depends_on: Mapped[list | None] = mapped_column(JSONText)
    on_dependency_failure: Mapped[str | None] = mapped_column(String(8))
    # While a job waits for its dependencies its scheduled_for is NULL (so promotion and the
    # runners' next wake-up pass it by); the time it asked for waits here (console/jobs/
    # dependencies.py).
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Every index costs each insert and status change a B-tree write, so there are few:
    # ids are UUIDv7 (time-ordered), so "newest first" is simply ORDER BY id DESC.
    __table_args__ = (
        # The claim: a tenant's due jobs, best first, read in index order (no sort).
        Index("ix_jobs_claim", "tenant_id", "status", text("priority DESC"), "scheduled_for",
              "id"),
        # Waking for the earliest pending job, promoting due ones, recovering expired leases.
        Index("ix_jobs_status_scheduled", "status", "scheduled_for"),
        # Listing, keyset-paginated on id: by tenant, by status.
        Index("ix_jobs_tenant_id", "tenant_id", "id"),
        Index("ix_jobs_status_id", "status", "id"),
        # Changes since a moment: job_updates reaching other processes (console/jobs/feeds.py).
        Index("ix_jobs_updated", "updated_at", "id"),
        # A batch's failed and cancelled jobs (its page). Only those: most jobs of a batch
        # complete, and an index of every batch job costs each of its status changes a B-tree
        # write (on PostgreSQL, 35 % of batched queueing and 20 % of the drain).
        Index("ix_jobs_batch_failures", "batch_id", "id", sqlite_where=BATCH_FAILURES,
              postgresql_where=BATCH_FAILURES),
        Index("uq_jobs_tenant_idempotency", "tenant_id", "idempotency_key", unique=True,
              sqlite_where=text("idempotency_key IS NOT NULL"),
              postgresql_where=text("idempotency_key IS NOT NULL")),
    )


class JobDependency(Base):
    """One job waiting for another (same tenant), kept after both end: the release looks up a
    finished job's dependents through it, and a job's page its downstream jobs. No foreign
    keys: pruning deletes the rows of the jobs it removes."""

    __tablename__ = "job_dependencies"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    depends_on_id: Mapped[str] = mapped_column(String(36), primary_key=True)

    __table_args__ = (Index("ix_job_dependencies_upstream", "depends_on_id", "job_id"),)


class JobAttempt(Base):
    """One row per attempt: the history analytics and the job's page read."""

    __tablename__ = "job_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36))   # no FK: history outlives pruned jobs
    tenant_id: Mapped[str] = mapped_column(String(64))
    job_type: Mapped[str] = mapped_column(String(64))
    handler: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean)
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(120))

    __table_args__ = (
        Index("ix_attempts_job", "job_id", "attempt"),
        Index("ix_attempts_tenant_started", "tenant_id", "started_at"),
        Index("ix_attempts_handler_started", "handler", "started_at"),
        # Exact percentiles: the few attempts inside one duration bucket (console.analytics),
        # counted and ranked within a range from the index alone (finished_at in it), so the
        # cost is the bucket's attempts, not a table read for each (migration 0022).
        Index("ix_attempts_handler_duration_finished", "handler", "job_type", "duration_ms",
              "finished_at"),
    )


class JobAttemptLine(Base):
    """A line an attempt logged (``attempt_logs.py``), kept with its attempt and pruned with it.

    Keyed by (job, attempt number) rather than the attempt's row: lines are written while the
    attempt runs, and its row only when it ends. In id order, a job's lines are in the order
    they were logged (one runner writes an attempt's lines, in order).
    """

    __tablename__ = "job_attempt_lines"

    # SQLite numbers rows itself only for an INTEGER PRIMARY KEY; 200 lines an attempt could
    # outgrow 32 bits on PostgreSQL.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36))   # no FK, as job_attempts
    attempt: Mapped[int] = mapped_column(Integer)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(10))
    logger: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_attempt_lines_job", "job_id", "attempt", "id"),)


class TenantDailyUsage(Base):
    """Per tenant and UTC day: what counts against ``max_daily_jobs``, and limit rejections."""

    __tablename__ = "tenant_daily_usage"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    jobs_accepted: Mapped[int] = mapped_column(Integer, default=0)
    recurring_runs: Mapped[int] = mapped_column(Integer, default=0)


class LimitRejection(Base):
    """Counts per tenant, hour and limit type of work a limit refused — and, for
    ``max_concurrent_jobs`` (which never refuses), of claims that held the tenant back."""

    __tablename__ = "limit_rejections"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    limit_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class JobRollup(Base):
    """Hourly counters per tenant, handler and job type, kept as jobs are queued and finish.

    Analytics reads these instead of scanning jobs and attempts, and they outlive pruning.
    """

    __tablename__ = "job_rollups"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handler: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempts_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    attempts_failed: Mapped[int] = mapped_column(Integer, default=0)
    attempts_timed_out: Mapped[int] = mapped_column(Integer, default=0)
    attempts_lost: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)
    # Time attempts spent due but not started (queued, or held back by a concurrency limit).
    wait_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)
    jobs_created: Mapped[int] = mapped_column(Integer, default=0)
    jobs_completed: Mapped[int] = mapped_column(Integer, default=0)
    jobs_failed: Mapped[int] = mapped_column(Integer, default=0)
    jobs_cancelled: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("ix_rollups_tenant_hour", "tenant_id", "hour"),
        Index("ix_rollups_handler_hour", "handler", "hour"),
    )


class DurationRollup(Base):
    """Hourly histogram of attempt durations: ``duration_bucket`` on a logarithmic scale (10 %
    steps, see ``console.jobs.rollups``), so percentiles come from counts. Apart from the
    counters, so that summing counters never reads the histogram."""

    __tablename__ = "job_duration_rollups"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handler: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    duration_bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempts_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        # Covering: a handler's percentile and rates over a range read only the index.
        Index("ix_duration_rollups_handler", "handler", "job_type", "hour", "duration_bucket",
              "attempts", "attempts_succeeded", "duration_ms_sum"),
        Index("ix_duration_rollups_tenant", "tenant_id", "hour", "duration_bucket", "attempts"),
    )


class DailyDurationRollup(Base):
    """The duration histogram by UTC day (``day``: its midnight): the hourly one's rows summed,
    kept by the same writers in the same transactions. A month is read from 30 days of it and
    the hours at either end, not 720 hours × every tenant (migration 0022); figures are the
    same as from the hourly rows."""

    __tablename__ = "job_duration_rollups_daily"

    day: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handler: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    duration_bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempts_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        Index("ix_daily_duration_rollups_handler", "handler", "job_type", "day",
              "duration_bucket", "attempts", "attempts_succeeded", "duration_ms_sum"),
        Index("ix_daily_duration_rollups_tenant", "tenant_id", "day", "duration_bucket",
              "attempts"),
    )


class JobTotal(Base):
    """All-time totals per handler, job type and duration bucket (-1: jobs rather than
    attempts): what /metrics exposes, a few hundred rows however long the history."""

    __tablename__ = "job_totals"

    handler: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    duration_bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts_timed_out: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)
    jobs_created: Mapped[int] = mapped_column(BigInteger, default=0)


class QueueDepthRollup(Base):
    """Per tenant and hour: samples of how many jobs waited and ran (runners sample every lease
    renewal; several runners just add samples), for queue-depth trends."""

    __tablename__ = "queue_depth_rollups"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    waiting_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    waiting_max: Mapped[int] = mapped_column(Integer, default=0)
    running_sum: Mapped[int] = mapped_column(BigInteger, default=0)


class ErrorRollup(Base):
    """Hourly counts of failed attempts by error type."""

    __tablename__ = "error_rollups"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handler: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    error_type: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_error_rollups_tenant_hour", "tenant_id", "hour"),
                      Index("ix_error_rollups_handler_hour", "handler", "job_type", "hour"))


class Runner(Base):
    """A runner process: its heartbeat tells health checks, the job explainer and operators who
    is working and with which handlers. A stopped runner's row stays for a day (``stopped_at``
    set on a clean stop; a crashed one just stops beating) so the runners screen can say what
    became of the jobs it held."""

    __tablename__ = "runners"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handlers: Mapped[list | None] = mapped_column(JSONText)        # names it can run
    busy_threads: Mapped[int] = mapped_column(Integer, default=0)
    jobs_held: Mapped[int] = mapped_column(Integer, default=0)
    claims_per_minute: Mapped[int] = mapped_column(Integer, default=0)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_job_ids: Mapped[list | None] = mapped_column(JSONText)  # handed back on stop
    lost_job_ids: Mapped[list | None] = mapped_column(JSONText)      # recovered by others
    # Its own clock minus the database's, in seconds (clock.py); 0 on SQLite.
    clock_skew_seconds: Mapped[float | None] = mapped_column(Float)


class Pause(Base):
    """An operator's pause: of everything, a tenant, a handler (for everyone or one tenant) or
    one job. ``key`` names what is paused (``console/jobs/pauses.py``), so pausing twice is
    one row. Resuming sets ``resumed_at``: for a day the runners still know when the work was
    let go, so time spent paused does not count as waiting. Runners read the table every
    dispatch cycle (it holds a few rows)."""

    __tablename__ = "pauses"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))            # all | tenant | handler | job
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    handler: Mapped[str | None] = mapped_column(String(100))
    job_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(String(500))
    paused_by: Mapped[str | None] = mapped_column(String(100))
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resumed_by: Mapped[str | None] = mapped_column(String(100))


class HandlerRateLimit(Base):
    """An operator's rate limit on a handler, for every tenant (``tenant_id`` None) or one.
    ``key`` names the limit as its starts are logged (``console/jobs/rates.py``): one row per
    handler and scope. Claims read the table (a few rows) every time they run."""

    __tablename__ = "handler_rate_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    handler: Mapped[str] = mapped_column(String(100))
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    rate_limit_count: Mapped[int] = mapped_column(Integer)
    rate_limit_period_seconds: Mapped[float] = mapped_column(Float)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    set_by: Mapped[str | None] = mapped_column(String(100))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RateLimitStart(Base):
    """The starts a rate limit counts: per limit (``key``) and claim, how many of its jobs that
    claim started. Claims write it and prune what has left the period, so a limit holds at
    most ``count`` rows."""

    __tablename__ = "rate_limit_starts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    starts: Mapped[int] = mapped_column(Integer)


class JobBatch(Base):
    """The jobs one ``queue_batch_jobs`` call stored, counted as they end (``batches.py``).

    ``total`` counts the batch's one-off jobs (a recurring job never ends by itself); each
    ending adds to ``completed``, ``failed`` or ``cancelled`` in its own transaction, and the
    transaction that brings them to ``total`` stores the callbacks (job templates in
    ``on_complete`` / ``on_success``) and their ids in ``callback_job_ids``, which is NULL until
    then: that is what makes them run once."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)   # UUIDv7, like job ids
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    total: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    on_complete: Mapped[dict | None] = mapped_column(JSONText)
    on_success: Mapped[dict | None] = mapped_column(JSONText)
    callback_job_ids: Mapped[list | None] = mapped_column(JSONText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The Batches screen: newest first, of every tenant or of the user's.
    __table_args__ = (
        Index("ix_batches_created", "created_at", "id"),
        Index("ix_batches_tenant_created", "tenant_id", "created_at", "id"),
    )


class AuditEntry(Base):
    """A change made by a person or a token (or a sign-in), written in the change's own
    transaction and never updated (see console/jobs/audit.py). No foreign keys: an entry
    outlives the tenant, user, token or job it names."""

    __tablename__ = "audit_entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)   # UUIDv7: time-ordered
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_kind: Mapped[str] = mapped_column(String(16))       # user | token | command
    actor_name: Mapped[str] = mapped_column(String(100))      # user name, or token prefix
    actor_address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(20))
    target_id: Mapped[str | None] = mapped_column(String(100))
    job_ids: Mapped[list | None] = mapped_column(JSONText)
    job_count: Mapped[int | None] = mapped_column(Integer)
    value_before: Mapped[dict | None] = mapped_column(JSONText)
    value_after: Mapped[dict | None] = mapped_column(JSONText)
    details: Mapped[dict | None] = mapped_column(JSONText)

    # The screen and the API page newest first, filtered by tenant, who or action.
    __table_args__ = (
        Index("ix_audit_created", "created_at", "id"),
        Index("ix_audit_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_audit_actor_created", "actor_name", "created_at", "id"),
        Index("ix_audit_action_created", "action", "created_at", "id"),
    )


class WebhookSubscription(Base):
    """A tenant's URL for its own job events (see console/jobs/webhooks.py)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list] = mapped_column(JSONText)         # names from webhooks.EVENTS
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(100))

    # Read by every transaction that ends jobs, for the tenants of those jobs.
    __table_args__ = (Index("ix_webhook_subscriptions_tenant", "tenant_id", "id"),)


class WebhookDelivery(Base):
    """One event for one subscription, and the job that delivers it: the delivery log. Its id
    is the message id the receiver sees on every try. No foreign keys: the log outlives the
    subscription; it goes with the tenant's finished jobs (maintenance's cleanup)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)   # UUIDv7: time-ordered
    tenant_id: Mapped[str] = mapped_column(String(64))
    subscription_id: Mapped[str] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(36))      # the job or the batch
    job_id: Mapped[str] = mapped_column(String(36))          # the delivering job
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_webhook_deliveries_tenant_created", "tenant_id", "created_at", "id"),
        # A subject's previous delivery to the same URL: the next one waits for it.
        Index("ix_webhook_deliveries_subject", "subscription_id", "subject_id", "id"),
    )


jobs_table = Job.__table__
# Every column of a job, in the table's order: a new job's row and the queue path's INSERT.
JOB_COLUMNS = tuple(jobs_table.c.keys())
attempts_table = JobAttempt.__table__
attempt_lines_table = JobAttemptLine.__table__
dependencies_table = JobDependency.__table__
tenants_table = Tenant.__table__
daily_usage_table = TenantDailyUsage.__table__
rejections_table = LimitRejection.__table__
runners_table = Runner.__table__
pauses_table = Pause.__table__
handler_rate_limits_table = HandlerRateLimit.__table__
rate_limit_starts_table = RateLimitStart.__table__
rollups_table = JobRollup.__table__
duration_rollups_table = DurationRollup.__table__
daily_duration_rollups_table = DailyDurationRollup.__table__
totals_table = JobTotal.__table__
error_rollups_table = ErrorRollup.__table__
queue_depth_table = QueueDepthRollup.__table__
audit_table = AuditEntry.__table__
batches_table = JobBatch.__table__
BATCH_COLUMNS = tuple(batches_table.c.keys())
subscriptions_table = WebhookSubscription.__table__
deliveries_table = WebhookDelivery.__table__
# Every column of an audit entry, in the table's order: the queue path's INSERT.
AUDIT_COLUMNS = tuple(audit_table.c.keys())
