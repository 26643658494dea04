"""New job: a form per kind, the batch upload and the fragments the forms ask for as one types."""
from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from console.jobs.models import jobs_table
from console.web.new_job.batch import BatchFileError, read_batch_file

from .conftest import csrf_token

UTC = timezone.utc
ROUTES = [("get", "/jobs/new"), ("get", "/jobs/new/delayed"), ("get", "/jobs/new?kind=recurring"),
          ("get", "/jobs/new/batch"), ("get", "/jobs/new/cron-preview?cron_schedule=*+*+*+*+*"),
          ("get", "/jobs/new/tenant-usage?tenant_id=acme"), ("post", "/jobs/new/immediate"),
          ("post", "/jobs/new/batch"), ("post", "/jobs/new/validate/payload")]


@pytest.fixture
def app_config(app_config):
    # The product's default, which the tests' base config turns off: webhooks to public
    # addresses only (nothing in this module sends one).
    return {**app_config, "WEBHOOK_ALLOW_PRIVATE": False}


@pytest.fixture
def acme(make_tenant):
    return make_tenant("acme", "tier2", name="Acme Corp")


@pytest.fixture
def operator(client_as, acme):
    return client_as("operator")


def count_jobs(service) -> int:
    with service.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs_table)).scalar_one()


def form(client, **fields):
    """A complete immediate-job form; ``fields`` override or add."""
    data = {"csrf_token": client.csrf, "tenant_id": "acme", "type": "immediate",
            "handler": "noop", "priority": "", "max_retries": "3", "payload": "{}",
            "idempotency_key": "", "metadata": ""}
    data.update(fields)
    return data


def queued_job(service, response):
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    match = re.fullmatch(r"/jobs/([0-9a-f-]+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return service.get_job_by_id(match.group(1))


def page_text(response) -> str:
    return response.get_data(as_text=True)


def flashed(client) -> list[str]:
    """The messages waiting for the next page (the job's page belongs to another screen)."""
    with client.session_transaction() as session:
        return [message for _, message in session.get("_flashes", [])]


def compact_size(value) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


# -- who may use it -----------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", ROUTES)
def test_signed_out_requests_go_to_sign_in(app, method, path):
    client = app.test_client()
    data = {"csrf_token": csrf_token(client)} if method == "post" else None
    response = getattr(client, method)(path, data=data)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("method,path", ROUTES)
def test_viewers_are_refused(client_as, acme, service, method, path):
    viewer = client_as("viewer")
    response = getattr(viewer, method)(path, data={"csrf_token": viewer.csrf, "tenant_id": "acme",
                                                   "type": "immediate", "handler": "noop",
                                                   "payload": "{}"})
    assert response.status_code == 403
    assert count_jobs(service) == 0


def test_operators_and_admins_see_the_form(client_as, acme):
    for role in ("operator", "admin"):
        page = page_text(client_as(role).get("/jobs/new"))
        assert '<form id="job-form"' in page and 'name="csrf_token"' in page
        assert 'aria-current="page">Immediate' in page


def test_a_post_without_csrf_token_is_refused(operator, service):
    data = form(operator)
    del data["csrf_token"]
    assert operator.post("/jobs/new/immediate", data=data).status_code == 400
    assert operator.post("/jobs/new/validate/payload", data={"payload": "{}"}).status_code == 400
    assert count_jobs(service) == 0


# -- tabs -----------------------------------------------------------------------------------------

def test_each_kind_has_a_tab_that_works_as_a_plain_link(operator):
    page = page_text(operator.get("/jobs/new"))
    for kind in ("immediate", "delayed", "scheduled", "recurring", "notification", "batch"):
        assert f'href="/jobs/new/{kind}"' in page
        response = operator.get(f"/jobs/new/{kind}")
        assert response.status_code == 200
        assert "<h1>New job</h1>" in page_text(response)
    assert 'name="cron_schedule"' in page_text(operator.get("/jobs/new?kind=recurring"))
    assert 'name="channel"' in page_text(operator.get("/jobs/new?kind=notification"))
    assert operator.get("/jobs/new/nonsense").status_code == 404


def test_an_htmx_tab_switch_gets_only_the_panel(operator):
    response = operator.get("/jobs/new/delayed", headers={"HX-Request": "true"})
    text = page_text(response)
    assert text.lstrip().startswith('<div id="new-job">') and "<html" not in text
    assert 'type="datetime-local"' in text


def test_the_handler_select_lists_the_handlers_that_run_the_kind(operator):
    page = page_text(operator.get("/jobs/new/recurring"))
    assert '<option value="data_processor">' in page
    assert 'value="picky"' not in page          # picky runs only immediate jobs
    assert 'value="email_handler"' not in page  # the channel picks notification handlers


@pytest.mark.parametrize("kind", ["immediate", "recurring", "scheduled", "delayed"])
def test_system_handlers_are_offered_to_the_operations_tenant_only(operator, make_tenant,
                                                                   kind):
    make_tenant("console", "tier4", name="Console operations")
    for tenant, offered in (("acme", False), ("console", True)):
        page = page_text(operator.get(f"/jobs/new/{kind}", query_string={"tenant_id": tenant}))
        assert '<option value="noop"' in page or '<option value="data_processor"' in page
        assert 'value="alert_webhook"' not in page           # a notification handler
        runs_kind = kind == "immediate"    # evaluate_alert_rules runs immediate, maintenance
        assert ('value="evaluate_alert_rules"' in page) is (offered and runs_kind), (tenant, kind)


def test_the_operations_tenant_queues_a_system_handler_from_the_form(operator, make_tenant,
                                                                      service):
    make_tenant("console", "tier4", name="Console operations")
    response = operator.post("/jobs/new/immediate", data=form(
        operator, tenant_id="console", type="maintenance", handler="evaluate_alert_rules"))
    job = queued_job(service, response)
    assert (job.tenant_id, job.handler) == ("console", "evaluate_alert_rules")


def test_a_tenant_name_with_script_is_escaped_in_the_select(client_as, make_tenant):
    make_tenant("evil", "tier2", name="<script>alert(1)</script>")
    page = page_text(client_as("operator").get("/jobs/new"))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_no_tenants_says_so_and_disables_the_button(client_as):
    page = page_text(client_as("operator").get("/jobs/new"))
    assert "There are no tenants yet" in page and "disabled" in page


# -- each kind queues the right job ------------------------------------------------------------

def test_immediate_job(operator, service):
    response = operator.post("/jobs/new/immediate", data=form(
        operator, priority="urgent", max_retries="5", payload='{"n": 1, "who": "ops"}',
        metadata='{"ticket": "OPS-1"}'))
    job = queued_job(service, response)
    assert (job.type, job.handler, job.payload, job.priority.value, job.max_retries) == (
        "immediate", "noop", {"n": 1, "who": "ops"}, "urgent", 5)
    assert job.metadata == {"ticket": "OPS-1"} and job.status.value == "queued"
    assert job.cron_schedule is None and job.tenant_id == "acme"
    assert flashed(operator) == [f"Queued job {job.id} (immediate, noop) for acme."]


def test_other_run_now_types_and_the_tenant_default_priority(operator, service, make_tenant):
    make_tenant("big", "tier4")
    job = queued_job(service, operator.post("/jobs/new/immediate", data=form(
        operator, tenant_id="big", type="data_sync", handler="data_processor",
        payload='{"data_id": "d1", "processing_type": "quick"}')))
    assert (job.type, job.handler, job.priority.value) == ("data_sync", "data_processor", "high")


def test_delayed_job_by_delay(operator, service):
    before = datetime.now(UTC)
    job = queued_job(service, operator.post("/jobs/new/delayed", data=form(
        operator, when="delay", delay_amount="90", delay_unit="minutes", payload='{"a": 1}')))
    assert (job.type, job.handler, job.payload, job.status.value) == (
        "delayed", "noop", {"a": 1}, "pending")
    assert before + timedelta(minutes=90) <= job.scheduled_for <= datetime.now(UTC) + timedelta(
        minutes=90)


def test_delayed_job_at_a_local_time_in_a_chosen_zone(operator, service):
    local = (datetime.now(ZoneInfo("America/New_York")) + timedelta(days=3)).replace(
        hour=9, minute=30, second=0, microsecond=0)
    job = queued_job(service, operator.post("/jobs/new/delayed", data=form(
        operator, when="at", run_at=local.strftime("%Y-%m-%dT%H:%M"),
        timezone="America/New_York")))
    assert job.type == "delayed" and job.scheduled_for == local.astimezone(UTC)


def test_scheduled_job_on_a_cron_is_queue_scheduled_job(operator, service):
    job = queued_job(service, operator.post("/jobs/new/scheduled", data=form(
        operator, name="Daily report", when="cron", cron_schedule="0 9 * * *",
        timezone="Europe/Paris", handler="noop", payload='{"kind": "usage"}')))
    assert (job.type, job.cron_schedule, job.timezone) == ("scheduled", "0 9 * * *",
                                                           "Europe/Paris")
    assert job.payload == {"name": "Daily report", "kind": "usage"}
    assert job.metadata["name"] == "Daily report" and job.status.value == "pending"
    assert job.scheduled_for.astimezone(ZoneInfo("Europe/Paris")).hour == 9


def test_scheduled_job_once_at_a_date_time(operator, service):
    when = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    job = queued_job(service, operator.post("/jobs/new/scheduled", data=form(
        operator, name="One-off export", when="once", run_at=when.strftime("%Y-%m-%dT%H:%M"),
        timezone="UTC", cron_schedule="")))
    assert (job.type, job.cron_schedule, job.scheduled_for) == ("scheduled", None, when)
    assert job.payload["name"] == "One-off export"


def test_recurring_job(operator, service):
    job = queued_job(service, operator.post("/jobs/new/recurring", data=form(
        operator, cron_schedule="*/15 * * * *", timezone="Asia/Tokyo", priority="low",
        payload='{"retention_days": 30}')))
    assert (job.type, job.handler, job.cron_schedule, job.timezone, job.priority.value) == (
        "recurring", "noop", "*/15 * * * *", "Asia/Tokyo", "low")
    assert job.payload == {"retention_days": 30}


def test_email_notification(operator, service):
    job = queued_job(service, operator.post("/jobs/new/notification", data=form(
        operator, channel="email", recipient="ops@example.com", subject="Hello",
        body="Hi {{ name }}", payload='{"variables": {"name": "Ada"}}')))
    assert (job.type, job.handler) == ("notification", "email_handler")
    assert job.payload == {"channel": "email", "recipient": "ops@example.com",
                           "subject": "Hello", "body": "Hi {{ name }}",
                           "variables": {"name": "Ada"}}


def test_webhook_notification_posts_json(operator, service):
    job = queued_job(service, operator.post("/jobs/new/notification", data=form(
        operator, channel="webhook", recipient="https://hooks.example.com/x",
        body='{"event": "deploy", "ok": true}')))
    assert job.handler == "webhook_handler"
    assert job.payload["body"] == {"event": "deploy", "ok": True}


@pytest.mark.parametrize("channel,recipient,subject,handler", [
    ("sms", "+14155550123", "", "sms_handler"),
    ("push", "device-token-1", "Title", "push_handler")])
def test_sms_and_push_notifications(operator, service, channel, recipient, subject, handler):
    job = queued_job(service, operator.post("/jobs/new/notification", data=form(
        operator, channel=channel, recipient=recipient, subject=subject, body="Your code is 1234",
        priority="critical")))
    assert (job.handler, job.priority.value, job.payload["recipient"]) == (handler, "critical",
                                                                          recipient)
    assert job.payload["body"] == "Your code is 1234"
    assert job.payload.get("subject") == (subject or None)


def test_idempotency_key_gives_back_the_first_job(operator, service):
    first = queued_job(service, operator.post("/jobs/new/immediate",
                                              data=form(operator, idempotency_key="k-1")))
    response = operator.post("/jobs/new/immediate", data=form(operator, idempotency_key="k-1"))
    assert queued_job(service, response).id == first.id and count_jobs(service) == 1
    assert "Nothing new queued" in flashed(operator)[-1]


def test_htmx_submit_redirects_with_hx_redirect(operator, service):
    response = operator.post("/jobs/new/immediate", data=form(operator),
                             headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert re.fullmatch(r"/jobs/[0-9a-f-]+", response.headers["HX-Redirect"])
    assert count_jobs(service) == 1


# -- bad input: a message on the form, 422, nothing stored ----------------------------------

BAD_INPUTS = [
    ("immediate", {"payload": '{"a": 1\n    "b": 2}'},
     "payload: not valid JSON: Expecting &#39;,&#39; delimiter at line 2 column 5"),
    ("immediate", {"payload": "[1, 2]"}, "payload must be a JSON object"),
    ("immediate", {"handler": "no_such_handler"}, "handler: unknown handler"),
    ("immediate", {"handler": "picky", "payload": "{}"}, "rejected by handler &#39;picky&#39;"),
    ("immediate", {"handler": "wait", "payload": '{"seconds": "soon"}'},
     "payload[&#39;seconds&#39;]: &#39;soon&#39; is not of type &#39;number&#39;"),
    ("immediate", {"max_retries": "many"}, "max_retries: must be a whole number from 0 to 100"),
    ("immediate", {"max_retries": "500"}, "max_retries: must be a whole number from 0 to 100"),
    ("immediate", {"priority": "whenever"}, "priority: &#39;whenever&#39; is not one of"),
    ("immediate", {"tenant_id": "nobody"}, "tenant_id: &#39;nobody&#39; is not one of"),
    ("immediate", {"metadata": "{oops"}, "metadata: not valid JSON"),
    ("recurring", {"cron_schedule": "61 * * * *"}, "cron_schedule: &#39;61 * * * *&#39; is not a"),
    ("recurring", {"cron_schedule": "* * *"}, "has 3 fields"),
    ("recurring", {"cron_schedule": "0 0 31 2 *"},
     "cron_schedule: &#39;0 0 31 2 *&#39; never fires (no date matches it within 50 years"),
    ("recurring", {"cron_schedule": "0 0 30 2 *", "timezone": "Europe/Paris"},
     "cron_schedule: &#39;0 0 30 2 *&#39; never fires"),
    ("scheduled", {"name": "Leap", "cron_schedule": "0 0 31 2 *"}, "never fires"),
    ("immediate", {"handler": "evaluate_alert_rules"},
     "handler: handler &#39;evaluate_alert_rules&#39; is a system handler: only the operations "
     "tenant queues it"),
    ("immediate", {"type": "maintenance", "handler": "evaluate_alert_rules"},
     "is a system handler"),
    ("recurring", {"handler": "evaluate_alert_rules", "cron_schedule": "0 9 * * *"},
     "is a system handler"),
    ("immediate", {"type": "cleanup", "handler": "custom_cleanup_handler",
                   "payload": '{"data_types": ["limit_rejections"]}'},
     "are operators&#39; records, not the tenant&#39;s data"),
    ("recurring", {"cron_schedule": "0 9 * * *", "timezone": "Mars/Olympus"},
     "timezone: unknown time zone &#39;Mars/Olympus&#39;"),
    ("scheduled", {"name": "", "cron_schedule": "0 9 * * *"}, "name: is required"),
    ("delayed", {"when": "at", "run_at": "2020-01-01T09:00", "timezone": "UTC"},
     "run_at: 2020-01-01 09:00 UTC is in the past"),
    ("delayed", {"when": "at", "run_at": "next tuesday", "timezone": "UTC"},
     "run_at: &#39;next tuesday&#39; is not a date and time"),
    ("delayed", {"when": "at", "run_at": "2030-03-10T02:30", "timezone": "America/New_York"},
     "does not exist in America/New_York"),
    ("delayed", {"when": "delay", "delay_amount": "-5"}, "delay_amount: must be a whole number"),
    ("delayed", {"when": "delay", "delay_amount": "1000", "delay_unit": "days"},
     "more than 366 days"),
    ("delayed", {"when": "delay", "delay_amount": "999999999", "delay_unit": "days"},
     "more than 366 days"),
    ("delayed", {"when": "at", "run_at": "9999-12-31T23:59", "timezone": "America/Los_Angeles"},
     "run_at: is out of range"),
    ("delayed", {"when": "at", "run_at": "2300-01-01T00:00", "timezone": "UTC"},
     "run_at: is more than ten years ahead"),
    ("notification", {"channel": "email", "recipient": "not an address", "body": "hi"},
     "recipient &#39;not an address&#39; is not an email address"),
    ("notification", {"channel": "webhook", "recipient": "ftp://x", "body": "{}"},
     "must be an http or https URL"),
    ("notification", {"channel": "webhook", "recipient": "http://127.0.0.1:5099/x", "body": "{}"},
     "recipient: http://127.0.0.1:5099/x points at a loopback address; webhooks go to public "
     "addresses only"),
    ("notification", {"channel": "webhook", "recipient": "http://169.254.169.254/", "body": "{}"},
     "points at a link-local address"),
    ("notification", {"channel": "webhook", "recipient": "https://x.example",
                      "body": "{not json"}, "body: not valid JSON"),
    ("notification", {"channel": "carrier-pigeon", "recipient": "x"},
     "channel: &#39;carrier-pigeon"),
    ("notification", {"channel": "sms", "recipient": "+14155550123", "body": "hi",
                      "payload": '{"recipient": "x"}'}, "has its own field"),
]


@pytest.mark.parametrize("kind,fields,message", BAD_INPUTS)
def test_bad_input_is_answered_on_the_form(operator, service, kind, fields, message):
    response = operator.post(f"/jobs/new/{kind}", data=form(operator, **fields))
    text = page_text(response)
    assert response.status_code == 422
    assert message in text, re.findall(r'class="field-error">([^<]*)', text)
    assert "Nothing was queued" in text and 'aria-invalid="true"' in text
    assert '<form id="job-form"' in text             # the form again, with what was typed
    assert count_jobs(service) == 0


def test_bad_input_keeps_what_was_typed(operator):
    text = page_text(operator.post("/jobs/new/immediate", data=form(
        operator, payload='{"keep": "me",}', idempotency_key="abc")))
    assert "{&#34;keep&#34;: &#34;me&#34;,}" in text and 'value="abc"' in text


def test_an_htmx_submit_with_bad_input_gets_the_form_back(operator, service):
    response = operator.post("/jobs/new/immediate", data=form(operator, payload="[]"),
                             headers={"HX-Request": "true"})
    text = page_text(response)
    assert response.status_code == 422 and text.lstrip().startswith('<form id="job-form"')
    assert "payload must be a JSON object" in text


def test_a_payload_over_the_tenants_size_limit(client_as, make_tenant, service):
    make_tenant("acme", "tier2", name="Acme", maxJobPayloadSize=100)
    operator = client_as("operator")
    payload = {"text": "x" * 200}
    response = operator.post("/jobs/new/immediate", data=form(operator,
                                                              payload=json.dumps(payload)))
    text = page_text(response)
    assert response.status_code == 422 and count_jobs(service) == 0
    assert (f"The payload is {compact_size(payload)} bytes; Acme allows at most 100 bytes per "
            "job (tier2)") in text
    assert re.search(r'<textarea[^>]*aria-invalid="true"[^>]*id="payload"', text)


def test_a_type_the_tenants_tier_does_not_allow(client_as, make_tenant, service):
    make_tenant("acme", "tier1", name="Acme")
    operator = client_as("operator")
    response = operator.post("/jobs/new/immediate", data=form(operator))
    text = page_text(response)
    assert response.status_code == 422 and count_jobs(service) == 0
    assert "Acme (tier1) may not queue &#39;immediate&#39; jobs; allowed: notification" in text


def test_a_daily_limit_is_shown_inline_with_the_tenants_figures(client_as, make_tenant, service):
    make_tenant("acme", "tier2", name="acme", maxDailyJobs=2)
    operator = client_as("operator")
    for _ in range(2):
        queued_job(service, operator.post("/jobs/new/immediate", data=form(operator)))
    response = operator.post("/jobs/new/immediate", data=form(operator))
    text = page_text(response)
    assert response.status_code == 422 and count_jobs(service) == 2
    assert ("acme&#39;s daily limit is reached: 2 of 2 jobs today (tier2). Try tomorrow" in text)
    assert "ask an admin to raise it" in text and "Today (UTC) 2 of 2" in text
    response = operator.post("/jobs/new/immediate", data=form(operator),
                             headers={"HX-Request": "true"})
    text = page_text(response)                  # the form, and the usage beside it refreshed
    assert response.status_code == 422 and text.lstrip().startswith('<form id="job-form"')
    assert '<div id="tenant-usage" hx-swap-oob="innerHTML">' in text and "2 / 2" in text


def test_a_full_queue_is_shown_inline(client_as, make_tenant, service):
    make_tenant("acme", "tier2", name="Acme", maxQueuedJobs=1)
    operator = client_as("operator")
    queued_job(service, operator.post("/jobs/new/immediate", data=form(operator)))
    response = operator.post("/jobs/new/immediate", data=form(operator))
    assert response.status_code == 422 and count_jobs(service) == 1
    assert "Acme&#39;s queue is full: 1 of 1 jobs waiting (tier2)" in page_text(response)


# -- fragments ----------------------------------------------------------------------------------

def test_cron_preview_shows_five_times_in_the_zone_and_utc(operator):
    response = operator.get("/jobs/new/cron-preview",
                            query_string={"cron_schedule": "0 9 * * 1-5",
                                          "timezone": "America/New_York"})
    text = page_text(response)
    assert response.status_code == 200 and "<html" not in text
    rows = re.findall(r"<tr><td><time datetime=\"([^\"]+)\">([^<]+)</time></td>\s*<td>([^<]+)</td>",
                      text)
    assert len(rows) == 5
    for iso, local, utc in rows:
        moment = datetime.fromisoformat(iso)
        assert " 09:00 E" in local and local[:3] in ("Mon", "Tue", "Wed", "Thu", "Fri")
        assert utc.endswith("UTC") and moment.astimezone(UTC).strftime("%H:%M") in utc
        assert moment.astimezone(ZoneInfo("America/New_York")).hour == 9


def test_cron_preview_explains_a_bad_expression_and_zone(operator):
    text = page_text(operator.get("/jobs/new/cron-preview",
                                  query_string={"cron_schedule": "61 * * * *", "timezone": "UTC"}))
    assert ("cron expression: &#39;61&#39; is not a valid minute (allowed: 0-59" in text
            and "expected 5 fields like &#39;*/15 * * * *&#39;" in text)
    text = page_text(operator.get("/jobs/new/cron-preview",
                                  query_string={"cron_schedule": "0 9 *", "timezone": "UTC"}))
    assert "cron expression: &#39;0 9 *&#39; has 3 fields — expected 5 fields" in text
    text = page_text(operator.get("/jobs/new/cron-preview",
                                  query_string={"cron_schedule": "0 9 * * *",
                                                "timezone": "Nowhere/City"}))
    assert "timezone: unknown time zone &#39;Nowhere/City&#39;" in text


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "*/5 * 31 4 *"])
def test_cron_preview_says_an_expression_never_fires(operator, expression):
    for zone in ("UTC", "Asia/Tokyo"):
        response = operator.get("/jobs/new/cron-preview",
                                query_string={"cron_schedule": expression, "timezone": zone})
        text = page_text(response)
        assert response.status_code == 200
        assert (f"cron expression: &#39;{expression}&#39; never fires (no date matches it "
                "within 50 years") in text
        assert "<time" not in text


def test_the_recurring_form_previews_a_never_firing_cron_with_a_message(operator):
    response = operator.get("/jobs/new/recurring", query_string={"cron_schedule": "0 0 31 2 *"})
    assert response.status_code == 200
    assert "never fires" in page_text(response)


def validate(client, field="payload", kind="immediate", **data):
    return client.post(f"/jobs/new/validate/{field}?kind={kind}",
                       data={"tenant_id": "acme", "handler": "noop", **data},
                       headers={"X-CSRFToken": client.csrf, "HX-Request": "true"})


def test_payload_validation_fragment(operator):
    text = page_text(validate(operator, payload='{"a": 1\n    "b": 2}'))
    assert "payload: not valid JSON: Expecting &#39;,&#39; delimiter at line 2 column 5" in text
    assert "payload must be a JSON object" in page_text(validate(operator, payload='"text"'))
    text = page_text(validate(operator, payload='{"seconds": "x"}', handler="wait"))
    assert "payload[&#39;seconds&#39;]: &#39;x&#39; is not of type &#39;number&#39;" in text
    assert "Payload JSON schema of" in text          # the handler's schema, to read
    text = page_text(validate(operator, payload='{"data_id": "d"}', handler="data_processor",
                              type="immediate"))
    assert "rejected by handler &#39;data_processor&#39;" in text
    text = page_text(validate(operator, payload='{"seconds": 1}', handler="wait"))
    assert "field-error" not in text and "A JSON object of 13 bytes" in text
    assert "field-error" not in page_text(validate(operator, field="metadata", metadata=""))
    assert "metadata: not valid JSON" in page_text(validate(operator, field="metadata",
                                                            metadata="{"))
    assert "body: not valid JSON" in page_text(validate(
        operator, field="body", kind="notification", channel="webhook", body="{x"))
    assert "field-error" not in page_text(validate(
        operator, field="body", kind="notification", channel="email", body="{x"))
    text = page_text(validate(operator, kind="notification", channel="sms",
                              payload='{"recipient": "+1"}'))
    assert "payload: &#39;recipient&#39; has its own field" in text and "sms_handler" in text
    assert validate(operator, field="tenant_id").status_code == 404


def test_payload_validation_knows_the_tenants_size_limit(client_as, make_tenant):
    make_tenant("acme", "tier2", name="Acme", maxJobPayloadSize=50)
    payload = {"t": "x" * 60}
    text = page_text(validate(client_as("operator"), payload=json.dumps(payload)))
    assert (f"payload: {compact_size(payload)} bytes; Acme (tier2) allows at most 50 bytes per "
            "job") in text


def test_tenant_usage_fragment(operator, service, make_tenant):
    make_tenant("acme", "tier2", name="Acme Corp", maxQueuedJobs=7)
    for _ in range(3):
        service.queue_job("immediate", "noop", {}, "acme")
    text = page_text(operator.get("/jobs/new/tenant-usage?tenant_id=acme",
                                  headers={"HX-Request": "true"}))
    assert "Acme Corp" in text and "3 / 7" in text and "3 / 1,000" in text
    assert "notification, delayed, immediate" not in text   # sorted
    assert "delayed, immediate, maintenance, notification, recurring, scheduled" in text
    assert "64 KiB (65,536 bytes)" in text
    response = operator.get("/jobs/new/tenant-usage?tenant_id=nobody")
    assert response.status_code == 404 and "There is no tenant nobody" in page_text(response)


def test_choosing_a_tenant_offers_the_handlers_it_may_queue(operator, make_tenant):
    make_tenant("acme", "tier2")
    make_tenant("console", "tier4")    # ALERTS_TENANT_ID: the operations tenant
    def handlers_for(tenant_id, chosen):
        text = operator.get(f"/jobs/new/tenant-usage?tenant_id={tenant_id}&kind=immediate"
                            f"&handler={chosen}", headers={"HX-Request": "true"}).get_data(
                                as_text=True)
        select = re.search(r'<select[^>]*id="handler"[^>]*>.*?</select>', text, re.S).group(0)
        assert 'hx-swap-oob="outerHTML"' in select
        return re.findall(r'<option(?: selected)? value="([^"]+)"', select), re.search(
            r'<option selected value="([^"]+)"', select)

    ops, chosen = handlers_for("console", "evaluate_alert_rules")
    assert "evaluate_alert_rules" in ops and chosen.group(1) == "evaluate_alert_rules"
    tenant, chosen = handlers_for("acme", "evaluate_alert_rules")
    assert "evaluate_alert_rules" not in tenant and "noop" in tenant
    assert chosen is None or chosen.group(1) != "evaluate_alert_rules"
    kept = handlers_for("acme", "noop")[1]
    assert kept.group(1) == "noop"
    # The usage alone (no kind) carries no handler list.
    text = operator.get("/jobs/new/tenant-usage?tenant_id=acme").get_data(as_text=True)
    assert 'id="handler"' not in text


def test_the_form_shows_the_chosen_tenants_usage(operator):
    page = page_text(operator.get("/jobs/new"))
    assert 'id="tenant-usage"' in page and "Waiting (queued + pending)" in page


# -- batch upload -------------------------------------------------------------------------------

def upload(client, filename, content, tenant_id="acme", **extra):
    data = {"csrf_token": client.csrf, "tenant_id": tenant_id, "priority": "",
            "file": (io.BytesIO(content.encode() if isinstance(content, str) else content),
                     filename), **extra}
    return client.post("/jobs/new/batch", data=data, content_type="multipart/form-data")


def test_batch_json(operator, service):
    specs = {"jobs": [{"type": "immediate", "handler": "noop", "payload": {"n": i}}
                      for i in range(20)]
             + [{"type": "recurring", "handler": "noop", "cron_schedule": "0 2 * * 0",
                 "timezone": "Europe/Paris", "priority": "high"}]}
    response = upload(operator, "jobs.json", json.dumps(specs), priority="low")
    assert response.status_code == 303, page_text(response)[:3000]
    assert count_jobs(service) == 21
    page = page_text(operator.get(response.headers["Location"]))
    assert "Queued 21 jobs for acme" in page and "See them in the jobs table" in page
    link = re.search(r'href="(/jobs\?[^"]+)">See them', page).group(1).replace("&amp;", "&")
    assert "tenant=acme" in link and "created_from=" in link and "created_before=" in link
    jobs = service.get_jobs_by_status("pending", "acme")
    assert [(j.cron_schedule, j.priority.value) for j in jobs] == [("0 2 * * 0", "high")]
    assert {j.priority.value for j in service.get_jobs_by_status("queued", "acme")} == {"low"}


def test_batch_csv(operator, service):
    content = ("type,handler,payload,priority,max_retries,scheduled_for,idempotency_key\n"
               'immediate,noop,"{""n"": 1}",high,5,,k1\n'
               "\n"
               "delayed,noop,,,0,2099-01-01T00:00:00Z,\n")
    response = upload(operator, "jobs.csv", content)
    assert response.status_code == 303, page_text(response)[:3000]
    first = service.get_jobs_by_status("queued", "acme")[0]
    assert (first.payload, first.priority.value, first.max_retries, first.idempotency_key) == (
        {"n": 1}, "high", 5, "k1")
    later = service.get_jobs_by_status("pending", "acme")[0]
    assert later.scheduled_for == datetime(2099, 1, 1, tzinfo=UTC) and later.payload == {}


def test_htmx_batch_upload_answers_with_hx_redirect(operator, service):
    response = operator.post("/jobs/new/batch", data={
        "csrf_token": operator.csrf, "tenant_id": "acme",
        "file": (io.BytesIO(b'[{"type": "immediate", "handler": "noop"}]'), "a.json")},
        content_type="multipart/form-data", headers={"HX-Request": "true"})
    assert response.status_code == 204 and "queued=1" in response.headers["HX-Redirect"]


@pytest.mark.parametrize("filename,content,message", [
    ("jobs.json", json.dumps([{"type": "immediate", "handler": "noop"}] * 13
                             + [{"type": "immediate", "handler": "noop", "priority": "asap"}]),
     "row 14, field priority: unknown priority &#39;asap&#39;"),
    ("jobs.csv", "type,handler,payload\nimmediate,noop,{}\nimmediate,noop,{bad\n",
     "row 2 (line 3), field payload: not valid JSON"),
    ("jobs.csv", "type,handler,max_retries\nimmediate,noop,1\nimmediate,nobody,1\n",
     "row 2 (line 3), field handler: unknown handler &#39;nobody&#39;"),
    ("jobs.csv", "type,handler,colour\nimmediate,noop,red\n", "header: unknown column &#39;colour"),
    ("jobs.json", '{"jobs": 5}', "file: must be a JSON list of jobs"),
    ("jobs.json", "[1, 2", "file: not valid JSON"),
    ("jobs.json", json.dumps([{"type": "immediate", "handler": "noop", "colour": 1}]),
     "row 1, field colour: unknown key"),
    ("jobs.csv", b"\xff\xfe", "file: not UTF-8 text"),
])
def test_batch_with_a_bad_row_names_it_and_stores_nothing(operator, service, filename, content,
                                                          message):
    response = upload(operator, filename, content)
    text = page_text(response)
    assert response.status_code == 422 and message in text, re.findall(
        r'class="field-error">([^<]*)', text)
    assert "Nothing was queued" in text and count_jobs(service) == 0


def test_batch_without_a_file(operator, service):
    response = operator.post("/jobs/new/batch", data={"csrf_token": operator.csrf,
                                                      "tenant_id": "acme"})
    assert response.status_code == 422 and "file: choose a .json or .csv file" in page_text(
        response)


def test_batch_over_a_limit_is_shown_inline(client_as, make_tenant, service):
    make_tenant("acme", "tier2", name="Acme", maxQueuedJobs=5)
    operator = client_as("operator")
    response = upload(operator, "jobs.json",
                      json.dumps([{"type": "immediate", "handler": "noop"}] * 6))
    text = page_text(response)
    assert response.status_code == 422 and count_jobs(service) == 0
    assert "Acme&#39;s queue is full: 0 of 5 jobs waiting (tier2), and this adds 6" in text


def test_batch_names_the_row_a_type_limit_refused(client_as, make_tenant, service):
    make_tenant("acme", "tier1", name="Acme")
    operator = client_as("operator")
    specs = [{"type": "notification", "handler": "sms_handler",
              "payload": {"recipient": "+14155550123", "body": "hi"}},
             {"type": "immediate", "handler": "noop"}]
    text = page_text(upload(operator, "jobs.json", json.dumps(specs)))
    assert "row 2: Acme (tier1) may not queue &#39;immediate&#39; jobs" in text
    assert count_jobs(service) == 0


def test_a_file_over_the_request_size_limit_gets_the_413_page(app, operator, service):
    app.config["MAX_CONTENT_LENGTH"] = 2_000
    response = upload(operator, "big.json", json.dumps(
        [{"type": "immediate", "handler": "noop", "payload": {"pad": "x" * 100}}] * 30))
    assert response.status_code == 413 and "Split the file" in page_text(response)
    assert count_jobs(service) == 0


def test_batch_row_cap():
    rows = "type,handler\n" + "immediate,noop\n" * 4
    assert len(read_batch_file("a.csv", rows.encode(), max_rows=4).specs) == 4
    with pytest.raises(BatchFileError, match="at most 3 per upload"):
        read_batch_file("a.csv", rows.encode(), max_rows=3)
    with pytest.raises(BatchFileError, match="at most 3 per upload"):
        read_batch_file("a.json", json.dumps([{}] * 4).encode(), max_rows=3)


def test_the_batch_form_says_its_limits_and_has_a_progress_bar(operator):
    page = page_text(operator.get("/jobs/new/batch"))
    assert "10,000 jobs" in page and "16 MB" in page
    assert "<progress" in page and "data-upload-progress" in page and "js/new_job.js" in page
    assert 'enctype="multipart/form-data"' in page and "hx-on" not in page   # the CSP: no eval
    assert operator.get("/static/js/new_job.js").status_code == 200
