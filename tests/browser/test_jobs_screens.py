"""The jobs screens in a real browser: retrying a failed job from its page and watching it
succeed, and the table's status filter and bulk cancel (selected rows, then all matching)."""
from __future__ import annotations

import re
from datetime import timedelta

from playwright.sync_api import expect

from console.jobs import JobStatus
from tests.support import wait_until

from .conftest import OPERATOR, screenshot, sign_in_to


def wait_for(service, job_ids, statuses) -> None:
    """Until every job is in one of ``statuses`` (the live server's runner works meanwhile)."""
    wait_until(lambda: all(service.get_job_by_id(job_id).status in statuses
                           for job_id in job_ids), 15, f"the jobs to be {statuses}")


def test_a_failed_job_is_retried_from_its_page_and_succeeds_live(live_server, page,
                                                                 make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    job = service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme",
                            max_retries=0)
    wait_for(service, [job.id], {JobStatus.FAILED})
    # Hold the retry until the page shows it queued: the in-process runner would otherwise
    # often finish it before the redirect lands, and nothing would have been live.
    make_tenant("acme", "tier4", name="Acme", maxConcurrentJobs=0)

    sign_in_to(page, f"/jobs/{job.id}", *OPERATOR)
    badge = page.locator(f'dd[sse-swap="job-{job.id}"] .status')
    activity = page.locator("#job-activity")
    expect(badge).to_have_text("failed")
    expect(activity).to_contain_text("Attempt 1 failed")
    expect(activity).to_contain_text("ConnectionError: attempt 1 failed on purpose")

    with page.expect_response(lambda r: r.url.endswith("/events")):   # the new page's stream
        page.get_by_role("button", name="Retry").click()
    expect(page).to_have_url(re.compile(f"/jobs/{job.id}$"))
    expect(page.get_by_text(f"Job {job.id} queued to run again (now queued).")).to_be_visible()
    expect(badge).to_have_text("queued")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)

    make_tenant("acme", "tier4", name="Acme")                    # may run again
    expect(badge).to_have_text("completed", timeout=5_000)
    expect(activity).to_contain_text("Attempt 2 succeeded")
    expect(activity).to_contain_text('"succeeded_on_attempt": 2')
    # the fields beside the timeline follow too, without a reload
    fields = page.locator("#job-fields")
    expect(fields.locator("dt:has-text('Attempts') + dd")).to_have_text("2")
    expect(fields.locator("dt:has-text('Completed') + dd")).not_to_have_text("–")
    assert service.get_job_by_id(job.id).status is JobStatus.COMPLETED
    page.reload()                     # the README's picture: every field current, no flash
    expect(page.locator("ol.timeline > li")).to_have_count(2)   # one entry per attempt
    screenshot(page, "job")


def test_the_table_filters_by_status_and_cancels_in_bulk(live_server, page, make_tenant):
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    ran = [service.queue_job("immediate", "noop", {"n": n}, "acme").id for n in range(3)]
    ran += [service.queue_job("immediate", "always_fails", {"n": n}, "acme", max_retries=0).id
            for n in range(2)]
    waiting = [service.queue_delayed_job("noop", {"n": n}, timedelta(hours=1), "acme").id
               for n in range(4)]
    wait_for(service, ran, {JobStatus.COMPLETED, JobStatus.FAILED})

    sign_in_to(page, "/jobs", *OPERATOR)
    table = page.get_by_role("table", name="Jobs, newest first")
    rows = table.locator("tbody tr")
    statuses = rows.locator("td .status")
    expect(rows).to_have_count(9)

    page.get_by_label("Status").select_option("pending")          # active search: no submit
    expect(page).to_have_url(re.compile(r"/jobs\?(.*&)?status=pending(&|$)"))
    expect(statuses).to_have_text(["pending"] * 4)
    shown = [link.get_attribute("title") for link in rows.locator("td a[title]").all()]
    assert sorted(shown) == sorted(waiting)     # (jobs queued in one millisecond: any order)

    select_all = page.get_by_label("Select every job on this page")
    select_all.check()                                   # ticks every row shown…
    expect(rows.locator('input[name="job_ids"]:checked')).to_have_count(4)
    select_all.uncheck()                                 # …and clears them
    expect(rows.locator('input[name="job_ids"]:checked')).to_have_count(0)

    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    for job_id in waiting[:2]:
        page.get_by_label(f"Select job {job_id}").check()
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.get_by_text("Cancelled 2 jobs.")).to_be_visible()
    assert questions == ["Cancel the selected jobs? Those still pending or queued will not run."]
    expect(page).to_have_url(re.compile(r"status=pending"))       # back to the filtered table
    expect(statuses).to_have_text(["pending"] * 2)

    page.get_by_role("link", name="Cancel all matching…").click()
    confirm = page.get_by_role("region", name="Cancel all matching jobs")
    expect(confirm).to_contain_text("This will cancel 2 pending or queued jobs matching")
    confirm.get_by_role("button", name="Confirm: cancel 2 jobs").click()
    expect(page.get_by_text("Cancelled 2 jobs.")).to_be_visible()
    expect(rows).to_have_text(["No jobs match these filters."])

    page.get_by_label("Status").select_option("cancelled")
    expect(statuses).to_have_text(["cancelled"] * 4)
    assert {service.get_job_by_id(j).status for j in waiting} == {JobStatus.CANCELLED}
    assert {service.get_job_by_id(j).status for j in ran} == {JobStatus.COMPLETED,
                                                              JobStatus.FAILED}


# Notes, in the page, each live refresh of the jobs table that htmx has finished with (answered
# and swapped in, or cancelled): the tests below wait for it before reading the table.
RECORD_LIVE_REFRESHES = """
window.liveRefreshes = [];
document.addEventListener("htmx:afterRequest", function (event) {
  var config = event.detail.requestConfig;
  if (config && config.headers["X-Live-Refresh"]) window.liveRefreshes.push(config.path);
});
"""


def jobs_in_two_states(service, make_tenant) -> list[str]:
    """Three pending jobs and two cancelled ones (the runner leaves both alone); the pending."""
    make_tenant("acme", "tier4", name="Acme")
    jobs = [service.queue_delayed_job("noop", {"n": n}, timedelta(hours=1), "acme").id
            for n in range(5)]
    for job_id in jobs[3:]:
        service.cancel_job(job_id)
    return jobs[:3]


def held(page, routes: list, what: str) -> None:
    """Until a request is held in ``routes`` (Playwright hands them over while the test waits
    in Playwright, hence the page's own wait between looks)."""
    wait_until(lambda: routes, 10, what, sleep=lambda seconds: page.wait_for_timeout(
        seconds * 1000))


def test_the_stream_open_refresh_keeps_a_filter_chosen_before_the_stream_opened(
        live_server, page, make_tenant):
    # A slow connection: the page's event stream opens only after the operator has filtered.
    pending = jobs_in_two_states(live_server.service, make_tenant)
    page.add_init_script(RECORD_LIVE_REFRESHES)
    streams = []
    page.route("**/events", lambda route: streams.append(route))    # held until released
    sign_in_to(page, "/jobs", *OPERATOR)
    statuses = page.get_by_role("table", name="Jobs, newest first").locator("tbody td .status")
    expect(statuses).to_have_count(5)
    held(page, streams, "the page's event stream")

    page.get_by_label("Status").select_option("pending")
    expect(page).to_have_url(re.compile(r"/jobs\?status=pending$"))
    expect(statuses).to_have_text(["pending"] * 3)
    streams[0].continue_()                                  # the stream opens: the refresh goes
    page.wait_for_function("() => window.liveRefreshes.length === 1")

    expect(statuses).to_have_text(["pending"] * 3)
    shown = [link.get_attribute("title") for link in
             page.locator("#job-rows td a[title]").all()]
    assert sorted(shown) == sorted(pending)
    expect(page.get_by_label("Status")).to_have_value("pending")
    assert page.evaluate("window.liveRefreshes") == ["/jobs?status=pending"]


def test_a_refresh_still_on_its_way_never_lands_over_the_filter_chosen_after_it(
        live_server, page, make_tenant):
    # A slow answer: the refresh asked for the unfiltered table before the operator filtered,
    # and its answer would arrive after the filtered one.
    jobs_in_two_states(live_server.service, make_tenant)
    page.add_init_script(RECORD_LIVE_REFRESHES)
    refreshes = []
    page.route(re.compile(r"/jobs(\?|$)"),
               lambda route: refreshes.append(route)
               if route.request.headers.get("x-live-refresh") else route.continue_())
    sign_in_to(page, "/jobs", *OPERATOR)
    statuses = page.get_by_role("table", name="Jobs, newest first").locator("tbody td .status")
    expect(statuses).to_have_count(5)
    held(page, refreshes, "the refresh when the stream opens")
    assert refreshes[0].request.url == f"{live_server.url}/jobs"

    page.get_by_label("Status").select_option("pending")
    expect(page).to_have_url(re.compile(r"/jobs\?status=pending$"))
    expect(statuses).to_have_text(["pending"] * 3)
    refreshes[0].continue_()                                 # the old answer arrives, late
    page.wait_for_function("() => window.liveRefreshes.length === 1")

    expect(statuses).to_have_text(["pending"] * 3)
    expect(page).to_have_url(re.compile(r"/jobs\?status=pending$"))
