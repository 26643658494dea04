"""The standard maintenance schedule every tenant can have: ``create_maintenance_jobs``.

Four recurring jobs of type ``maintenance``, run by built-in handlers (``console/handlers``):

- Prune finished jobs (``prune_finished_jobs``, daily at 03:mm UTC): finished jobs past the
  tenant's retention, and recurring jobs' attempts as old
- Release stuck jobs (``release_stuck_jobs``, hourly at :mm): processing jobs whose lease expired
- Compact rollups (``compact_rollups``, daily at 04:mm UTC): rollup rows no reader uses
- Weekly usage report (``report_generator``, Mondays at 06:mm UTC): the previous 7 days as CSV

``mm`` is the same minute for one tenant and spread over the hour across tenants (a hash of
the tenant id), so a thousand tenants do not all prune at 03:00.

Idempotent through idempotency keys (``console-maintenance:<handler>``): a second call returns
the jobs the first one created. A maintenance job an operator cancelled stays cancelled (its
key still names it); retrying it brings it back. The payload holds no retention figures: the
handlers read the tenant's ``custom_settings`` when they run, so a changed setting applies at
the next run without re-creating anything.
"""
from __future__ import annotations

import zlib
from typing import Any

MAINTENANCE_TYPE = "maintenance"
IDEMPOTENCY_PREFIX = "console-maintenance:"

# name, handler, cron with {m} for the tenant's minute, extra payload
STANDARD_JOBS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("Prune finished jobs", "prune_finished_jobs", "{m} 3 * * *", {}),
    ("Release stuck jobs", "release_stuck_jobs", "{m} * * * *", {}),
    ("Compact rollups", "compact_rollups", "{m} 4 * * *", {}),
    ("Weekly usage report", "report_generator", "{m} 6 * * 1",
     {"report_type": "usage", "last_days": 7}),
)


def tenant_minute(tenant_id: str) -> int:
    """The minute of the hour this tenant's maintenance runs at: stable, spread over tenants."""
    return zlib.crc32(tenant_id.encode()) % 60


def maintenance_job_specs(tenant_id: str) -> list[dict[str, Any]]:
    """``queue_batch_jobs`` specs of the standard maintenance jobs for ``tenant_id``."""
    minute = tenant_minute(tenant_id)
    return [{"type": MAINTENANCE_TYPE, "handler": handler,
             "payload": {"name": name, **extra},
             "cron_schedule": cron.format(m=minute), "priority": "low",
             "metadata": {"name": name, "maintenance": True},
             "idempotency_key": f"{IDEMPOTENCY_PREFIX}{handler}"}
            for name, handler, cron, extra in STANDARD_JOBS]
