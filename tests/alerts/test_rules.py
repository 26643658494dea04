"""Each rule kind fires when, and only when, its condition holds, and resolves when it stops —
driven by real jobs: queued, run by handlers that succeed, fail or sleep, held by limits."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from console.alerts.operations import ensure_operations_tenant
from console.alerts.scheduling import EVALUATE_HANDLER
from console.jobs import TenantConfig
from console.jobs.runner import Runner
from tests.alerts.conftest import alerts_of, firing_subjects, run_jobs
from tests.support import wait_until


def queue_runs(service, tenant: str, ok: int = 0, failed: int = 0, handler: str = "sleeps"):
    """``ok`` runs that complete and ``failed`` runs that fail (no retries), then run them."""
    specs = [{"type": "immediate", "handler": handler, "max_retries": 0,
              "payload": {"ms": 1} if handler == "sleeps" else {"failures": 0}}] * ok
    specs += [{"type": "immediate", "handler": "always_fails" if handler == "sleeps" else handler,
               "max_retries": 0, "payload": {} if handler == "sleeps" else {"failures": 1}}
              ] * failed
    service.queue_batch_jobs(specs, tenant)
    run_jobs(service)


def test_queue_backlog_fires_above_n_queued_jobs_and_resolves_when_they_run(
        service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    rule = add_rule("queue_backlog", 2)
    for _ in range(3):   # waiting for their time: not backlog
        service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    evaluate()
    assert firing_subjects(service, rule) == {}            # 2 queued: not above 2

    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    outcome = evaluate()
    assert firing_subjects(service, rule) == {"tenant:acme": 3.0}
    [alert] = alerts_of(service, rule)
    assert outcome.fired == [alert.id]
    assert alert.message == ("Tenant acme: queue backlog is 3 queued jobs, above the threshold "
                             "of 2 queued jobs")
    assert "add runner capacity" in alert.recommendation

    evaluate()
    assert len(alerts_of(service, rule)) == 1              # still the same episode
    run_jobs(service)
    outcome = evaluate()
    [alert] = alerts_of(service, rule)
    assert outcome.resolved == [alert.id] and alert.state == "resolved"
    assert alert.open_key is None and alert.resolved_at is not None
    assert alert.resolution.startswith("queue backlog is back to 0 queued jobs")


def test_system_and_each_tenant_scopes(service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    make_tenant("globex")
    make_tenant("initech")
    system = add_rule("queue_backlog", 3, scope="system")
    each = add_rule("queue_backlog", 1, scope="each_tenant")
    for tenant, count in (("acme", 3), ("globex", 2), ("initech", 1)):
        for _ in range(count):
            service.queue_job("immediate", "sleeps", {}, tenant)
    evaluate()
    assert firing_subjects(service, system) == {"system": 6.0}
    [alert] = alerts_of(service, system)
    assert alert.tenant_id is None
    assert "Most from: acme, globex, initech." in alert.recommendation
    assert firing_subjects(service, each) == {"tenant:acme": 3.0, "tenant:globex": 2.0}


def test_oldest_queued_job_fires_once_a_job_waited_longer_than_t(
        service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    rule = add_rule("oldest_queued_job", 1)
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    evaluate()
    assert firing_subjects(service, rule) == {}
    time.sleep(1.1)
    evaluate()
    [alert] = alerts_of(service, rule, "firing")
    assert alert.value > 1.0
    assert alert.message.startswith("Tenant acme: wait of the oldest queued job is 1 s")
    run_jobs(service)
    evaluate()
    assert firing_subjects(service, rule) == {}


def test_success_rate_fires_below_r_with_enough_runs_and_resolves(
        service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    rule = add_rule("success_rate", 50, window_hours=1)
    queue_runs(service, "acme", failed=5)
    evaluate()
    assert firing_subjects(service, rule) == {}            # 5 runs: too few to judge
    queue_runs(service, "acme", ok=5)
    evaluate()
    assert firing_subjects(service, rule) == {}            # 50 %: not below 50 %
    queue_runs(service, "acme", failed=5)
    evaluate()
    assert firing_subjects(service, rule) == {"tenant:acme": pytest.approx(500 / 15)}
    [alert] = alerts_of(service, rule)
    assert alert.message == ("Tenant acme: success rate is 33.3 % (15 runs) over the last 1 h, "
                             "below the threshold of 50 %")
    assert alert.recommendation.startswith("Look at the Failures screen")
    assert "Health report of acme: always_fails failed 100% of 10 runs in 24 h" \
        in alert.recommendation
    queue_runs(service, "acme", ok=5)                      # 10 of 20: 50 %
    evaluate()
    assert firing_subjects(service, rule) == {}
    assert alerts_of(service, rule)[0].resolution.startswith("success rate is back to 50 %")


def test_health_score_fires_per_tenant_below_s(service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    make_tenant("globex")
    rule = add_rule("health_score", 70, scope="each_tenant")
    queue_runs(service, "acme", failed=10)                 # success penalty 40: score 60
    queue_runs(service, "globex", ok=10)
    evaluate()
    assert firing_subjects(service, rule) == {"tenant:acme": 60.0}
    [alert] = alerts_of(service, rule)
    assert alert.message == ("Tenant acme: health score is 60 (warning), below the threshold "
                             "of 70")
    assert "Health report of acme: always_fails failed 100% of 10 runs in 24 h" \
        in alert.recommendation
    queue_runs(service, "acme", ok=17)                     # 17 of 27: penalty 29.6, score 70.4
    evaluate()
    assert firing_subjects(service, rule) == {}


def test_limit_usage_fires_above_p_percent_of_a_limit(service, make_tenant, add_rule, evaluate):
    make_tenant("acme", "tier2", maxQueuedJobs=4, maxDailyJobs=10)
    queued = add_rule("limit_usage", 50, limit_name="max_queued_jobs")
    daily = add_rule("limit_usage", 20, limit_name="max_daily_jobs")
    jobs = [service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
            for _ in range(2)]
    evaluate()
    assert firing_subjects(service, queued) == {} and firing_subjects(service, daily) == {}
    jobs.append(service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme"))
    evaluate()
    assert firing_subjects(service, queued) == {"tenant:acme": 75.0}
    assert firing_subjects(service, daily) == {"tenant:acme": 30.0}
    assert "max_queued_jobs usage is 75 % (3 of 4), above the threshold of 50 %" in (
        alerts_of(service, queued)[0].message)
    service.cancel_job(jobs[0].id)
    evaluate()
    assert firing_subjects(service, queued) == {}
    assert firing_subjects(service, daily) == {"tenant:acme": 30.0}   # the day's count stays


def test_limit_usage_of_concurrency_and_stuck_jobs_past_max_job_duration(
        service, make_tenant, add_rule, evaluate):
    """A runner of this process runs two slow jobs: the tenant uses all its concurrency. Its
    max_job_duration is then lowered under them: the runner keeps the deadline it claimed
    them with, so they run on past the new limit — stuck, until they finish."""
    config = make_tenant("acme", "tier2", maxConcurrentJobs=2, maxJobDuration=60_000)
    concurrency = add_rule("limit_usage", 50, limit_name="max_concurrent_jobs")
    stuck = add_rule("stuck_jobs", 1)
    runner = Runner(service, threads=2).start()
    try:
        jobs = [service.queue_job("immediate", "sleeps", {"ms": 3500}, "acme") for _ in range(2)]
        wait_until(lambda: service.count_jobs("acme", ["processing"]) == 2, timeout=10,
                   what="both jobs to start")
        service.tenants.set_tenant_config(TenantConfig.for_tier(
            "acme", config.name, "tier2", {"jobLimits": {"maxConcurrentJobs": 2,
                                                         "maxJobDuration": 100}}))
        evaluate()
        assert firing_subjects(service, concurrency) == {"tenant:acme": 100.0}
        assert firing_subjects(service, stuck) == {}       # not yet past limit + grace (2 s)
        wait_until(lambda: evaluate() and firing_subjects(service, stuck), timeout=10,
                   interval=0.5, what="the stuck-jobs rule to fire")
        assert firing_subjects(service, stuck) == {"tenant:acme": 2.0}
        wait_until(lambda: all(service.get_job_by_id(j.id).status.value == "completed"
                               for j in jobs), timeout=10, what="the jobs to finish")
    finally:
        runner.stop(grace=1)
    evaluate()
    assert firing_subjects(service, concurrency) == {} and firing_subjects(service, stuck) == {}


def test_handler_failure_rate_fires_above_r_for_that_handler_only(
        service, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    make_tenant("globex")
    rule = add_rule("handler_failure_rate", 50, scope="system", window_hours=2,
                    handler="fails_n_times")
    queue_runs(service, "acme", failed=10)                 # another handler failing
    queue_runs(service, "acme", ok=3, failed=3, handler="fails_n_times")
    queue_runs(service, "globex", ok=2, failed=2, handler="fails_n_times")
    evaluate()
    assert firing_subjects(service, rule) == {}            # 5 of 10: 50 %, not above
    queue_runs(service, "globex", failed=1, handler="fails_n_times")
    evaluate()
    assert firing_subjects(service, rule) == {"system": pytest.approx(600 / 11)}
    assert alerts_of(service, rule)[0].message == (
        "System: failure rate of handler fails_n_times is 54.5 % (11 runs) over the last 2 h, "
        "above the threshold of 50 %")
    queue_runs(service, "acme", ok=1, handler="fails_n_times")
    evaluate()
    assert firing_subjects(service, rule) == {}            # 6 of 12: 50 %


def test_system_figures_leave_out_the_operations_tenants_own_jobs(
        app, service, make_tenant, add_rule, evaluate):
    """An evaluation a minute is 1,440 successful runs a day: counted, they would hide a quiet
    system's failures (here 8 of 10 runs succeed: 80 %, not 95 % with 30 evaluations)."""
    make_tenant("acme")
    rule = add_rule("success_rate", 90, scope="system", window_hours=1)
    ops = ensure_operations_tenant(service, app.config).tenant_id
    service.queue_batch_jobs([{"type": "immediate", "handler": EVALUATE_HANDLER}] * 30, ops)
    queue_runs(service, "acme", ok=8, failed=2)
    evaluate()
    assert firing_subjects(service, rule) == {"system": 80.0}
