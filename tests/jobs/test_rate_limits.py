"""Rate limits in the engine: a tenant's starts per period and handlers' (for everyone or one
tenant) hold when jobs are claimed, never at queue time; a rate-limited tenant never holds
back another; changes apply at the next claim; the explainer names the limit exactly when the
claim passes the job by for it; bad limits are refused naming the field."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from console.jobs import JobStatus, JobValidationError, RateLimit, TenantConfig
from console.jobs.audit import Actor
from console.jobs.limits import JobLimitConfig
from console.jobs.models import audit_table, jobs_table, rate_limit_starts_table
from console.jobs.rates import key_state
from console.jobs.runner import Runner

UTC = timezone.utc
OPS = Actor("user", "ops")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def idle_runner(service):
    """A runner whose handler threads never start: each ``claim()`` is one dispatch cycle, and
    what it claimed stays ``processing``. Plenty of threads, so capacity never binds."""
    runner = Runner(service, threads=40, name="idle")
    runner._register_heartbeat()
    yield runner
    runner._pool.stop()


def claim(runner) -> set[str]:
    """The ids the next dispatch cycle claims."""
    before = {item.job.id for item in runner._pool.waiting_items()}
    runner._cycle()
    return {item.job.id for item in runner._pool.waiting_items()} - before


def queue(service, tenant, n, handler="noop"):
    return [service.queue_job("immediate", handler, {} if handler == "noop" else
                              {"seconds": 0}, tenant).id for _ in range(n)]


def codes(service, job_id):
    return [blocker.code for blocker in service.explain_job(job_id)]


def set_rate(service, tenant_id, rate, tier="tier4"):
    service.tenants.set_tenant_config(TenantConfig.for_tier(
        tenant_id, tenant_id.title(), tier, {"jobLimits": {"rateLimit": rate}}))


# -- what a limit means ------------------------------------------------------------------------

def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_window_counts_every_start_after_its_beginning_and_frees_with_its_oldest():
    limit = RateLimit(5, 10)
    entries = [(at(8), 2), (at(3), 3)]                    # newest first
    state = key_state("tenant:a", limit, entries, at(9))
    assert (state.started, state.allowed, state.next_start) == (5, 0, at(13))
    assert key_state("tenant:a", limit, entries, at(13)).allowed == 3   # the 3 at 3 s left
    assert key_state("tenant:a", limit, entries, at(18)).allowed == 5
    # A start logged by a clock a little ahead counts too.
    assert key_state("tenant:a", limit, [(at(9.5), 5)], at(9)).allowed == 0


def test_burst_caps_back_to_back_starts_at_the_same_rate():
    limit = RateLimit(6, 60, burst=2)                    # 2 per 20 s, 6 per minute
    assert limit.windows == ((6, 60.0), (2, 20.0))
    state = key_state("tenant:a", limit, [(at(0), 2)], at(1))
    assert (state.allowed, state.next_start) == (0, at(20))
    state = key_state("tenant:a", limit, [(at(40), 2), (at(20), 2), (at(0), 2)], at(41))
    assert (state.allowed, state.next_start) == (0, at(60))   # the minute's 6, then the burst's
    assert RateLimit(6, 60).windows == ((6, 60.0),)        # burst defaults to count


@pytest.mark.parametrize("value, words", [
    ({"count": 0, "periodSeconds": 1}, "count must be a whole number from 1"),
    ({"count": 1.5, "periodSeconds": 1}, "count must be a whole number"),
    ({"count": True, "periodSeconds": 1}, "count must be a whole number"),
    ({"count": 5, "periodSeconds": 0}, "period_seconds must be a number from 0.001"),
    ({"count": 5, "periodSeconds": 31 * 86400}, "period_seconds must be a number"),
    ({"count": 5, "periodSeconds": "1"}, "period_seconds must be a number"),
    ({"count": 5, "periodSeconds": 1, "burst": 6}, "burst must be a whole number from 1 to "
                                                    "count (5)"),
    ({"count": 5, "periodSeconds": 1, "burst": 0}, "burst must be"),
    ({"count": 5, "period": 1}, "unknown key(s) period"),
    ([5, 1], 'an object {"count", "periodSeconds", "burst"}'),
])
def test_bad_rate_limits_are_refused_naming_the_field(value, words):
    with pytest.raises(JobValidationError) as refused:
        TenantConfig.for_tier("t", "T", "tier2", {"jobLimits": {"rateLimit": value}})
    assert refused.value.field == "jobLimits.rateLimit"
    assert words in refused.value.message
    with pytest.raises(ValueError, match="rate_limit: "):
        JobLimitConfig(rate_limit=value)


def test_a_rate_limit_reads_from_camel_case_and_from_the_engine_type():
    config = TenantConfig.for_tier("t", "T", "tier2", {"jobLimits": {
        "rateLimit": {"count": 20, "periodSeconds": 2, "burst": 5}}})
    assert config.job_limit.rate_limit == RateLimit(20, 2.0, 5)
    assert str(config.job_limit.rate_limit) == "20 per 2 s (burst 5)"
    assert config.job_limit.as_dict()["rate_limit"] == RateLimit(20, 2, 5)
    cleared = TenantConfig.for_tier("t", "T", "tier1", {"jobLimits": {"rateLimit": None}})
    assert cleared.job_limit.rate_limit is None
    assert JobLimitConfig.for_tier("tier1").rate_limit == RateLimit(60, 60)
    assert [JobLimitConfig.for_tier(t).rate_limit for t in ("tier2", "tier3", "tier4")] == [
        None, None, None]


def test_a_tenants_rate_limit_is_stored_and_read_back(service, make_tenant):
    make_tenant("acme", rateLimit={"count": 7, "periodSeconds": 0.5, "burst": 2})
    assert service.tenants.get_tenant_config("acme").job_limit.rate_limit == RateLimit(7, 0.5, 2)
    make_tenant("small", "tier1")
    assert service.tenants.get_tenant_config("small").job_limit.rate_limit == RateLimit(60, 60)


# -- claims ------------------------------------------------------------------------------------

def test_a_tenants_limit_holds_at_the_claim_and_the_explainer_names_it(service, make_tenant,
                                                                       idle_runner):
    make_tenant("acme", rateLimit={"count": 3, "periodSeconds": 60})
    jobs = queue(service, "acme", 5)                    # queueing is never refused
    first = claim(idle_runner)
    assert first == set(jobs[:3])
    assert claim(idle_runner) == set()
    waiting = jobs[3]
    assert service.get_job_by_id(waiting).status is JobStatus.QUEUED
    [blocker] = service.explain_job(waiting)
    assert blocker.code == "rate_limit"
    assert blocker.details["scope"] == "tenant" and blocker.details["tenant_id"] == "acme"
    assert blocker.details["started_in_period"] == 3 and blocker.details["count"] == 3
    next_start = datetime.fromisoformat(blocker.details["next_start_at"])
    claimed_at = service.get_job_by_id(jobs[0]).last_attempt
    assert next_start == claimed_at + timedelta(seconds=60)
    assert "tenant acme's rate limit, 3 per 60 s: 3 started in the last 60 s" in blocker.message

    set_rate(service, "acme", None)                     # lifted: in effect at the next claim
    assert codes(service, waiting) != ["rate_limit"]
    assert claim(idle_runner) == set(jobs[3:])


def test_burst_lets_only_so_many_start_back_to_back(service, make_tenant, idle_runner):
    make_tenant("acme", rateLimit={"count": 6, "periodSeconds": 60, "burst": 2})
    jobs = queue(service, "acme", 4)
    assert claim(idle_runner) == set(jobs[:2])
    assert claim(idle_runner) == set()
    [blocker] = service.explain_job(jobs[2])
    assert blocker.code == "rate_limit" and blocker.details["burst"] == 2
    assert blocker.details["allowed_now"] == 0 and 19 < blocker.details["in_seconds"] <= 20


def test_a_rate_limited_tenant_never_holds_back_another(service, make_tenant):
    make_tenant("acme", rateLimit={"count": 1, "periodSeconds": 60})
    make_tenant("globex")
    acme = queue(service, "acme", 10)
    globex = queue(service, "globex", 3)
    assert claim_of_two(service) == ({acme[0], globex[0]}, {("acme", "rate_limit"): 1})
    # acme's limit leaves it out entirely: globex gets the whole capacity.
    assert claim_of_two(service) == (set(globex[1:]), {("acme", "rate_limit"): 1})


def claim_of_two(service):
    """What a claim with room for two jobs takes, and the tenants it held back by which limit."""
    runner = Runner(service, threads=2, name="small")
    try:
        return claim(runner), runner._held_back
    finally:
        runner._pool.stop()


def test_a_handler_limit_for_everyone_is_shared_by_every_tenant(service, make_tenant,
                                                                 idle_runner):
    make_tenant("acme")
    make_tenant("globex")
    service.set_handler_rate_limit("noop", RateLimit(3, 60), by=OPS)
    limited = queue(service, "acme", 3) + queue(service, "globex", 3)
    other = queue(service, "acme", 2, handler="sleeps")
    claimed = claim(idle_runner)
    assert len(claimed & set(limited)) == 3 and set(other) <= claimed
    assert {service.get_job_by_id(j).tenant_id for j in claimed & set(limited)} == {
        "acme", "globex"}                                   # shared fairly
    assert claim(idle_runner) == set()
    held = next(j for j in limited if j not in claimed)
    [blocker] = service.explain_job(held)
    assert blocker.code == "rate_limit" and blocker.details["scope"] == "handler"
    assert blocker.details["handler"] == "noop" and blocker.details["tenant_id"] is None
    assert "handler noop's rate limit for every tenant" in blocker.message
    assert {key for key, in _logged_keys(service)} == {"handler:noop"}

    service.set_handler_rate_limit("noop", RateLimit(5, 60), by=OPS)   # raised: 2 more
    assert len(claim(idle_runner)) == 2
    service.set_handler_rate_limit("noop", None, by=OPS)
    assert len(claim(idle_runner)) == 1
    assert _logged_keys(service) == []                  # a removed limit's log goes with it


def _logged_keys(service):
    with service.engine.connect() as conn:
        return conn.execute(select(rate_limit_starts_table.c.key).distinct()).all()


def test_a_handler_limit_for_one_tenant_holds_only_its_jobs(service, make_tenant, idle_runner):
    make_tenant("acme")
    make_tenant("globex")
    service.set_handler_rate_limit("noop", {"count": 1, "periodSeconds": 60}, tenant_id="acme",
                                   by=OPS)
    acme = queue(service, "acme", 3)
    globex = queue(service, "globex", 3)
    acme_other = queue(service, "acme", 1, handler="sleeps")
    assert claim(idle_runner) == {acme[0], *globex, *acme_other}
    assert claim(idle_runner) == set()
    [blocker] = service.explain_job(acme[1])
    assert blocker.details["tenant_id"] == "acme" and blocker.details["handler"] == "noop"
    assert "handler noop's rate limit for tenant acme" in blocker.message


def test_the_lower_of_a_tenants_and_a_handlers_limit_holds(service, make_tenant, idle_runner):
    make_tenant("acme", rateLimit={"count": 4, "periodSeconds": 60})
    service.set_handler_rate_limit("noop", RateLimit(2, 60))
    noop = queue(service, "acme", 3)
    sleeps = queue(service, "acme", 3, handler="sleeps")
    claimed = claim(idle_runner)
    assert len(claimed) == 4 and len(claimed & set(noop)) == 2
    assert claim(idle_runner) == set()
    assert {b.code for j in set(noop + sleeps) - claimed for b in service.explain_job(j)} == {
        "rate_limit"}


def test_changes_take_effect_at_the_next_claim(service, make_tenant, idle_runner):
    make_tenant("acme", rateLimit={"count": 2, "periodSeconds": 60})
    jobs = queue(service, "acme", 8)
    assert len(claim(idle_runner)) == 2
    set_rate(service, "acme", {"count": 5, "periodSeconds": 60})   # 3 more in this minute
    assert len(claim(idle_runner)) == 3
    set_rate(service, "acme", {"count": 1, "periodSeconds": 60})   # lowered below what ran
    assert claim(idle_runner) == set()
    assert codes(service, jobs[-1]) == ["rate_limit"]


def test_a_runner_with_only_rate_limited_work_wakes_when_the_limit_allows(service,
                                                                          make_tenant):
    """run_until_idle keeps going while a limit holds due work back, and every window of the
    period holds at most ``count`` claims (claim times are what the limit counts)."""
    make_tenant("acme", rateLimit={"count": 4, "periodSeconds": 0.5})
    jobs = queue(service, "acme", 12)
    began = time.monotonic()
    assert service.run_until_idle(timeout=20, settle=0.2) == 12
    assert time.monotonic() - began >= 1.0                 # three windows' worth
    with service.engine.connect() as conn:
        claimed = sorted(conn.execute(select(jobs_table.c.last_attempt)
                                      .where(jobs_table.c.id.in_(jobs))).scalars())
    for i, start in enumerate(claimed):
        inside = [t for t in claimed[i:] if t < start + timedelta(seconds=0.5)]
        assert len(inside) <= 4, claimed


def test_rate_limited_waits_are_counted_for_health(service, make_tenant, idle_runner):
    make_tenant("acme", rateLimit={"count": 1, "periodSeconds": 60})
    queue(service, "acme", 3)
    claim(idle_runner)
    claim(idle_runner)
    claim(idle_runner)
    idle_runner.renew_leases()   # held-back claims are written with the lease renewal
    usage = service.get_tenant_job_usage("acme")
    assert usage.limit_rejections == {"rate_limit": 3}
    assert usage.current_usage["rate_limit_starts"] == 1
    assert "rate_limit: 1 of 1 used (100%) in the last 60 s" in usage.warnings
    assert ("jobs waited on a rate limit (the tenant's rate_limit 1 per 60 s, or a handler's) "
            "in 3 claims") in usage.warnings
    health = service.get_tenant_job_health("acme")
    assert health["signals"]["rate_limited_claims_24h"] == 3
    assert health["signals"]["refused_24h"] == 0             # waits are not refusals
    trends = service.get_job_trends(tenant_id="acme")
    assert sum(trends["limit_rejections"]) == 0             # nor in the refusals' series


def test_setting_a_handler_limit_is_audited_and_checked(service, make_tenant):
    make_tenant("acme")
    assert service.set_handler_rate_limit("noop", RateLimit(10, 1), by=OPS) == RateLimit(10, 1)
    service.set_handler_rate_limit("noop", RateLimit(10, 1), by=OPS)      # unchanged: no entry
    service.set_handler_rate_limit("noop", RateLimit(5, 1, 2), tenant_id="acme", by=OPS)
    assert service.set_handler_rate_limit("noop", None, by=OPS) is None
    with service.engine.connect() as conn:
        entries = conn.execute(select(audit_table.c.action, audit_table.c.tenant_id,
                                      audit_table.c.value_before, audit_table.c.value_after)
                               .order_by(audit_table.c.id)).all()
    limit = {"count": 10, "period_seconds": 1.0, "burst": None}
    assert entries == [
        ("handler_rate_limit_set", None, None, limit),
        ("handler_rate_limit_set", "acme", None, {"count": 5, "period_seconds": 1.0,
                                                  "burst": 2}),
        ("handler_rate_limit_removed", None, limit, None)]
    [left] = service.handler_rate_limits()
    assert (left.handler, left.tenant_id, left.set_by) == ("noop", "acme", "ops")
    with pytest.raises(JobValidationError, match="^handler: unknown handler 'nope'"):
        service.set_handler_rate_limit("nope", RateLimit(1, 1))
    with pytest.raises(JobValidationError, match="^tenant_id: unknown tenant"):
        service.set_handler_rate_limit("noop", RateLimit(1, 1), tenant_id="nobody")
    with pytest.raises(JobValidationError, match="^rate_limit: burst must be"):
        service.set_handler_rate_limit("noop", {"count": 1, "periodSeconds": 1, "burst": 3})
