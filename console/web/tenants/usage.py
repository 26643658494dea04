"""A tenant's live usage against its limits — waiting, running and today's jobs — as every screen
shows it (dashboard tiles, the tenants list, the New job form): one grouped, indexed count of
live jobs and one primary-key read of today's quota per tenant, however many jobs there are."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection

from ...jobs.limits import JobLimitConfig, TenantConfig
from ...jobs.usage import daily_jobs_used, live_job_counts


@dataclass(frozen=True)
class UsageBar:
    """One figure against its limit (``limit`` None: unlimited), drawn as a <meter>."""

    label: str
    used: int
    limit: int | None

    @property
    def full(self) -> bool:
        return self.limit is not None and self.used >= self.limit

    @property
    def shown_used(self) -> int:
        """What a <meter> can show: never past its maximum."""
        return min(self.used, self.limit) if self.limit is not None else self.used

    @property
    def low(self) -> float:
        """From here the meter turns amber: the analytics warn past 80 %."""
        return 0.8 * self.limit if self.limit else 0

    @property
    def high(self) -> float:
        return 0.95 * self.limit if self.limit else 0

    @property
    def fraction(self) -> float | None:
        return self.used / self.limit if self.limit else None


def usage_bars(limits: JobLimitConfig, waiting: int, running: int, today: int,
               rate_starts: int | None = None) -> list[UsageBar]:
    """The bars; with ``rate_starts`` (a tenant's page), its rate limit's current period."""
    bars = [UsageBar("Waiting (queued + pending)", waiting, limits.max_queued_jobs),
            UsageBar("Running now", running, limits.max_concurrent_jobs),
            UsageBar("Today (UTC)", today, limits.max_daily_jobs)]
    rate = limits.rate_limit
    if rate is not None and rate_starts is not None:
        bars.append(UsageBar(f"Started in the last {rate.period_text} s", rate_starts,
                             rate.count))
    return bars


def tenants_usage(conn: Connection, configs: list[TenantConfig], today: date
                  ) -> dict[str, list[UsageBar]]:
    """Usage bars by tenant id. With one tenant, only its live jobs are counted."""
    only = configs[0].tenant_id if len(configs) == 1 else None
    live = live_job_counts(conn, only)
    usage = {}
    for config in configs:
        tenant_id = config.tenant_id
        usage[tenant_id] = usage_bars(
            config.job_limit,
            waiting=live.get((tenant_id, "pending"), 0) + live.get((tenant_id, "queued"), 0),
            running=live.get((tenant_id, "processing"), 0),
            today=int(daily_jobs_used(conn, tenant_id, today)))
    return usage
