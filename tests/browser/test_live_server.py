"""The browser fixtures themselves: a live server per test with a running runner, one browser."""
from __future__ import annotations

from playwright.sync_api import expect

from console.jobs import JobStatus, TenantConfig
from tests.support import wait_until


def test_the_live_servers_runner_runs_jobs(live_server, service):
    assert service is live_server.service
    service.tenants.set_tenant_config(TenantConfig.for_tier("acme", "Acme", "tier4"))
    job = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 10,
               "the live server's runner to run the job")


def test_each_test_has_its_own_server_and_a_fresh_page(live_server, page, browser):
    assert live_server.url.startswith("http://127.0.0.1:")
    assert page.viewport_size == {"width": 1280, "height": 800}
    assert len(browser.contexts) == 1                 # no context left over from other tests
    response = page.goto("/healthz")
    assert response.status == 200 and response.url == f"{live_server.url}/healthz"
    expect(page.locator("body")).not_to_be_empty()
