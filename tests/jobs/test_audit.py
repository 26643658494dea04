"""The engine's audit entries: every verb that changes jobs or tenants, given an ``actor``, writes
one entry in its own transaction — and a refused change writes none."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from console.jobs import JobStateError, JobValidationError, TenantConfig, TenantLimitException
from console.jobs.audit import ACTIONS, MAX_LISTED_JOB_IDS, Actor, AuditQuery, prune_entries
from console.jobs.models import audit_table

UTC = timezone.utc
ALICE = Actor("user", "alice", "10.1.2.3")
TOKEN = Actor("token", "cjt_AbCd1234", "192.0.2.7")


def entries(service) -> list:
    with service.engine.connect() as conn:
        return conn.execute(select(audit_table).order_by(audit_table.c.created_at,
                                                         audit_table.c.id)).all()


def only_entry(service):
    rows = entries(service)
    assert len(rows) == 1, [(r.action, r.target_id) for r in rows]
    return rows[0]


@pytest.fixture
def acme(make_tenant):
    return make_tenant("acme", "tier3")


def _failed_job(service):
    job = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(timeout=10, settle=0.2)
    return job


CHANGES = {
    # name: (do(service) -> expected target id, action, target type, before, after)
    "queue_job": (lambda s: s.queue_job("immediate", "noop", {}, "acme", actor=TOKEN).id,
                  "job_created", "job", None, None),
    "queue_notification": (
        lambda s: s.queue_notification("email", "a@example.com", "acme", subject="hi",
                                       body="x", actor=TOKEN).id,
        "job_created", "job", None, None),
    "queue_delayed_job": (
        lambda s: s.queue_delayed_job("noop", {}, timedelta(hours=1), "acme", actor=TOKEN).id,
        "job_created", "job", None, None),
    "queue_scheduled_job": (
        lambda s: s.queue_scheduled_job("Nightly", "0 2 * * *", "noop", {}, "acme",
                                        actor=TOKEN).id,
        "job_created", "job", None, None),
    "report": (
        lambda s: s.queue_job("immediate", "noop", {}, "acme", actor=ALICE,
                              audit_action="report_generated").id,
        "report_generated", "job", None, None),
    "cancel_job": (
        lambda s: s.cancel_job(s.queue_job("delayed", "noop", {}, "acme",
                                           delay=timedelta(hours=1)).id, actor=ALICE).id,
        "job_cancelled", "job", {"status": "pending"}, {"status": "cancelled"}),
    "retry_job": (lambda s: s.retry_job(_failed_job(s).id, actor=ALICE).id,
                  "job_retried", "job", {"status": "failed"}, {"status": "queued"}),
    "limits": (
        lambda s: s.tenants.set_tenant_config(TenantConfig.for_tier(
            "acme", "Acme", "tier3", {"jobLimits": {"maxQueuedJobs": 7}}), actor=ALICE
        ).tenant_id,
        "tenant_limits_changed", "tenant", {"max_queued_jobs": 200, "custom_settings": None},
        {"max_queued_jobs": 7, "custom_settings": {"jobLimits": {"maxQueuedJobs": 7}}}),
    "add_tenant": (
        lambda s: s.tenants.add_tenant_config(TenantConfig.for_tier("beta", "Beta", "tier1"),
                                              actor=ALICE).tenant_id,
        "tenant_added", "tenant", None, "any"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_change_writes_one_entry_naming_who_what_and_target(service, acme, change):
    do, action, target_type, before, after = CHANGES[change]
    target = do(service)
    entry = only_entry(service)
    actor = TOKEN if target_type == "job" and action == "job_created" else ALICE
    assert (entry.actor_kind, entry.actor_name, entry.actor_address) == (
        actor.kind, actor.name, actor.address)
    assert (entry.action, entry.target_type, entry.target_id) == (action, target_type, target)
    assert entry.tenant_id == target if target_type == "tenant" else entry.tenant_id == "acme"
    if target_type == "job":
        assert entry.job_ids == [target] and entry.job_count == 1
    assert entry.value_before == before
    if after == "any":
        assert entry.value_after["tier"] == "tier1"
    else:
        assert entry.value_after == after
    assert datetime.now(UTC) - entry.created_at < timedelta(minutes=1)
    assert entry.action in ACTIONS


def test_a_batch_is_one_entry_with_its_count_and_ids(service, acme):
    jobs = service.queue_batch_jobs([{"type": "immediate", "handler": "noop"}] * 5, "acme",
                                    actor=TOKEN)
    entry = only_entry(service)
    assert (entry.action, entry.job_count, entry.tenant_id) == ("jobs_created", 5, "acme")
    assert entry.job_ids == [job.id for job in jobs]


def test_a_big_batch_keeps_its_count_but_not_every_id(service, make_tenant):
    make_tenant("acme", "tier4")
    count = MAX_LISTED_JOB_IDS + 1
    service.queue_batch_jobs([{"type": "immediate", "handler": "noop"}] * count, "acme",
                             actor=TOKEN)
    entry = only_entry(service)
    assert (entry.job_count, entry.job_ids) == (count, None)


def test_bulk_verbs_write_one_entry_per_tenant_with_the_filter(service, make_tenant):
    make_tenant("acme", "tier3")
    make_tenant("beta", "tier3")
    ids = [service.queue_job("delayed", "noop", {}, tenant, delay=timedelta(hours=1)).id
           for tenant in ("acme", "acme", "beta")]
    outcome = service.cancel_jobs(ids + ["not-a-job"], actor=ALICE,
                                  described_as="status=pending")
    assert outcome.changed == 3
    rows = sorted(entries(service), key=lambda r: r.tenant_id)
    assert [(r.action, r.tenant_id, r.job_count) for r in rows] == [
        ("jobs_cancelled", "acme", 2), ("jobs_cancelled", "beta", 1)]
    assert sorted(rows[0].job_ids) == sorted(ids[:2])
    assert rows[0].details == {"filter": "status=pending"}
    service.retry_jobs(ids, actor=ALICE)
    assert [r.action for r in entries(service)].count("jobs_retried") == 2


REFUSALS = {
    "validation": lambda s: s.queue_job("immediate", "no_such_handler", {}, "acme",
                                        actor=TOKEN),
    "limit": lambda s: s.queue_job("file_processing", "noop", {}, "acme", actor=TOKEN),
    "batch over a limit": lambda s: s.queue_batch_jobs(
        [{"type": "immediate", "handler": "noop"}] * 201, "acme", actor=TOKEN),
    "cancel of a finished job": lambda s: s.cancel_job(_failed_job(s).id, actor=ALICE),
    "retry of a waiting job": lambda s: s.retry_job(
        s.queue_job("delayed", "noop", {}, "acme", delay=timedelta(hours=1)).id, actor=ALICE),
    "tenant id taken": lambda s: s.tenants.add_tenant_config(
        TenantConfig.for_tier("acme", "Again", "tier1"), actor=ALICE),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_refused_change_writes_no_entry(service, acme, refusal):
    with pytest.raises((JobValidationError, TenantLimitException, JobStateError)):
        REFUSALS[refusal](service)
    assert entries(service) == []


def test_without_an_actor_nothing_is_recorded(service, acme):
    job = service.queue_job("delayed", "noop", {}, "acme", delay=timedelta(hours=1))
    service.cancel_job(job.id)
    service.queue_batch_jobs([{"type": "immediate", "handler": "noop"}], "acme")
    assert entries(service) == []


def test_an_idempotent_repeat_records_only_the_first_creation(service, acme):
    for _ in range(2):
        service.queue_job("immediate", "noop", {}, "acme", idempotency_key="k", actor=TOKEN)
    assert [e.action for e in entries(service)] == ["job_created"]


def test_the_query_filters_and_scopes_by_tenant(service, make_tenant):
    make_tenant("acme", "tier3")
    make_tenant("beta", "tier3")
    service.queue_job("immediate", "noop", {}, "acme", actor=TOKEN)
    service.queue_job("immediate", "noop", {}, "beta", actor=ALICE)
    with service.engine.connect() as conn:
        def tenants(query):
            return sorted(r.tenant_id for r in conn.execute(query.select()))
        assert tenants(AuditQuery()) == ["acme", "beta"]
        assert tenants(AuditQuery(actor="alice")) == ["beta"]
        assert tenants(AuditQuery(tenant_scope=frozenset({"acme"}))) == ["acme"]
        assert tenants(AuditQuery(tenant_scope=frozenset())) == []
        assert tenants(AuditQuery(since=datetime.now(UTC) + timedelta(minutes=1))) == []


def test_pruning_deletes_only_entries_past_the_retention(service, acme):
    service.queue_job("immediate", "noop", {}, "acme", actor=TOKEN)
    with service.engine.begin() as conn:
        assert prune_entries(conn, 30, now=datetime.now(UTC) + timedelta(days=29)) == 0
        assert prune_entries(conn, 30, now=datetime.now(UTC) + timedelta(days=31)) == 1
    assert entries(service) == []


def test_migration_0010_matches_the_model(service):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from console.jobs.models import Base

    def ours(obj, name, kind, reflected, compare_to):
        table = obj if kind == "table" else getattr(obj, "table", None)
        return table is not None and table.name == "audit_entries"

    with service.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": ours})
        assert compare_metadata(context, Base.metadata) == []
