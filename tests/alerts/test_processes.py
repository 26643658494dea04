"""Alerting across real ``flask --app console worker`` processes: two of them evaluating at
once open one alert and send one notice; a worker killed while holding a job leaves it stuck
past its lease, which the stuck-jobs rule reports until the job is recovered."""
from __future__ import annotations

import json
import signal
import time

import pytest
from sqlalchemy import select

from console.alerts.operations import ensure_operations_tenant
from console.alerts.scheduling import EVALUATE_HANDLER
from console.jobs.models import attempts_table, jobs_table
from tests.alerts.conftest import alerts_of, firing_subjects
from tests.jobs.conftest import workers  # noqa: F401  (the fixture)
from tests.support import wait_until

pytestmark = pytest.mark.slow
SECRET = "whsec-operators-0123456789"


def test_two_workers_evaluating_at_once_open_one_alert_and_send_one_notice(
        app, service, make_tenant, add_rule, workers, http_receiver):  # noqa: F811
    make_tenant("acme", maxConcurrentJobs=0)        # its jobs stay queued: a lasting backlog
    rule = add_rule("queue_backlog", 0)
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {}, "acme")
    settings = {"CONSOLE_ALERTS_ENABLED": "true",
                "CONSOLE_ALERTS_EVALUATION_CRON": "* * * * * *",     # every second
                "CONSOLE_ALERTS_WEBHOOK_URL": http_receiver.url,
                "CONSOLE_WEBHOOK_SIGNING_SECRET": SECRET}
    first = workers.start("a", wait_ready=False, **settings)    # both start at once
    second = workers.start("b", **settings)
    wait_until(first.runner_id, timeout=30, what="worker a to start")
    ops = ensure_operations_tenant(service, app.config).tenant_id
    # Beside the recurring job, a burst of evaluations for both processes to run at once.
    burst = service.queue_batch_jobs(
        [{"type": "immediate", "handler": EVALUATE_HANDLER, "payload": {}}] * 24, ops)

    wait_until(lambda: all(service.get_job_by_id(j.id).status.value == "completed"
                           for j in burst), timeout=30, what="the burst of evaluations")
    wait_until(lambda: http_receiver.requests, timeout=15, what="the webhook notice")
    time.sleep(1.0)                                  # room for a duplicate to show up
    for worker in (first, second):
        assert workers.terminate(worker)[0] == 0, worker.text()

    assert len(alerts_of(service, rule)) == 1
    assert firing_subjects(service, rule) == {"tenant:acme": 3.0}
    events = [json.loads(raw)["data"] for _, _, raw, _ in http_receiver.requests]
    assert [(e["event"], e["rule"]["id"]) for e in events] == [("alert.fired", rule.id)]
    with service.engine.connect() as conn:
        recurring = conn.execute(select(jobs_table.c.id).where(
            jobs_table.c.handler == EVALUATE_HANDLER,
            jobs_table.c.cron_schedule.is_not(None))).all()
        evaluated_by = set(conn.execute(select(attempts_table.c.worker).where(
            attempts_table.c.handler == EVALUATE_HANDLER)).scalars())
    assert len(recurring) == 1                       # both workers set it up: one job
    assert {first.runner_id(), second.runner_id()} <= evaluated_by


def test_a_worker_killed_holding_a_job_leaves_it_stuck_until_recovered(
        service, make_tenant, add_rule, evaluate, workers):  # noqa: F811
    make_tenant("acme")
    rule = add_rule("stuck_jobs", 0)
    dying = workers.start("dying", threads=1, CONSOLE_JOBS_LEASE_SECONDS="1")
    job = service.queue_job("immediate", "sleeps", {"ms": 30_000}, "acme")
    wait_until(lambda: service.get_job_by_id(job.id).status.value == "processing", timeout=10,
               what="the worker to claim the job")
    evaluate()
    assert firing_subjects(service, rule) == {}      # its runner renews the lease
    dying.proc.send_signal(signal.SIGKILL)
    assert dying.proc.wait(timeout=10) == -signal.SIGKILL

    # Stuck once the lease (1 s) lapsed by the grace analytics allow (5 s).
    wait_until(lambda: evaluate() and firing_subjects(service, rule), timeout=15,
               interval=0.5, what="the stuck-jobs rule to fire")
    [alert] = alerts_of(service, rule)
    assert alert.message == ("Tenant acme: number of jobs stuck in processing (past their "
                             "lease or max_job_duration) is 1, above the threshold of 0")
    assert "jobs are processing past their lease" in alert.recommendation   # health report
    assert [j.id for j in service.release_stuck_jobs("acme")] == [job.id]
    evaluate()
    assert firing_subjects(service, rule) == {}
