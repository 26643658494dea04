"""Migrations create exactly what the models describe: 0012 (pauses, runners), 0014 (rate
limits), 0017 (job dependencies), 0021 (attempt log lines), 0022 (daily duration histogram)."""
from __future__ import annotations

from tests.support import schema_differences


def test_migration_0012_matches_the_models(service):
    assert schema_differences(service.engine, {"pauses", "runners"}) == []


def test_migration_0014_matches_the_models(service):
    assert schema_differences(service.engine, {"tenants", "handler_rate_limits",
                                               "rate_limit_starts"}) == []


def test_migration_0017_matches_the_models(service):
    assert schema_differences(service.engine, {"job_dependencies"}) == []
    # SQLite's reflection cannot compare the claim index (an expression: priority DESC).
    assert [difference for difference in schema_differences(service.engine, {"jobs"})
            if "ix_jobs_claim" not in str(difference)] == []


def test_migration_0021_matches_the_models(service):
    assert schema_differences(service.engine, {"job_attempt_lines"}) == []


def test_migration_0022_matches_the_models(service):
    assert schema_differences(service.engine, {"job_duration_rollups_daily",
                                               "job_attempts"}) == []
