"""``AnalyticsReader``: the read side ``JobService``'s analytics verbs delegate to.

The engine does not import analytics (it sits below it); ``create_app`` hands the service a
reader, so ``service.get_tenant_job_usage(…)`` and the other verbs keep their names.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine

from ..jobs.limits import TenantStore
from .health import tenant_job_health, tenants_job_health
from .reports import (
    job_performance_metrics,
    job_queue_status,
    system_job_statistics,
    tenant_job_usage,
    tenant_metrics,
)
from .trends import job_trends
from .types import JobPerformanceMetrics, SystemJobStatistics, TenantJobUsage


class AnalyticsReader:
    """Usage, performance, health, trends, queue and system statistics of one database."""

    def __init__(self, engine: Engine, now: Callable[[], datetime] | None = None):
        """:param now: the engine's clock (``service.clock.now``): leases and heartbeats are
            stamped in it."""
        self.engine = engine
        self.tenants = TenantStore(engine)
        self._now = now or (lambda: datetime.now(timezone.utc))

    def tenant_job_usage(self, tenant_id: str, start_date=None, end_date=None) -> TenantJobUsage:
        return tenant_job_usage(self.engine, self.tenants, tenant_id, start_date, end_date)

    def job_performance_metrics(self, job_type, handler: str, start_date=None,
                                end_date=None) -> JobPerformanceMetrics:
        return job_performance_metrics(self.engine, job_type, handler, start_date, end_date)

    def tenant_job_health(self, tenant_id: str) -> dict[str, Any]:
        return tenant_job_health(self.engine, self.tenants, tenant_id, self._now())

    def tenants_job_health(self) -> dict[str, dict[str, Any]]:
        return tenants_job_health(self.engine, self.tenants.list_tenant_configs(), self._now())

    def job_trends(self, **filters) -> dict[str, Any]:
        return job_trends(self.engine, **filters)

    def tenant_metrics(self):
        return tenant_metrics(self.engine)

    def job_queue_status(self, tenant_ids=None) -> dict[str, Any]:
        return job_queue_status(self.engine, tenant_ids=tenant_ids, now=self._now())

    def system_job_statistics(self, tenant_ids=None) -> SystemJobStatistics:
        return system_job_statistics(self.engine, tenant_ids=tenant_ids, now=self._now())
