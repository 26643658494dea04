"""The jobs screens: the filterable table with keyset pages, bulk retry and cancel, and a job's
page with its attempts and actions. Jobs are queued through the service and run with
``service.run_until_idle``, as the runner would run them."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from console.jobs import JobStatus

UTC = timezone.utc
HTMX = {"HX-Request": "true"}


def job_ids_in(page: str) -> list[str]:
    """The jobs a table shows, in order (each row links to its job's page)."""
    return re.findall(r'<a href="/jobs/([0-9a-f-]{36})" title=', page)


def cursor(page: str, rel: str) -> str | None:
    found = re.search(rf'href="/jobs\?[^"]*?(?:before|after)=([0-9a-f-]{{36}})"[^>]*rel="{rel}"',
                      page.replace("&amp;", "&"))
    return found.group(1) if found else None


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def mixed_jobs(service, make_tenant):
    """Jobs of two tenants, three handlers, every finished status and a waiting one."""
    make_tenant("acme", "tier3")       # default priority normal
    make_tenant("globex", "tier3")
    jobs = {
        "done": service.queue_job("immediate", "sleeps", {"ms": 1, "order": "A-100"}, "acme"),
        "failed": service.queue_job("immediate", "always_fails", {"order": "B-200"}, "globex",
                                    max_retries=0, priority="high"),
        "waiting": service.queue_delayed_job("sleeps", {"order": "C-300"}, timedelta(hours=1),
                                             "acme", priority="low"),
        "cancelled": service.queue_delayed_job("sleeps", {"order": "D-400"},
                                               timedelta(hours=1), "globex"),
        "flaky": service.queue_job("immediate", "fails_n_times", {"failures": 5}, "acme",
                                   max_retries=0),
    }
    service.cancel_job(jobs["cancelled"].id)
    service.run_until_idle(settle=0.2)
    return {name: job.id for name, job in jobs.items()}


# -- access ------------------------------------------------------------------------------------

def test_signed_out_visitors_are_sent_to_sign_in(app, mixed_jobs):
    client = app.test_client()
    for url in ("/jobs", f"/jobs/{mixed_jobs['done']}", f"/jobs/{mixed_jobs['done']}/activity",
                "/jobs/bulk/all?action=retry"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_viewers_read_but_cannot_act(client_as, mixed_jobs, service):
    viewer = client_as("viewer")
    page = text(viewer.get("/jobs"))
    assert sorted(job_ids_in(page)) == sorted(mixed_jobs.values())
    assert "Retry selected" not in page and "Retry all matching" not in page
    failed = mixed_jobs["failed"]
    job_page = text(viewer.get(f"/jobs/{failed}"))
    assert "boom on attempt 1" in job_page and ">Retry</button>" not in job_page
    token = {"csrf_token": viewer.csrf}
    assert viewer.post(f"/jobs/{failed}/retry", data=token).status_code == 403
    assert viewer.post(f"/jobs/{mixed_jobs['waiting']}/cancel", data=token).status_code == 403
    assert viewer.post("/jobs/bulk", data={**token, "action": "retry",
                                           "job_ids": [failed]}).status_code == 403
    assert viewer.get("/jobs/bulk/all?action=retry").status_code == 403
    assert viewer.post("/jobs/bulk/all", data={**token, "action": "retry"}).status_code == 403
    assert service.get_job_by_id(failed).status is JobStatus.FAILED


def test_posts_without_a_csrf_token_are_refused(client_as, mixed_jobs, service):
    operator = client_as("operator")
    failed = mixed_jobs["failed"]
    for url, data in ((f"/jobs/{failed}/retry", {}),
                      (f"/jobs/{mixed_jobs['waiting']}/cancel", {}),
                      ("/jobs/bulk", {"action": "retry", "job_ids": [failed]}),
                      ("/jobs/bulk/all", {"action": "retry", "status": "failed"})):
        response = operator.post(url, data=data)
        assert response.status_code == 400 and "The form expired" in text(response), url
    assert service.get_job_by_id(failed).status is JobStatus.FAILED
    assert service.get_job_by_id(mixed_jobs["waiting"]).status is JobStatus.PENDING


def test_payloads_and_tenant_names_are_escaped(client_as, service, make_tenant):
    make_tenant("evil", name="<script>alert('tenant')</script>")
    job = service.queue_job("immediate", "always_fails",
                            {"note": "<script>alert('payload')</script>"}, "evil", max_retries=0)
    service.run_until_idle(settle=0.2)
    viewer = client_as("viewer")
    table = text(viewer.get("/jobs"))
    assert "<script>alert('tenant')</script>" not in table
    assert "&lt;script&gt;alert(&#39;tenant&#39;)&lt;/script&gt;" in table
    found = text(viewer.get("/jobs?q=<script>alert('payload')"))
    assert job_ids_in(found) == [job.id] and "<script>alert" not in found
    page = text(viewer.get(f"/jobs/{job.id}"))
    assert "<script>alert('payload')</script>" not in page
    assert "&lt;script&gt;alert(&#39;payload&#39;)&lt;/script&gt;" in page


# -- the table ---------------------------------------------------------------------------------

def test_each_filter_narrows_the_table(client_as, mixed_jobs):
    viewer = client_as("viewer")

    def shown(query: str) -> set[str]:
        response = viewer.get(f"/jobs?{query}")
        assert response.status_code == 200, (query, text(response))
        return set(job_ids_in(text(response)))

    ids = mixed_jobs
    assert shown("status=completed") == {ids["done"]}
    assert shown("status=failed") == {ids["failed"], ids["flaky"]}
    assert shown("status=pending") == {ids["waiting"]}
    assert shown("status=cancelled") == {ids["cancelled"]}
    assert shown("tenant=globex") == {ids["failed"], ids["cancelled"]}
    assert shown("tenant=acme&status=failed") == {ids["flaky"]}
    assert shown("handler=always_fails") == {ids["failed"]}
    assert shown("type=delayed") == {ids["waiting"], ids["cancelled"]}
    assert shown("type=immediate&tenant=acme") == {ids["done"], ids["flaky"]}
    assert shown("priority=high") == {ids["failed"]}
    assert shown("priority=low") == {ids["waiting"]}
    assert shown("q=b-200") == {ids["failed"]}             # payload text, any case
    assert shown("q=order") == set(ids.values()) - {ids["flaky"]}
    assert shown("error=RuntimeError") == {ids["failed"]}
    assert shown("error=ConnectionError&status=failed") == {ids["flaky"]}
    assert shown("q=nothing-like-this") == set()
    now = datetime.now(UTC)
    hour_ago = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    in_an_hour = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert shown(f"created_from={hour_ago}&created_before={in_an_hour}") == set(ids.values())
    assert shown(f"created_from={in_an_hour}") == set()
    assert shown(f"created_before={hour_ago}") == set()


def test_a_creation_time_range_selects_exactly_a_batch(client_as, service, make_tenant):
    """Ids carry their creation millisecond: a range from the first id's millisecond to just
    after the last one's holds the batch and nothing before or after it."""
    make_tenant("acme")
    before = service.queue_job("immediate", "sleeps", {}, "acme").id
    batch = [job.id for job in service.queue_batch_jobs(
        [{"type": "delayed", "handler": "sleeps", "delay": timedelta(hours=1)}] * 30, "acme")]
    after = service.queue_job("immediate", "sleeps", {}, "acme").id

    def millisecond(job_id: str) -> int:
        return int(job_id.replace("-", "")[:12], 16)

    def moment(job_id: str, extra_ms: int = 0) -> str:
        return datetime.fromtimestamp((millisecond(job_id) + extra_ms) / 1000,
                                      UTC).isoformat(timespec="milliseconds")

    start, end = moment(min(batch)), moment(max(batch), 1)
    viewer = client_as("viewer")
    page = text(viewer.get("/jobs", query_string={"created_from": start,
                                                  "created_before": end}))
    # A job queued just before or after the batch belongs too if it shares the batch's first
    # or last millisecond.
    first, last = millisecond(min(batch)), millisecond(max(batch))
    wanted = batch + [job_id for job_id in (before, after)
                      if first <= millisecond(job_id) <= last]
    assert job_ids_in(page) == sorted(wanted, reverse=True)
    assert f'value="{start[:23]}"' in page                  # as a datetime-local input shows it


def test_payload_search_finds_text_as_typed_whatever_json_made_of_it(client_as, service,
                                                                    make_tenant):
    make_tenant("acme")
    city = service.queue_job("immediate", "sleeps", {"city": 'Zürich "old town"'}, "acme")
    percent = service.queue_job("immediate", "sleeps", {"discount": "50%_off"}, "acme")
    service.queue_job("immediate", "sleeps", {"discount": "50 percent"}, "acme")
    viewer = client_as("viewer")

    def shown(q: str) -> list[str]:
        return job_ids_in(text(viewer.get("/jobs", query_string={"q": q})))

    assert shown("Zürich") == [city.id]
    assert shown('"old town"') == [city.id]
    assert shown("50%_") == [percent.id]        # LIKE's wildcards are searched as text
    assert shown("%") == [percent.id]


def test_filters_are_kept_in_the_form_and_the_links(client_as, mixed_jobs):
    page = text(client_as("operator").get("/jobs?status=failed&tenant=globex"))
    assert '<option value="failed" selected>' in page
    assert '<option value="globex" selected>' in page
    assert "/jobs/bulk/all?status=failed&amp;tenant=globex&amp;action=retry" in page


def test_active_search_answers_htmx_with_the_table_only(client_as, mixed_jobs):
    viewer = client_as("viewer")
    full = text(viewer.get("/jobs"))
    assert 'hx-trigger="change, keyup changed delay:300ms from:input[type=search]"' in full
    assert 'hx-push-url="true"' in full and 'sse-connect="/events"' in full
    response = viewer.get("/jobs?status=failed&tenant=&handler=&q=", headers=HTMX)
    assert response.headers["HX-Push-Url"] == "/jobs?status=failed"   # tidy address bar
    partial = text(response)
    assert "<html" not in partial and 'id="job-filters"' not in partial
    assert '<div id="bulk-confirmation" hx-swap-oob="true"></div>' in partial
    assert set(job_ids_in(partial)) == {mixed_jobs["failed"], mixed_jobs["flaky"]}
    assert f'sse-swap="job-{mixed_jobs["failed"]}"' in partial


def test_keyset_pages_show_every_job_exactly_once(client_as, service, make_tenant):
    make_tenant("acme")
    service.queue_batch_jobs([{"type": "delayed", "handler": "sleeps", "payload": {"i": i},
                               "delay": timedelta(hours=1)} for i in range(120)], "acme")
    viewer = client_as("viewer")
    seen, pages, url = [], [], "/jobs"
    while url:
        page = text(viewer.get(url))
        ids = job_ids_in(page)
        pages.append(ids)
        seen += ids
        older = cursor(page, "next")
        url = f"/jobs?before={older}" if older else None
    assert [len(p) for p in pages] == [50, 50, 20]
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen == sorted(seen, reverse=True)                    # newest first throughout
    # and back: "← Newer" from the last page shows the middle page again
    last = text(viewer.get(f"/jobs?before={pages[1][-1]}"))
    newer = cursor(last, "prev")
    assert job_ids_in(text(viewer.get(f"/jobs?after={newer}"))) == pages[1]


def test_row_by_row_filters_search_a_bounded_window_and_say_so(client_as, service, make_tenant,
                                                                monkeypatch):
    """Payload text (like handler, type, priority, error) is checked row by row within a window
    of the driving index; a page not full by then says how far it searched and continues from
    there, and following those links finds every match exactly once."""
    from console.jobs import listing

    monkeypatch.setattr(listing, "SCAN_WINDOW", 10)
    make_tenant("acme")
    jobs = service.queue_batch_jobs([{"type": "delayed", "handler": "sleeps",
                                      "payload": {"tag": "needle" if i % 7 == 0 else "hay"},
                                      "delay": timedelta(hours=1)} for i in range(45)], "acme")
    needles = sorted((job.id for job in jobs if job.payload["tag"] == "needle"), reverse=True)
    viewer = client_as("viewer")
    found, url, windows = [], "/jobs?q=needle", 0
    while url:
        page = text(viewer.get(url))
        found += job_ids_in(page)
        more = re.search(r'href="(/jobs\?[^"]*before=[0-9a-f-]{36})"[^>]*>Continue with older',
                         page.replace("&amp;", "&"))
        if more:
            windows += 1
            assert "Searched 10 jobs" in page
        url = more.group(1) if more else None
    assert found == needles and windows == 4               # 45 jobs: windows of 10, 10, 10, 10, 5
    # and back up from before the oldest: "Continue with newer" links reach every match, and end
    # on the newest page
    below_all = str(uuid.UUID(int=uuid.UUID(min(job.id for job in jobs)).int - 1))
    back, url, steps = set(), f"/jobs?q=needle&after={below_all}", 0
    while url:
        page = text(viewer.get(url)).replace("&amp;", "&")
        back |= set(job_ids_in(page))
        more = re.search(r'href="(/jobs\?[^"]*after=[0-9a-f-]{36})"[^>]*>← Continue with newer',
                         page)
        url, steps = (more.group(1) if more else None), steps + 1
    assert back == set(needles) and steps == 5 and "« Newest" not in page
    # the same filter on a status the index drives: the window is over that status's jobs
    page = text(viewer.get("/jobs?q=needle&status=pending"))
    assert "Searched 10 jobs with status pending" in page
    # a dense filter fills its page without a notice
    monkeypatch.setattr(listing, "SCAN_WINDOW", 1000)
    page = text(viewer.get("/jobs?q=hay"))
    assert len(job_ids_in(page)) == 38 and "Searched" not in page


def test_bad_filter_values_get_a_message_not_an_error_page(client_as, mixed_jobs):
    viewer = client_as("viewer")
    for query, message in (("status=exploded", "there is no status &#39;exploded&#39;"),
                           ("priority=whenever", "there is no priority"),
                           ("created_from=yesterday", "is not a date and time"),
                           ("created_from=2026-02-30T10:00", "is not a date and time"),
                           ("created_from=2026-01-02&created_before=2026-01-01",
                            "must be later than"),
                           ("before=not-a-cursor", "this page link is not valid"),
                           ("before=01a2218b-0000-7000-8000-000000000000"
                            "&after=01a2218b-0000-7000-8000-000000000000", "either an older"),
                           ("q=" + "x" * 201, "Field cannot be longer than 200")):
        response = viewer.get(f"/jobs?{query}")
        assert response.status_code == 400, query
        assert message in text(response), (query, text(response))
        if not query.startswith(("before", "after")):   # page cursors are links, not fields
            assert 'aria-invalid="true"' in text(response)
        partial = viewer.get(f"/jobs?{query}", headers=HTMX)
        assert partial.status_code == 400 and message in text(partial)
        assert 'hx-swap-oob="true"' in text(partial)


# -- bulk actions ------------------------------------------------------------------------------

def test_operators_retry_and_cancel_the_selected_jobs(client_as, mixed_jobs, service):
    operator = client_as("operator")
    ids = mixed_jobs
    response = operator.post("/jobs/bulk", data={
        "csrf_token": operator.csrf, "action": "retry", "next": "/jobs?status=failed",
        "job_ids": [ids["failed"], ids["flaky"], ids["done"]]}, follow_redirects=True)
    assert response.request.path == "/jobs"
    assert ("Retried 2 jobs; 1 was not failed or cancelled and was left alone."
            in text(response))
    assert service.get_job_by_id(ids["failed"]).status is JobStatus.QUEUED
    assert service.get_job_by_id(ids["done"]).status is JobStatus.COMPLETED

    response = operator.post("/jobs/bulk", data={
        "csrf_token": operator.csrf, "action": "cancel",
        "job_ids": [ids["waiting"], ids["failed"]]}, follow_redirects=True)
    assert "Cancelled 2 jobs." in text(response)
    assert service.get_job_by_id(ids["waiting"]).status is JobStatus.CANCELLED


def test_bulk_selection_refuses_bad_input_with_a_message(client_as, mixed_jobs, service):
    operator = client_as("operator")
    for data, message in (({"action": "retry"}, "select at least one job"),
                          ({"action": "delete", "job_ids": [mixed_jobs["failed"]]},
                           "unknown action &#39;delete&#39;; use retry or cancel"),
                          ({"action": "retry", "job_ids": ["../../etc"]},
                           "a selected job id is not valid"),
                          ({"action": "retry", "job_ids": [mixed_jobs["failed"]],
                            "next": "https://evil.example/"}, "must be a path on this site")):
        response = operator.post("/jobs/bulk", data={"csrf_token": operator.csrf, **data},
                                 follow_redirects=True)
        assert response.status_code == 200 and response.request.path == "/jobs"
        assert "Nothing was changed" in text(response) and message in text(response), data
    assert service.get_job_by_id(mixed_jobs["failed"]).status is JobStatus.FAILED


def test_retry_all_matching_asks_with_the_count_then_acts(client_as, service, make_tenant):
    make_tenant("acme")
    make_tenant("globex")
    failing = [service.queue_job("immediate", "fails_n_times", {"failures": 1}, tenant,
                                 max_retries=0).id
               for tenant in ("acme", "acme", "acme", "globex")]
    service.queue_job("immediate", "sleeps", {}, "acme")
    service.run_until_idle(settle=0.2)
    operator = client_as("operator")

    confirm = operator.get("/jobs/bulk/all?action=retry&tenant=acme")
    page = text(confirm)
    assert confirm.status_code == 200
    assert "This will retry <strong>3</strong> failed or cancelled jobs matching: " \
           "<strong>tenant=acme</strong>" in page
    assert {s for s in (service.get_job_by_id(i).status for i in failing)} == {JobStatus.FAILED}
    fragment = text(operator.get("/jobs/bulk/all?action=retry&tenant=acme", headers=HTMX))
    assert "<html" not in fragment and "Confirm: retry 3 jobs" in fragment

    done = operator.post("/jobs/bulk/all", data={"csrf_token": operator.csrf, "action": "retry",
                                                 "tenant": "acme"}, follow_redirects=True)
    assert "Retried 3 jobs." in text(done)
    assert done.request.full_path.rstrip("?") == "/jobs?tenant=acme"
    assert [service.get_job_by_id(i).status for i in failing] == [JobStatus.QUEUED] * 3 + [
        JobStatus.FAILED]
    service.run_until_idle(settle=0.2)
    assert [service.get_job_by_id(i).status for i in failing[:3]] == [JobStatus.COMPLETED] * 3


def test_cancel_all_matching(client_as, service, make_tenant):
    make_tenant("acme")
    waiting = [service.queue_delayed_job("sleeps", {"i": i}, timedelta(hours=1), "acme").id
               for i in range(4)]
    operator = client_as("operator")
    page = text(operator.get("/jobs/bulk/all?action=cancel&status=pending"))
    assert "This will cancel <strong>4</strong> pending or queued jobs matching: " \
           "<strong>status=pending</strong>" in page
    nothing = text(operator.get("/jobs/bulk/all?action=cancel&status=completed"))
    assert "nothing to cancel" in nothing and "Confirm" not in nothing
    done = operator.post("/jobs/bulk/all", data={"csrf_token": operator.csrf,
                                                 "action": "cancel", "status": "pending",
                                                 "next": "/failures"}, follow_redirects=True)
    assert done.request.path == "/failures" and "Cancelled 4 jobs." in text(done)
    assert {service.get_job_by_id(i).status for i in waiting} == {JobStatus.CANCELLED}


def test_bulk_all_refuses_unknown_actions_and_bad_filters(client_as, mixed_jobs, service):
    operator = client_as("operator")
    unknown = operator.get("/jobs/bulk/all?action=delete")
    assert unknown.status_code == 400 and "use retry or cancel" in text(unknown)
    assert operator.post("/jobs/bulk/all", data={"csrf_token": operator.csrf,
                                                 "action": "drop"}).status_code == 400
    bad = operator.get("/jobs/bulk/all?action=retry&status=nope")
    assert bad.status_code == 400 and "there is no status" in text(bad)
    refused = operator.post("/jobs/bulk/all", data={"csrf_token": operator.csrf,
                                                    "action": "retry", "created_from": "soon"})
    assert refused.status_code == 400 and "is not a date and time" in text(refused)
    assert service.get_job_by_id(mixed_jobs["failed"]).status is JobStatus.FAILED


# -- a job's page ------------------------------------------------------------------------------

def test_a_jobs_page_shows_fields_payload_and_failed_attempts(client_as, service, make_tenant):
    make_tenant("acme")
    job = service.queue_job("immediate", "fails_n_times", {"failures": 2, "order": "X-1"},
                            "acme", max_retries=1)
    service.run_until_idle(settle=0.3)
    assert service.get_job_by_id(job.id).status is JobStatus.FAILED
    page = text(client_as("viewer").get(f"/jobs/{job.id}"))
    assert job.id in page and "fails_n_times" in page and "acme" in page
    assert "&#34;order&#34;: &#34;X-1&#34;" in page                  # escaped, as all text
    assert page.count('<li class="fail">') == 2
    assert "attempt 1 failed on purpose" in page and "attempt 2 failed on purpose" in page
    assert "ConnectionError" in page
    assert f'sse-swap="job-{job.id}"' in page
    assert f'hx-trigger="sse:job-{job.id}, htmx:sseOpen from:#content, live-poll from:body"' in page
    assert f'hx-get="/jobs/{job.id}/activity"' in page


def test_retry_from_the_job_page_runs_a_failed_job_to_completion(client_as, service,
                                                                 make_tenant):
    make_tenant("acme")
    job = service.queue_job("immediate", "fails_n_times", {"failures": 1}, "acme",
                            max_retries=0)
    service.run_until_idle(settle=0.2)
    operator = client_as("operator")
    page = text(operator.get(f"/jobs/{job.id}"))
    assert ">Retry</button>" in page and ">Cancel</button>" not in page
    response = operator.post(f"/jobs/{job.id}/retry", data={"csrf_token": operator.csrf},
                             follow_redirects=True)
    assert response.request.path == f"/jobs/{job.id}"
    assert "queued to run again" in text(response)
    service.run_until_idle(settle=0.2)
    finished = service.get_job_by_id(job.id)
    assert finished.status is JobStatus.COMPLETED
    activity = text(operator.get(f"/jobs/{job.id}/activity", headers=HTMX))
    assert "<html" not in activity
    assert activity.count('<li class="ok">') == 1 and activity.count('<li class="fail">') == 1
    assert "succeeded_on_attempt" in activity and ">Retry</button>" not in activity
    # the fields beside it are replaced too (out of band), so they never go stale
    fields = activity[activity.index('id="job-fields" hx-swap-oob="true"'):]
    assert re.search(r"<dt>Attempts</dt><dd>2</dd>", fields)
    assert "status-completed" in fields and "<dt>Completed</dt><dd>–" not in fields


def test_refused_state_changes_are_messages(client_as, service, make_tenant):
    make_tenant("acme", "tier2", maxQueuedJobs=1)
    done = service.queue_job("immediate", "sleeps", {}, "acme")
    service.run_until_idle(settle=0.2)
    failed = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(settle=0.2)
    service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")   # the queue is full
    operator = client_as("operator")
    twice = operator.post(f"/jobs/{done.id}/cancel", data={"csrf_token": operator.csrf},
                          follow_redirects=True)
    assert twice.status_code == 200 and "only pending or queued jobs can be cancelled" in \
        text(twice)
    full = operator.post(f"/jobs/{failed.id}/retry", data={"csrf_token": operator.csrf},
                         follow_redirects=True)
    assert full.status_code == 200 and "has 1 jobs waiting and max_queued_jobs is 1" in text(full)
    assert service.get_job_by_id(failed.id).status is JobStatus.FAILED


def test_cancel_from_the_job_page(client_as, service, make_tenant):
    make_tenant("acme")
    job = service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    operator = client_as("operator")
    assert ">Cancel</button>" in text(operator.get(f"/jobs/{job.id}"))
    response = operator.post(f"/jobs/{job.id}/cancel",
                             data={"csrf_token": operator.csrf, "next": "/jobs?status=pending"})
    assert response.status_code == 303 and response.headers["Location"] == \
        "/jobs?status=pending"
    assert service.get_job_by_id(job.id).status is JobStatus.CANCELLED


def test_recurring_jobs_show_their_schedule(client_as, service, make_tenant):
    make_tenant("acme")
    job = service.queue_scheduled_job("Nightly sync", "30 2 * * *", "sleeps", {}, "acme",
                                      timezone="Europe/Paris")
    page = text(client_as("viewer").get(f"/jobs/{job.id}"))
    assert "<code>30 2 * * *</code>" in page and "Europe/Paris" in page
    assert "Next run" in page and job.scheduled_for.strftime("%Y-%m-%d %H:%M") in page


def test_unknown_jobs_are_404_pages(client_as):
    viewer = client_as("viewer")
    for url in ("/jobs/01a2218b-0000-7000-8000-000000000000", "/jobs/nonsense",
                "/jobs/01a2218b-0000-7000-8000-000000000000/activity"):
        response = viewer.get(url)
        assert response.status_code == 404 and "There is no job" in text(response), url
    operator = client_as("operator")
    missing = operator.post("/jobs/01a2218b-0000-7000-8000-000000000000/retry",
                            data={"csrf_token": operator.csrf})
    assert missing.status_code == 404


def test_bulk_retry_over_full_queues_says_which_tenants_held_jobs_back(client_as, service,
                                                                       make_tenant):
    make_tenant("small", "tier2", maxQueuedJobs=1)
    make_tenant("tiny", "tier2", maxQueuedJobs=1)
    for tenant, count in (("small", 3), ("tiny", 2)):
        for _ in range(count):
            service.queue_job("immediate", "always_fails", {}, tenant, max_retries=0)
            service.run_until_idle(settle=0.1)
    operator = client_as("operator")
    done = operator.post("/jobs/bulk/all", data={"csrf_token": operator.csrf, "action": "retry",
                                                 "status": "failed"}, follow_redirects=True)
    assert ("Retried 2 jobs; 3 were held back by their tenants&#39; max_queued_jobs "
            "(small 2, tiny 1) and were left alone.") in text(done)
    assert len(service.get_jobs_by_status("queued")) == 2


def test_the_live_refresh_keeps_an_open_confirmation_but_a_filter_change_drops_it(client_as,
                                                                                   make_tenant):
    make_tenant("acme")
    viewer = client_as("viewer")
    dropped = '<div id="bulk-confirmation" hx-swap-oob="true"></div>'
    assert dropped in text(viewer.get("/jobs?status=failed", headers=HTMX))
    refreshed = text(viewer.get("/jobs?status=failed", headers={**HTMX, "X-Live-Refresh": "1"}))
    assert dropped not in refreshed and 'id="job-rows"' in refreshed
    page = text(viewer.get("/jobs"))
    assert 'hx-trigger="htmx:sseOpen from:#content once, live-poll from:body"' in page
