"""A write that waits for SQLite's write lock longer than SQLITE_BUSY_TIMEOUT fails with a 503
"busy, retry" (Retry-After) over HTTP and ``DatabaseUnavailableError`` from the engine — never
a 500 or "database is locked" — and stores nothing. (test_sqlite_contention.py shows that at
real loads the wait never gets that long.)
"""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from console.jobs import DatabaseUnavailableError
from console.jobs.db import process_write_lock
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


def test_a_caller_that_gave_up_waiting_is_not_written_later(service, make_tenant):
    """Queue calls waiting together are written together (tests/jobs/test_group_commit.py);
    one whose wait ran past the busy timeout was told "busy, nothing stored", so whoever gets
    the turn afterwards must not write it."""
    make_tenant("acme", "tier4")
    with process_write_lock(service.engine):   # this process's other writer, holding on
        with pytest.raises(DatabaseUnavailableError) as caught:
            service.queue_job("immediate", "sleeps", {}, "acme")
    assert caught.value.reason == "busy"
    assert "this process's other writers" in caught.value.message
    service.queue_job("immediate", "sleeps", {"later": True}, "acme")
    assert service.count_jobs("acme") == 1


HOLD_THE_TURN = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_writer_turn(database_url: str, seconds: float) -> subprocess.Popen:
    """Another process holding the writers' turn (the lock file beside the database)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_TURN,
         database_url.removeprefix("sqlite:///") + "-writer.lock", str(seconds)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_writers_of_all_processes_take_turns_and_a_dead_holder_frees_the_turn(
        service, make_tenant, database_url):
    """The writer's turn is shared with every process: a write waits while another process
    holds it, proceeds the moment it is let go (not after SQLite's busy handler's next nap),
    fails as "busy" past the busy timeout, and a process killed while holding it frees it."""
    make_tenant("acme", "tier4")

    holder = hold_writer_turn(database_url, 0.2)   # lets go after 0.2 s, within the timeout
    began = time.monotonic()
    service.queue_job("immediate", "sleeps", {}, "acme")
    waited = time.monotonic() - began
    holder.wait(timeout=10)
    assert 0.05 < waited < 0.45, waited

    holder = hold_writer_turn(database_url, 60)    # holds on past the timeout (0.5 s)
    try:
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailableError) as caught:
            service.queue_job("immediate", "sleeps", {}, "acme")
        assert 0.4 < time.monotonic() - began < 3
        assert "another process's writers" in caught.value.message
        holder.send_signal(signal.SIGKILL)        # dies holding it: the kernel lets go
        holder.wait(timeout=10)
        service.queue_job("immediate", "sleeps", {}, "acme")   # a turn still held: "busy"
    finally:
        holder.kill()
    assert service.count_jobs("acme") == 2
