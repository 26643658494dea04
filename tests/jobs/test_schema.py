"""Migrations create exactly what the models describe: 0012 (pauses, runners), 0014 (rate
limits)."""
from __future__ import annotations

from tests.support import schema_differences


def test_migration_0012_matches_the_models(service):
    assert schema_differences(service.engine, {"pauses", "runners"}) == []


def test_migration_0014_matches_the_models(service):
    assert schema_differences(service.engine, {"tenants", "handler_rate_limits",
                                               "rate_limit_starts"}) == []
