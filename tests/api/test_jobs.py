"""Jobs through the API: queue every kind, read, list with keyset pages, retry and cancel,
and each refusal with its status and the field it names."""
from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone

import pytest

from console.jobs import SystemJob
from tests.api.conftest import queue

UTC = timezone.utc


def test_queue_a_job_with_a_tenant_token(api, service):
    response = api("post", "/jobs", token="acme", json={
        "type": "immediate", "handler": "record", "payload": {"n": 1}, "priority": "high",
        "max_retries": 5, "metadata": {"source": "billing"}, "idempotency_key": "k-1"})
    assert response.status_code == 201
    job = response.get_json()
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["tenant_id"], job["status"], job["priority"]) == ("acme", "queued", "high")
    assert job["payload"] == {"n": 1} and job["metadata"] == {"source": "billing"}
    stored = service.get_job_by_id(job["id"])
    assert stored.max_retries == 5 and stored.idempotency_key == "k-1"


def test_a_job_shows_every_field_of_the_engine(api, service):
    job = queue(api)
    service.run_until_idle(timeout=10)
    body = api("get", f"/jobs/{job['id']}").get_json()
    assert {f.name for f in fields(SystemJob)} | {"can_retry"} <= set(body)
    assert body["status"] == "completed"
    assert body["last_result"]["success"] is True
    assert isinstance(body["last_result"]["execution_time_ms"], (int, float))
    for name in ("created_at", "updated_at", "completed_at", "last_attempt"):
        assert datetime.fromisoformat(body[name]).tzinfo is not None, name


def test_delayed_scheduled_and_cron_jobs_wait(api):
    before = datetime.now(UTC)
    delayed = queue(api, delay_seconds=3600)
    after = datetime.now(UTC)
    assert delayed["status"] == "pending"
    # An hour from when it was queued.
    due = datetime.fromisoformat(delayed["scheduled_for"])
    slack = timedelta(milliseconds=1)                     # stored to the millisecond
    assert before + timedelta(hours=1) - slack <= due <= after + timedelta(hours=1) + slack
    at = "2030-01-02T09:00:00+01:00"
    scheduled = queue(api, scheduled_for=at)
    assert scheduled["status"] == "pending"
    assert datetime.fromisoformat(scheduled["scheduled_for"]) == datetime.fromisoformat(at)
    cron = queue(api, type="recurring", cron_schedule="0 9 * * *", timezone="Europe/Paris")
    assert cron["status"] == "pending" and cron["is_recurring"] is True
    assert cron["timezone"] == "Europe/Paris"


def test_the_same_idempotency_key_returns_the_first_job(api):
    first = queue(api, idempotency_key="order-42")
    again = queue(api, idempotency_key="order-42")
    assert again["id"] == first["id"]


def test_an_all_tenant_token_must_name_the_tenant(api):
    response = api("post", "/jobs", token="all", json={"type": "immediate", "handler": "noop"})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "tenant_id"


def test_a_tenant_token_cannot_queue_for_another_tenant(api, service):
    response = api("post", "/jobs", token="acme",
                   json={"type": "immediate", "handler": "noop", "tenant_id": "globex"})
    assert response.status_code == 404
    assert service.count_jobs("globex") == 0
    same = api("post", "/jobs", token="acme",
               json={"type": "immediate", "handler": "noop", "tenant_id": "acme"})
    assert same.status_code == 201


@pytest.fixture
def app_config(app_config):
    # The product's default, which the tests' base config turns off: webhooks to public
    # addresses only (nothing in this module sends one).
    return {**app_config, "WEBHOOK_ALLOW_PRIVATE": False}


@pytest.mark.parametrize("body,field,words", [
    ({"type": "immediate"}, "handler", "is required"),
    ({"type": "immediate", "handler": "nope"}, "handler", "unknown handler 'nope'"),
    ({"type": "cleanup", "handler": "picky"}, "type", "does not run 'cleanup'"),
    ({"type": "immediate", "handler": "noop", "max_retry": 2}, "max_retry", "unknown field"),
    ({"type": "immediate", "handler": "noop", "max_retries": "3"}, "max_retries",
     "must be a whole number"),
    ({"type": "immediate", "handler": "noop", "max_retries": 101}, "max_retries", "100"),
    ({"type": "immediate", "handler": "noop", "payload": [1]}, "payload", "must be a JSON object"),
    ({"type": "immediate", "handler": "noop", "priority": "asap"}, "priority", "Must be one of"),
    ({"type": "immediate", "handler": "noop", "scheduled_for": "2030-01-01T09:00:00"},
     "scheduled_for", "with an offset"),
    ({"type": "immediate", "handler": "noop", "scheduled_for": "0001-01-01T00:00:00+01:00"},
     "scheduled_for", "between 1970"),
    ({"type": "immediate", "handler": "noop", "delay_seconds": -1}, "delay_seconds",
     "greater than or equal to 0"),
    ({"type": "immediate", "handler": "noop", "delay_seconds": "5"}, "delay_seconds",
     "must be a number"),
    ({"type": "immediate", "handler": "noop", "delay_seconds": 5,
      "scheduled_for": "2030-01-01T09:00:00Z"}, "delay_seconds", "not both"),
    ({"type": "recurring", "handler": "noop", "cron_schedule": "every day"}, "cron_schedule",
     "cron expression"),
    ({"type": "recurring", "handler": "noop", "cron_schedule": "0 0 31 2 *"}, "cron_schedule",
     "'0 0 31 2 *' never fires"),
    ({"type": "recurring", "handler": "noop", "cron_schedule": "0 0 30 2 *",
      "timezone": "Europe/Paris"}, "cron_schedule", "'0 0 30 2 *' never fires"),
    ({"type": "recurring", "handler": "noop", "cron_schedule": "0 0 31 2 *",
      "scheduled_for": "2030-01-01T09:00:00Z"}, "cron_schedule", "never fires"),
    ({"type": "immediate", "handler": "evaluate_alert_rules"}, "handler",
     "handler 'evaluate_alert_rules' is a system handler: only the operations tenant queues it"),
    ({"type": "maintenance", "handler": "evaluate_alert_rules", "cron_schedule": "* * * * *"},
     "handler", "is a system handler"),
    ({"type": "notification", "handler": "alert_webhook",
      "payload": {"channel": "webhook", "recipient": "https://x.example/h"}}, "handler",
     "'alert_webhook' is a system handler"),
    ({"type": "cleanup", "handler": "custom_cleanup_handler",
      "payload": {"data_types": ["limit_rejections"]}}, "payload['data_types']",
     "operators' records, not the tenant's data"),
    ({"type": "recurring", "handler": "noop", "cron_schedule": "0 9 * * *",
      "timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ({"type": "immediate", "handler": "noop", "idempotency_key": "a\u0000b"},
     "idempotency_key", "NUL"),
    ({"type": "notification", "handler": "webhook_handler",
      "payload": {"channel": "webhook", "recipient": "http://127.0.0.1:5099/internal",
                  "body": {}}},
     "recipient", "http://127.0.0.1:5099/internal points at a loopback address; webhooks go "
                  "to public addresses only"),
    ({"type": "notification", "handler": "webhook_handler",
      "payload": {"channel": "webhook", "recipient": "http://169.254.169.254/latest/meta-data/",
                  "body": {}}},
     "recipient", "points at a link-local address"),
])
def test_invalid_jobs_are_422_naming_the_field(api, service, body, field, words):
    response = api("post", "/jobs", token="acme", json=body)
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert problem["type"] == "/api/v1/problems/validation"
    assert problem["errors"][0]["field"] == field
    assert words in problem["errors"][0]["message"]
    assert problem["detail"].startswith(f"{field}: ")
    assert service.count_jobs("acme") == 0


def test_a_full_queue_is_429_with_the_limit(api, make_tenant, service):
    make_tenant("acme", "tier2", "Acme", maxQueuedJobs=1)
    queue(api)
    response = api("post", "/jobs", token="acme", json={"type": "immediate", "handler": "noop"})
    assert response.status_code == 429
    problem = response.get_json()
    assert (problem["limit_type"], problem["current_usage"], problem["limit"]) == (
        "max_queued_jobs", 1, 1)
    assert problem["type"] == "/api/v1/problems/tenant-limit"
    assert "Retry-After" not in response.headers        # no knowing when jobs will run
    assert service.count_jobs("acme") == 1


def test_the_daily_limit_says_when_to_retry(api, make_tenant):
    make_tenant("acme", "tier2", "Acme", maxDailyJobs=1)
    queue(api)
    response = api("post", "/jobs", token="acme", json={"type": "immediate", "handler": "noop"})
    assert response.status_code == 429
    assert response.get_json()["limit_type"] == "max_daily_jobs"
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    retry_after = int(response.headers["Retry-After"])
    assert abs(retry_after - (midnight - now).total_seconds()) <= 2


def test_a_type_the_tier_does_not_allow_is_429(api, make_tenant):
    make_tenant("acme", "tier1", "Acme")
    response = api("post", "/jobs", token="acme", json={"type": "immediate", "handler": "noop"})
    assert response.status_code == 429
    problem = response.get_json()
    assert problem["limit_type"] == "allowed_job_types"
    assert problem["current_usage"] == "immediate" and problem["limit"] == ["notification"]


def test_queue_a_notification(api, service):
    response = api("post", "/notifications", token="acme", json={
        "type": "email", "recipient": "ada@example.com", "subject": "Hi", "body": "Hello",
        "reply_to": "ops@example.com", "delay_seconds": 60})
    assert response.status_code == 201
    job = response.get_json()
    assert (job["type"], job["handler"], job["status"]) == ("notification", "email_handler",
                                                            "pending")
    assert job["payload"]["recipient"] == "ada@example.com"
    assert job["payload"]["reply_to"] == "ops@example.com"


@pytest.mark.parametrize("url,kind", [
    ("http://127.0.0.1:5099/internal", "loopback"), ("http://localhost:5099/x", "loopback"),
    ("http://0x7f000001/", "loopback"), ("http://169.254.169.254/latest/meta-data/",
                                         "link-local"),
    ("http://[::1]/", "loopback"), ("http://10.0.0.1/", "private")])
def test_a_webhook_to_a_private_address_is_422_naming_the_recipient(api, service, url, kind):
    response = api("post", "/notifications", token="acme",
                   json={"type": "webhook", "recipient": url, "body": {"n": 1}})
    assert response.status_code == 422, response.get_json()
    [error] = response.get_json()["errors"]
    assert error["field"] == "recipient"
    assert error["message"] == (f"{url} points at a {kind} address; webhooks go to public "
                                "addresses only")
    assert service.count_jobs("acme") == 0


def test_a_notification_on_an_unknown_channel_is_422(api):
    response = api("post", "/notifications", token="acme",
                   json={"type": "pigeon", "recipient": "x"})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "type"


def test_a_batch_is_stored_whole(api, service):
    response = api("post", "/jobs/batch", token="acme", json={"priority": "low", "jobs": [
        {"type": "immediate", "handler": "noop"},
        {"type": "delayed", "handler": "noop", "delay_seconds": 60, "priority": "urgent"}]})
    assert response.status_code == 201
    jobs = response.get_json()["jobs"]
    assert [(j["status"], j["priority"]) for j in jobs] == [("queued", "low"),
                                                            ("pending", "urgent")]


def test_one_bad_spec_rejects_the_whole_batch(api, service):
    response = api("post", "/jobs/batch", token="acme", json={"jobs": [
        {"type": "immediate", "handler": "noop"}, {"type": "immediate", "handler": "nope"}]})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "jobs[1].handler"
    assert service.count_jobs("acme") == 0


def test_a_batch_with_a_system_handler_or_a_never_firing_cron_stores_nothing(api, service):
    for spec, field, words in (
            ({"type": "immediate", "handler": "evaluate_alert_rules"}, "jobs[1].handler",
             "is a system handler"),
            ({"type": "recurring", "handler": "noop", "cron_schedule": "0 0 31 2 *"},
             "jobs[1].cron_schedule", "never fires")):
        response = api("post", "/jobs/batch", token="acme", json={"jobs": [
            {"type": "immediate", "handler": "noop"}, spec]})
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["errors"][0]["field"] == field
        assert words in response.get_json()["errors"][0]["message"]
    assert service.count_jobs() == 0


def test_the_operations_tenant_queues_a_system_handler(api, make_tenant, service):
    make_tenant("console", "tier4", "Console operations")
    response = api("post", "/jobs", token="admin", json={
        "type": "immediate", "handler": "evaluate_alert_rules", "tenant_id": "console"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["tenant_id"] == "console"
    assert service.count_jobs("console") == 1 and service.count_jobs("acme") == 0


def test_retrying_a_tenants_stored_system_job_is_422(api, service):
    service.system_tenant_id = "acme"        # as if queued before system handlers existed
    job = service.queue_job("immediate", "evaluate_alert_rules", {}, "acme")
    service.system_tenant_id = "console"
    service.cancel_job(job.id)
    response = api("post", f"/jobs/{job.id}/retry", token="acme")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "handler"
    assert "is a system handler" in response.get_json()["errors"][0]["message"]
    assert service.get_job_by_id(job.id).status.value == "cancelled"


def test_a_batch_over_the_limit_stores_nothing(api, make_tenant, service):
    make_tenant("acme", "tier2", "Acme", maxQueuedJobs=2)
    response = api("post", "/jobs/batch", token="acme",
                   json={"jobs": [{"type": "immediate", "handler": "noop"}] * 3})
    assert response.status_code == 429
    assert response.get_json()["limit_type"] == "max_queued_jobs"
    assert service.count_jobs("acme") == 0


def test_batch_field_errors_name_the_spec(api):
    response = api("post", "/jobs/batch", token="acme",
                   json={"jobs": [{"type": "immediate", "handler": "noop", "oops": 1}]})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "jobs[0].oops"
    empty = api("post", "/jobs/batch", token="acme", json={"jobs": []})
    assert empty.status_code == 422 and empty.get_json()["errors"][0]["field"] == "jobs"


def test_list_pages_newest_first_with_a_cursor(api):
    ids = [queue(api)["id"] for _ in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        response = api("get", "/jobs?limit=3" + (f"&cursor={cursor}" if cursor else ""),
                       token="acme")
        assert response.status_code == 200
        page = response.get_json()
        seen += [job["id"] for job in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True) and pages == 3


def test_list_filters(api, service):
    done = queue(api)["id"]
    waiting = queue(api, handler="record", delay_seconds=600)["id"]
    queue(api, tenant="globex")
    service.run_until_idle(timeout=10)

    def ids(query, token="acme"):
        response = api("get", f"/jobs?{query}", token=token)
        assert response.status_code == 200, response.get_json()
        return [job["id"] for job in response.get_json()["jobs"]]

    assert ids("status=completed") == [done]
    assert ids("status=pending") == [waiting]
    assert ids("handler=record") == [waiting]
    assert ids("handler=noop&status=completed") == [done]
    assert ids("type=immediate&status=pending") == [waiting]
    assert len(ids("", token="all")) == 3
    assert len(ids("tenant_id=globex", token="all")) == 1


@pytest.mark.parametrize("query,field", [("status=done", "status"), ("cursor=abc", "cursor"),
                                         ("limit=0", "limit"), ("limit=x", "limit"),
                                         ("sort=id", "sort")])
def test_bad_list_parameters_are_422(api, query, field):
    response = api("get", f"/jobs?{query}", token="acme")
    assert response.status_code == 422
    error = response.get_json()["errors"][0]
    assert (error["field"], error["in"]) == (field, "query")
    assert "JSON" not in error["message"]


def test_query_messages_say_what_to_send(api):
    unknown = api("get", "/jobs?stauts=failed", token="acme").get_json()["errors"][0]
    assert unknown["message"].startswith("unknown query parameter; the query parameters are:")
    assert "status" in unknown["message"]
    limit = api("get", "/jobs?limit=x", token="acme").get_json()["errors"][0]
    assert limit["message"] == "must be a whole number"


def test_unknown_and_malformed_job_ids_are_404(api):
    missing = api("get", "/jobs/01a2218b-0000-7000-8000-000000000000", token="acme")
    assert missing.status_code == 404
    assert missing.get_json()["type"] == "/api/v1/problems/not-found"
    assert api("get", "/jobs/not-an-id", token="acme").status_code == 404
    assert api("post", "/jobs/not-an-id/cancel", token="acme").status_code == 404


def test_cancel_then_retry(api):
    job = queue(api, token="acme", delay_seconds=600)
    cancelled = api("post", f"/jobs/{job['id']}/cancel", token="acme")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    again = api("post", f"/jobs/{job['id']}/cancel", token="acme")
    assert again.status_code == 409
    assert again.get_json()["type"] == "/api/v1/problems/job-state"
    assert "only pending or queued" in again.get_json()["detail"]
    retried = api("post", f"/jobs/{job['id']}/retry", token="acme")
    assert retried.status_code == 200 and retried.get_json()["status"] == "queued"


def test_retry_a_failed_job_and_refuse_a_queued_one(api, service):
    failed = queue(api, handler="always_fails", max_retries=0)
    service.run_until_idle(timeout=10)
    assert api("get", f"/jobs/{failed['id']}").get_json()["status"] == "failed"
    assert api("post", f"/jobs/{failed['id']}/retry", token="acme").status_code == 200
    queued = queue(api)
    refused = api("post", f"/jobs/{queued['id']}/retry", token="acme")
    assert refused.status_code == 409
    assert "only failed or cancelled" in refused.get_json()["detail"]


def test_a_retry_into_a_full_queue_is_429(api, make_tenant):
    job = queue(api, delay_seconds=600)
    api("post", f"/jobs/{job['id']}/cancel")
    make_tenant("acme", "tier2", "Acme", maxQueuedJobs=0)
    response = api("post", f"/jobs/{job['id']}/retry", token="acme")
    assert response.status_code == 429
    assert response.get_json()["limit_type"] == "max_queued_jobs"


# -- dependencies ---------------------------------------------------------------------------

def test_a_job_that_depends_on_others_waits_for_them(api, service):
    first = queue(api, delay_seconds=3600)
    waiting = queue(api, depends_on=[first["id"]], on_dependency_failure="run")
    assert waiting["status"] == "pending" and waiting["scheduled_for"] is None
    assert waiting["waiting_for_dependencies"] is True
    assert waiting["depends_on"] == [first["id"]] and waiting["on_dependency_failure"] == "run"
    explained = api("get", f"/jobs/{waiting['id']}/explain", token="acme").get_json()
    blocker = explained["blockers"][0]
    assert blocker["code"] == "dependencies"
    assert blocker["details"]["unfinished"][0]["job_id"] == first["id"]
    listed = api("get", "/jobs?waiting=dependencies", token="acme").get_json()["jobs"]
    assert [job["id"] for job in listed] == [waiting["id"]]

    assert api("post", f"/jobs/{first['id']}/run-now", token="acme").status_code == 200
    service.run_until_idle(timeout=10, settle=0.3)
    done = api("get", f"/jobs/{waiting['id']}", token="acme").get_json()
    assert done["status"] == "completed" and done["waiting_for_dependencies"] is False


def test_notifications_and_batches_take_dependencies(api):
    first = queue(api, delay_seconds=3600)
    note = api("post", "/notifications", token="acme", json={
        "type": "sms", "recipient": "+15550100", "body": "hi", "depends_on": [first["id"]]})
    assert note.status_code == 201 and note.get_json()["waiting_for_dependencies"] is True
    batch = api("post", "/jobs/batch", token="acme", json={"jobs": [
        {"type": "immediate", "handler": "noop", "depends_on": [first["id"]]}]})
    assert batch.status_code == 201
    assert batch.get_json()["jobs"][0]["depends_on"] == [first["id"]]


@pytest.mark.parametrize("depends_on,field", [
    (["not-a-job-id"], "depends_on[0]"),
    (["01890000-0000-7000-8000-000000000000"], "depends_on"),
    ("01890000-0000-7000-8000-000000000000", "depends_on")])
def test_dependencies_that_are_not_jobs_of_the_tenant_are_422(api, service, depends_on, field):
    response = api("post", "/jobs", token="acme", json={
        "type": "immediate", "handler": "noop", "depends_on": depends_on})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"][0]["field"] == field
    assert service.count_jobs("acme") == 0


def test_a_tenant_token_cannot_depend_on_another_tenants_job_nor_learn_it_exists(api, service):
    theirs = queue(api, tenant="globex", delay_seconds=3600)["id"]
    missing = "01890000-0000-7000-8000-000000000000"
    answers = {}
    for job_id in (theirs, missing):
        response = api("post", "/jobs", token="acme", json={
            "type": "immediate", "handler": "noop", "depends_on": [job_id]})
        assert response.status_code == 422
        answers[job_id] = response.get_data(as_text=True).replace(job_id, "ID")
    assert answers[theirs] == answers[missing]
    assert service.count_jobs("acme") == 0


def test_a_chain_waits_link_by_link(api, service):
    response = api("post", "/jobs/chain", token="acme", json={"jobs": [
        {"type": "immediate", "handler": "noop"},
        {"type": "immediate", "handler": "noop", "delay_seconds": 0},
        {"type": "immediate", "handler": "noop"}]})
    assert response.status_code == 201, response.get_json()
    chain = response.get_json()["jobs"]
    assert [job["status"] for job in chain] == ["queued", "pending", "pending"]
    assert [job["depends_on"] for job in chain] == [[], [chain[0]["id"]], [chain[1]["id"]]]
    service.run_until_idle(timeout=10, settle=0.3)
    assert {api("get", f"/jobs/{job['id']}").get_json()["status"] for job in chain} == {
        "completed"}
    bad = api("post", "/jobs/chain", token="acme", json={"jobs": [
        {"type": "immediate", "handler": "noop"}, {"type": "immediate", "handler": "nope"}]})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "jobs[1].handler"
