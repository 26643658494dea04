"""Dependencies in the console: the New job form's "runs after" field and the batch upload's
column, a job's page with its upstream and downstream jobs (statuses live), the explanation
naming the unfinished ones, and the jobs list's "waiting for dependencies" filter."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.web.test_jobs import job_ids_in, text
from tests.web.test_new_job import form, queued_job, upload


@pytest.fixture
def operator(client_as, make_tenant):
    make_tenant("acme", "tier2", name="Acme Corp")
    make_tenant("globex", "tier2")
    return client_as("operator")


def later(service, tenant="acme"):
    return service.queue_delayed_job("noop", {}, timedelta(hours=1), tenant)


def test_the_new_job_form_queues_a_job_that_runs_after_others(operator, service):
    page = text(operator.get("/jobs/new/immediate"))
    assert 'name="depends_on"' in page and 'name="on_dependency_failure"' in page
    one, two = later(service), later(service)
    job = queued_job(service, operator.post("/jobs/new/immediate", data=form(
        operator, depends_on=f"{one.id},\n{two.id}", on_dependency_failure="run")))
    assert job.depends_on == (one.id, two.id) and job.on_dependency_failure == "run"
    assert job.waiting_for_dependencies


def test_a_link_to_the_form_can_name_the_job_to_run_after(operator, service):
    first = later(service)
    page = text(operator.get(f"/jobs/new/delayed?tenant_id=acme&depends_on={first.id}"))
    assert f'value="{first.id}"' in page


@pytest.mark.parametrize("typed,message", [
    ("not-an-id", "is not a job id"),
    ("01890000-0000-7000-8000-000000000000", "unknown job")])
def test_bad_dependencies_are_answered_next_to_the_field(operator, service, typed, message):
    before = service.count_jobs()
    response = operator.post("/jobs/new/immediate", data=form(operator, depends_on=typed))
    assert response.status_code == 422
    field_error = re.search(r'id="depends_on-error">(.*?)</div>', text(response), re.S)
    assert field_error and message in field_error.group(1)
    assert service.count_jobs() == before


def test_another_tenants_job_reads_as_unknown(operator, service):
    theirs = later(service, "globex")
    response = operator.post("/jobs/new/immediate", data=form(operator, depends_on=theirs.id))
    assert response.status_code == 422 and "unknown job" in text(response)


def test_a_batch_upload_names_dependencies_in_a_column(operator, service):
    first = later(service)
    content = ("type,handler,depends_on,on_dependency_failure\n"
               f"immediate,noop,{first.id},run\n")
    response = upload(operator, "jobs.csv", content)
    assert response.status_code == 303, text(response)[:2000]
    [job] = [j for j in service.get_jobs_by_status("pending", "acme") if j.depends_on]
    assert job.depends_on == (first.id,) and job.on_dependency_failure == "run"


def test_a_jobs_page_shows_upstream_and_downstream_with_live_statuses(operator, service):
    first = later(service)
    middle = service.queue_job("immediate", "sleeps", {}, "acme", depends_on=[first.id])
    last = service.queue_job("immediate", "noop", {}, "acme", depends_on=[middle.id])
    page = text(operator.get(f"/jobs/{middle.id}"))
    assert "Depends on" in page and "Needed by" in page
    for neighbour in (first, last):
        assert f'href="/jobs/{neighbour.id}"' in page
        assert f'sse-swap="job-{neighbour.id}"' in page          # its status, live
    assert "waiting for dependencies" in page
    assert 'data-code="dependencies"' in page                     # the explanation says why
    assert "Run now" not in page and "Cancel" in page   # it starts when they complete
    fragment = text(operator.get(f"/jobs/{middle.id}/activity"))
    assert "Depends on" in fragment and f'sse-swap="job-{first.id}"' in fragment
    explanation = text(operator.get(f"/jobs/{middle.id}/explanation"))
    assert f'href="/jobs/{first.id}"' in explanation and "Not finished" in explanation


def test_the_jobs_list_filters_jobs_waiting_for_dependencies(operator, service):
    first = later(service)
    waiting = service.queue_job("immediate", "noop", {}, "acme", depends_on=[first.id])
    service.queue_job("immediate", "noop", {}, "acme")
    page = text(operator.get("/jobs?waiting=dependencies"))
    assert job_ids_in(page) == [waiting.id]
    assert '<option value="dependencies" selected>' in page
    refused = operator.get("/jobs?waiting=dependencies&status=queued")
    assert refused.status_code == 400
    assert "jobs waiting for dependencies are pending" in text(refused)
