"""Reports screen: the list (tenant filter, newest first, keyset pages), CSV downloads, and
operators generating a report through a report_generator job."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from console.handlers.models import reports_table
from console.handlers.reports import store_report
from console.jobs.models import jobs_table

UTC = timezone.utc


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def add_report(service, tenant_id="acme", name="Usage report", content="date,handler\r\n",
               created_offset=0, job_id=None, days=("2026-01-01", "2026-01-08")):
    start = datetime.fromisoformat(days[0]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(days[1]).replace(tzinfo=UTC)
    report_id = store_report(service.engine, tenant_id=tenant_id, job_id=job_id or name,
                             recurring=False, name=name, report_type="usage", start=start,
                             end=end, content=content, row_count=content.count("\n") - 1)
    if created_offset:
        with service.engine.begin() as conn:
            conn.execute(reports_table.update().where(reports_table.c.id == report_id).values(
                created_at=datetime.now(UTC) + timedelta(seconds=created_offset)))
    return report_id


def generate(client, **fields):
    data = {"csrf_token": client.csrf, "tenant": "acme", "start_date": today(),
            "end_date": today(), **fields}
    return client.post("/reports", data=data)


def report_jobs(service) -> int:
    with service.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs_table).where(
            jobs_table.c.handler == "report_generator")).scalar()


def test_signed_out_requests_go_to_sign_in(app, service, make_tenant, users):
    make_tenant("acme", "tier2")
    report_id = add_report(service)
    client = app.test_client()
    for url in ("/reports", f"/reports/{report_id}/download"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_viewers_read_the_list_and_download(service, make_tenant, client_as):
    make_tenant("acme", "tier2")
    content = "date,tenant_id,jobs_created\r\n2026-01-01,acme,3\r\n"
    report_id = add_report(service, content=content)
    viewer = client_as("viewer")
    page = viewer.get("/reports").get_data(as_text=True)
    assert "Usage report" in page and "2026-01-01 – 2026-01-07" in page
    assert f"/reports/{report_id}/download" in page
    assert "Generate a report" not in page          # viewers read only

    download = viewer.get(f"/reports/{report_id}/download")
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert download.headers["Content-Disposition"] == (
        'attachment; filename="usage-acme-2026-01-01-2026-01-07.csv"')
    assert download.get_data(as_text=True) == content
    assert viewer.get("/reports/no-such-report/download").status_code == 404


def test_viewers_may_not_generate(service, make_tenant, client_as):
    make_tenant("acme", "tier2")
    viewer = client_as("viewer")
    assert generate(viewer).status_code == 403
    assert report_jobs(service) == 0


def test_generating_without_the_csrf_token_is_refused(service, make_tenant, client_as):
    make_tenant("acme", "tier2")
    operator = client_as("operator")
    response = operator.post("/reports", data={"tenant": "acme", "start_date": today(),
                                               "end_date": today()})
    assert response.status_code == 400 and report_jobs(service) == 0


def test_an_operator_generates_a_report_and_lands_on_its_job(service, make_tenant, client_as):
    make_tenant("acme", "tier2")
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.run_until_idle(settle=0.2)
    operator = client_as("operator")
    form_page = operator.get("/reports").get_data(as_text=True)
    assert "Generate a report" in form_page and 'type="date"' in form_page

    response = generate(operator)
    assert response.status_code == 303
    job_id = re.fullmatch(r".*/jobs/([0-9a-f-]+)", response.headers["Location"]).group(1)
    job = service.get_job_by_id(job_id)
    assert job.handler == "report_generator" and job.tenant_id == "acme"
    assert (job.payload["start_date"], job.payload["end_date"]) == (today(), today())
    assert job.payload["requested_by"] == "olga"
    assert "queued" in operator.get(response.headers["Location"]).get_data(as_text=True)

    service.run_until_idle(settle=0.2)
    page = operator.get("/reports?tenant=acme").get_data(as_text=True)
    report_id = re.search(r'/reports/([0-9a-f-]+)/download', page).group(1)
    rows = list(csv.DictReader(io.StringIO(
        operator.get(f"/reports/{report_id}/download").get_data(as_text=True))))
    sleeps = next(r for r in rows if r["handler"] == "sleeps")
    assert (sleeps["date"], sleeps["jobs_created"], sleeps["jobs_completed"]) == (today(), "1",
                                                                                 "1")


@pytest.mark.parametrize("fields, field, message", [
    ({"tenant": ""}, "tenant", "Choose the tenant"),
    ({"tenant": "nobody"}, "tenant", "no such tenant"),
    ({"start_date": "31/01/2026"}, "start_date", "YYYY-MM-DD"),
    ({"end_date": ""}, "end_date", "last day"),
    ({"start_date": "2026-02-01", "end_date": "2026-01-01"}, "end_date", "before the first"),
    ({"start_date": "2024-01-01", "end_date": "2025-06-01"}, "end_date", "at most 366"),
    ({"end_date": "2999-01-01"}, "end_date", "in the future"),
])
def test_bad_input_is_answered_on_the_form(service, make_tenant, client_as, fields, field,
                                           message):
    make_tenant("acme", "tier2")
    operator = client_as("operator")
    response = generate(operator, **fields)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(rf'id="{field}-error">([^<]+)<', page)
    assert error and message in error.group(1), page[-2000:]
    assert f'id="{field}" name="{field}"' in page and 'aria-invalid="true"' in page
    assert report_jobs(service) == 0


def test_a_tier_that_cannot_run_reports_is_told_so(service, make_tenant, client_as):
    make_tenant("small", "tier1")
    operator = client_as("operator")
    response = generate(operator, tenant="small")
    assert response.status_code == 422
    assert "may not queue &#39;immediate&#39; jobs" in response.get_data(as_text=True)
    assert report_jobs(service) == 0


def test_names_are_escaped(service, make_tenant, client_as):
    make_tenant("evil", "tier2", name="<script>alert(1)</script>")
    add_report(service, tenant_id="evil", name="Report <script>alert(2)</script>")
    page = client_as("operator").get("/reports").get_data(as_text=True)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page     # the tenant in the form
    assert "Report &lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_tenant_filter_and_keyset_pages(app, service, make_tenant, client_as, monkeypatch):
    import console.web.reports.views as report_forms
    monkeypatch.setattr(report_forms, "PAGE_SIZE", 2)
    make_tenant("acme", "tier2")
    make_tenant("globex", "tier2")
    for i in range(5):
        add_report(service, name=f"acme-{i}", created_offset=i)
    add_report(service, tenant_id="globex", name="globex-0", created_offset=10)
    viewer = client_as("viewer")

    def names(page):
        return re.findall(r'<th scope="row">([^<]+)</th>', page)

    first = viewer.get("/reports?tenant=acme").get_data(as_text=True)
    assert names(first) == ["acme-4", "acme-3"]          # newest first, this tenant only
    older = re.search(r'href="(/reports\?[^"]*before=[^"]+)"', first).group(1).replace("&amp;",
                                                                                        "&")
    second = viewer.get(older).get_data(as_text=True)
    assert names(second) == ["acme-2", "acme-1"]
    newer = re.search(r'href="(/reports\?[^"]*after=[^"]+)"', second).group(1).replace("&amp;",
                                                                                       "&")
    assert names(viewer.get(newer).get_data(as_text=True)) == ["acme-4", "acme-3"]
    third = re.search(r'href="(/reports\?[^"]*before=[^"]+)"', second).group(1).replace("&amp;",
                                                                                        "&")
    last = viewer.get(third).get_data(as_text=True)
    assert names(last) == ["acme-0"] and "Older →" not in last
    assert names(viewer.get("/reports").get_data(as_text=True)) == ["globex-0", "acme-4"]
    partial = viewer.get("/reports?tenant=globex", headers={"HX-Request": "true"})
    assert "<html" not in partial.get_data(as_text=True)
    assert names(partial.get_data(as_text=True)) == ["globex-0"]
    assert viewer.get("/reports?before=garbage").status_code == 400
    assert viewer.get("/reports?tenant=nobody").status_code == 404
