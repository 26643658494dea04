"""Tenant tiers and limits, and the store that keeps tenants in the database.

Tier presets (``TIER_LIMITS``). Queued / concurrent / daily jobs: tier1 10 / 2 / 100, tier2
50 / 5 / 1,000, tier3 200 / 20 / 10,000, tier4 1,000 / 100 / 100,000. Job types: tier1
notifications only, tier2 the general types (``_GENERAL``), tier3 those plus cleanup and
data_sync, tier4 those plus file_processing. The other limits:

| tier  | payload size | max duration | default priority |
| ----- | ------------ | ------------ | ---------------- |
| tier1 | 16 KiB       | 1 min        | low              |
| tier2 | 64 KiB       | 5 min        | normal           |
| tier3 | 256 KiB      | 30 min       | normal           |
| tier4 | 1 MiB        | 2 h          | high             |

Rate limit (starts per period, ``RateLimit``): tier1 60 a minute; tier2–tier4 none. tier1 is the
entry tier, notifications only, and its notifications go out through the channel providers every
tenant shares (the SMTP server, the SMS gateway): 60 a minute is far above what its daily quota
sustains but stops it from handing a provider a minute's worth in one second. The paying tiers
are already bounded by their concurrency caps and pay for throughput; a downstream that takes
only so many calls a second is better served by a handler's rate limit
(``JobService.set_handler_rate_limit``), which an operator sets where it is needed.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from . import audit, db
from .audit import Actor
from .models import tenants_table
from .types import JobPriority, JobValidationError, TenantLimitException

UTC = timezone.utc
# Bounds every door (engine calls, the console's form, the API) shares, because the limit is what
# enforces them: the count columns are 32-bit integers, a timeout longer than a month is no
# timeout at all, and a job type is a short lower-case name.
MAX_INT = 2_147_483_647
MAX_DURATION_SECONDS = 30 * 24 * 3600
JOB_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_COUNT_LIMITS = ("max_queued_jobs", "max_concurrent_jobs", "max_daily_jobs",
                 "max_job_payload_size")
# A rate limit's period: a millisecond is the finest a claim can tell apart in practice.
MIN_RATE_PERIOD_SECONDS = 0.001


class TenantLimitTier(str, enum.Enum):
    TIER1 = "tier1"
    TIER2 = "tier2"
    TIER3 = "tier3"
    TIER4 = "tier4"

    def __str__(self) -> str:
        return self.value

    @property
    def weight(self) -> int:
        """The tier's share of capacity when tenants compete: 1, 2, 3, 4.

        Gentle on purpose: a tier-4 flood gets at most twice a tier-2 tenant's share at equal
        priority, so higher tiers are served first without starving anyone.
        """
        return int(self.value[-1])


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` starts in any window of ``period_seconds``, and at most ``burst`` (at
    most ``count``; None: ``count``) in any window of ``period_seconds × burst / count``: the
    same rate at a finer grain, so ``burst`` is how many may start back to back. Enforced when
    jobs are claimed (``console/jobs/rates.py``), never at queue time.

    :raise JobValidationError: (field ``rate_limit``) a part is out of range, named.
    """

    count: int
    period_seconds: float
    burst: int | None = None

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not (
                1 <= self.count <= MAX_INT):
            raise JobValidationError("rate_limit", (
                f"count must be a whole number from 1 to {MAX_INT:,}, got {self.count!r} (to "
                "stop work, pause it)"))
        period = self.period_seconds
        if isinstance(period, bool) or not isinstance(period, (int, float)) or not (
                MIN_RATE_PERIOD_SECONDS <= period <= MAX_DURATION_SECONDS):
            raise JobValidationError("rate_limit", (
                f"period_seconds must be a number from {MIN_RATE_PERIOD_SECONDS} to "
                f"{MAX_DURATION_SECONDS:,} (30 days), got {period!r}"))
        object.__setattr__(self, "period_seconds", float(period))
        burst = self.burst
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)
                                  or not 1 <= burst <= self.count):
            raise JobValidationError("rate_limit", (
                f"burst must be a whole number from 1 to count ({self.count}), or None for "
                f"count, got {burst!r}"))

    @property
    def windows(self) -> tuple[tuple[int, float], ...]:
        """(starts, seconds) pairs that must all hold: the period, and the burst's window."""
        burst = self.burst if self.burst is not None else self.count
        if burst >= self.count:
            return ((self.count, self.period_seconds),)
        return ((self.count, self.period_seconds),
                (burst, self.period_seconds * burst / self.count))

    @property
    def period_text(self) -> str:
        """The period's seconds as people type them: "2", "0.5", "2592000"."""
        return f"{Decimal(repr(self.period_seconds)).normalize():f}"

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "period_seconds": self.period_seconds, "burst": self.burst}

    def to_camel(self) -> dict[str, Any]:
        """As ``custom_settings["jobLimits"]["rateLimit"]`` holds it."""
        return {"count": self.count, "periodSeconds": self.period_seconds, "burst": self.burst}

    @classmethod
    def parse(cls, value: Any, field_name: str) -> RateLimit | None:
        """A ``RateLimit``, None, or a mapping with ``count``, ``periodSeconds`` (or
        ``period_seconds``) and optional ``burst``.

        :raise JobValidationError: naming ``field_name`` and what is wrong.
        """
        if value is None or isinstance(value, RateLimit):
            return value
        if not isinstance(value, Mapping):
            raise JobValidationError(field_name, (
                'an object {"count", "periodSeconds", "burst"}, or null for no rate limit'))
        unknown = sorted(set(value) - {"count", "periodSeconds", "period_seconds", "burst"})
        if unknown:
            raise JobValidationError(field_name, f"unknown key(s) {', '.join(unknown)}; use "
                                                 "count, periodSeconds and burst")
        period = value.get("periodSeconds", value.get("period_seconds"))
        try:
            return cls(value.get("count"), period, value.get("burst"))
        except JobValidationError as error:
            raise JobValidationError(field_name, error.message.partition(": ")[2]) from None

    def __str__(self) -> str:
        shown = f"{self.count:,} per {self.period_text} s"
        return shown + (f" (burst {self.burst:,})" if self.burst is not None else "")


_GENERAL = ["notification", "immediate", "delayed", "scheduled", "recurring", "maintenance"]


@dataclass(frozen=True)
class JobLimitConfig:
    """A tenant's limits. ``None`` means unlimited (for allowed types: every type)."""

    max_queued_jobs: int | None = None
    max_concurrent_jobs: int | None = None
    max_daily_jobs: int | None = None
    max_job_payload_size: int | None = None
    allowed_job_types: frozenset[str] | None = None
    max_job_duration: timedelta | None = None
    default_job_priority: JobPriority = JobPriority.NORMAL
    rate_limit: RateLimit | None = None

    def __post_init__(self):
        for name in _COUNT_LIMITS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise JobValidationError(name, f"must be a whole number ≥ 0 or None, got {value!r}")
            if value is not None and value > MAX_INT:
                raise JobValidationError(name, f"at most {MAX_INT:,}; use None for no limit")
        if self.allowed_job_types is not None and not isinstance(self.allowed_job_types, frozenset):
            object.__setattr__(self, "allowed_job_types", frozenset(self.allowed_job_types))
        bad_types = sorted(name for name in self.allowed_job_types or ()
                           if not isinstance(name, str) or not JOB_TYPE_NAME.match(name))
        if bad_types:
            raise JobValidationError("allowed_job_types", (
                f"{', '.join(map(repr, bad_types))}: a job type name is a lower-case letter "
                "followed by up to 63 lower-case letters, digits or underscores"))
        if self.max_job_duration is not None:
            if not isinstance(self.max_job_duration, timedelta):
                raise JobValidationError("max_job_duration", "must be a timedelta or None")
            if self.max_job_duration <= timedelta(0):
                raise JobValidationError("max_job_duration", "must be longer than zero")
            if self.max_job_duration > timedelta(seconds=MAX_DURATION_SECONDS):
                raise JobValidationError("max_job_duration", (
                    f"at most {MAX_DURATION_SECONDS:,} seconds (30 days); use None for no "
                    "time limit"))
        if not isinstance(self.default_job_priority, JobPriority):
            object.__setattr__(self, "default_job_priority",
                               parse_priority(self.default_job_priority, "default_job_priority"))
        if not isinstance(self.rate_limit, RateLimit):
            object.__setattr__(self, "rate_limit", RateLimit.parse(self.rate_limit, "rate_limit"))

    @classmethod
    def for_tier(cls, tier: TenantLimitTier | str) -> JobLimitConfig:
        return TIER_LIMITS[TenantLimitTier(tier)]

    def as_dict(self) -> dict[str, Any]:
        """The limits by name, as analytics and the console show them."""
        return {
            "max_queued_jobs": self.max_queued_jobs,
            "max_concurrent_jobs": self.max_concurrent_jobs,
            "max_daily_jobs": self.max_daily_jobs,
            "max_job_payload_size": self.max_job_payload_size,
            "allowed_job_types": (sorted(self.allowed_job_types)
                                  if self.allowed_job_types is not None else None),
            "max_job_duration": self.max_job_duration,
            "default_job_priority": self.default_job_priority.value,
            "rate_limit": self.rate_limit,
        }

    def with_overrides(self, job_limits: Mapping[str, Any]) -> JobLimitConfig:
        """Apply ``custom_settings["jobLimits"]``: camelCase keys (``maxQueuedJobs`` …, see
        ``_CAMEL_TO_FIELD``), durations in milliseconds."""
        changes: dict[str, Any] = {}
        for key, value in job_limits.items():
            name = _CAMEL_TO_FIELD.get(key, key)
            if name not in _FIELDS:
                raise JobValidationError(f"jobLimits.{key}",
                                         f"unknown limit; use one of {sorted(_CAMEL_TO_FIELD)}")
            if name == "max_job_duration" and value is not None:
                if isinstance(value, timedelta):
                    pass
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = timedelta(milliseconds=value)
                else:
                    raise JobValidationError(f"jobLimits.{key}", "milliseconds as a number")
            elif name == "allowed_job_types" and value is not None:
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise JobValidationError(f"jobLimits.{key}", "a list of job type names")
                value = frozenset(value)
            elif name == "default_job_priority":
                value = parse_priority(value, f"jobLimits.{key}")
            elif name == "rate_limit":
                value = RateLimit.parse(value, f"jobLimits.{key}")
            changes[name] = value
        return replace(self, **changes)


_CAMEL_TO_FIELD = {
    "maxQueuedJobs": "max_queued_jobs",
    "maxConcurrentJobs": "max_concurrent_jobs",
    "maxDailyJobs": "max_daily_jobs",
    "maxJobPayloadSize": "max_job_payload_size",
    "allowedJobTypes": "allowed_job_types",
    "maxJobDuration": "max_job_duration",
    "defaultJobPriority": "default_job_priority",
    "rateLimit": "rate_limit",
}
_FIELDS = set(_CAMEL_TO_FIELD.values())

TIER_LIMITS: dict[TenantLimitTier, JobLimitConfig] = {
    TenantLimitTier.TIER1: JobLimitConfig(10, 2, 100, 16 * 1024, frozenset(["notification"]),
                                          timedelta(minutes=1), JobPriority.LOW,
                                          RateLimit(60, 60)),
    TenantLimitTier.TIER2: JobLimitConfig(50, 5, 1_000, 64 * 1024, frozenset(_GENERAL),
                                          timedelta(minutes=5), JobPriority.NORMAL),
    TenantLimitTier.TIER3: JobLimitConfig(200, 20, 10_000, 256 * 1024,
                                          frozenset(_GENERAL + ["cleanup", "data_sync"]),
                                          timedelta(minutes=30), JobPriority.NORMAL),
    TenantLimitTier.TIER4: JobLimitConfig(1_000, 100, 100_000, 1024 * 1024,
                                          frozenset(_GENERAL + ["cleanup", "data_sync",
                                                                "file_processing"]),
                                          timedelta(hours=2), JobPriority.HIGH),
}


def parse_priority(value: Any, field_name: str = "priority") -> JobPriority:
    """Accept a ``JobPriority``, its name in any case, or its rank 0–4."""
    if isinstance(value, JobPriority):
        return value
    if isinstance(value, str):
        try:
            return JobPriority(value.strip().lower())
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4:
        return JobPriority.from_rank(value)
    names = ", ".join(p.value for p in JobPriority)
    raise JobValidationError(field_name, f"unknown priority {value!r}; use one of {names}")


def queue_room(max_queued_jobs: int | None, waiting: int) -> int | None:
    """How many more jobs a tenant may have waiting (pending + queued); None: no limit."""
    return None if max_queued_jobs is None else max(0, max_queued_jobs - waiting)


def check_queue_room(tenant_id: str, max_queued_jobs: int | None, waiting: int,
                     adding: int) -> None:
    """The ``max_queued_jobs`` rule, for every path that adds waiting jobs (queueing, retrying).

    :raise TenantLimitException: ``adding`` more jobs would put the tenant over its limit.
    """
    room = queue_room(max_queued_jobs, waiting)
    if room is not None and adding > room:
        raise queue_full(tenant_id, waiting, max_queued_jobs, adding)


# The refusals of the queue path, each written once: the SQLite path finds them in Python
# (``JobService._check_limits``), the PostgreSQL one in its server-side function
# (``queue_pg.py``), and both raise what these build.

def unknown_tenant(tenant_id: str) -> JobValidationError:
    return JobValidationError("tenant_id", f"unknown tenant {tenant_id!r}; create it first "
                                           "(service.tenants.set_tenant_config)")


def type_not_allowed(tenant_id: str, job_type: str, allowed_types) -> TenantLimitException:
    allowed = sorted(allowed_types)
    return TenantLimitException(
        f"tenant {tenant_id!r} may not queue {job_type!r} jobs "
        f"(allowed: {', '.join(allowed) or 'none'}); move it to a higher tier or allow the type",
        "allowed_job_types", job_type, allowed, tenant_id)


def payload_too_large(tenant_id: str, size: int, max_size: int) -> TenantLimitException:
    return TenantLimitException(
        f"payload of {size} bytes exceeds tenant {tenant_id!r}'s "
        f"max_job_payload_size of {max_size} bytes",
        "max_job_payload_size", size, max_size, tenant_id)


def queue_full(tenant_id: str, waiting: int, max_queued_jobs: int,
               adding: int) -> TenantLimitException:
    return TenantLimitException(
        f"tenant {tenant_id!r} has {waiting} jobs waiting and max_queued_jobs is "
        f"{max_queued_jobs}; {adding} more would exceed it — wait for jobs to run, "
        "cancel some, or raise the limit",
        "max_queued_jobs", waiting, max_queued_jobs, tenant_id)


def daily_used_up(tenant_id: str, used: int, max_daily_jobs: int,
                  day: date) -> TenantLimitException:
    return TenantLimitException(
        f"tenant {tenant_id!r} has used {used} of its {max_daily_jobs} jobs for "
        f"{day.isoformat()} (UTC); the count resets at midnight UTC",
        "max_daily_jobs", used, max_daily_jobs, tenant_id)


def queue_full_reason(tenant_id: str) -> str:
    """Why a bulk retry left a job of this tenant alone (its queue had no room)."""
    return f"held back by tenant {tenant_id}'s max_queued_jobs"


@dataclass(frozen=True)
class TenantConfig:
    tenant_id: str
    name: str
    tier: TenantLimitTier
    job_limit: JobLimitConfig
    custom_settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_tier(cls, tenant_id: str, name: str, tier: TenantLimitTier | str,
                 custom_settings: Mapping[str, Any] | None = None, **_ignored) -> TenantConfig:
        """The tier's preset, with ``custom_settings["jobLimits"]`` applied on top.

        Extra keyword arguments (``db_config`` and the like) are accepted and ignored: tenants
        live in the app's own database, so there is no per-tenant database to configure.
        """
        try:
            tier = TenantLimitTier(tier)
        except ValueError:
            raise JobValidationError("tier", f"unknown tier {tier!r}; use tier1, tier2, tier3 "
                                             "or tier4") from None
        settings = dict(custom_settings or {})
        limits = JobLimitConfig.for_tier(tier).with_overrides(settings.get("jobLimits") or {})
        return cls(tenant_id=tenant_id, name=name, tier=tier, job_limit=limits,
                   custom_settings=settings)

    def copy_with(self, **changes) -> TenantConfig:
        """A copy with the given fields replaced (``job_limit=``, ``tier=``, ``name=`` …)."""
        if "tier" in changes:
            changes["tier"] = TenantLimitTier(changes["tier"])
        return replace(self, **changes)


def _duration_ms(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds() * 1000)


def _checked_row(config: TenantConfig) -> tuple[str, dict[str, Any]]:
    if not isinstance(config, TenantConfig):
        raise TypeError("tenants are stored from a TenantConfig")
    tenant_id = (config.tenant_id or "").strip()
    if not tenant_id or len(tenant_id) > 64:
        raise JobValidationError("tenant_id", "must be 1–64 characters")
    if not config.name or len(config.name) > 200:
        raise JobValidationError("name", "must be 1–200 characters")
    return tenant_id, config_to_row(config)


def _changed_values(old: Mapping[str, Any], new: dict[str, Any]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings that differ between a tenant's stored row and its new one: (before, after),
    as an audit entry keeps them."""
    keys = [k for k in new if k != "id" and old.get(k) != new[k]]
    return ({k: _without_secrets(k, old.get(k)) for k in keys},
            {k: _without_secrets(k, new[k]) for k in keys})


# Settings the audit trail names but never shows: whoever reads it (admins, /audit) must not
# learn a tenant's signing secret from it.
SECRET_SETTINGS = frozenset({"webhookSecret"})
HIDDEN = "(hidden)"


def _without_secrets(column: str, value: Any) -> Any:
    if column != "custom_settings" or not isinstance(value, dict):
        return value
    return {k: HIDDEN if k in SECRET_SETTINGS and v else v for k, v in value.items()}


def config_to_row(config: TenantConfig) -> dict[str, Any]:
    limits = config.job_limit
    return {
        "id": config.tenant_id,
        "name": config.name,
        "tier": config.tier.value,
        "max_queued_jobs": limits.max_queued_jobs,
        "max_concurrent_jobs": limits.max_concurrent_jobs,
        "max_daily_jobs": limits.max_daily_jobs,
        "max_job_payload_size": limits.max_job_payload_size,
        "allowed_job_types": (sorted(limits.allowed_job_types)
                              if limits.allowed_job_types is not None else None),
        "max_job_duration_ms": _duration_ms(limits.max_job_duration),
        "default_job_priority": limits.default_job_priority.value,
        "custom_settings": config.custom_settings or None,
        **rate_limit_columns(limits.rate_limit),
    }


def rate_limit_columns(limit: RateLimit | None) -> dict[str, Any]:
    """A rate limit as the tenants table (and the handler limits table) stores it."""
    return {"rate_limit_count": limit.count if limit else None,
            "rate_limit_period_seconds": limit.period_seconds if limit else None,
            "rate_limit_burst": limit.burst if limit else None}


def rate_limit_of(row: Any) -> RateLimit | None:
    """The stored rate limit of a row with ``rate_limit_columns`` (None: no limit)."""
    if row.rate_limit_count is None:
        return None
    return RateLimit(row.rate_limit_count, row.rate_limit_period_seconds, row.rate_limit_burst)


def limits_from_row(row: Any) -> JobLimitConfig:
    types = row.allowed_job_types
    return JobLimitConfig(
        max_queued_jobs=row.max_queued_jobs,
        max_concurrent_jobs=row.max_concurrent_jobs,
        max_daily_jobs=row.max_daily_jobs,
        max_job_payload_size=row.max_job_payload_size,
        allowed_job_types=frozenset(types) if types is not None else None,
        max_job_duration=(timedelta(milliseconds=row.max_job_duration_ms)
                          if row.max_job_duration_ms is not None else None),
        default_job_priority=JobPriority(row.default_job_priority),
        rate_limit=rate_limit_of(row),
    )


def config_from_row(row: Any) -> TenantConfig:
    return TenantConfig(tenant_id=row.id, name=row.name, tier=TenantLimitTier(row.tier),
                        job_limit=limits_from_row(row), custom_settings=row.custom_settings or {})


class TenantStore:
    """``service.tenants``: tenants live in the database, so a change is seen by every process."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def set_tenant_config(self, config: TenantConfig, *, actor: Actor | None = None,
                          audit_action: str = "tenant_limits_changed") -> TenantConfig:
        """Create or update a tenant; the new limits apply to the next queue call and claim.

        A stored signing secret (``SECRET_SETTINGS``) the new settings do not name is kept:
        forms that save settings they read earlier never drop a secret created meanwhile.
        With ``actor``, the change is recorded in its own transaction as ``audit_action``
        (the values that changed, before and after)."""
        tenant_id, row = _checked_row(config)
        now = datetime.now(UTC)
        with db.write_transaction(self._engine) as conn:   # SQLite: the write lock at BEGIN
            old = conn.execute(select(tenants_table).where(tenants_table.c.id == tenant_id)
                               .with_for_update()).first()   # PostgreSQL: after a subscribe
            kept = {k: v for k, v in ((old and old.custom_settings) or {}).items()
                    if k in SECRET_SETTINGS and k not in (row["custom_settings"] or {})}
            if kept:
                row["custom_settings"] = {**(row["custom_settings"] or {}), **kept}
            updated = conn.execute(tenants_table.update()
                                   .where(tenants_table.c.id == tenant_id)
                                   .values(**{k: v for k, v in row.items() if k != "id"},
                                           updated_at=now)).rowcount
            if not updated:
                conn.execute(tenants_table.insert().values(**row, created_at=now, updated_at=now))
            if actor is not None:
                before, after = _changed_values(old._mapping if old else {}, row)
                audit.record(conn, actor, audit_action if old else "tenant_added",
                             tenant_id=tenant_id, target_type="tenant", target_id=tenant_id,
                             before=before, after=after, now=now)
        return config

    def add_tenant_config(self, config: TenantConfig, *,
                          actor: Actor | None = None) -> TenantConfig:
        """Create a tenant, never replacing one: two people adding the same id at once get one
        tenant and one clear refusal. With ``actor``, recorded as ``tenant_added``.

        :raise JobValidationError: (field ``tenant_id``) the id is taken.
        """
        tenant_id, row = _checked_row(config)
        now = datetime.now(UTC)
        try:
            with db.write_transaction(self._engine) as conn:
                conn.execute(tenants_table.insert().values(**row, created_at=now, updated_at=now))
                audit.record(conn, actor, "tenant_added", tenant_id=tenant_id,
                             target_type="tenant", target_id=tenant_id,
                             after=_changed_values({}, row)[1], now=now)
        except IntegrityError:
            raise JobValidationError("tenant_id", f"a tenant with the id {config.tenant_id!r} "
                                                  "already exists; choose another id") from None
        return config

    def get_tenant_config(self, tenant_id: str) -> TenantConfig | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(tenants_table).where(tenants_table.c.id == tenant_id)).first()
        return config_from_row(row) if row else None

    def list_tenant_configs(self) -> list[TenantConfig]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(tenants_table).order_by(tenants_table.c.id)).all()
        return [config_from_row(r) for r in rows]
