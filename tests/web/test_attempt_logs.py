"""The job's page shows each attempt's log lines, a running attempt's as they come; a user bound
to another tenant reads none of them."""
from __future__ import annotations

from console.jobs import JobStatus
from console.jobs.runner import Runner
from console.web.auth.views import set_user
from tests.support import wait_until

from .conftest import sign_in


def text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_the_job_page_shows_each_attempts_lines_and_its_traceback(client_as, service,
                                                                  make_tenant):
    make_tenant("acme")
    job = service.queue_job("immediate", "logs_lines", {"lines": 2, "plain": True,
                                                        "fail": True}, "acme", max_retries=1)
    quiet = service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(settle=0.3)
    page = text(client_as("viewer").get(f"/jobs/{job.id}"))
    assert page.count('<ol class="log-lines" aria-label="Log of attempt') == 2
    assert page.count("line 1 of 2") == 2 and page.count("line 2 of 2") == 2
    # A library's line names its logger; the handler's own lines need not.
    assert page.count('<span class="muted">some.library</span>') == 2
    assert page.count('<pre class="traceback">') == 2
    assert "raise ValueError(&#34;gave up after logging&#34;)" in page   # escaped, as all text
    # The newest attempt's log is open, the older one folded.
    assert page.count('<details class="attempt-log" open>') == 1
    assert page.index('aria-label="Log of attempt 2"') < page.index('aria-label="Log of attempt 1"')
    assert "Logged nothing." in text(client_as("viewer").get(f"/jobs/{quiet.id}"))


def test_a_running_attempts_lines_show_before_it_ends(client_as, service, make_tenant):
    make_tenant("acme")
    viewer = client_as("viewer")
    runner = Runner(service, threads=2, poll_interval=30).start()
    try:
        job = service.queue_job("immediate", "logs_lines", {"lines": 2, "interval_ms": 3000},
                                "acme")
        activity = wait_until(lambda: (lambda page: "line 1 of 2" in page and page)(
            text(viewer.get(f"/jobs/{job.id}/activity"))), 5, "line 1 on the page",
            interval=0.05)
        assert service.get_job_by_id(job.id).status is JobStatus.PROCESSING
        assert "running" in activity and "Log (1 line so far)" in activity
        assert "line 2 of 2" not in activity
        wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 10,
                   "the job to end")
    finally:
        runner.stop(grace=1)
    activity = text(viewer.get(f"/jobs/{job.id}/activity"))
    assert "Log (2 lines)" in activity and "succeeded after" in activity


def test_a_user_bound_to_another_tenant_reads_none_of_the_lines(app, service, make_tenant):
    make_tenant("acme")
    make_tenant("globex")
    job = service.queue_job("immediate", "logs_lines", {"lines": 1}, "acme")
    service.run_until_idle(settle=0.3)
    with app.app_context():
        set_user("gus", "admin", "globex password 1", tenants=["globex"])
        set_user("abe", "viewer", "acme password 1", tenants=["acme"])
    outsider, insider = app.test_client(), app.test_client()
    assert sign_in(outsider, "gus", "globex password 1").status_code == 302
    assert sign_in(insider, "abe", "acme password 1").status_code == 302
    for path in (f"/jobs/{job.id}", f"/jobs/{job.id}/activity"):
        response = outsider.get(path)
        assert response.status_code == 404, path
        assert "line 1 of 1" not in response.get_data(as_text=True)
        assert "line 1 of 1" in text(insider.get(path))
