"""Batches through the API: POST /jobs/batch with callbacks answers with its batch, GET
/batches/{id} follows it to its end, and bad callbacks are refused naming the field."""
from __future__ import annotations

import pytest

NOOP = {"type": "immediate", "handler": "noop"}
FAILS = {"type": "immediate", "handler": "always_fails", "max_retries": 0}


def test_a_batch_with_callbacks_is_followed_to_its_end(api, service):
    response = api("post", "/jobs/batch", token="acme", json={
        "jobs": [NOOP, NOOP, FAILS],
        "on_complete": {**NOOP, "payload": {"report": "q3"}, "priority": "high"},
        "on_success": NOOP})
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    batch_id = created["batch_id"]
    assert response.headers["Location"] == f"/api/v1/batches/{batch_id}"
    assert {job["batch_id"] for job in created["jobs"]} == {batch_id}

    waiting = api("get", f"/batches/{batch_id}", token="acme").get_json()
    assert waiting == {**waiting, "id": batch_id, "tenant_id": "acme", "total": 3, "ended": 0,
                       "completed": 0, "failed": 0, "cancelled": 0, "is_finished": False,
                       "has_on_complete": True, "has_on_success": True,
                       "callback_job_ids": [], "finished_at": None}

    service.run_until_idle(timeout=20, settle=0.2)
    done = api("get", f"/batches/{batch_id}", token="acme").get_json()
    assert (done["completed"], done["failed"], done["ended"], done["is_finished"]) == (
        2, 1, 3, True)
    assert done["finished_at"] >= done["created_at"]
    (callback_id,) = done["callback_job_ids"]   # a job failed: on_complete only
    callback = api("get", f"/jobs/{callback_id}", token="acme").get_json()
    assert (callback["status"], callback["priority"]) == ("completed", "high")
    assert callback["payload"] == {"report": "q3", "batch": {
        "id": batch_id, "total": 3, "completed": 2, "failed": 1, "cancelled": 0,
        "callback": "on_complete"}}


def test_a_repeated_batch_answers_with_the_first_batch(api):
    body = {"tenant_id": "acme", "jobs": [{**NOOP, "idempotency_key": "a"},
                                          {**NOOP, "idempotency_key": "b"}]}
    first = api("post", "/jobs/batch", json=body).get_json()
    again = api("post", "/jobs/batch", json=body).get_json()
    assert again["batch_id"] == first["batch_id"]
    assert [job["id"] for job in again["jobs"]] == [job["id"] for job in first["jobs"]]


def test_a_tenant_token_reads_only_its_own_batches(api):
    batch_id = api("post", "/jobs/batch", token="globex",
                   json={"jobs": [NOOP]}).get_json()["batch_id"]
    assert api("get", f"/batches/{batch_id}", token="globex").status_code == 200
    assert api("get", f"/batches/{batch_id}", token="all").status_code == 200
    hidden = api("get", f"/batches/{batch_id}", token="acme")
    missing = api("get", "/batches/01a00000-0000-7000-8000-000000000000", token="acme")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_json()["detail"].replace(batch_id, "?") == \
        missing.get_json()["detail"].replace("01a00000-0000-7000-8000-000000000000", "?")
    assert api("get", "/batches/not-a-batch").status_code == 404


@pytest.mark.parametrize(("callback", "field"), [
    ({"type": "immediate", "handler": "nope"}, "on_complete.handler"),
    ({"handler": "noop"}, "on_complete.type"),
    ({**NOOP, "cron_schedule": "0 * * * *"}, "on_complete.cron_schedule"),
    ({**NOOP, "scheduled_for": "2030-01-01T00:00:00Z"}, "on_complete.scheduled_for"),
    ({**NOOP, "idempotency_key": "once"}, "on_complete.idempotency_key"),
    ({**NOOP, "payload": {"batch": "mine"}}, "on_complete.payload.batch"),
    ({**NOOP, "delay_seconds": -1}, "on_complete.delay_seconds"),
    ({**NOOP, "colour": "red"}, "on_complete.colour"),
    ("noop", "on_complete"),
])
def test_bad_callbacks_are_refused_naming_the_field(api, service, callback, field):
    response = api("post", "/jobs/batch", token="acme",
                   json={"jobs": [NOOP], "on_complete": callback})
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert field in [error["field"] for error in problem["errors"]], problem
    assert service.count_jobs() == 0


def test_a_batch_with_callbacks_refuses_recurring_jobs(api, service):
    response = api("post", "/jobs/batch", token="acme", json={
        "jobs": [NOOP, {"type": "recurring", "handler": "noop", "cron_schedule": "0 2 * * *"}],
        "on_success": NOOP})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "jobs[1].cron_schedule"
    assert service.count_jobs() == 0


def test_callbacks_count_against_the_tenants_queue(api, make_tenant, service):
    make_tenant("acme", "tier2", maxQueuedJobs=2)
    response = api("post", "/jobs/batch", token="acme",
                   json={"jobs": [NOOP, NOOP], "on_complete": NOOP})
    assert response.status_code == 429
    assert response.get_json()["limit_type"] == "max_queued_jobs"
    assert service.count_jobs() == 0
