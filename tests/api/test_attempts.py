"""``GET /api/v1/jobs/{id}/attempts``: a job's attempts with the lines each logged, newest
first in pages; a tenant's token reads only its own jobs' lines."""
from __future__ import annotations

import pytest

from tests.api.conftest import queue


def run(api, service, tenant="acme", **payload):
    job = queue(api, tenant=tenant, handler="logs_lines", payload=payload)
    service.run_until_idle(timeout=20)
    return job["id"]


def test_a_tenant_reads_its_jobs_attempts_with_their_lines(api, service):
    job_id = run(api, service, lines=2, fail=True)
    response = api("get", f"/jobs/{job_id}/attempts", token="acme")
    assert response.status_code == 200
    body = response.get_json()
    assert body["job_id"] == job_id and body["next_before"] is None
    # max_retries 3: four attempts, newest first, each with its own lines.
    assert [a["attempt"] for a in body["attempts"]] == [4, 3, 2, 1]
    newest = body["attempts"][0]
    assert newest["running"] is False and newest["success"] is False
    assert newest["error_type"] == "ValueError"
    assert [(line["level"], line["logger"], line["message"]) for line in newest["lines"]] == [
        ("INFO", "jobs.handler.logs_lines", "line 1 of 2"),
        ("INFO", "jobs.handler.logs_lines", "line 2 of 2"),
        ("ERROR", None, "ValueError: gave up after logging")]
    assert "Traceback (most recent call last)" in newest["lines"][-1]["traceback"]
    assert newest["lines"][0]["logged_at"].endswith("+00:00")


def test_another_tenants_token_cannot_read_the_lines(api, service):
    job_id = run(api, service, lines=1)
    for token in ("globex",):
        response = api("get", f"/jobs/{job_id}/attempts", token=token)
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"
        assert "line 1 of 1" not in response.get_data(as_text=True)
    for token in ("acme", "all", "admin"):
        lines = api("get", f"/jobs/{job_id}/attempts", token=token).get_json()["attempts"][0]
        assert [line["message"] for line in lines["lines"]] == ["line 1 of 1"], token
    assert api("get", f"/jobs/{job_id}/attempts", token=None).status_code == 401


def test_attempts_page_by_before(api, service):
    job_id = run(api, service, lines=1, fail=True)
    first = api("get", f"/jobs/{job_id}/attempts?limit=3").get_json()
    assert [a["attempt"] for a in first["attempts"]] == [4, 3, 2]
    assert first["next_before"] == 2
    rest = api("get", f"/jobs/{job_id}/attempts?limit=3&before=2").get_json()
    assert [a["attempt"] for a in rest["attempts"]] == [1] and rest["next_before"] is None
    assert [line["message"] for line in rest["attempts"][0]["lines"]][0] == "line 1 of 1"


def test_a_job_not_run_yet_has_no_attempts(api, service):
    job = queue(api, handler="noop")
    body = api("get", f"/jobs/{job['id']}/attempts").get_json()
    assert body == {"job_id": job["id"], "attempts": [], "next_before": None}


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=51", "limit"),
                                          ("limit=ten", "limit"), ("before=0", "before"),
                                          ("before=x", "before"), ("lines=all", "lines")])
def test_bad_paging_is_a_422_naming_the_parameter(api, service, query, field):
    job = queue(api, handler="noop")
    response = api("get", f"/jobs/{job['id']}/attempts?{query}")
    assert response.status_code == 422
    assert field in {error["field"] for error in response.get_json()["errors"]}


def test_an_unknown_job_is_a_404(api):
    response = api("get", "/jobs/01900000-0000-7000-8000-000000000000/attempts")
    assert response.status_code == 404
