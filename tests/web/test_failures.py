"""The failures screen: failed jobs grouped by handler and error type, with counts and the
latest message; retrying one job, a group, or every failed job."""
from __future__ import annotations

import re

import pytest

from console.jobs import JobExecutionResult, JobHandler, JobStatus
from tests.jobs.handlers import ALL_TYPES


class RaisesItsPayloadHandler(JobHandler):
    """Raises ``payload["error"]`` (an exception class name) with ``payload["message"]``."""

    handler_name = "raises_its_payload"
    supported_job_types = ALL_TYPES

    def execute(self, context) -> JobExecutionResult:
        kind = {"ValueError": ValueError, "KeyError": KeyError}[context.job.payload["error"]]
        raise kind(context.job.payload["message"])


def text(response) -> str:
    return response.get_data(as_text=True)


def group_row(page: str, handler: str, error_type: str) -> str:
    """The groups table's row for one handler and error type."""
    for row in re.findall(r"<tr>.*?</tr>", page, re.S):
        if f"<td>{handler}</td>" in row and f"<code>{error_type}</code>" in row:
            return row
    raise AssertionError(f"no group {handler} / {error_type}")


def numbers(row: str) -> list[str]:
    return re.findall(r'<td class="num">(?:<a [^>]*>)?([\d,]+)', row)


@pytest.fixture
def failures(service, make_tenant):
    """Three ValueErrors and a KeyError of one handler, a RuntimeError of another, a job that
    failed an attempt and then succeeded, and a completed job."""
    make_tenant("acme")
    service.register_handler(RaisesItsPayloadHandler())
    ids = {
        "value": [service.queue_job("immediate", "raises_its_payload",
                                    {"error": "ValueError", "message": f"bad row {i}"}, "acme",
                                    max_retries=0).id for i in range(3)],
        "key": [service.queue_job("immediate", "raises_its_payload",
                                  {"error": "KeyError", "message": "no such column"}, "acme",
                                  max_retries=0).id],
        "boom": [service.queue_job("immediate", "always_fails", {}, "acme",
                                   max_retries=0).id],
        "recovered": [service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme",
                                        max_retries=1).id],
        "fine": [service.queue_job("immediate", "sleeps", {}, "acme").id],
    }
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(ids["recovered"][0]).status is JobStatus.COMPLETED
    return ids


def test_signed_out_visitors_are_sent_to_sign_in(app):
    response = app.test_client().get("/failures")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_failures_are_grouped_by_handler_and_error_type(client_as, failures):
    page = text(client_as("viewer").get("/failures"))
    assert "<strong>5</strong> jobs failed" in page
    value = group_row(page, "raises_its_payload", "ValueError")
    assert numbers(value) == ["3", "3", "3"]           # failed now, attempts 24 h, 7 days
    assert re.search(r"bad row [012]", value)           # the newest failure's message
    assert numbers(group_row(page, "raises_its_payload", "KeyError")) == ["1", "1", "1"]
    assert numbers(group_row(page, "always_fails", "RuntimeError")) == ["1", "1", "1"]
    recovered = group_row(page, "fails_n_times", "ConnectionError")
    assert numbers(recovered) == ["0", "1", "1"] and "none failed now" in recovered
    assert "attempt 1 failed on purpose" in recovered
    assert "sleeps" not in re.sub(r"<h2>Newest failed jobs.*", "", page, flags=re.S)
    # the newest failed jobs, each linked to its page, live
    for job_id in failures["value"] + failures["key"] + failures["boom"]:
        assert f'href="/jobs/{job_id}"' in page and f'sse-swap="job-{job_id}"' in page


def test_each_group_links_to_the_jobs_table_filtered_to_it(client_as, failures):
    viewer = client_as("viewer")
    page = text(viewer.get("/failures"))
    link = re.search(r'href="(/jobs\?[^"]*error=ValueError[^"]*)"', page).group(1)
    table = text(viewer.get(link.replace("&amp;", "&")))
    shown = set(re.findall(r'<a href="/jobs/([0-9a-f-]{36})" title=', table))
    assert shown == set(failures["value"])


def test_viewers_read_but_cannot_retry(client_as, failures, service):
    viewer = client_as("viewer")
    page = text(viewer.get("/failures"))
    assert "Retry group" not in page and "Retry all failed" not in page
    assert ">Retry</button>" not in page
    job_id = failures["boom"][0]
    refused = viewer.post(f"/jobs/{job_id}/retry",
                          data={"csrf_token": viewer.csrf, "next": "/failures"})
    assert refused.status_code == 403
    assert viewer.get("/jobs/bulk/all?action=retry&status=failed&next=/failures") \
        .status_code == 403
    assert service.get_job_by_id(job_id).status is JobStatus.FAILED


def test_retrying_without_a_csrf_token_is_refused(client_as, failures, service):
    operator = client_as("operator")
    job_id = failures["boom"][0]
    response = operator.post(f"/jobs/{job_id}/retry", data={"next": "/failures"})
    assert response.status_code == 400 and "The form expired" in text(response)
    assert service.get_job_by_id(job_id).status is JobStatus.FAILED


def test_messages_and_names_are_escaped(client_as, service, make_tenant):
    make_tenant("acme")
    service.register_handler(RaisesItsPayloadHandler())
    service.queue_job("immediate", "raises_its_payload",
                      {"error": "ValueError", "message": "<script>alert(1)</script>"}, "acme",
                      max_retries=0)
    service.run_until_idle(settle=0.2)
    page = text(client_as("viewer").get("/failures"))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_retry_one_failed_job_from_the_list(client_as, failures, service):
    operator = client_as("operator")
    job_id = failures["boom"][0]
    page = text(operator.get("/failures"))
    assert f'action="/jobs/{job_id}/retry"' in page
    response = operator.post(f"/jobs/{job_id}/retry",
                             data={"csrf_token": operator.csrf, "next": "/failures"},
                             follow_redirects=True)
    assert response.request.path == "/failures" and "queued to run again" in text(response)
    assert service.get_job_by_id(job_id).status is JobStatus.QUEUED
    assert service.get_job_by_id(failures["value"][0]).status is JobStatus.FAILED


def test_retry_a_group_after_confirming_its_count(client_as, failures, service):
    operator = client_as("operator")
    page = text(operator.get("/failures"))
    link = re.search(r'href="(/jobs/bulk/all\?[^"]*error=ValueError[^"]*)"', page).group(1)
    confirm = text(operator.get(link.replace("&amp;", "&")))
    assert "This will retry <strong>3</strong> failed or cancelled jobs matching: " \
           "<strong>status=failed, handler=raises_its_payload, error=ValueError</strong>" \
        in confirm
    assert {service.get_job_by_id(i).status for i in failures["value"]} == {JobStatus.FAILED}
    done = operator.post("/jobs/bulk/all", data={
        "csrf_token": operator.csrf, "action": "retry", "status": "failed",
        "handler": "raises_its_payload", "error": "ValueError", "next": "/failures"},
        follow_redirects=True)
    assert done.request.path == "/failures" and "Retried 3 jobs." in text(done)
    assert {service.get_job_by_id(i).status for i in failures["value"]} == {JobStatus.QUEUED}
    assert service.get_job_by_id(failures["key"][0]).status is JobStatus.FAILED
    assert service.get_job_by_id(failures["boom"][0]).status is JobStatus.FAILED


def test_retry_every_failed_job_after_confirming(client_as, failures, service):
    operator = client_as("operator")
    page = text(operator.get("/failures"))
    assert "Retry all failed jobs…" in page
    confirm = text(operator.get("/jobs/bulk/all?action=retry&status=failed&next=/failures",
                                headers={"HX-Request": "true"}))
    assert "<html" not in confirm and "This will retry <strong>5</strong>" in confirm
    assert 'name="next" value="/failures"' in confirm
    done = operator.post("/jobs/bulk/all", data={"csrf_token": operator.csrf, "action": "retry",
                                                 "status": "failed", "next": "/failures"},
                         follow_redirects=True)
    assert "Retried 5 jobs." in text(done)
    failed = failures["value"] + failures["key"] + failures["boom"]
    assert {service.get_job_by_id(i).status for i in failed} == {JobStatus.QUEUED}
    after = text(operator.get("/failures"))
    assert "<strong>0</strong> jobs failed" in after and "Retry all failed jobs" not in after


def test_no_failures_at_all(client_as, make_tenant):
    make_tenant("acme")
    page = text(client_as("operator").get("/failures"))
    assert "No failures" in page and "Retry all failed" not in page
