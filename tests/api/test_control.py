"""Operator control through the API: pausing and resuming tenants, handlers and jobs (and that
runners honour it), run now, explanations, the pauses in force and the runners — each with its
scope, and each refusal with its status, the field it names, and nothing stored."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from console.jobs.models import audit_table, runners_table
from console.jobs.runner import Runner
from tests.api.conftest import queue

UTC = timezone.utc


def run(service) -> None:
    service.run_until_idle(timeout=3, settle=0.5)


def status(api, job_id: str) -> str:
    return api("get", f"/jobs/{job_id}").get_json()["status"]


def blocker_codes(api, job_id: str, token: str = "admin") -> list[str]:
    response = api("get", f"/jobs/{job_id}/explain", token=token)
    assert response.status_code == 200, response.get_json()
    return [b["code"] for b in response.get_json()["blockers"]]


def audit_entries(service, action: str) -> list:
    with service.engine.connect() as conn:
        return conn.execute(select(audit_table).where(audit_table.c.action == action)).all()


# -- tenants -------------------------------------------------------------------------------

def test_a_paused_tenants_jobs_wait_until_it_is_resumed(api, service, tokens):
    held, other = queue(api), queue(api, tenant="globex")
    response = api("post", "/tenants/acme/pause", token="acme",
                   json={"reason": "billing dispute"})
    assert response.status_code == 200, response.get_json()
    state = response.get_json()
    assert state["tenant_id"] == "acme" and state["also_held_by"] == []
    pause = state["paused"]
    assert (pause["scope"], pause["tenant_id"], pause["reason"], pause["paused_by"]) == (
        "tenant", "acme", "billing dispute", tokens["acme"][:12])
    assert pause["what"] == "tenant acme"
    assert datetime.fromisoformat(pause["paused_at"]).tzinfo is not None
    assert api("get", "/tenants/acme/limits").get_json()["paused"] == pause

    run(service)
    assert status(api, held["id"]) == "queued"
    assert status(api, other["id"]) == "completed"          # only acme is paused
    assert "paused" in blocker_codes(api, held["id"])

    resumed = api("post", "/tenants/acme/resume", token="acme")
    assert resumed.status_code == 200
    assert resumed.get_json() == {"tenant_id": "acme", "paused": None, "also_held_by": []}
    assert api("get", "/tenants/acme/limits").get_json()["paused"] is None
    assert "paused" not in blocker_codes(api, held["id"])
    run(service)
    assert status(api, held["id"]) == "completed"


def test_pausing_twice_keeps_the_first_pause_and_resuming_twice_is_harmless(api, service):
    first = api("post", "/tenants/acme/pause", json={"reason": "first"}).get_json()["paused"]
    again = api("post", "/tenants/acme/pause", json={"reason": "second"}).get_json()["paused"]
    assert again == first and again["reason"] == "first"
    assert len(audit_entries(service, "tenant_paused")) == 1
    for _ in range(2):
        response = api("post", "/tenants/acme/resume")
        assert response.status_code == 200 and response.get_json()["paused"] is None
    assert len(audit_entries(service, "tenant_resumed")) == 1


def test_a_tenant_sees_the_other_pauses_that_still_hold_its_work(api, service):
    service.pause_handler("noop", "acme", reason="noisy")
    state = api("post", "/tenants/acme/resume", token="acme").get_json()
    assert [(p["scope"], p["handler"], p["tenant_id"]) for p in state["also_held_by"]] == [
        ("handler", "noop", "acme")]


def test_a_tenant_token_cannot_pause_another_tenant(api, service):
    for path in ("/tenants/globex/pause", "/tenants/globex/resume", "/tenants/nowhere/pause"):
        response = api("post", path, token="acme")
        assert response.status_code == 404, path
        assert response.get_json()["detail"].startswith("There is no tenant")
    assert not service.pauses()
    assert audit_entries(service, "tenant_paused") == []


# -- handlers ------------------------------------------------------------------------------

def test_a_tenant_token_pauses_a_handler_for_its_own_tenant_only(api, service):
    mine, theirs = queue(api), queue(api, tenant="globex")
    response = api("post", "/handlers/noop/pause", token="acme", json={"reason": "too many"})
    assert response.status_code == 200, response.get_json()
    state = response.get_json()
    assert (state["handler"], state["tenant_id"]) == ("noop", "acme")
    assert (state["paused"]["scope"], state["paused"]["tenant_id"]) == ("handler", "acme")
    pauses = api("get", "/pauses", token="all").get_json()["pauses"]
    assert [(p["scope"], p["handler"], p["tenant_id"]) for p in pauses] == [
        ("handler", "noop", "acme")]

    run(service)
    assert (status(api, mine["id"]), status(api, theirs["id"])) == ("queued", "completed")
    assert "paused" in blocker_codes(api, mine["id"], token="acme")

    resumed = api("post", "/handlers/noop/resume", token="acme")
    assert resumed.status_code == 200 and resumed.get_json()["paused"] is None
    run(service)
    assert status(api, mine["id"]) == "completed"


def test_a_handler_for_every_tenant_needs_an_admin_token(api, service):
    refused = api("post", "/handlers/noop/pause", token="all", json={"reason": "x"})
    assert refused.status_code == 403 and "admin token" in refused.get_json()["detail"]
    assert not service.pauses()
    assert api("post", "/handlers/noop/resume", token="all").status_code == 403

    one = api("post", "/handlers/noop/pause", token="all", json={"tenant_id": "globex"})
    assert one.status_code == 200 and one.get_json()["tenant_id"] == "globex"
    everyone = api("post", "/handlers/noop/pause", token="admin")
    assert everyone.status_code == 200
    assert everyone.get_json()["tenant_id"] is None
    assert everyone.get_json()["paused"]["what"] == "handler noop for every tenant"
    job = queue(api)
    run(service)
    assert status(api, job["id"]) == "queued"
    assert api("post", "/handlers/noop/resume", token="admin").get_json()["paused"] is None
    # The pause for globex is its own: lifting the one for everyone leaves it.
    assert [p["tenant_id"] for p in api("get", "/pauses").get_json()["pauses"]] == ["globex"]


def test_a_tenant_token_names_only_its_own_tenant_for_a_handler(api, service):
    response = api("post", "/handlers/noop/pause", token="acme", json={"tenant_id": "globex"})
    assert response.status_code == 404
    assert not service.pauses()


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_an_unknown_handler_is_422_naming_it(api, service, verb):
    response = api("post", f"/handlers/nope/{verb}", token="acme")
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["errors"][0]["field"] == "handler"
    assert problem["errors"][0]["in"] == "path"
    assert "unknown handler 'nope'" in problem["detail"]
    assert not service.pauses()


def test_an_unknown_tenant_for_a_handler_is_422_naming_it(api, service):
    for verb in ("pause", "resume"):
        response = api("post", f"/handlers/noop/{verb}", json={"tenant_id": "nowhere"})
        assert response.status_code == 422
        assert response.get_json()["errors"][0]["field"] == "tenant_id"
    assert not service.pauses()


def test_a_paused_handler_stays_liftable_when_no_runner_has_it_any_more(api, service,
                                                                       monkeypatch):
    service.pause_handler("noop", "acme")
    names = service.handlers.names()
    monkeypatch.setattr(service.handlers, "names", lambda: [n for n in names if n != "noop"])
    assert api("post", "/handlers/noop/pause", token="globex").status_code == 422
    response = api("post", "/handlers/noop/resume", token="acme")
    assert response.status_code == 200 and response.get_json()["paused"] is None
    assert not service.pauses()


# -- jobs ----------------------------------------------------------------------------------

def test_a_paused_job_stays_pending_until_resumed(api, service, tokens):
    job = queue(api, token="acme")
    response = api("post", f"/jobs/{job['id']}/pause", token="acme", json={"reason": "check"})
    assert response.status_code == 200, response.get_json()
    paused = response.get_json()
    assert paused["status"] == "pending"
    assert (paused["paused"]["scope"], paused["paused"]["job_id"], paused["paused"]["reason"]) \
        == ("job", job["id"], "check")
    run(service)
    assert api("get", f"/jobs/{job['id']}").get_json()["paused"]["job_id"] == job["id"]
    assert status(api, job["id"]) == "pending"
    assert "paused" in blocker_codes(api, job["id"], token="acme")

    resumed = api("post", f"/jobs/{job['id']}/resume", token="acme")
    assert resumed.status_code == 200
    assert resumed.get_json()["paused"] is None
    assert "paused" not in blocker_codes(api, job["id"])
    run(service)
    assert status(api, job["id"]) == "completed"
    (entry,) = audit_entries(service, "job_paused")
    assert (entry.actor_kind, entry.actor_name, entry.job_ids) == (
        "token", tokens["acme"][:12], [job["id"]])


def test_a_job_list_shows_each_jobs_own_pause(api):
    paused, plain = queue(api), queue(api)
    api("post", f"/jobs/{paused['id']}/pause")
    jobs = {j["id"]: j["paused"] for j in api("get", "/jobs").get_json()["jobs"]}
    assert jobs[plain["id"]] is None and jobs[paused["id"]]["job_id"] == paused["id"]


def test_a_finished_job_cannot_be_paused(api, service):
    job = queue(api)
    run(service)
    response = api("post", f"/jobs/{job['id']}/pause")
    assert response.status_code == 409
    assert response.get_json()["type"] == "/api/v1/problems/job-state"
    assert "completed" in response.get_json()["detail"]
    assert not service.pauses()


def test_run_now_runs_a_delayed_job(api, service):
    job = queue(api, token="acme", delay_seconds=3600)
    run(service)
    assert status(api, job["id"]) == "pending"
    response = api("post", f"/jobs/{job['id']}/run-now", token="acme")
    assert response.status_code == 200, response.get_json()
    now = response.get_json()
    assert (now["id"], now["status"]) == (job["id"], "queued")
    run(service)
    assert status(api, job["id"]) == "completed"
    assert len(audit_entries(service, "job_run_now")) == 1


def test_run_now_of_a_cron_job_runs_a_copy_and_keeps_the_schedule(api, service, tokens):
    cron = queue(api, token="acme", type="recurring", cron_schedule="0 3 * * *")
    response = api("post", f"/jobs/{cron['id']}/run-now", token="acme")
    assert response.status_code == 200, response.get_json()
    copy = response.get_json()
    assert copy["id"] != cron["id"] and copy["metadata"]["run_now_of"] == cron["id"]
    assert copy["status"] == "queued" and copy["cron_schedule"] is None
    run(service)
    assert status(api, copy["id"]) == "completed"
    original = api("get", f"/jobs/{cron['id']}").get_json()
    assert original["status"] == "pending"
    assert original["scheduled_for"] == cron["scheduled_for"]
    (entry,) = audit_entries(service, "job_run_now")
    assert (entry.actor_name, entry.tenant_id) == (tokens["acme"][:12], "acme")


def test_run_now_of_a_cron_job_respects_the_queue_limit(api, service, make_tenant):
    make_tenant("acme", "tier2", "Acme", maxQueuedJobs=1)
    cron = queue(api, type="recurring", cron_schedule="0 3 * * *")
    response = api("post", f"/jobs/{cron['id']}/run-now", token="acme")
    assert response.status_code == 429
    assert response.get_json()["limit_type"] == "max_queued_jobs"
    assert service.count_jobs("acme") == 1


@pytest.mark.parametrize("state", ["queued", "paused", "completed"])
def test_run_now_refuses_a_job_it_cannot_start(api, service, state):
    job = queue(api, delay_seconds=0 if state != "paused" else 3600)
    if state == "paused":
        api("post", f"/jobs/{job['id']}/pause")
    if state == "completed":
        run(service)
    response = api("post", f"/jobs/{job['id']}/run-now")
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["type"] == "/api/v1/problems/job-state"
    assert audit_entries(service, "job_run_now") == []


def test_a_tenant_token_cannot_touch_another_tenants_job(api, service):
    job = queue(api, tenant="globex", delay_seconds=3600)
    for method, verb in (("post", "pause"), ("post", "resume"), ("post", "run-now"),
                         ("get", "explain")):
        response = api(method, f"/jobs/{job['id']}/{verb}", token="acme")
        assert response.status_code == 404, verb
    assert not service.pauses()
    assert status(api, job["id"]) == "pending"


# -- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/tenants/acme/pause", "/handlers/noop/pause",
                                  "/jobs/{job}/pause"])
@pytest.mark.parametrize("reason,words", [("x" * 501, "Longer than maximum length 500"),
                                          ("a\u0000b", "NUL"), (5, "must be a string")])
def test_a_bad_reason_is_422_and_stores_nothing(api, service, path, reason, words):
    path = path.replace("{job}", queue(api)["id"])
    response = api("post", path, token="acme", json={"reason": reason})
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["errors"][0]
    assert error["field"] == "reason" and words in error["message"]
    assert not service.pauses()
    with service.engine.connect() as conn:
        assert conn.execute(select(audit_table).where(
            audit_table.c.action.like("%paused"))).all() == []


def test_a_reason_of_500_characters_is_kept(api):
    response = api("post", "/tenants/acme/pause", json={"reason": "x" * 500})
    assert response.status_code == 200
    assert api("get", "/pauses").get_json()["pauses"][0]["reason"] == "x" * 500


def test_unknown_fields_are_refused(api, service):
    response = api("post", "/tenants/acme/pause", json={"reson": "typo"})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "reson"
    assert not service.pauses()


# -- explanations --------------------------------------------------------------------------

def _live_runner(service, handlers=("noop",)) -> None:
    """A runner's heartbeat row, as a live runner on another machine would write it."""
    now = datetime.now(UTC)
    with service.engine.begin() as conn:
        conn.execute(runners_table.insert().values(
            id="elsewhere:1", hostname="elsewhere", pid=1, threads=4, started_at=now,
            heartbeat_at=now, handlers=list(handlers), busy_threads=0, jobs_held=0,
            claims_per_minute=30))


def test_an_explanation_names_no_other_tenant_to_a_tenant_token(api, service):
    _live_runner(service)
    for _ in range(3):
        queue(api, tenant="globex")
    job = queue(api)
    admin = api("get", f"/jobs/{job['id']}/explain").get_json()
    (fair,) = admin["blockers"]
    assert fair["code"] == "fair_share"
    assert [t["tenant_id"] for t in fair["details"]["competing_tenants"]] == ["globex"]
    assert (admin["job_id"], admin["status"], admin["held_by"]) == (job["id"], "queued", None)

    response = api("get", f"/jobs/{job['id']}/explain", token="acme")
    assert "globex" not in response.get_data(as_text=True)
    (fair,) = response.get_json()["blockers"]
    assert "competing_tenants" not in fair["details"]
    assert fair["details"]["other_tenants_with_due_work"] == 1


def test_an_explanation_of_a_finished_job_has_no_blockers(api, service):
    job = queue(api)
    run(service)
    body = api("get", f"/jobs/{job['id']}/explain").get_json()
    assert (body["status"], body["blockers"], body["held_by"]) == ("completed", [], None)
    assert datetime.fromisoformat(body["checked_at"]).tzinfo is not None


# -- the pauses in force, the runners ------------------------------------------------------

def test_a_tenant_token_sees_only_the_pauses_that_hold_its_work(api, service):
    acme_job, globex_job = queue(api, delay_seconds=600), queue(api, tenant="globex",
                                                                delay_seconds=600)
    service.pause_all(reason="upgrade")
    service.pause_tenant("acme")
    service.pause_tenant("globex", reason="globex-secret-reason")
    service.pause_handler("record")
    service.pause_handler("noop", "globex")
    service.pause_job(acme_job["id"])
    service.pause_job(globex_job["id"])

    response = api("get", "/pauses", token="acme")
    assert response.status_code == 200
    seen = [(p["scope"], p["tenant_id"], p["handler"], p["job_id"])
            for p in response.get_json()["pauses"]]
    assert seen == [("all", None, None, None), ("tenant", "acme", None, None),
                    ("handler", None, "record", None), ("job", "acme", "noop", acme_job["id"])]
    assert "globex" not in response.get_data(as_text=True)
    assert len(api("get", "/pauses", token="all").get_json()["pauses"]) == 7
    filtered = api("get", "/pauses?tenant_id=acme", token="all").get_json()["pauses"]
    assert filtered == response.get_json()["pauses"]
    assert api("get", "/pauses?tenant_id=globex", token="acme").status_code == 404
    unknown = api("get", "/pauses?scope=all", token="acme")
    assert unknown.status_code == 422 and unknown.get_json()["errors"][0]["field"] == "scope"


def test_runners_for_all_tenant_tokens_only(api, service):
    Runner(service, threads=1, name="stopped").start().stop(grace=1)
    _live_runner(service)
    refused = api("get", "/runners", token="acme")
    assert refused.status_code == 403
    assert "all-tenant token" in refused.get_json()["detail"]
    body = api("get", "/runners", token="all").get_json()
    (live,) = body["live"]
    assert (live["hostname"], live["handlers"], live["live"], live["stopped_at"]) == (
        "elsewhere", ["noop"], True, None)
    (stopped,) = body["stopped"]
    assert stopped["live"] is False and stopped["how_it_ended"] == "stopped cleanly"
    assert "noop" in stopped["handlers"]


def test_run_now_of_a_paused_cron_job_runs_a_copy_and_keeps_the_pause(api, service):
    cron = queue(api, type="recurring", cron_schedule="0 3 * * *")
    api("post", f"/jobs/{cron['id']}/pause", json={"reason": "while we look"})
    response = api("post", f"/jobs/{cron['id']}/run-now")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["paused"] is None
    run(service)
    assert status(api, response.get_json()["id"]) == "completed"
    original = api("get", f"/jobs/{cron['id']}").get_json()
    assert original["paused"]["reason"] == "while we look"
    assert original["scheduled_for"] == cron["scheduled_for"]


def test_run_now_refuses_a_cancelled_cron_job(api):
    cron = queue(api, type="recurring", cron_schedule="0 3 * * *")
    api("post", f"/jobs/{cron['id']}/cancel")
    refused = api("post", f"/jobs/{cron['id']}/run-now")
    assert refused.status_code == 409 and "cancelled" in refused.get_json()["detail"]
