"""What analytics returns: plain values, named as callers read them (``success_rate``,
``avg_execution_time``, ``queued_jobs`` …) on every path: the engine, the API and the console."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class TenantJobUsage:
    tenant_id: str
    queued_jobs: int                       # waiting now: pending + queued
    current_usage: dict[str, int]          # daily_jobs, concurrent_jobs, queued_jobs (now);
                                           # rate_limit_starts: in its rate limit's period
    limits: dict[str, Any]                 # the JobLimitConfig values by name
    warnings: list[str]
    total_jobs: int                        # jobs queued in the range
    success_rate: float                    # of runs that ended in the range
    failure_rate: float
    avg_execution_time: timedelta          # of attempts that ended in the range
    jobs_by_type: dict[str, int]           # jobs queued in the range, by type
    jobs_by_status: dict[str, int]         # outcomes in the range; waiting/processing now
    limit_rejections: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPerformanceMetrics:
    job_type: str
    handler: str
    total_executions: int
    success_rate: float
    failure_rate: float
    avg_execution_time: timedelta
    p95_execution_time: timedelta
    errors_by_type: dict[str, int]
    p95_is_exact: bool = True              # False where pruned attempts left only the histogram


@dataclass(frozen=True)
class SystemJobStatistics:
    total_jobs: int                        # jobs queued in the last 24 h
    system_success_rate: float             # runs that ended in the last 24 h
    active_tenants: int
    total_running_jobs: int
    total_queued_jobs: int
    system_warnings: list[str]


@dataclass(frozen=True)
class TenantMetrics:
    """One tenant's figures as ``tenant_metrics_updates`` publishes them (the last 24 h)."""

    tenant_id: str
    success_rate: float
    avg_execution_time: timedelta
    queued_jobs: int
    running_jobs: int
    runs: int
