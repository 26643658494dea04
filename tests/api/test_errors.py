"""The pieces of problem details that need no app: field names, Retry-After."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from console.api.errors import seconds_until_utc_midnight
from console.api.field_errors import api_field


@pytest.mark.parametrize("engine_field,api_name", [
    ("delay", "delay_seconds"), ("job_specs", "jobs"),
    ("job_specs[2].delay", "jobs[2].delay_seconds"),
    ("job_specs[0].handler", "jobs[0].handler"), ("payload['a']", "payload['a']"),
    ("start_date", "start"), ("tenant_id", "tenant_id")])
def test_engine_fields_are_named_as_the_client_sent_them(engine_field, api_name):
    assert api_field(engine_field) == api_name


@pytest.mark.parametrize("now,seconds", [
    (datetime(2026, 3, 1, 23, 59, 59, tzinfo=timezone.utc), 1),
    (datetime(2026, 3, 1, 0, 0, 0, tzinfo=timezone.utc), 86400),
    (datetime(2026, 12, 31, 12, 0, 0, 500000, tzinfo=timezone.utc), 43200)])
def test_retry_after_counts_to_the_next_utc_midnight(now, seconds):
    assert seconds_until_utc_midnight(now) == seconds
