"""A batch's page in a real browser: its progress bar advances live as the runner ends the
batch's jobs, to "Finished" with its callback's state, and then the page stops polling."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.support import wait_until

from .conftest import VIEWER, screenshot, sign_in_to

JOBS = 12


def test_a_batch_page_follows_the_batch_to_its_end_without_a_reload(live_server, page,
                                                                   make_tenant, page_errors):
    service = live_server.service
    # Two at a time, 600 ms each: the batch takes about 3.6 s, several of the page's refreshes.
    make_tenant("acme", "tier4", name="Acme", maxConcurrentJobs=2)
    service.pause_tenant("acme")   # held until the page is open: it must see every step
    jobs = service.queue_batch_jobs(
        [{"type": "immediate", "handler": "sleeps", "payload": {"ms": 600}}] * (JOBS - 1)
        + [{"type": "immediate", "handler": "always_fails", "max_retries": 0}], "acme",
        on_complete={"type": "immediate", "handler": "noop"},
        on_success={"type": "immediate", "handler": "noop"})
    batch_id = jobs[0].batch_id
    sign_in_to(page, f"/batches/{batch_id}", *VIEWER)
    progress = page.locator("#batch-progress")
    ended = progress.locator("[data-ended]")
    expect(progress).to_have_attribute("data-state", "running")
    expect(ended).to_have_text("0")
    expect(progress.locator("progress")).to_have_attribute("max", str(JOBS))

    service.resume_tenant("acme")
    seen: list[int] = []

    def finished() -> bool:
        seen.append(int(ended.inner_text()))
        return seen[-1] == JOBS

    wait_until(finished, timeout=30, interval=0.1, what=lambda: f"{JOBS} ended (saw {seen})",
               sleep=lambda s: page.wait_for_timeout(s * 1000))
    steps = sorted(set(seen))
    print(f"ended counts the page showed: {steps}")
    assert seen == sorted(seen), f"the bar went back: {seen}"
    assert len([n for n in steps if 0 < n < JOBS]) >= 2, f"no live steps seen: {steps}"

    expect(progress).to_have_attribute("data-state", "finished")
    expect(progress.locator("progress")).to_have_attribute("value", str(JOBS))
    expect(progress.locator('[data-count="completed"]')).to_have_text(str(JOBS - 1))
    expect(progress.locator('[data-count="failed"]')).to_have_text("1")
    failure = progress.get_by_role("table", name="Failed and cancelled jobs of the batch")
    expect(failure.locator(f'a[href="/jobs/{jobs[-1].id}"]')).to_be_visible()
    on_complete = progress.locator('[data-callback="on_complete"]')
    expect(on_complete.locator(".status")).to_have_text("completed", timeout=10_000)
    expect(progress.locator('[data-callback="on_success"]')).to_contain_text("not run: 1 failed")
    expect(progress).not_to_have_attribute("hx-trigger", "every 1s, live-poll from:body")
    screenshot(page, "batch")

    on_complete.get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("noop")
    assert page_errors == []
