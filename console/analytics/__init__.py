"""Analytics over the engine's rollups: usage, performance, health, queue and system statistics.

It only reads (a test guards that no module here writes). ``JobService``'s analytics methods
delegate here.
"""
from .health import tenant_job_health
from .reports import (
                      job_performance_metrics,
                      job_queue_status,
                      system_job_statistics,
                      tenant_job_usage,
)
from .trends import job_trends
from .types import JobPerformanceMetrics, SystemJobStatistics, TenantJobUsage

__all__ = ["tenant_job_usage", "job_performance_metrics", "tenant_job_health",
           "job_queue_status", "system_job_statistics", "job_trends", "TenantJobUsage",
           "JobPerformanceMetrics", "SystemJobStatistics"]
