"""Operator control in the console: pause and resume (a tenant, a handler for one tenant or
every tenant, one job, everything), run now, the paused badges and the maintenance banner,
"why isn't this job running?" and the runners screen — each as an operator sees it: the button,
the page after it, and what the runner then does (``service.run_until_idle``, as in
tests/web/test_jobs.py). Also who may (roles, tenant bindings), bad input and CSRF.
Database-neutral: the same on SQLite and PostgreSQL."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from console.jobs import JobStatus
from console.jobs.models import audit_table, jobs_table, runners_table
from console.web.auth.views import set_user

from .conftest import csrf_token, sign_in

UTC = timezone.utc
HTMX = {"HX-Request": "true"}
IDLE = {"timeout": 3, "settle": 0.5}
BOUND = ("bea", "operator", "bound operator pw 1")


def text(response) -> str:
    return response.get_data(as_text=True)


def flat(response) -> str:
    """The page's text with whitespace runs made single spaces (templates wrap lines)."""
    return re.sub(r"\s+", " ", text(response))


def follow(client, response):
    assert response.status_code == 303, (response.status_code, text(response)[:500])
    return client.get(response.headers["Location"])


@pytest.fixture
def tenants(make_tenant):
    make_tenant("acme", "tier4", name="Acme Corp")
    make_tenant("globex", "tier4", name="Globex")


@pytest.fixture
def bound_operator(app, tenants, users):
    """An operator bound to acme, signed in."""
    with app.app_context():
        set_user(BOUND[0], BOUND[1], BOUND[2], tenants=["acme"])
    client = app.test_client()
    assert sign_in(client, BOUND[0], BOUND[2]).status_code == 302
    client.csrf = csrf_token(client, "/jobs")
    return client


def post(client, url: str, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


def status(service, job_id: str) -> JobStatus:
    return service.get_job_by_id(job_id).status


def audit_actions(service) -> list[tuple[str, str]]:
    a = audit_table.c
    with service.engine.connect() as conn:
        return [(row.action, row.actor_name) for row in conn.execute(
            select(a.action, a.actor_name).where(a.action.notlike("sign_in%"))
            .order_by(a.created_at))]


# -- a tenant ------------------------------------------------------------------------------

def test_pausing_a_tenant_holds_its_jobs_until_it_is_resumed(client_as, service, tenants):
    operator = client_as("operator")
    held = service.queue_job("immediate", "noop", {}, "acme")
    other = service.queue_job("immediate", "noop", {}, "globex")

    page = follow(operator, post(operator, "/tenants/acme/pause", reason="provider outage"))
    body = flat(page)
    assert "Tenant Acme Corp paused" in body                               # the flash
    assert 'class="badge badge-paused"' in body and "provider outage" in body
    assert "paused</strong> by <strong>olga</strong>" in body and "Resume tenant" in body

    service.run_until_idle(**IDLE)
    assert status(service, held.id) is JobStatus.QUEUED    # still queued: not cancelled, waits
    assert status(service, other.id) is JobStatus.COMPLETED

    listing = flat(operator.get("/tenants"))
    row = listing[listing.index("Acme Corp"):listing.index("Globex")]
    assert "badge-paused" in row and "provider outage" in row              # in the title
    jobs = flat(operator.get("/jobs?tenant=acme"))
    assert "badge-paused" in jobs and "tenant acme, paused by olga" in jobs
    assert "badge-paused" not in flat(operator.get("/jobs?tenant=globex"))
    job_page = flat(operator.get(f"/jobs/{held.id}"))
    assert '<span id="job-paused">' in job_page and "badge-paused" in job_page

    page = follow(operator, post(operator, "/tenants/acme/resume"))
    assert "Tenant Acme Corp resumed" in flat(page) and "badge-paused" not in flat(page)
    service.run_until_idle(**IDLE)
    assert status(service, held.id) is JobStatus.COMPLETED
    assert audit_actions(service) == [("tenant_paused", "olga"), ("tenant_resumed", "olga")]


def test_pausing_twice_and_resuming_what_is_not_paused_change_nothing(client_as, service,
                                                                       tenants):
    operator = client_as("operator")
    follow(operator, post(operator, "/tenants/acme/pause", reason="reason-one"))
    page = flat(follow(operator, post(operator, "/tenants/acme/pause", reason="reason-two")))
    assert "reason-one" in page and "reason-two" not in page   # the first pause stands
    follow(operator, post(operator, "/tenants/acme/resume"))
    page = flat(follow(operator, post(operator, "/tenants/acme/resume")))
    assert "Tenant Acme Corp was not paused: nothing changed." in page
    assert [action for action, _ in audit_actions(service)] == ["tenant_paused",
                                                               "tenant_resumed"]


def test_a_next_address_brings_the_operator_back_and_foreign_ones_are_ignored(client_as,
                                                                             tenants):
    operator = client_as("operator")
    response = post(operator, "/tenants/acme/pause", next="/jobs?tenant=acme")
    assert response.headers["Location"] == "/jobs?tenant=acme"
    response = post(operator, "/tenants/acme/resume", next="https://evil.example/")
    assert response.headers["Location"] == "/tenants/acme"


# -- a handler -----------------------------------------------------------------------------

def test_a_handler_paused_for_one_tenant_holds_only_that_tenants_jobs(client_as, service,
                                                                     tenants):
    operator = client_as("operator")
    held = service.queue_job("immediate", "noop", {}, "acme")
    other_handler = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    other_tenant = service.queue_job("immediate", "noop", {}, "globex")

    # From the tenant's page (handler chosen there); the answer goes back to it.
    page = follow(operator, post(operator, "/handlers/pause", handler="noop", tenant_id="acme",
                                 reason="bad payloads", next="/tenants/acme"))
    body = flat(page)
    assert "Handler noop paused for tenant acme" in body
    assert "Handler <code>noop</code> for this tenant" in body and "bad payloads" in body
    assert "Resume noop here" in body

    service.run_until_idle(**IDLE)
    assert status(service, held.id) is JobStatus.QUEUED
    assert status(service, other_handler.id) is JobStatus.COMPLETED
    assert status(service, other_tenant.id) is JobStatus.COMPLETED

    handler_page = flat(operator.get("/handlers/noop"))
    assert "paused for 1 tenant" in handler_page and "Resume for acme" in handler_page
    assert "paused for acme" in flat(operator.get("/handlers"))
    tenants_page = flat(operator.get("/tenants"))
    assert "1 handler paused" in tenants_page

    page = follow(operator, post(operator, "/handlers/resume", handler="noop",
                                 tenant_id="acme"))
    assert page.request.path == "/handlers/noop"
    assert "Handler noop resumed for tenant acme" in flat(page)
    service.run_until_idle(**IDLE)
    assert status(service, held.id) is JobStatus.COMPLETED


def test_pausing_a_handler_for_every_tenant_takes_a_staff_admin(client_as, service, tenants):
    operator, admin = client_as("operator"), client_as("admin")
    jobs = [service.queue_job("immediate", "noop", {}, tenant) for tenant in ("acme", "globex")]
    assert "Pause this handler for everyone" not in text(operator.get("/handlers/noop"))
    refused = post(operator, "/handlers/pause", handler="noop", reason="no")
    assert refused.status_code == 403 and "admin bound to no tenant" in text(refused)
    assert not service.pauses()

    assert "Pause this handler for everyone" in text(admin.get("/handlers/noop"))
    page = flat(follow(admin, post(admin, "/handlers/pause", handler="noop", reason="bug")))
    assert "Handler noop paused for every tenant" in page
    assert "Paused <strong>for every tenant</strong> by <strong>ada</strong>" in page
    service.run_until_idle(**IDLE)
    assert {status(service, job.id) for job in jobs} == {JobStatus.QUEUED}
    listing = flat(admin.get("/handlers"))
    row = listing[listing.index(">noop<"):]
    assert "badge-paused" in row[:600]

    assert post(operator, "/handlers/resume", handler="noop").status_code == 403
    follow(admin, post(admin, "/handlers/resume", handler="noop"))
    service.run_until_idle(**IDLE)
    assert {status(service, job.id) for job in jobs} == {JobStatus.COMPLETED}


# -- one job, run now ------------------------------------------------------------------------

def test_pause_resume_and_run_now_on_a_delayed_job(client_as, service, tenants):
    operator = client_as("operator")
    job = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    page = flat(operator.get(f"/jobs/{job.id}"))
    assert "Pause job" in page and "Run now" in page and "Resume job" not in page

    page = flat(follow(operator, post(operator, f"/jobs/{job.id}/pause", reason="check it")))
    assert f"Job {job.id} paused" in page and "This job is paused by <strong>olga" in page
    assert "Resume job" in page and "Run now" not in page and "badge-paused" in page

    refused = post(operator, f"/jobs/{job.id}/run-now")
    assert refused.status_code == 409
    assert "is paused; resume it to run it" in text(refused)
    assert status(service, job.id) is JobStatus.PENDING

    page = flat(follow(operator, post(operator, f"/jobs/{job.id}/resume")))
    assert f"Job {job.id} resumed" in page and "badge-paused" not in page
    page = flat(follow(operator, post(operator, f"/jobs/{job.id}/run-now")))
    assert f"Job {job.id} is due now (now queued)" in page
    service.run_until_idle(**IDLE)
    assert status(service, job.id) is JobStatus.COMPLETED
    assert "Run now" not in flat(operator.get(f"/jobs/{job.id}"))   # finished: nothing to do
    assert [action for action, _ in audit_actions(service)] == [
        "job_paused", "job_resumed", "job_run_now"]


def test_a_paused_queued_job_waits_pending_and_runs_once_resumed(client_as, service, tenants):
    operator = client_as("operator")
    job = service.queue_job("immediate", "noop", {}, "acme")
    follow(operator, post(operator, f"/jobs/{job.id}/pause"))
    service.run_until_idle(**IDLE)
    assert status(service, job.id) is JobStatus.PENDING
    follow(operator, post(operator, f"/jobs/{job.id}/resume"))
    service.run_until_idle(**IDLE)
    assert status(service, job.id) is JobStatus.COMPLETED


def test_run_now_on_a_recurring_job_queues_a_one_off_copy_and_shows_it(client_as, service,
                                                                       tenants):
    operator = client_as("operator")
    recurring = service.queue_scheduled_job("Nightly", "0 2 * * *", "noop", {"n": 1}, "acme")
    page = flat(operator.get(f"/jobs/{recurring.id}"))
    assert "Run now" in page and "Pause job" in page
    response = post(operator, f"/jobs/{recurring.id}/run-now")
    copy_id = response.headers["Location"].rsplit("/", 1)[1]
    assert copy_id != recurring.id
    page = flat(operator.get(response.headers["Location"]))
    assert "A one-off run of this recurring job was queued" in page
    copy = service.get_job_by_id(copy_id)
    assert copy.metadata["run_now_of"] == recurring.id and not copy.cron_schedule
    service.run_until_idle(**IDLE)
    assert status(service, copy_id) is JobStatus.COMPLETED
    after = service.get_job_by_id(recurring.id)
    assert after.status is JobStatus.PENDING and after.scheduled_for == recurring.scheduled_for


# -- everything (maintenance) ------------------------------------------------------------------

def test_pausing_everything_shows_the_banner_on_every_page_until_resumed(client_as, service,
                                                                         tenants):
    admin, operator = client_as("admin"), client_as("operator")
    jobs = [service.queue_job("immediate", "noop", {}, tenant) for tenant in ("acme", "globex")]
    assert "Pause everything" in text(admin.get("/"))
    assert "Pause everything" not in text(operator.get("/"))
    refused = post(operator, "/maintenance/pause", reason="mine")
    assert refused.status_code == 403 and not service.pauses()

    page = flat(follow(admin, post(admin, "/maintenance/pause", reason="database upgrade")))
    assert "Everything is paused" in page
    banner = ("Maintenance: runners start no jobs</strong> — paused by ada since ")
    for client in (admin, operator):
        for url in ("/", "/jobs", "/tenants", f"/jobs/{jobs[0].id}", "/handlers"):
            page = flat(client.get(url))
            assert banner in page and ": database upgrade" in page, url
    assert 'action="/maintenance/resume"' in flat(admin.get("/jobs"))        # staff admins
    assert 'action="/maintenance/resume"' not in flat(operator.get("/jobs"))
    service.run_until_idle(**IDLE)
    assert {status(service, job.id) for job in jobs} == {JobStatus.QUEUED}

    assert post(operator, "/maintenance/resume").status_code == 403
    page = follow(admin, admin.post("/maintenance/resume",
                                    data={"csrf_token": admin.csrf, "next": "/jobs"}))
    assert page.request.path == "/jobs" and "Maintenance: runners" not in text(page)
    service.run_until_idle(**IDLE)
    assert {status(service, job.id) for job in jobs} == {JobStatus.COMPLETED}
    assert [action for action, _ in audit_actions(service)] == ["all_paused", "all_resumed"]


def test_the_banner_and_badges_escape_what_operators_typed(client_as, service, tenants):
    admin = client_as("admin")
    evil = "<script>alert('x')</script>"
    follow(admin, post(admin, "/maintenance/pause", reason=evil))
    follow(admin, post(admin, "/tenants/acme/pause", reason=evil))
    for url in ("/", "/tenants", "/tenants/acme"):
        page = text(admin.get(url))
        assert evil not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


# -- bad input, refusals ------------------------------------------------------------------------

def test_a_reason_over_500_characters_is_refused_with_a_message_and_nothing_stored(
        client_as, service, tenants):
    admin = client_as("admin")
    job = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    long = "x" * 501
    for url, data in (("/tenants/acme/pause", {}), (f"/jobs/{job.id}/pause", {}),
                      ("/handlers/pause", {"handler": "noop"}),
                      ("/handlers/pause", {"handler": "noop", "tenant_id": "acme"}),
                      ("/maintenance/pause", {})):
        response = post(admin, url, reason=long, **data)
        assert response.status_code == 422, url
        assert "Nothing was changed: reason is 501 characters; keep it to 500." in text(response)
        assert "Back to the page" in text(response)
    htmx = admin.post("/tenants/acme/pause", data={"csrf_token": admin.csrf, "reason": long},
                      headers=HTMX)
    assert htmx.status_code == 422 and htmx.headers["HX-Retarget"] == "#messages"
    assert not service.pauses() and audit_actions(service) == []
    assert status(service, job.id) is JobStatus.PENDING
    # 500 is fine, and surrounding spaces do not count.
    follow(admin, post(admin, "/tenants/acme/pause", reason=" " + "y" * 500 + " "))
    assert service.pauses().of("tenant", tenant_id="acme").reason == "y" * 500


def test_nul_characters_are_refused_before_the_database_sees_them(client_as, service,
                                                                   tenants):
    """PostgreSQL cannot store a NUL, nor compare one: a 4xx, never a 500."""
    admin = client_as("admin")
    for url, data in (("/tenants/acme/pause", {"reason": "a\x00b"}),
                      ("/maintenance/pause", {"reason": "\x00"}),
                      ("/handlers/pause", {"handler": "noop", "reason": "x\x00"})):
        response = post(admin, url, **data)
        assert response.status_code == 422, url
        assert "must not contain the NUL character" in text(response)
    response = post(admin, "/handlers/pause", handler="noop", tenant_id="ac\x00me")
    assert response.status_code == 404
    assert admin.get("/tenants/ac%00me").status_code == 404
    assert not service.pauses()


def test_unknown_things_and_impossible_changes_are_4xx_messages(client_as, service, tenants):
    operator = client_as("operator")
    done = service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(**IDLE)
    queued = service.queue_job("immediate", "noop", {}, "acme")
    cases = [
        ("/tenants/nope/pause", {}, 404, "There is no such tenant"),
        ("/handlers/pause", {"handler": "nope", "tenant_id": "acme"}, 422, "unknown handler"),
        ("/handlers/pause", {"handler": "", "tenant_id": "acme"}, 422, "unknown handler"),
        ("/handlers/pause", {"handler": "noop", "tenant_id": "nope"}, 404, "no such tenant"),
        ("/jobs/01a2218b-0000-7000-8000-000000000000/pause", {}, 404, "There is no job"),
        ("/jobs/not-a-job/run-now", {}, 404, "There is no job"),
        (f"/jobs/{done.id}/pause", {}, 409, "is completed"),
        (f"/jobs/{done.id}/run-now", {}, 409, "is completed"),
        (f"/jobs/{queued.id}/run-now", {}, 409, "is queued"),
    ]
    for url, data, code, said in cases:
        response = post(operator, url, **data)
        assert response.status_code == code, (url, data, response.status_code)
        assert said in text(response), (url, text(response)[-800:])
    assert not service.pauses()


def test_viewers_see_the_state_but_no_buttons_and_cannot_act(client_as, service, tenants):
    viewer = client_as("viewer")
    job = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    service.pause_tenant("acme", "held", by="ada")
    for url in ("/tenants/acme", f"/jobs/{job.id}", "/handlers/noop", "/"):
        page = text(viewer.get(url))
        assert 'name="reason"' not in page and "Run now" not in page, url
    assert "badge-paused" in text(viewer.get("/tenants/acme"))
    for url, data in (("/tenants/acme/resume", {}), ("/tenants/globex/pause", {}),
                      (f"/jobs/{job.id}/pause", {}), (f"/jobs/{job.id}/run-now", {}),
                      ("/handlers/pause", {"handler": "noop", "tenant_id": "acme"}),
                      ("/handlers/pause", {"handler": "noop"}), ("/maintenance/pause", {})):
        assert post(viewer, url, **data).status_code == 403, url
    assert [p.key for p in service.pauses().pauses] == ["tenant:acme"]
    assert status(service, job.id) is JobStatus.PENDING


def test_a_user_bound_to_a_tenant_controls_its_own_things_only(bound_operator, service):
    client = bound_operator
    mine = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    theirs = service.queue_delayed_job("noop", {}, timedelta(hours=1), "globex")
    page = text(client.get("/tenants/acme"))
    assert "Pause tenant" in page and "Pause handler for this tenant" in page
    assert "/handlers/noop" not in page            # the handler page is staff-only for it

    follow(client, post(client, "/tenants/acme/pause"))
    follow(client, post(client, "/handlers/pause", handler="noop", tenant_id="acme"))
    follow(client, post(client, f"/jobs/{mine.id}/pause"))
    for url, data in (("/tenants/globex/pause", {}),
                      ("/handlers/pause", {"handler": "noop", "tenant_id": "globex"}),
                      (f"/jobs/{theirs.id}/pause", {}), (f"/jobs/{theirs.id}/run-now", {})):
        response = post(client, url, **data)
        assert response.status_code == 404 and "globex" not in text(response), url
    for url, data in (("/handlers/pause", {"handler": "noop"}), ("/maintenance/pause", {}),
                      ("/handlers/resume", {"handler": "noop"})):
        assert post(client, url, **data).status_code == 403, url
    assert client.get("/runners").status_code == 403
    assert "/runners" not in text(client.get("/"))               # no link to it either
    assert sorted(p.key for p in service.pauses().pauses) == [
        "handler:noop@acme", f"job:{mine.id}", "tenant:acme"]


def test_every_control_post_needs_its_csrf_token(client_as, service, tenants):
    admin = client_as("admin")
    job = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    for url, data in (("/tenants/acme/pause", {}), ("/tenants/acme/resume", {}),
                      (f"/jobs/{job.id}/pause", {}), (f"/jobs/{job.id}/resume", {}),
                      (f"/jobs/{job.id}/run-now", {}),
                      ("/handlers/pause", {"handler": "noop"}),
                      ("/handlers/resume", {"handler": "noop"}),
                      ("/maintenance/pause", {}), ("/maintenance/resume", {})):
        response = admin.post(url, data=data)
        assert response.status_code == 400 and "The form expired" in text(response), url
    assert not service.pauses() and status(service, job.id) is JobStatus.PENDING


# -- why isn't this job running? --------------------------------------------------------------

def _set(service, job_id: str, **values) -> None:
    with service.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(**values))


def _runner_row(service, runner_id: str, **values) -> None:
    now = datetime.now(UTC)
    row = {"id": runner_id, "hostname": "worker-1", "pid": 4242, "threads": 8,
           "started_at": now - timedelta(minutes=5), "heartbeat_at": now,
           "handlers": ["noop", "record"], "busy_threads": 2, "jobs_held": 2,
           "claims_per_minute": 17, **values}
    with service.engine.begin() as conn:
        conn.execute(runners_table.insert().values(**row))


def test_the_explanation_lists_every_blocker_with_its_figures_and_links(client_as, service,
                                                                        make_tenant):
    make_tenant("acme", "tier4", name="Acme Corp", maxConcurrentJobs=1)
    operator = client_as("operator")
    running = service.queue_job("immediate", "noop", {}, "acme")
    _set(service, running.id, status=JobStatus.PROCESSING.value, lease_owner="gone:1",
         lease_expires_at=datetime.now(UTC) + timedelta(seconds=30))
    waiting = service.queue_job("immediate", "noop", {}, "acme")
    service.pause_tenant("acme", "provider outage", by="ada")

    page = flat(operator.get(f"/jobs/{waiting.id}"))
    assert "Why isn't this job running?" in page
    fragment = operator.get(f"/jobs/{waiting.id}/explanation", headers=HTMX)
    body = flat(fragment)
    assert fragment.status_code == 200 and 'hx-trigger="every 2s, ' in body
    codes = re.findall(r'data-code="([a-z_]+)"', body)
    assert codes == ["paused", "tenant_concurrency", "no_live_runner"]
    assert "Paused: tenant acme, by ada" in body and "provider outage" in body
    assert 'href="/tenants/acme">Tenant acme</a>' in body
    assert "1 of 1" in body and f'href="/jobs/{running.id}"' in body       # who holds the slot
    assert 'id="job-paused" hx-swap-oob="true"' in body                    # the badge, too

    # The running job: its lease's holder stopped beating.
    body = flat(operator.get(f"/jobs/{running.id}/explanation", headers=HTMX))
    assert 'data-code="lease"' in body and "stopped renewing" in body

    # Resumed, a live runner, a free slot: nothing holds it.
    service.resume_tenant("acme")
    _set(service, running.id, status=JobStatus.COMPLETED.value, lease_owner=None)
    _runner_row(service, "worker-1:4242:runner:abc")
    body = flat(operator.get(f"/jobs/{waiting.id}/explanation", headers=HTMX))
    assert "Nothing holds it back" in body and "data-code" not in body


def test_a_delayed_job_says_when_and_a_running_one_who_holds_it(client_as, service, tenants):
    viewer = client_as("viewer")
    delayed = service.queue_delayed_job("noop", {}, timedelta(minutes=30), "acme")
    body = flat(viewer.get(f"/jobs/{delayed.id}/explanation", headers=HTMX))
    assert 'data-code="due_later"' in body and "(in 29 min" in body

    _runner_row(service, "worker-1:4242:runner:abc")
    job = service.queue_job("immediate", "noop", {}, "acme")
    _set(service, job.id, status=JobStatus.PROCESSING.value,
         lease_owner="worker-1:4242:runner:abc", last_attempt=datetime.now(UTC),
         lease_expires_at=datetime.now(UTC) + timedelta(seconds=30), progress=0.4,
         progress_message="row 400 of 1000")
    body = flat(viewer.get(f"/jobs/{job.id}/explanation", headers=HTMX))
    assert "<h2 id=\"explanation-title\">Running</h2>" in body
    assert "Held by runner <strong>worker-1</strong> pid 4242" in body
    assert "40 %: row 400 of 1000" in body and "every 2s" in body


def test_the_explanation_stops_polling_once_the_job_has_finished(client_as, service, tenants):
    viewer = client_as("viewer")
    job = service.queue_job("immediate", "noop", {}, "acme")
    assert "every 2s" in text(viewer.get(f"/jobs/{job.id}/explanation", headers=HTMX))
    service.run_until_idle(**IDLE)
    body = flat(viewer.get(f"/jobs/{job.id}/explanation", headers=HTMX))
    assert "every 2s" not in body and "It has completed" in body
    assert f'hx-trigger="sse:job-{job.id}, live-poll from:body"' in body   # a retry revives it
    assert "every 2s" not in flat(viewer.get(f"/jobs/{job.id}"))


def test_a_bound_user_sees_how_many_other_tenants_compete_not_which(bound_operator, service,
                                                                    users, client_as):
    _runner_row(service, "worker-1:4242:runner:abc", claims_per_minute=30)
    for _ in range(3):
        service.queue_job("immediate", "noop", {}, "globex")
    service.queue_job("immediate", "noop", {}, "acme")
    mine = service.queue_job("immediate", "noop", {}, "acme")
    body = flat(bound_operator.get(f"/jobs/{mine.id}/explanation", headers=HTMX))
    assert 'data-code="fair_share"' in body and "Estimated start" in body
    assert "globex" not in body and "<dt>Other tenants with due work</dt><dd>1</dd>" in body
    staff = flat(client_as("operator").get(f"/jobs/{mine.id}/explanation", headers=HTMX))
    assert "globex (3 queued, top high)" in staff


# -- runners ------------------------------------------------------------------------------------

def test_the_runners_screen_lists_live_and_stopped_runners_and_what_they_left(client_as, service,
                                                                              tenants):
    now = datetime.now(UTC)
    handed_back = service.queue_job("immediate", "noop", {}, "acme")
    lost = service.queue_job("immediate", "noop", {}, "globex")
    _set(service, lost.id, status=JobStatus.PROCESSING.value,
         lease_owner="worker-1:4242:runner:abc",
         lease_expires_at=now + timedelta(seconds=30))
    _runner_row(service, "worker-1:4242:runner:abc")
    _runner_row(service, "old-host:99:runner:def", hostname="<b>old-host</b>", pid=99,
                heartbeat_at=now - timedelta(minutes=10), stopped_at=now - timedelta(minutes=10),
                released_job_ids=[handed_back.id])
    _runner_row(service, "crashed:7:runner:ghi", hostname="crashed", pid=7,
                heartbeat_at=now - timedelta(hours=2), lost_job_ids=[lost.id])
    _runner_row(service, "ancient:1:runner:jkl", hostname="ancient", pid=1,
                heartbeat_at=now - timedelta(hours=30), stopped_at=now - timedelta(hours=30))

    viewer = client_as("viewer")
    page = flat(viewer.get("/runners"))
    assert 'href="/runners"' in page                                          # in the nav
    live = page[page.index('id="live-runners"'):page.index('id="stopped-runners"')]
    assert "worker-1" in live and "4242" in live and "2 of 8" in live
    assert "2: noop, record" in live and ">17<" in live and " ago" in live
    stopped = page[page.index('id="stopped-runners"'):]
    assert "&lt;b&gt;old-host&lt;/b&gt;" in stopped and "<b>old-host" not in stopped
    assert "stopped cleanly" in stopped and "stopped beating (crashed or cut off)" in stopped
    assert f'href="/jobs/{handed_back.id}"' in stopped and "handed back at shutdown" in stopped
    assert "now <span class=\"status status-queued\">queued</span>" in stopped
    assert "attempt recorded as lost" in stopped
    assert "on <code>worker-1:4242:runner:abc</code>" in stopped            # who holds it now
    assert "ancient" not in page                                             # past 24 hours
    partial = viewer.get("/runners", headers=HTMX)
    assert partial.status_code == 200 and "<html" not in text(partial)


def test_the_runners_screen_shows_a_runner_whose_clock_is_off_the_databases(client_as, service):
    _runner_row(service, "worker-1:4242:runner:abc", clock_skew_seconds=61.3)
    _runner_row(service, "worker-2:4343:runner:def", hostname="worker-2", clock_skew_seconds=0.4)
    page = flat(client_as("viewer").get("/runners"))
    assert "clock +61.3 s off the database's" in page
    assert page.count("data-clock-skew") == 1      # within a second: nothing to say


def test_the_runners_screen_says_when_no_runner_is_alive(client_as):
    page = flat(client_as("viewer").get("/runners"))
    assert "No runner is alive" in page and "Stopped in the last 24 hours <small>0</small>" in page
