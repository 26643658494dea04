"""A write that waits for SQLite's write lock longer than SQLITE_BUSY_TIMEOUT fails with a 503
"busy, retry" (Retry-After) over HTTP and ``DatabaseUnavailableError`` from the engine — never
a 500 or "database is locked" — and stores nothing. (test_sqlite_contention.py shows that at
real loads the wait never gets that long.)
"""
from __future__ import annotations

import sqlite3
import time

import pytest

from console.jobs import DatabaseUnavailableError
from tests.conftest import BASE_CONFIG, ON_POSTGRES

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's write lock: runs in the SQLite "
                                                    "pass")


@pytest.fixture
def app_config(database_url) -> dict:
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "SQLITE_BUSY_TIMEOUT": 0.5}


def test_a_write_blocked_past_the_busy_timeout_is_a_503(app, service, make_tenant, operator,
                                                         api_token, database_url):
    """Another process holds the write lock for longer than SQLITE_BUSY_TIMEOUT (0.5 s here):
    the engine raises DatabaseUnavailableError (busy), the API answers 503 with Retry-After,
    the console a 503 page — and nothing is stored. Once the lock is free, the same calls
    work."""
    make_tenant("acme", "tier4")
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {api_token}"}
    body = {"type": "immediate", "handler": "sleeps", "tenant_id": "acme"}
    form = {"csrf_token": operator.csrf, "tenant_id": "acme", "type": "immediate",
            "handler": "sleeps", "priority": "", "max_retries": "3", "payload": "{}",
            "idempotency_key": "", "metadata": ""}
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # another process's long write transaction
    try:
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailableError) as caught:
            service.queue_job("immediate", "sleeps", {}, "acme")
        assert time.monotonic() - began < 5
        assert caught.value.reason == "busy"
        assert "database is busy" in caught.value.message and "retry" in caught.value.message

        response = client.post("/api/v1/jobs", json=body, headers=bearer)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "5"
        assert response.get_json()["type"] == "/api/v1/problems/database-unavailable"
        assert "database is busy" in response.get_json()["detail"]

        page = operator.post("/jobs/new/immediate", data=form)
        assert page.status_code == 503
        assert "The database is busy" in page.get_data(as_text=True)
        assert service.count_jobs() == 0
    finally:
        holder.rollback()
        holder.close()
    assert client.post("/api/v1/jobs", json=body, headers=bearer).status_code == 201
    assert operator.post("/jobs/new/immediate", data=form).status_code == 303
    assert service.count_jobs() == 2
