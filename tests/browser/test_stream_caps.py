"""A page whose event stream was closed for a newer one (past the session's cap) falls back to
polling, and still shows a job's change."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from console.jobs import JobStatus
from tests.support import wait_until

from .conftest import OPERATOR, sign_in_to


@pytest.fixture
def app_config(app_config):
    return {**app_config, "STREAMS_PER_SESSION": 1}


def test_a_page_past_the_cap_polls_and_still_shows_a_jobs_change(live_server, page,
                                                                 make_tenant):
    service = live_server.service
    # The job waits (no concurrency) until the test lets it run.
    make_tenant("acme", "tier4", name="Acme", maxConcurrentJobs=0)
    job = service.queue_job("immediate", "noop", {}, "acme")
    sign_in_to(page, f"/jobs/{job.id}", *OPERATOR)
    badge = page.locator(f'dd[sse-swap="job-{job.id}"] .status')
    expect(badge).to_have_text("queued")
    fallback = page.locator("#live-fallback")
    expect(fallback).to_be_hidden()

    # A second page of the same session takes the one stream it may hold.
    second = page.context.new_page()
    with second.expect_response(lambda r: r.url.endswith("/events")):
        second.goto(f"/jobs/{job.id}")
    expect(fallback).to_be_visible(timeout=10_000)
    assert page.evaluate("document.body.dataset.livePoll") == "on"

    make_tenant("acme", "tier4", name="Acme")        # the job may run now
    wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 15,
               "the job to complete")
    expect(badge).to_have_text("completed", timeout=10_000)    # by polling, not the stream
    expect(second.locator(f'dd[sse-swap="job-{job.id}"] .status')).to_have_text("completed")
