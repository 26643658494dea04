"""A paused tenant was asked to wait: its backlog is no backlog alert, its health is not
penalised for the waits, both say "paused", and the time it spent paused never counts as
waiting once it runs again."""
from __future__ import annotations

import time

from sqlalchemy import func, select

from console.jobs.models import rollups_table
from tests.alerts.conftest import alerts_of, firing_subjects


def test_a_paused_tenants_backlog_is_no_alert_and_the_system_leaves_it_out(
        service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    make_tenant("globex")
    tenant_rule = add_rule("queue_backlog", 2)
    each_rule = add_rule("queue_backlog", 2, scope="each_tenant", name="each")
    system_rule = add_rule("queue_backlog", 2, scope="system", name="system")
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {}, "acme")
    evaluate()
    assert firing_subjects(service, tenant_rule) == {"tenant:acme": 3.0}
    assert firing_subjects(service, system_rule) == {"system": 3.0}

    service.pause_tenant("acme", reason="provider down", by="ops")
    evaluate()
    assert firing_subjects(service, tenant_rule) == {}
    assert firing_subjects(service, each_rule) == {}
    assert firing_subjects(service, system_rule) == {}
    [resolved] = alerts_of(service, tenant_rule, "resolved")
    assert resolved.last_value == 0.0

    service.resume_tenant("acme", by="ops")
    evaluate()
    assert firing_subjects(service, tenant_rule) == {"tenant:acme": 3.0}


def test_pausing_everything_silences_backlog_alerts(service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    rule = add_rule("queue_backlog", 0, scope="each_tenant")
    service.queue_job("immediate", "sleeps", {}, "acme")
    service.pause_all(reason="maintenance")
    evaluate()
    assert firing_subjects(service, rule) == {}


def test_health_of_a_paused_tenant_says_paused_and_ignores_its_backlog(service, make_tenant):
    make_tenant("acme", maxQueuedJobs=4)
    for _ in range(4):
        service.queue_job("immediate", "sleeps", {}, "acme")
    before = service.get_tenant_job_health("acme")
    assert before["penalties"]["backlog"] == 15.0 and before["paused"] == []

    service.pause_tenant("acme", reason="provider down", by="ops")
    health = service.get_tenant_job_health("acme")
    assert health["penalties"]["backlog"] == 0.0
    assert health["health_score"] == before["health_score"] + 15.0
    [pause] = health["paused"]
    assert pause["scope"] == "tenant" and pause["paused_by"] == "ops"
    assert health["recommendations"][0].startswith("paused: tenant acme by ops")
    assert not any("max_queued_jobs" in r for r in health["recommendations"])


def test_time_spent_paused_does_not_count_as_waiting(service, make_tenant):
    make_tenant("acme")
    service.pause_tenant("acme")
    service.queue_job("immediate", "sleeps", {}, "acme")
    time.sleep(1.5)
    service.resume_tenant("acme")
    service.run_until_idle(timeout=10, settle=0.3)
    with service.engine.connect() as conn:
        waited_ms, attempts = conn.execute(select(func.sum(rollups_table.c.wait_ms_sum),
                                                  func.sum(rollups_table.c.attempts))).one()
    assert attempts == 1
    assert waited_ms < 1000, f"the job's wait counted {waited_ms:.0f} ms of its pause"
