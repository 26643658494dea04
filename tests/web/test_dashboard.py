"""The dashboard: statistics, queue, warnings, tenant tiles, the feed and the 24 h charts."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from console.jobs.models import jobs_table


def test_signed_out_dashboard_and_fragments_redirect_to_sign_in(app):
    client = app.test_client()
    for url in ("/", "/dashboard/summary", "/dashboard/tenants", "/dashboard/charts", "/events"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_every_role_reads_the_dashboard(client_as, service, make_tenant):
    make_tenant("acme", "tier2")
    service.queue_job("immediate", "noop", {"n": 1}, "acme")
    service.run_until_idle(timeout=10)
    for role in ("viewer", "operator", "admin"):
        page = client_as(role).get("/").get_data(as_text=True)
        assert "Jobs queued, 24 h" in page and "Live events" in page
        # the feed starts with the latest changes: the job that just completed
        assert re.search(r'class="events".*noop.*status-completed', page, re.S)


def test_summary_counts_the_queue_and_shows_the_oldest_wait(client_as, service, make_tenant):
    make_tenant("acme")
    for n in range(3):
        service.queue_job("immediate", "noop", {"n": n}, "acme")
    with service.engine.begin() as conn:   # as if they had waited ten minutes
        conn.execute(update(jobs_table).values(
            scheduled_for=datetime.now(timezone.utc) - timedelta(minutes=10)))
    response = client_as("viewer").get("/dashboard/summary", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<h1>" not in html   # the fragment, not the page
    assert re.search(r"Queued \(due\)</small><div class=\"stat\">3<", html)
    assert "10 min" in html
    # the system health check: a queue this old is a warning
    assert "The oldest queued job has waited 10 min" in html


def test_tenant_tiles_show_health_and_usage_against_limits_escaped(client_as, service,
                                                                   make_tenant):
    make_tenant("evil", "tier3", name="<script>alert(1)</script>", maxQueuedJobs=7)
    service.queue_job("immediate", "noop", {}, "evil")
    html = client_as("viewer").get("/dashboard/tenants").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert re.search(r"1 / 7<", html)       # one waiting of max_queued_jobs 7
    assert "/100" in html and 'href="/tenants/evil"' in html


def test_charts_embed_the_last_24_hours(client_as, service, make_tenant):
    make_tenant("acme")
    for n in range(4):
        service.queue_job("immediate", "noop", {"n": n}, "acme")
    service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(timeout=10)
    html = client_as("viewer").get("/dashboard/charts").get_data(as_text=True)
    figures = [json.loads(m) for m in re.findall(
        r'<script type="application/json">(.*?)</script>', html, re.S)]
    assert len(figures) == 2
    completed = next(t for t in figures[0]["data"] if t.get("name") == "completed")
    failed = next(t for t in figures[1]["data"] if t.get("name") == "failed jobs")
    assert sum(completed["y"]) == 4 and sum(failed["y"]) == 1
