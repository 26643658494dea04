"""New job in a real browser: one job of each kind through the forms (and a batch file), the
immediate one completing live on its page, the cron preview as the operator types, and a tenant
limit refused on the form after an admin tightened it."""
from __future__ import annotations

import json
import re
import time

from playwright.sync_api import expect

from .conftest import ADMIN, OPERATOR, screenshot, sign_in_to

JOB_PAGE = re.compile(r"/jobs/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def job_id_of(page) -> str:
    match = JOB_PAGE.search(page.url)
    assert match, f"not on a job page: {page.url}"
    return match.group(1)


def status_badge(page, job_id: str):
    """The status in the job page's fields (the element the event stream swaps)."""
    return page.locator(f'dd[sse-swap="job-{job_id}"] .status')


def submit(page, name: str) -> str:
    """Click the form's submit button; wait for the job page it leads to; return the job id."""
    page.get_by_role("button", name=name).click()
    page.wait_for_url(JOB_PAGE)
    expect(page.get_by_text(re.compile(r"^Queued job [0-9a-f-]{36} "))).to_be_visible()
    return job_id_of(page)


def field(page, term: str):
    """The <dd> after the <dt> ``term`` in the job page's field list."""
    return page.locator("dl.fields dt", has_text=re.compile(f"^{re.escape(term)}$")) \
        .locator("xpath=following-sibling::dd[1]")


def test_one_job_of_each_kind_is_created_through_the_forms(live_server, page, make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")

    # Notification: channel, recipient, subject, body.
    sign_in_to(page, "/jobs/new/notification", *OPERATOR)
    expect(page.get_by_label("Channel")).to_have_value("email")
    page.get_by_label("Recipient").fill("ops@example.com")
    page.get_by_label("Subject").fill("Weekly report")
    page.get_by_label("Body").fill("Hello {{ name }}")
    job_id = submit(page, "Queue notification job")
    expect(page.get_by_role("heading", level=1)).to_contain_text("notification job")
    job = service.get_job_by_id(job_id)
    assert (job.type, job.payload["recipient"], job.payload["subject"]) == (
        "notification", "ops@example.com", "Weekly report")

    # Delayed: ten minutes from now.
    page.goto("/jobs/new/delayed")
    page.get_by_label("Handler").select_option("noop")
    page.get_by_label("after a delay").check()
    page.get_by_label("Delay", exact=True).fill("10")
    page.get_by_label("Unit").select_option("minutes")
    page.get_by_label("Payload").fill('{"report": "weekly"}')
    queued_at = time.time()
    job_id = submit(page, "Queue delayed job")
    expect(status_badge(page, job_id)).to_have_text("pending")
    expect(page.get_by_text('"report": "weekly"')).to_be_visible()
    delay = service.get_job_by_id(job_id).scheduled_for.timestamp() - queued_at
    assert 590 < delay < 610, delay

    # Scheduled: a named job on a cron expression.
    page.goto("/jobs/new/scheduled")
    page.get_by_label("Name").fill("Daily report")
    page.get_by_label("Handler").select_option("noop")
    page.get_by_label("at every time of a cron expression").check()
    page.get_by_role("textbox", name="Cron expression").fill("30 6 * * *")
    page.get_by_label("Time zone").fill("Europe/Paris")
    job_id = submit(page, "Queue scheduled job")
    expect(field(page, "Cron expression")).to_have_text("30 6 * * *")
    expect(field(page, "Time zone")).to_have_text("Europe/Paris")
    expect(page.get_by_text('"name": "Daily report"').first).to_be_visible()

    # Recurring: a plain job repeated on a cron expression, read in New York.
    page.goto("/jobs/new/recurring")
    page.get_by_label("Handler").select_option("noop")
    page.get_by_role("textbox", name="Cron expression").fill("0 9 * * 1-5")
    page.get_by_label("Time zone").fill("America/New_York")
    job_id = submit(page, "Queue recurring job")
    expect(page.get_by_role("heading", level=1)).to_contain_text("recurring job")
    expect(field(page, "Cron expression")).to_have_text("0 9 * * 1-5")
    expect(field(page, "Time zone")).to_have_text("America/New_York")
    expect(field(page, "Next run")).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d"))

    # Batch: a JSON file through the file input; then the first job's page.
    page.goto("/jobs/new/batch")
    rows = [{"type": "immediate", "handler": "noop", "payload": {"n": n}} for n in (1, 2)]
    rows.append({"type": "delayed", "handler": "noop", "delay": 3600, "payload": {"n": 3}})
    page.get_by_label("File (JSON or CSV)").set_input_files(
        {"name": "jobs.json", "mimeType": "application/json",
         "buffer": json.dumps(rows).encode()})
    page.get_by_role("button", name="Upload and queue").click()
    expect(page.get_by_role("status").filter(has_text="Queued 3 jobs for acme")).to_be_visible()
    page.locator("#batch-form a", has=page.locator("code")).click()
    page.wait_for_url(JOB_PAGE)
    assert service.get_job_by_id(job_id_of(page)).payload == {"n": 1}


def test_an_immediate_job_completes_on_its_open_page(live_server, page, make_tenant):
    """Without reloading: the event stream swaps the status and the attempts in.

    The tenant may run nothing (max_concurrent_jobs 0) until the page is open and showing
    "queued": the in-process runner would otherwise often finish the job before the redirect
    lands, and the page would show "completed" without anything having been live.
    """
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    make_tenant("lineup", "tier4", name="Lineup", maxConcurrentJobs=0)

    sign_in_to(page, "/jobs/new/immediate", *OPERATOR)
    page.get_by_label("Tenant", exact=True).select_option("lineup")
    expect(page.locator("#tenant-usage")).to_contain_text("Lineup")
    page.get_by_label("Handler").select_option("noop")
    page.get_by_label("Payload").fill('{"probe": true}')
    with page.expect_response(lambda r: r.url.endswith("/events")):   # the stream is open
        job_id = submit(page, "Queue immediate job")
    loaded = time.monotonic()
    navigations = []
    page.on("framenavigated",
            lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    badge = status_badge(page, job_id)
    expect(badge).to_have_text("queued")
    expect(page.locator("#job-activity")).to_contain_text("Not run yet.")

    make_tenant("lineup", "tier4", name="Lineup")          # tier4's 100 at once: it may run
    released = time.time()
    expect(badge).to_have_text("completed", timeout=5_000)
    seen, seen_m = time.time(), time.monotonic()
    completed_at = service.get_job_by_id(job_id).completed_at.timestamp()
    assert seen - completed_at < 2.0, f"shown {seen - completed_at:.2f} s after it completed"
    assert seen_m - loaded < 2.0, f"shown {seen_m - loaded:.2f} s after the page loaded"
    assert completed_at >= released - 0.05          # it did wait for the page
    expect(page.locator("#job-activity")).to_contain_text("Attempt 1 succeeded")
    assert navigations == [], f"the page reloaded: {navigations}"


def test_the_handler_list_follows_the_chosen_tenant(live_server, page, make_tenant):
    """System handlers are offered to the operations tenant only, and the list changes as the
    tenant does, the chosen handler kept where it may still be queued."""
    make_tenant("acme", "tier4", name="Acme")
    make_tenant("console", "tier4", name="Operations")
    sign_in_to(page, "/jobs/new/immediate", *OPERATOR)
    handler = page.get_by_label("Handler")

    def choose_tenant(tenant_id):
        # The list is swapped when the answer lands: choosing before that would be undone.
        with page.expect_response(lambda r: "/jobs/new/tenant-usage" in r.url):
            page.get_by_label("Tenant", exact=True).select_option(tenant_id)

    choose_tenant("acme")
    expect(handler.locator("option[value='noop']")).to_have_count(1)
    expect(handler.locator("option[value='evaluate_alert_rules']")).to_have_count(0)
    handler.select_option("noop")
    choose_tenant("console")
    expect(handler.locator("option[value='evaluate_alert_rules']")).to_have_count(1)
    expect(handler).to_have_value("noop")
    choose_tenant("acme")
    expect(handler.locator("option[value='evaluate_alert_rules']")).to_have_count(0)


def test_the_cron_preview_follows_what_is_typed(live_server, page, make_tenant):
    make_tenant("acme", "tier4", name="Acme")
    sign_in_to(page, "/jobs/new/recurring", *OPERATOR)
    page.get_by_label("Handler").select_option("data_processor")
    page.get_by_label("Payload").fill('{"data_id": "daily-sales", "processing_type": "standard"}')
    cron, zone = page.get_by_role("textbox", name="Cron expression"), page.get_by_label("Time zone")
    preview = page.locator("#cron-preview")

    cron.fill("")
    cron.press_sequentially("0 9 * * 1-5")
    zone.fill("")
    zone.press_sequentially("America/New_York")
    expect(preview).to_contain_text("Next 5 runs of 0 9 * * 1-5 in America/New_York")
    rows = preview.locator("tbody tr")
    expect(rows).to_have_count(5)
    weekday = r"^(Mon|Tue|Wed|Thu|Fri) \d{4}-\d\d-\d\d"
    for row in rows.all():
        local, utc = row.locator("td").nth(0), row.locator("td").nth(1)
        expect(local).to_have_text(re.compile(weekday + r" 09:00 E[SD]T$"))   # EST or EDT
        expect(utc).to_have_text(re.compile(weekday + r" 1[34]:00 UTC$"))
    screenshot(page, "new-job")

    cron.fill("")
    cron.press_sequentially("61 * * * *")
    expect(preview.locator(".field-error")).to_have_text(
        re.compile(r"^cron expression: '61' is not a valid minute \(allowed: 0-59"))
    expect(rows).to_have_count(0)

    cron.press("Backspace")                       # "61 * * * " : four fields
    expect(preview.locator(".field-error")).to_contain_text("has 4 fields")
    cron.press_sequentially("*")
    cron.press("Home")
    cron.press("Delete")                           # "1 * * * *": every hour at minute 1
    expect(rows).to_have_count(5)
    expect(rows.first.locator("td").nth(0)).to_contain_text(":01 E")


def test_a_tighter_tier_is_enforced_on_the_new_job_form(live_server, page, make_tenant):
    """An admin moves a tenant to tier1 with a daily limit of 2 on its page; New job then
    refuses a type tier1 does not allow, queues two notifications and refuses the third, each
    time on the form with the tenant's figures."""
    make_tenant("umbrella", "tier3", name="Umbrella Health")

    sign_in_to(page, "/tenants/umbrella", *ADMIN)
    limits = page.locator("form.limits-form")
    limits.get_by_label("Tier").select_option("tier1")
    expect(limits.get_by_role("group", name="Overrides of tier1's limits")).to_be_visible()
    expect(limits.get_by_label("Max queued jobs")).to_have_attribute("placeholder", "10 (tier)")
    limits.get_by_label("Max daily jobs").fill("2")
    limits.get_by_role("button", name="Save limits").click()
    expect(page.get_by_text(re.compile(r"^Limits of Umbrella Health saved, in effect now"))) \
        .to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_contain_text("tier1")

    page.goto("/jobs/new/immediate")
    page.get_by_label("Tenant", exact=True).select_option("umbrella")
    page.get_by_label("Handler").select_option("noop")
    page.get_by_role("button", name="Queue immediate job").click()
    alert = page.locator("#job-form").get_by_role("alert")
    expect(alert).to_contain_text("Nothing was queued.")
    expect(alert).to_contain_text("Umbrella Health (tier1) may not queue 'immediate' jobs; "
                                  "allowed: notification")

    for n in (1, 2):
        page.goto("/jobs/new/notification")
        page.get_by_label("Tenant", exact=True).select_option("umbrella")
        page.get_by_label("Recipient").fill(f"ops{n}@example.com")
        page.get_by_label("Body").fill("Hello")
        submit(page, "Queue notification job")

    page.goto("/jobs/new/notification")
    page.get_by_label("Tenant", exact=True).select_option("umbrella")
    page.get_by_label("Recipient").fill("ops3@example.com")
    page.get_by_label("Body").fill("Hello")
    page.get_by_role("button", name="Queue notification job").click()
    alert = page.locator("#job-form").get_by_role("alert")
    expect(alert).to_contain_text("Umbrella Health's daily limit is reached: 2 of 2 jobs today "
                                  "(tier1)")
    expect(alert).to_contain_text("Today (UTC) 2 of 2")
    expect(page).to_have_url(re.compile(r"/jobs/new/notification$"))   # the form, kept
    expect(page.get_by_role("heading", name="New job")).to_be_visible()
    expect(page.get_by_label("Recipient")).to_have_value("ops3@example.com")
    expect(page.locator("#tenant-usage")).to_contain_text("2 / 2")
