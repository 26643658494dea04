"""A tenant's quota as the New job screen shows it: live usage against each limit (cheap, indexed
queries only), and a limit refusal turned into a sentence with the tenant's own figures."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ...jobs import TenantConfig, TenantLimitException
from ..tenants.usage import UsageBar, tenants_usage

UTC = timezone.utc


@dataclass(frozen=True)
class TenantQuota:
    config: TenantConfig
    gauges: list[UsageBar]
    allowed_types: list[str] | None     # None: every type
    max_payload_size: int | None
    default_priority: str
    resets_in: timedelta                # until the daily count starts again (midnight UTC)

    @property
    def max_payload_label(self) -> str:
        return size_label(self.max_payload_size)


def size_label(size: int | None) -> str:
    """65536 → '64 KiB (65,536 bytes)'; None → 'unlimited'."""
    if size is None:
        return "unlimited"
    for unit, scale in (("MiB", 1024 ** 2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit} ({size:,} bytes)"
    return f"{size:,} bytes"


def tenant_quota(engine, config: TenantConfig, now: datetime | None = None) -> TenantQuota:
    """Waiting, running and today's jobs against the limits: three indexed look-ups, however
    many jobs the table holds."""
    now = now or datetime.now(UTC)
    limits = config.job_limit
    with engine.connect() as conn:
        gauges = tenants_usage(conn, [config], now.date())[config.tenant_id]
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return TenantQuota(
        config=config,
        gauges=gauges,
        allowed_types=(sorted(limits.allowed_job_types)
                       if limits.allowed_job_types is not None else None),
        max_payload_size=limits.max_job_payload_size,
        default_priority=limits.default_job_priority.value,
        resets_in=midnight - now)


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def explain_limit(exc: TenantLimitException, config: TenantConfig | None,
                  adding: int = 1) -> str:
    """What a refusal means for this tenant and what the operator can do, in one sentence.

    :param adding: how many jobs the refused request tried to add (a batch adds many).
    """
    name = config.name if config else exc.tenant_id
    tier = config.tier.value if config else "?"
    used, limit = exc.current_usage, exc.limit
    if exc.limit_type == "max_daily_jobs":
        if isinstance(used, int) and isinstance(limit, int) and used < limit:
            return (f"{name}'s daily limit would be exceeded: {_n(used)} of {_n(limit)} jobs "
                    f"used today ({tier}), and this adds {_n(adding)}. Queue fewer, try "
                    "tomorrow (the count resets at midnight UTC) or ask an admin to raise it.")
        return (f"{name}'s daily limit is reached: {_n(used)} of {_n(limit)} jobs today "
                f"({tier}). Try tomorrow (the count resets at midnight UTC) or ask an admin "
                "to raise it.")
    if exc.limit_type == "max_queued_jobs":
        more = f", and this adds {_n(adding)}" if adding > 1 else ""
        return (f"{name}'s queue is full: {_n(used)} of {_n(limit)} jobs waiting ({tier}){more}. "
                "Wait for jobs to run, cancel some, or ask an admin to raise the limit.")
    if exc.limit_type == "max_job_payload_size":
        return (f"The payload is {_n(used)} bytes; {name} allows at most {_n(limit)} bytes per "
                f"job ({tier}). Make it smaller or ask an admin to raise the limit.")
    if exc.limit_type == "allowed_job_types":
        allowed = ", ".join(limit) if isinstance(limit, (list, tuple)) and limit else "none"
        return (f"{name} ({tier}) may not queue {used!r} jobs; allowed: {allowed}. Ask an "
                "admin to move the tenant to a higher tier or allow the type.")
    return exc.message
