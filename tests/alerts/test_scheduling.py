"""Alerting set up by runners: the operations tenant, the seeded defaults and one recurring
evaluation job, however often (and however many processes) set it up."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from console.alerts import ensure_alerting
from console.alerts.scheduling import EVALUATE_HANDLER
from console.alerts.store import list_rules, set_enabled
from console.jobs import JobStatus
from console.jobs.models import jobs_table
from tests.alerts.conftest import alerts_of, run_jobs


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ALERTS_ENABLED": True}


def evaluation_jobs(service) -> list:
    with service.engine.connect() as conn:
        return conn.execute(select(jobs_table).where(jobs_table.c.handler == EVALUATE_HANDLER)
                            .order_by(jobs_table.c.id)).all()


def test_setting_up_twice_makes_one_tenant_three_defaults_and_one_job(app, service):
    first = ensure_alerting(service, app.config)
    second = ensure_alerting(service, app.config)
    assert first.id == second.id and first.status == JobStatus.PENDING
    assert first.tenant_id == "console" and first.cron_schedule == "* * * * *"
    assert service.tenants.get_tenant_config("console").tier.value == "tier4"
    rules = list_rules(service.engine)
    assert [(r.name, r.condition_text(), r.scope_text()) for r in rules] == [
        ("Queue backlog", "queue backlog above 1,000 queued jobs", "the whole system"),
        ("System success rate", "success rate below 90 % over the last 24 h",
         "the whole system"),
        ("Tenant health", "health score below 70", "each tenant")]
    set_enabled(service.engine, rules[0].id, False)    # turned off stays off: never re-seeded
    ensure_alerting(service, app.config)
    assert len(list_rules(service.engine)) == 3
    assert not list_rules(service.engine)[0].enabled
    assert len(evaluation_jobs(service)) == 1
    # Its own history is pruned like any tenant's: the standard maintenance jobs, once.
    with service.engine.connect() as conn:
        maintenance = conn.execute(select(jobs_table.c.handler).where(
            jobs_table.c.tenant_id == "console",
            jobs_table.c.handler != EVALUATE_HANDLER)).scalars().all()
    assert sorted(maintenance) == ["compact_rollups", "prune_finished_jobs", "release_stuck_jobs",
                                   "report_generator"]


def test_a_new_schedule_replaces_the_old_one(app, service):
    old = ensure_alerting(service, app.config)
    new = ensure_alerting(service, {**app.config, "ALERTS_EVALUATION_CRON": "*/5 * * * *"})
    assert new.id != old.id and new.cron_schedule == "*/5 * * * *"
    assert service.get_job_by_id(old.id).status == JobStatus.CANCELLED
    assert [row.status for row in evaluation_jobs(service)] == ["cancelled", "pending"]


def test_nothing_is_set_up_when_alerting_is_off(app, service):
    assert ensure_alerting(service, {**app.config, "ALERTS_ENABLED": False}) is None
    assert service.tenants.get_tenant_config("console") is None
    assert list_rules(service.engine) == []


def test_the_evaluation_job_evaluates(app, service, make_tenant, add_rule):
    ensure_alerting(service, app.config)
    make_tenant("acme", maxConcurrentJobs=0)              # its jobs stay queued: a backlog
    rule = add_rule("queue_backlog", 0, tenant_id="acme")
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    job = service.queue_job("immediate", EVALUATE_HANDLER, {}, "console")
    run_jobs(service)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED
    assert done.last_result.result == {"rules": 4, "fired": 1, "resolved": 0, "firing": 1,
                                       "notifications": 0, "failed_rules": {},
                                       "seconds": done.last_result.result["seconds"]}
    [alert] = alerts_of(service, rule)
    assert alert.message.startswith("Tenant acme: queue backlog is 1 queued job,")
