"""Every write on SQLite takes the database's write lock when its transaction begins.

A transaction that begins as a reader (a plain ``BEGIN``) and writes later can fail at once
with "database is locked" when another process committed in between (SQLite cannot upgrade a
stale snapshot, and the busy timeout does not help); one that writes outside ``BEGIN
IMMEDIATE`` also skips this process's write lock and waits in SQLite's busy handler, which
other writers can starve. So every write path must begin with ``BEGIN IMMEDIATE``. This test
watches every statement of every connection (sqlite3's trace callback, which also sees the
driver-level queue path) while the console, the API, the engine and the runner do every kind
of write they have, and lists each write made in a transaction that did not begin that way.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, update

from console.jobs.models import jobs_table
from console.jobs.runner import Runner
from console.tokens import create_token
from tests.conftest import ON_POSTGRES
from tests.support import wait_until
from tests.web.conftest import PASSWORDS, csrf_token, sign_in

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's write lock: runs in the SQLite "
                                                    "pass")
UTC = timezone.utc
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
TIER3_TYPES = ["notification", "immediate", "delayed", "scheduled", "recurring", "maintenance",
               "cleanup", "data_sync"]


class WriteAudit:
    """Follows each connection's transaction state from the statements it runs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.unlocked_writes: list[str] = []
        self.writes = 0

    def attach(self, engine) -> None:
        engine.dispose()   # every connection from now on is a traced one

        @event.listens_for(engine, "connect")
        def trace(dbapi_connection, _record):
            state = {"transaction": None}

            def statement(sql: str) -> None:
                words = sql.lstrip().split(None, 2)
                first = words[0].upper() if words else ""
                if first == "BEGIN":
                    state["transaction"] = ("IMMEDIATE" if len(words) > 1 and
                                            words[1].upper() in ("IMMEDIATE", "EXCLUSIVE")
                                            else "DEFERRED")
                elif first in ("COMMIT", "ROLLBACK", "END"):
                    state["transaction"] = None
                elif first in WRITES or (first == "WITH" and any(
                        f" {w} " in f" {sql.upper()} " for w in WRITES)):
                    with self.lock:
                        self.writes += 1
                        if state["transaction"] != "IMMEDIATE":
                            how = state["transaction"] or "no transaction"
                            self.unlocked_writes.append(f"[{how}] {sql.strip()[:160]}")

            dbapi_connection.set_trace_callback(statement)


def make_due(service, *job_ids) -> None:
    with service.engine.begin() as conn:   # the test's own shortcut, before the audit starts
        conn.execute(update(jobs_table).where(jobs_table.c.id.in_(job_ids))
                     .values(scheduled_for=datetime.now(UTC) - timedelta(seconds=1)))


def test_every_write_path_takes_the_write_lock_at_begin(app, service, make_tenant, users,
                                                        tmp_path):
    make_tenant("acme", "tier3")
    make_tenant("globex", "tier2")
    maintenance = service.create_maintenance_jobs("acme")
    make_due(service, *(job.id for job in maintenance))
    cleanup = service.queue_scheduled_job("Cleanup", "0 3 1 * *", "custom_cleanup_handler",
                                          {"data_types": ["logs", "cache"]}, "acme")
    make_due(service, cleanup.id)
    audit_token, token = create_token(service.engine, "audit", None, is_admin=True)
    audit = WriteAudit()
    audit.attach(service.engine)
    log = str(tmp_path / "executions.log")

    # The engine and the runner: queue, run (successes, retries, failures, progress, the
    # maintenance and cleanup jobs, outbox messages), recover, retry, cancel, limits.
    service.queue_job("immediate", "record", {"log": log}, "acme")
    service.queue_job("immediate", "data_processor", {"data_id": "d", "processing_type": "quick",
                                                      "step_ms": 1}, "acme")
    service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme")
    failed = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.queue_batch_jobs([{"type": "immediate", "handler": "record",
                               "payload": {"log": log}}] * 5, "globex")
    service.queue_notification("sms", "+441234567890", "acme", body="hello")
    service.queue_notification("push", "device-token-1", "acme", body="hello")
    runner = Runner(service, threads=2, name="audit").start()
    try:
        waiting = service.queue_delayed_job("record", {"log": log}, timedelta(hours=1), "acme")
        wait_until(lambda: not service.count_jobs(statuses=["queued", "processing"]) and (
            service.get_job_by_id(failed.id).status.value == "failed"), 20,
            "the runner to finish the jobs")
        runner.renew_leases()
        runner.recover_expired_leases()
    finally:
        runner.stop(grace=1)
    service.release_stuck_jobs("acme")
    service.retry_job(failed.id)
    service.cancel_job(waiting.id)
    service.retry_jobs([failed.id])
    service.cancel_jobs([failed.id])
    service.tenants.set_tenant_config(service.tenants.get_tenant_config("globex"))

    # The console: sign-in, forms of every screen that writes.
    console = app.test_client()
    assert sign_in(console, "ada", PASSWORDS["ada"]).status_code == 302
    csrf = csrf_token(console, "/")
    job_form = {"csrf_token": csrf, "tenant_id": "acme", "type": "immediate",
                "handler": "record", "priority": "", "max_retries": "3",
                "payload": f'{{"log": "{log}"}}', "idempotency_key": "", "metadata": ""}
    posts = {
        "/jobs/new/immediate": job_form,
        f"/jobs/{failed.id}/retry": {"csrf_token": csrf},
        f"/jobs/{failed.id}/cancel": {"csrf_token": csrf},
        "/jobs/bulk": {"csrf_token": csrf, "action": "cancel", "job_ids": [failed.id]},
        "/tenants": {"csrf_token": csrf, "tenant_id": "initech", "name": "Initech",
                     "tier": "tier2"},
        "/tenants/acme/limits": {"csrf_token": csrf, "tier": "tier3", "max_queued_jobs": "",
                                 "max_concurrent_jobs": "7", "max_daily_jobs": "",
                                 "max_job_payload_size": "", "max_job_duration": "",
                                 "default_job_priority": "", "other_job_types": "",
                                 "allowed_job_types": TIER3_TYPES},
        "/users": {"csrf_token": csrf, "username": "eve", "role": "operator",
                   "password": "long enough words"},
        "/tokens": {"csrf_token": csrf, "name": "billing", "tenant": "acme"},
        f"/tokens/{audit_token.id + 1}/revoke": {"csrf_token": csrf},   # the one just made
        "/reports": {"csrf_token": csrf, "tenant": "acme",
                     "start_date": datetime.now(UTC).date().isoformat(),
                     "end_date": datetime.now(UTC).date().isoformat()},
    }
    for path, data in posts.items():
        response = console.post(path, data=data)
        # A new token's secret is shown once, in the answer itself; every other form redirects.
        assert response.status_code == (201 if path == "/tokens" else 303), (
            path, response.status_code, response.get_data(as_text=True)[:1000])

    # The API: every verb that writes.
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    calls = [   # method, path, body, the status of its success
        ("post", "/jobs", {"type": "immediate", "handler": "record", "payload": {"log": log},
                           "tenant_id": "acme", "idempotency_key": "k1"}, 201),
        ("post", "/jobs/batch", {"tenant_id": "acme", "jobs": [
            {"type": "immediate", "handler": "record", "payload": {"log": log}}] * 3}, 201),
        ("post", "/notifications", {"type": "sms", "recipient": "+441234567890",
                                    "body": "hi", "tenant_id": "acme"}, 201),
        ("post", f"/jobs/{failed.id}/retry", None, 200),
        ("post", f"/jobs/{failed.id}/cancel", None, 200),
        ("put", "/tenants/globex/limits", {"tier": "tier2", "limits": {
            "max_concurrent_jobs": 3}}, 200),
    ]
    for method, path, body, status in calls:
        response = api.open("/api/v1" + path, method=method.upper(), json=body,
                            headers=bearer)
        assert response.status_code == status, (path, response.get_json())

    print(f"{audit.writes} writes watched")
    assert audit.writes > 50
    assert not audit.unlocked_writes, (
        "writes in transactions that did not begin with BEGIN IMMEDIATE:\n"
        + "\n".join(audit.unlocked_writes))
