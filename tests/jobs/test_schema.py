"""Migration 0012 creates exactly what the models describe for pauses and runners."""
from __future__ import annotations

from tests.support import schema_differences


def test_migration_0012_matches_the_models(service):
    assert schema_differences(service.engine, {"pauses", "runners"}) == []
