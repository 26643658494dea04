"""The Batches screen and a batch's page: newest first in keyset pages, the progress that
refreshes while the batch runs and stops once it and its callbacks have finished, failures and
callbacks with links; the batch upload links to the batch it made."""
from __future__ import annotations

import io
import json
import re

import pytest

import console.web.batches.views as batch_views

NOOP = {"type": "immediate", "handler": "noop"}
FAILS = {"type": "immediate", "handler": "always_fails", "max_retries": 0}


@pytest.fixture
def tenants(make_tenant):
    make_tenant("acme", "tier4", name="Acme Corp")
    make_tenant("globex", "tier4", name="Globex")


@pytest.fixture
def viewer(client_as, tenants):
    return client_as("viewer")


def text(response) -> str:
    return response.get_data(as_text=True)


def batch_links(page: str) -> list[str]:
    return re.findall(r'href="/batches/([0-9a-f-]{36})"', page)


def test_batches_are_listed_newest_first_in_keyset_pages(viewer, service, monkeypatch):
    made = [service.queue_batch_jobs([NOOP], tenant)[0].batch_id
            for tenant in ("acme", "globex", "acme", "acme", "globex")]
    monkeypatch.setattr(batch_views, "PAGE_SIZE", 2)
    first = text(viewer.get("/batches"))
    assert batch_links(first) == made[::-1][:2]
    older = re.search(r'href="(/batches\?before=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = text(viewer.get(older))
    assert batch_links(second) == made[::-1][2:4]
    assert "0 of 1" in first and "Batches" in first

    only_acme = text(viewer.get("/batches?tenant=acme"))
    assert batch_links(only_acme) == [made[3], made[2]]
    assert viewer.get("/batches?tenant=nobody").status_code == 404
    assert viewer.get("/batches?before=garbage").status_code == 400
    partial = viewer.get("/batches", headers={"HX-Request": "true"})
    assert "<html" not in text(partial) and "<table" in text(partial)


def test_a_running_batch_page_refreshes_its_progress_until_everything_has_finished(
        viewer, service):
    jobs = service.queue_batch_jobs([NOOP, NOOP, FAILS], "acme", on_complete=NOOP,
                                    on_success=NOOP)
    batch_id = jobs[0].batch_id
    page = text(viewer.get(f"/batches/{batch_id}"))
    assert 'data-state="running"' in page and 'hx-trigger="every 1s' in page
    assert "0</strong> of <strong data-total>3</strong> ended" in page
    assert page.count("runs when every job of the batch has ended") == 2

    service.cancel_job(jobs[1].id)
    partial = text(viewer.get(f"/batches/{batch_id}/progress",
                              headers={"HX-Request": "true"}))
    assert "<html" not in partial and 'data-count="cancelled">1<' in partial
    assert 'hx-trigger="every 1s' in partial

    service.run_until_idle(timeout=20, settle=0.2)
    done = text(viewer.get(f"/batches/{batch_id}/progress"))
    assert 'data-state="finished"' in done and "hx-trigger" not in done
    assert "3</strong> of <strong data-total>3</strong> ended" in done
    assert f'href="/jobs/{jobs[2].id}"' in done and f'href="/jobs/{jobs[1].id}"' in done
    assert "RuntimeError" in done
    (callback_id,) = service.get_batch(batch_id).callback_job_ids
    assert f'href="/jobs/{callback_id}"' in done and "status-completed" in done
    assert "not run: 1 failed and 1 cancelled" in done   # on_success
    job_page = text(viewer.get(f"/jobs/{jobs[0].id}"))
    assert f'href="/batches/{batch_id}"' in job_page


def test_a_finished_batch_keeps_polling_while_its_callback_waits(viewer, service):
    jobs = service.queue_batch_jobs([NOOP], "acme", on_complete={**NOOP, "delay": 3600})
    service.cancel_job(jobs[0].id)
    page = text(viewer.get(f"/batches/{jobs[0].batch_id}"))
    assert 'data-state="finished"' in page and "status-pending" in page
    assert 'hx-trigger="every 1s' in page


@pytest.mark.parametrize("path", ["/batches/01a00000-0000-7000-8000-000000000000",
                                  "/batches/not-an-id", "/batches/not-an-id/progress"])
def test_a_missing_batch_is_a_404(viewer, path):
    assert viewer.get(path).status_code == 404


def test_the_batch_upload_links_to_its_batch_and_takes_callbacks(client_as, tenants, service):
    operator = client_as("operator")
    document = {"jobs": [NOOP, NOOP], "on_complete": {**NOOP, "payload": {"from": "upload"}}}
    response = operator.post("/jobs/new/batch", data={
        "csrf_token": operator.csrf, "tenant_id": "acme", "priority": "",
        "file": (io.BytesIO(json.dumps(document).encode()), "jobs.json")},
        content_type="multipart/form-data")
    assert response.status_code == 303, text(response)[:2000]
    page = text(operator.get(response.headers["Location"]))
    (batch_id,) = set(batch_links(page))
    assert "Follow the batch&#39;s progress" in page or "Follow the batch's progress" in page
    batch = service.get_batch(batch_id)
    assert (batch.tenant_id, batch.total, batch.on_complete["payload"]) == (
        "acme", 2, {"from": "upload"})

    refused = operator.post("/jobs/new/batch", data={
        "csrf_token": operator.csrf, "tenant_id": "acme", "priority": "",
        "file": (io.BytesIO(json.dumps({"jobs": [NOOP], "on_success": {"handler": "noop"}})
                            .encode()), "jobs.json")}, content_type="multipart/form-data")
    assert refused.status_code == 422 and "on_success.type: is required" in text(refused)


def test_the_navigation_offers_batches(viewer):
    assert 'href="/batches"' in text(viewer.get("/"))
