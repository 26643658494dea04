"""Handlers screen: each handler's executions, success rate, durations and errors, from jobs that
really ran, and a handler's page with its errors and charts."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from console.jobs.rollups import RollupBatch

UTC = timezone.utc
XSS = "<script>alert(1)</script>"


@pytest.fixture
def ran(service, make_tenant):
    """3 successful sleeps jobs and one always_fails job with one retry (2 RuntimeErrors)."""
    make_tenant("acme", "tier4")
    for ms in (5, 10, 15):
        service.queue_job("immediate", "sleeps", {"ms": ms}, "acme")
    service.queue_job("immediate", "always_fails", {}, "acme", max_retries=1)
    service.run_until_idle(settle=0.2)


def retired_handler_history(service, message: str = "gone for good"):
    """History of a handler that is no longer registered: rollups as the runner wrote them."""
    batch = RollupBatch()
    batch.add_attempt(datetime.now(UTC), "acme", "retired", "immediate", 40.0, False,
                      "ValueError", message, "failed")
    with service.engine.begin() as conn:
        batch.write(conn)


def row_of(page: str, name: str) -> str:
    start = page.index(f'<a href="/handlers/{name}')
    return page[start:page.index("</tr>", start)]


def test_every_handler_route_needs_sign_in(app):
    client = app.test_client()
    for url in ("/handlers", "/handlers/sleeps", "/handlers/sleeps/row",
                "/handlers/sleeps/charts"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_viewers_read_every_handler_route(client_as, ran):
    viewer = client_as("viewer")
    for url in ("/handlers", "/handlers/sleeps", "/handlers/sleeps/row?window=7d",
                "/handlers/sleeps/charts"):
        assert viewer.get(url).status_code == 200, url


def test_list_shows_the_figures_of_jobs_that_ran(client_as, ran, service):
    text = client_as("viewer").get("/handlers").get_data(as_text=True)
    sleeps = row_of(text, "sleeps")
    cells = re.findall(r'<td class="num">([^<]+)</td>', sleeps)
    assert cells[:2] == ["3", "100.0 %"]
    assert "none" in sleeps                                       # no errors
    fails = row_of(text, "always_fails")
    assert re.findall(r'<td class="num">([^<]+)</td>', fails)[:2] == ["2", "0.0 %"]
    assert '<span class="error-text">RuntimeError</span> 2' in fails
    # Registered handlers that did not run are listed too, saying so.
    assert "No runs in the last 24 hours" in row_of(text, "hangs")


def test_handler_page_shows_exact_figures_and_errors(client_as, ran, service):
    text = client_as("viewer").get("/handlers/always_fails").get_data(as_text=True)
    assert re.search(r'<div class="stat">2</div>executions', text)
    assert re.search(r'<div class="stat">0.0 %</div>success rate', text)
    assert re.search(r'<div class="stat">2</div>failed attempts', text)
    assert re.search(r'<td class="error-text">RuntimeError</td><td class="num">2</td>', text)
    assert "boom on attempt 2" in text                            # the latest message
    assert 'href="/jobs?handler=always_fails"' in text
    sleeps = client_as("viewer").get("/handlers/sleeps").get_data(as_text=True)
    metrics = service.get_job_performance_metrics("immediate", "sleeps")
    from console.web.rendering import duration
    assert f'<div class="stat">{duration(metrics.p95_execution_time)}</div>p95 duration' in sleeps
    assert f'<div class="stat">{duration(metrics.avg_execution_time)}</div>average' in sleeps
    assert "No failed attempts in the last 24 hours" in sleeps


def test_charts_are_embedded_as_figures(client_as, ran):
    text = client_as("viewer").get("/handlers/always_fails/charts",
                                   headers={"HX-Request": "true"}).get_data(as_text=True)
    for name in ("throughput", "duration", "success-rate"):
        assert re.search(rf'<figure class="chart" data-chart="{name}"[^>]*>\s*'
                         r'<div class="chart-canvas"></div>\s*'
                         r'<script type="application/json">\{"data"', text), name
    page = client_as("viewer").get("/handlers/always_fails").get_data(as_text=True)
    errors = re.search(r'<figure class="chart" data-chart="errors"[^>]*>.*?</figure>', page, re.S)
    assert errors and '"RuntimeError"' in errors.group(0)          # drawn with the errors table
    assert 'hx-get="/handlers/always_fails/charts?window=24h" hx-trigger="load"' in page
    assert "plotly" in page


def test_unknown_handler_is_404_but_a_retired_one_is_shown(client_as, service, make_tenant):
    make_tenant("acme", "tier4")
    viewer = client_as("viewer")
    for url in ("/handlers/nobody", "/handlers/nobody/row", "/handlers/nobody/charts"):
        assert viewer.get(url).status_code == 404, url
    retired_handler_history(service)
    page = viewer.get("/handlers/retired")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "no longer registered" in text and "gone for good" in text
    assert "no longer registered" in row_of(viewer.get("/handlers").get_data(as_text=True),
                                            "retired")


def test_error_messages_are_escaped(client_as, service, make_tenant):
    make_tenant("acme", "tier4")
    retired_handler_history(service, XSS)
    text = client_as("viewer").get("/handlers/retired").get_data(as_text=True)
    assert XSS not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_seven_days_loads_each_row_as_a_fragment(client_as, ran):
    viewer = client_as("viewer")
    text = viewer.get("/handlers?window=7d").get_data(as_text=True)
    assert 'hx-get="/handlers/sleeps/row?window=7d" hx-trigger="load"' in text
    row = viewer.get("/handlers/sleeps/row?window=7d",
                     headers={"HX-Request": "true"}).get_data(as_text=True)
    assert row.lstrip().startswith("<tr")
    assert re.findall(r'<td class="num">([^<]+)</td>', row)[:2] == ["3", "100.0 %"]


def test_window_changes_the_range(client_as, ran):
    text = client_as("viewer").get("/handlers?window=1h",
                                   headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<h1>" not in text                                    # the table partial only
    assert '<option value="1h" selected>' in text
    assert re.findall(r'<td class="num">([^<]+)</td>', row_of(text, "sleeps"))[0] == "3"


def test_a_bad_window_gets_a_message_not_an_error(client_as, ran):
    viewer = client_as("viewer")
    for url in ("/handlers?window=forever", "/handlers/sleeps?window=forever"):
        response = viewer.get(url)
        assert response.status_code == 422, url
        text = response.get_data(as_text=True)
        assert "There is no window" in text and "Showing the last 24 hours" in text
        assert 'aria-invalid="true"' in text
