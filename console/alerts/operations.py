"""The operations tenant: the reserved tenant alerting runs as.

The evaluation job and every alert notification are jobs of this tenant (``ALERTS_TENANT_ID``,
``console`` by default; tier 4), never of the tenant an alert is about — so a tenant at its own
limits (the very thing an alert may be about) still gets told. It is created on first need,
by whichever process gets there first.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..handlers.delivery import config_value
from ..jobs import JobService, JobValidationError, TenantConfig

OPERATIONS_TENANT_NAME = "Console operations"
OPERATIONS_TIER = "tier4"


def alert_setting(config: Mapping[str, Any] | None, key: str) -> Any:
    """An ``ALERTS_*`` setting from the app's config, else its documented default."""
    return config_value(config, key)


def operations_tenant_id(config: Mapping[str, Any] | None) -> str:
    return alert_setting(config, "ALERTS_TENANT_ID") or "console"


def ensure_operations_tenant(service: JobService, config: Mapping[str, Any] | None
                             ) -> TenantConfig:
    """The operations tenant, created (tier 4) if it does not exist; an existing tenant of that
    id is used as it is, whatever its settings."""
    tenant_id = operations_tenant_id(config)
    existing = service.tenants.get_tenant_config(tenant_id)
    if existing is not None:
        return existing
    config_ = TenantConfig.for_tier(tenant_id, OPERATIONS_TENANT_NAME, OPERATIONS_TIER)
    try:
        return service.tenants.add_tenant_config(config_)
    except JobValidationError:   # another process created it a moment ago
        return service.tenants.get_tenant_config(tenant_id)
