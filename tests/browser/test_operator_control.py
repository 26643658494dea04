"""Operator control in a real browser: pausing a tenant from its page, the maintenance banner
across pages, the job page's "Why isn't this job running?" panel following pauses made
elsewhere without a reload (and going quiet once the job has finished), and the pictures of
that panel and of the runners screen for the README."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

from console.jobs import JobStatus
from console.jobs.models import jobs_table, runners_table
from tests.support import wait_until

from .conftest import ADMIN, OPERATOR, screenshot, sign_in_to

UTC = timezone.utc


def held_back(service, job_id: str, seconds: float = 1.5) -> bool:
    """The job is still queued after the live server's runner had ``seconds`` to take it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service.get_job_by_id(job_id).status is not JobStatus.QUEUED:
            return False
        time.sleep(0.1)
    return True


def post_elsewhere(page, live_server, path: str, **form) -> None:
    """POST as the page's user, in a request of its own (the page is not involved), with the
    session's CSRF token (the one every page carries for htmx)."""
    token = json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRFToken"]
    response = page.request.post(f"{live_server.url}{path}", form={"csrf_token": token, **form},
                                 max_redirects=0)
    assert response.status == 303, (path, response.status, response.text()[:300])


def test_pausing_a_tenant_from_its_page_shows_the_badge(live_server, page, make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    sign_in_to(page, "/tenants/acme", *OPERATOR)
    heading = page.get_by_role("heading", level=1)
    expect(heading.locator(".badge-paused")).to_have_count(0)

    control = page.locator("#control-section")
    control.get_by_label("Reason").first.fill("provider outage")
    control.get_by_role("button", name="Pause tenant").click()
    expect(page.get_by_text("Tenant Acme paused")).to_be_visible()
    badge = heading.locator(".badge-paused")
    expect(badge).to_have_text("paused")
    expect(badge).to_have_attribute("title", re.compile(r"tenant acme, paused by otto at .*: "
                                                        r"provider outage"))
    expect(control).to_contain_text("This tenant is paused by otto")

    job = service.queue_job("immediate", "noop", {}, "acme")
    assert held_back(service, job.id), "a paused tenant's job was started"
    page.goto("/tenants")
    expect(page.get_by_role("row", name=re.compile("Acme")).locator(".badge-paused")) \
        .to_have_text("paused")

    page.goto("/tenants/acme")
    page.get_by_role("button", name="Resume tenant").click()
    expect(page.get_by_text("Tenant Acme resumed")).to_be_visible()
    expect(heading.locator(".badge-paused")).to_have_count(0)
    wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 10,
               "the resumed tenant's job to run")


def test_the_maintenance_banner_shows_on_every_page_until_resumed(live_server, page,
                                                                 make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    sign_in_to(page, "/jobs", *ADMIN)
    banner = page.locator("#maintenance-banner")
    expect(banner).to_have_count(0)

    page.goto("/")
    maintenance = page.locator("#maintenance")
    maintenance.get_by_label("Reason").fill("database upgrade")
    maintenance.get_by_role("button", name="Pause everything").click()
    expect(page.get_by_text("Everything is paused (by ada)")).to_be_visible()

    for path in ("/jobs", "/tenants"):          # another page: the banner is there too
        page.goto(path)
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Maintenance: runners start no jobs — paused by ada "
                                       "since ")
        expect(banner).to_contain_text(": database upgrade")
    job = service.queue_job("immediate", "noop", {}, "acme")
    assert held_back(service, job.id), "a job started while everything was paused"

    banner.get_by_role("button", name="Resume").click()
    expect(page).to_have_url(re.compile(r"/tenants$"))       # back where the operator was
    expect(page.get_by_text("Everything resumed")).to_be_visible()
    expect(banner).to_have_count(0)
    page.goto("/jobs")
    expect(banner).to_have_count(0)
    wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 10,
               "the job to run once everything resumed")


def test_the_explanation_follows_pauses_made_elsewhere_live(live_server, page, make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    job = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    sign_in_to(page, f"/jobs/{job.id}", *OPERATOR)
    panel = page.locator("#job-explanation")
    blockers = panel.locator(".blocker-title")
    expect(blockers).to_have_text(["Due later"])
    page.evaluate("window.notReloaded = true")

    post_elsewhere(page, live_server, "/tenants/acme/pause", reason="provider outage")
    expect(blockers).to_have_text(["Due later", "Paused"], timeout=6_000)
    expect(panel.locator(".blocker-paused")).to_contain_text("provider outage")
    expect(panel.get_by_role("link", name="Tenant acme")).to_have_attribute("href",
                                                                           "/tenants/acme")
    expect(page.locator("h1 .badge-paused")).to_have_text("paused")   # swapped with the panel

    post_elsewhere(page, live_server, "/tenants/acme/resume")
    expect(blockers).to_have_text(["Due later"], timeout=6_000)
    expect(page.locator("h1 .badge-paused")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True

    # Once the job has finished, the panel says so and stops asking.
    asked = []
    page.on("request", lambda request: asked.append(datetime.now(UTC))
            if request.url.endswith(f"/jobs/{job.id}/explanation") else None)
    service.run_now(job.id)
    expect(panel).to_contain_text("It has completed", timeout=8_000)
    expect(panel).not_to_have_attribute("hx-trigger", re.compile("every"))
    settled = datetime.now(UTC)
    page.wait_for_timeout(6_500)                  # three polling periods and then some
    # Still polling, it would have asked three times; a late event of the job may ask once.
    late = [moment for moment in asked if moment > settled + timedelta(seconds=0.5)]
    assert len(late) <= 1, late
    assert page.evaluate("window.notReloaded") is True


def _set(service, job_id: str, **values) -> None:
    with service.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(**values))


def test_screenshot_of_the_explanation_with_its_blockers(live_server, page, make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme", maxConcurrentJobs=1)
    runner = wait_until(lambda: service.runners()["live"], 10, "the live server's runner")[0]
    # A long report holds acme's one slot, on the live runner (its lease far ahead, so
    # nothing recovers it while the page is open).
    report = service.queue_delayed_job("report_generator", {"report_type": "usage"},
                                       timedelta(hours=1), "acme")
    now = datetime.now(UTC)
    _set(service, report.id, status=JobStatus.PROCESSING.value, lease_owner=runner.id,
         lease_expires_at=now + timedelta(hours=1), last_attempt=now - timedelta(minutes=3),
         progress=0.35, progress_message="day 11 of 31")
    service.pause_tenant("acme", "payment provider outage, until they confirm", by="ada")
    service.pause_handler("email_handler", "acme", "bounce storm", by="ada")
    job = service.queue_notification("email", "ops@example.com", "acme",
                                     subject="Daily figures", body="Attached.")

    sign_in_to(page, f"/jobs/{job.id}", *OPERATOR)
    blockers = page.locator("#job-explanation .blocker-title")
    expect(blockers).to_have_text(["Paused", "Paused", "Tenant at its concurrency limit"])
    expect(page.locator("#job-explanation")).to_contain_text("1 of 1")
    screenshot(page, "explain")

    page.goto(f"/jobs/{report.id}")                 # the running one: who holds it
    panel = page.locator("#job-explanation")
    expect(panel.locator("h2")).to_have_text("Running")
    expect(panel).to_contain_text(f"Held by runner {runner.hostname} pid {runner.pid}")
    expect(panel).to_contain_text("35 %: day 11 of 31")


def test_screenshot_of_the_runners_screen(live_server, page, make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    wait_until(lambda: service.runners()["live"], 10, "the live server's runner")
    now = datetime.now(UTC)
    handed_back = service.queue_delayed_job("noop", {}, timedelta(hours=1), "acme")
    lost = service.queue_delayed_job("report_generator", {}, timedelta(hours=1), "acme")
    handlers = sorted(service.handlers.names())
    rows = [
        {"id": "batch-2:31337:runner:5e1f0a", "hostname": "batch-2", "pid": 31337,
         "threads": 16, "started_at": now - timedelta(hours=3), "heartbeat_at": now,
         "handlers": handlers, "busy_threads": 11, "jobs_held": 14, "claims_per_minute": 212},
        {"id": "batch-1:2207:runner:9c41d2", "hostname": "batch-1", "pid": 2207, "threads": 16,
         "started_at": now - timedelta(hours=6), "heartbeat_at": now - timedelta(minutes=42),
         "stopped_at": now - timedelta(minutes=42), "handlers": handlers,
         "released_job_ids": [handed_back.id]},
        {"id": "web-3:880:runner:77ab03", "hostname": "web-3", "pid": 880, "threads": 8,
         "started_at": now - timedelta(hours=9), "heartbeat_at": now - timedelta(hours=2),
         "handlers": handlers, "lost_job_ids": [lost.id]},
    ]
    with service.engine.begin() as conn:
        for row in rows:
            conn.execute(runners_table.insert().values(**row))

    sign_in_to(page, "/runners", *ADMIN)
    live = page.get_by_role("table", name="Live runners")
    stopped = page.get_by_role("table", name="Runners that stopped in the last 24 hours")
    expect(live.locator("tbody tr")).to_have_count(2)
    expect(live).to_contain_text("11 of 16")
    expect(stopped).to_contain_text("stopped cleanly")
    expect(stopped).to_contain_text("stopped beating (crashed or cut off)")
    expect(stopped).to_contain_text("handed back at shutdown")
    expect(stopped).to_contain_text("attempt recorded as lost")
    screenshot(page, "runners")
