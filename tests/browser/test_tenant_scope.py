"""A user bound to a tenant, in a real browser: its live jobs page receives its tenant's events
and never another tenant's, while jobs of both change."""
from __future__ import annotations

from playwright.sync_api import expect

from console.jobs import JobStatus, TenantConfig
from console.web.auth.views import set_user
from tests.support import wait_until

from .conftest import sign_in_to

BOUND = ("ava", "acme viewer horse battery")
# Every server-sent event the page's own stream connection receives, as [name, data].
RECORD_EVENTS = """() => {
  window.received = [];
  const source = new EventSource("/events");
  for (const name of ["job-event"]) {
    source.addEventListener(name, (event) => window.received.push([name, event.data]));
  }
  return new Promise((resolve) => { source.onopen = () => resolve(true); });
}"""


def test_a_tenant_bound_users_live_page_gets_its_tenants_events_only(live_server, page):
    service = live_server.service
    for tenant_id, name in (("acme", "Acme"), ("globex", "Globex Private")):
        service.tenants.set_tenant_config(TenantConfig.for_tier(tenant_id, name, "tier4"))
    with live_server.app.app_context():
        set_user(*BOUND[:1], "viewer", BOUND[1], tenants=["acme"])
    before_a = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    before_b = service.queue_job("immediate", "sleeps", {"ms": 1}, "globex")
    wait_until(lambda: all(service.get_job_by_id(job.id).status is JobStatus.COMPLETED
                           for job in (before_a, before_b)), 10, "the first jobs to run")

    sign_in_to(page, "/jobs", *BOUND)
    table = page.locator("table")
    expect(table).to_contain_text(before_a.id[-12:])
    assert before_b.id not in page.content()
    assert page.evaluate(RECORD_EVENTS)

    # B's job changes first, then A's: events reach a stream in order, so once A's last change
    # has arrived, B's would have arrived before it had it been sent at all.
    job_b = service.queue_job("immediate", "sleeps", {"ms": 1}, "globex")
    wait_until(lambda: service.get_job_by_id(job_b.id).status is JobStatus.COMPLETED, 10,
               "B's job to run")
    job_a = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    wait_until(lambda: service.get_job_by_id(job_a.id).status is JobStatus.COMPLETED, 10,
               "A's job to run")
    wait_until(lambda: any(job_a.id in data and "completed" in data
                           for _, data in page.evaluate("window.received")), 10,
               "A's completion to reach the page")

    received = " ".join(data for _, data in page.evaluate("window.received"))
    assert job_b.id not in received and "globex" not in received
    page_text = page.content()
    assert job_b.id not in page_text and before_b.id not in page_text
    assert "Globex Private" not in page_text
