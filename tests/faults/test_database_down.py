"""Calls made while the PostgreSQL server is down, or cut off by it going down, or sent to a
server that never answers: each fails within seconds with ``DatabaseUnavailableError`` (a 503
with Retry-After over HTTP, a 503 page in the console), and nothing is half-stored.

The server is the tests' own (see conftest.py), stopped with ``pg_ctl stop -m fast`` as an
operator's restart or a failover would.
"""
from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select

from console import create_app
from console.jobs import DatabaseUnavailableError
from console.jobs.models import daily_usage_table, jobs_table, rollups_table
from tests.conftest import BASE_CONFIG, ON_POSTGRES
from tests.support import wait_until

pytestmark = pytest.mark.slow
FAST = 3.0   # seconds: "fails fast" (a refused connection takes milliseconds)


@pytest.fixture
def database_url(throwaway_database_url):
    return throwaway_database_url


def stored(service, tenant_id: str = "acme") -> dict[str, int]:
    """What a queue call writes for a tenant: its jobs, the day's count, the created rollup."""
    with service.engine.connect() as conn:
        def total(query):
            return conn.execute(query).scalar_one() or 0
        return {
            "jobs": total(select(func.count()).select_from(jobs_table)
                          .where(jobs_table.c.tenant_id == tenant_id)),
            "daily_count": total(select(func.sum(daily_usage_table.c.jobs_accepted))
                                 .where(daily_usage_table.c.tenant_id == tenant_id)),
            "created_rollup": total(select(func.sum(rollups_table.c.jobs_created))
                                    .where(rollups_table.c.tenant_id == tenant_id)),
        }


def timed(call):
    """(the exception ``call`` raised, seconds it took)."""
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught:
        call()
    return caught.value, time.monotonic() - began


def test_calls_while_the_database_is_down_fail_fast_and_store_nothing(
        app, service, make_tenant, postgres_server, operator, api_token, tmp_path):
    make_tenant("acme", "tier4")
    log = str(tmp_path / "executions.log")
    service.queue_job("immediate", "record", {"log": log}, "acme")
    failed = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(settle=0.2)
    waiting = service.queue_delayed_job("record", {"log": log}, timedelta(hours=1), "acme")
    before = stored(service)
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {api_token}"}
    body = {"type": "immediate", "handler": "record", "payload": {"log": log},
            "tenant_id": "acme"}

    postgres_server.stop()
    try:
        calls = {
            "queue_job": lambda: service.queue_job("immediate", "record", {"log": log}, "acme"),
            "queue_batch_jobs": lambda: service.queue_batch_jobs(
                [{"type": "immediate", "handler": "record", "payload": {"log": log}}] * 3,
                "acme"),
            "queue_notification": lambda: service.queue_notification(
                "sms", "+441234567890", "acme", body="hello"),
            "queue_job with an idempotency key": lambda: service.queue_job(
                "immediate", "record", {"log": log}, "acme", idempotency_key="once"),
            "retry_job": lambda: service.retry_job(failed.id),
            "cancel_job": lambda: service.cancel_job(waiting.id),
        }
        for name, call in calls.items():
            error, took = timed(call)
            print(f"{name}: DatabaseUnavailableError after {took * 1000:.0f} ms")
            assert took < FAST, f"{name} took {took:.1f} s to fail"
            assert error.reason == "unreachable"
            assert "database cannot be reached" in error.message, error.message
            assert "retry" in error.message and "Connection refused" in error.message

        began = time.monotonic()
        response = client.post("/api/v1/jobs", json=body, headers=bearer)
        assert time.monotonic() - began < FAST
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "5"
        problem = response.get_json()
        assert problem["type"] == "/api/v1/problems/database-unavailable"
        assert "cannot be reached" in problem["detail"] and "retry" in problem["detail"]
        assert client.get(f"/api/v1/jobs/{failed.id}", headers=bearer).status_code == 503
        assert client.get("/api/v1/problems/database-unavailable").status_code == 200

        form = {"csrf_token": operator.csrf, "tenant_id": "acme", "type": "immediate",
                "handler": "record", "priority": "", "max_retries": "3",
                "payload": f'{{"log": "{log}"}}', "idempotency_key": "", "metadata": ""}
        page = operator.post("/jobs/new/immediate", data=form)
        assert page.status_code == 503
        assert page.headers["Retry-After"] == "5"
        text = page.get_data(as_text=True)
        assert "The database is unavailable" in text and "Try again in a few seconds" in text
        swapped = operator.post("/jobs/new/immediate", data=form, headers={"HX-Request": "true"})
        assert swapped.status_code == 503
        assert swapped.headers["HX-Retarget"] == "#messages"
        assert "The database is unavailable" in swapped.get_data(as_text=True)
        assert operator.post(f"/jobs/{failed.id}/retry",
                             data={"csrf_token": operator.csrf}).status_code == 503
        assert operator.get("/").status_code == 503

        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.get_json()["database"]["ok"] is False
    finally:
        postgres_server.start()

    assert stored(service) == before, "a call made while the database was down left rows"
    # The same app, its pool and its connections, work again once the server is back.
    assert service.queue_job("immediate", "record", {"log": log}, "acme").status.value == "queued"
    assert client.post("/api/v1/jobs", json=body, headers=bearer).status_code == 201
    assert operator.post("/jobs/new/immediate", data=form).status_code == 303
    assert client.get("/healthz").status_code == 200
    assert stored(service)["jobs"] == before["jobs"] + 3


def test_a_queue_call_cut_off_mid_transaction_stores_nothing(service, make_tenant,
                                                             postgres_server, tmp_path):
    """The server goes down while a queue transaction is half done — its job inserted and
    counted for the day, its rollup not yet written: the caller gets the named error, and
    after the restart neither the job nor its count is there."""
    make_tenant("acme", "tier4")
    log = str(tmp_path / "executions.log")
    service.queue_job("immediate", "record", {"log": log}, "acme")
    before = stored(service)
    outcome: dict[str, BaseException | None] = {}

    def queue():
        try:
            service.queue_job("immediate", "record", {"log": log}, "acme")
            outcome["error"] = None
        except BaseException as exc:   # recorded for the assertion below
            outcome["error"] = exc

    server = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/"
    database = service.engine.url.database
    blocker = psycopg.connect(server + database)
    queuer = threading.Thread(target=queue)
    try:
        # Writes to the rollups wait behind this lock, which the queue transaction reaches last.
        blocker.execute("LOCK TABLE job_rollups IN EXCLUSIVE MODE")
        queuer.start()
        with psycopg.connect(server + database, autocommit=True) as observer:
            # On PostgreSQL the whole transaction is one statement, queue_calls (queue_pg.py).
            waiting = wait_until(lambda: observer.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%queue_calls%'").fetchone(), 10,
                "the queue call to reach the rollups", interval=0.02)
            # Its connection goes first: in a plain shutdown the blocker's rollback could
            # free the lock and let the queue call commit just before its connection closed.
            observer.execute("SELECT pg_terminate_backend(%s)", waiting)
        postgres_server.stop()
        queuer.join(timeout=10)
        assert not queuer.is_alive(), "queue_job still waiting after the server went down"
    finally:
        blocker.close()
        if not postgres_server.is_running():
            postgres_server.start()
    assert isinstance(outcome["error"], DatabaseUnavailableError), outcome
    assert outcome["error"].reason == "unreachable"
    assert stored(service) == before


def test_a_server_that_never_answers_fails_within_the_connect_timeout():
    """A listening socket that accepts connections and never says a word (a hung server, a
    black-holed address behind a proxy): without DATABASE_CONNECT_TIMEOUT a call would wait
    for the operating system, minutes; with it, it fails in about that many seconds."""
    if not ON_POSTGRES:
        pytest.skip("PostgreSQL's connect timeout: runs in the PostgreSQL pass")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)   # the kernel completes the handshakes; nobody ever reads
        url = f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/console"
        app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url, "AUTO_MIGRATE": False,
                          "DATABASE_CONNECT_TIMEOUT": 2})
        service = app.extensions["jobs"]
        outcome: dict[str, object] = {}

        def queue():
            began = time.monotonic()
            try:
                service.queue_job("immediate", "record", {"log": "/dev/null"}, "acme")
            except BaseException as exc:   # recorded for the assertions below
                outcome["error"] = exc
            outcome["took"] = time.monotonic() - began

        caller = threading.Thread(target=queue, daemon=True)
        caller.start()
        caller.join(timeout=20)
        assert not caller.is_alive(), "queue_job still waiting for the server after 20 s"
        print(f"queue_job failed after {outcome['took']:.1f} s")
        assert isinstance(outcome.get("error"), DatabaseUnavailableError), outcome
        assert "timeout" in str(outcome["error"]), outcome["error"]
        assert outcome["took"] < 2 + FAST

        began = time.monotonic()
        assert app.test_client().get("/healthz").status_code == 503
        assert time.monotonic() - began < 2 + FAST
        service.engine.dispose()
