"""Fixtures of the engine's tests that start worker processes."""
from __future__ import annotations

import pytest

from tests.jobs.test_processes import Workers


@pytest.fixture
def workers(database_url, tmp_path):
    """``workers.start(name, threads=…, **env)``: ``flask --app console worker`` processes on
    the test database, killed at the end of the test (their output printed if it failed)."""
    started = Workers(database_url, tmp_path)
    try:
        yield started
    finally:
        started.cleanup()
