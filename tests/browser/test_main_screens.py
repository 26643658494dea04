"""The main screens over realistic data, in a real browser: what each must show, the Plotly charts
of the dashboard, a tenant and a handler actually drawn (by the app's own plotly.js, under the
Content-Security-Policy), no console error or uncaught exception on any screen, and the README's
screenshots (docs/screenshots/) taken once each screen is complete.

The data: the demo's tenants (every tier) with two days of history, plus ~230 jobs the live
server's runner has just run over noop, data_processor, fails_n_times and always_fails.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from console.demo import TENANTS, load_demo
from console.jobs.models import jobs_table
from tests.support import wait_until

from .conftest import (
    ADMIN,
    OPERATOR,
    VIEWER,
    expect_charts_drawn,
    screenshot,
    sign_in_to,
)

UNFINISHED = ("queued", "processing")


def live_mix(tenant_id: str, n: int) -> list[dict]:
    """``n`` rounds of jobs: most succeed, some only on a retry, some fail for good."""
    specs = []
    for i in range(n):
        specs += [
            {"type": "immediate", "handler": "noop", "payload": {"n": i}},
            {"type": "immediate", "handler": "noop", "payload": {"n": i, "kind": "probe"}},
            {"type": "immediate", "handler": "data_processor", "max_retries": 1,
             "payload": {"data_id": f"{tenant_id}-{i}", "processing_type": "quick",
                         "step_ms": 1}},
            {"type": "immediate", "handler": "fails_n_times", "payload": {"failures": 1},
             "max_retries": 2},
        ]
        if i % 3 == 0:
            specs.append({"type": "immediate", "handler": "always_fails", "max_retries": 1,
                          "payload": {"order": f"A-{i}"}})
        if i % 4 == 0:
            specs.append({"type": "immediate", "handler": "fails_n_times", "max_retries": 1,
                          "payload": {"failures": 5}})
        if i % 5 == 0:
            specs.append({"type": "delayed", "handler": "noop", "delay": 3600 * (1 + i),
                          "payload": {"n": i}})
    return specs


def populate(service) -> None:
    """Tenants in every tier with two days of history (the demo), then ~230 jobs to run now;
    returns once the runner has finished the ones over the test handlers."""
    load_demo(service, days=2, jobs_per_day=150)
    # tier2 tenants hold at most 50 waiting jobs; the demo leaves 18 (live jobs, maintenance
    # jobs, notifications), so their rounds stay under 32 jobs.
    for tenant_id, rounds in (("acme", 20), ("globex", 15), ("initech", 6), ("hooli", 5)):
        service.queue_batch_jobs(live_mix(tenant_id, rounds), tenant_id)
    query = select(func.count()).select_from(jobs_table).where(
        jobs_table.c.status.in_(UNFINISHED),
        jobs_table.c.handler.in_(("noop", "fails_n_times", "always_fails")))

    def finished() -> bool:
        with service.engine.connect() as conn:
            return not conn.execute(query).scalar()
    wait_until(finished, 30, "the runner to finish the live jobs", interval=0.1)


def test_the_main_screens_show_their_data_and_draw_their_charts(live_server, page, page_errors):
    service = live_server.service
    populate(service)
    tenants = len(TENANTS)

    sign_in_to(page, "/", *ADMIN)
    expect(page.locator("#tenant-tiles .tile")).to_have_count(tenants)
    expect_charts_drawn(page.locator("#day-charts"), 2)
    expect(page.get_by_role("img", name=re.compile(
        r"^Jobs queued, completed, failed and cancelled per hour"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Failed jobs, timeouts"))).to_be_visible()
    expect(page.locator("#event-feed li").first).to_be_visible()
    screenshot(page, "dashboard")

    page.goto("/jobs")
    expect(page.get_by_role("table", name="Jobs, newest first").locator("tbody tr")) \
        .to_have_count(50)
    expect(page.get_by_role("link", name="Older →")).to_be_visible()
    screenshot(page, "jobs")

    page.goto("/failures")
    groups = page.get_by_role("table", name="Failures by handler and error type")
    expect(groups).to_contain_text("always_fails")
    expect(groups).to_contain_text("ConnectionError")
    screenshot(page, "failures")

    page.goto("/tenants")
    expect(page.locator("#tenant-table tbody tr")).to_have_count(tenants)
    expect(page.locator("#tenant-table tbody tr td:last-child [class^=health-]")) \
        .to_have_count(tenants)                                   # health loaded lazily
    screenshot(page, "tenants")

    page.goto("/tenants/acme")
    expect_charts_drawn(page, 4)                   # throughput, failures, duration, queue depth
    expect(page.get_by_role("img", name="Jobs waiting per day, average and largest")) \
        .to_be_visible()
    expect(page.get_by_role("heading", name="Change the limits")).to_be_visible()
    screenshot(page, "tenant")

    page.goto("/handlers")
    for name in ("noop", "data_processor", "fails_n_times", "always_fails"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    screenshot(page, "handlers")

    page.goto("/handlers/data_processor")
    expect_charts_drawn(page, 4)                   # errors by type, throughput, duration, success
    expect(page.get_by_role("img", name="data_processor: failed attempts by error type")) \
        .to_be_visible()
    expect(page.get_by_role("heading", name="Errors")).to_be_visible()
    screenshot(page, "handler")

    page.goto("/users")
    for username in (ADMIN[0], OPERATOR[0], VIEWER[0]):
        expect(page.get_by_role("rowheader", name=username)).to_be_visible()
    screenshot(page, "users")

    assert page_errors == []
