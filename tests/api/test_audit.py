"""``GET /api/v1/audit`` (admin tokens): filters, keyset cursor, bad input; and what API calls
record — the token's prefix and the client's address."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from console.jobs.models import audit_table
from tests.api.conftest import queue


def _prefix(tokens, kind):
    return tokens[kind][:12]


CALLS = {
    "create_job": (lambda api: api("post", "/jobs", token="acme", json={
        "type": "immediate", "handler": "noop"}), "job_created", 1),
    "notification": (lambda api: api("post", "/notifications", token="acme", json={
        "type": "sms", "recipient": "+15550100", "body": "hi"}), "job_created", 1),
    "batch": (lambda api: api("post", "/jobs/batch", token="acme", json={
        "jobs": [{"type": "immediate", "handler": "noop"}] * 4}), "jobs_created", 4),
    "cancel": (lambda api: api("post", f"/jobs/{queue(api, token='acme', delay_seconds=600)['id']}"
                                       "/cancel", token="acme"), "job_cancelled", 1),
    "pause_tenant": (lambda api: api("post", "/tenants/acme/pause", token="acme"),
                     "tenant_paused", None),
    "resume_tenant": (lambda api: _after(api("post", "/tenants/acme/pause", token="acme"),
                                         api("post", "/tenants/acme/resume", token="acme")),
                      "tenant_resumed", None),
    "pause_handler": (lambda api: api("post", "/handlers/noop/pause", token="acme"),
                      "handler_paused", None),
    "resume_handler": (lambda api: _after(api("post", "/handlers/noop/pause", token="acme"),
                                          api("post", "/handlers/noop/resume", token="acme")),
                       "handler_resumed", None),
    "pause_job": (lambda api: api("post", f"/jobs/{queue(api, token='acme')['id']}/pause",
                                  token="acme"), "job_paused", 1),
    "resume_job": (lambda api: _pause_and_resume(api), "job_resumed", 1),
    "run_now": (lambda api: api("post", f"/jobs/{queue(api, token='acme', delay_seconds=600)['id']}"
                                        "/run-now", token="acme"), "job_run_now", 1),
}


def _after(first, then):
    assert first.status_code == 200, first.get_json()
    return then


def _pause_and_resume(api):
    job_id = queue(api, token="acme")["id"]
    return _after(api("post", f"/jobs/{job_id}/pause", token="acme"),
                  api("post", f"/jobs/{job_id}/resume", token="acme"))


@pytest.mark.parametrize("call", list(CALLS))
def test_api_changes_name_the_token_prefix_and_address(api, service, tokens, call):
    do, action, count = CALLS[call]
    assert do(api).status_code in (200, 201)
    with service.engine.connect() as conn:
        rows = conn.execute(select(audit_table).where(audit_table.c.action == action)).all()
    assert len(rows) == 1
    entry = rows[0]
    assert (entry.actor_kind, entry.actor_name, entry.actor_address) == (
        "token", _prefix(tokens, "acme"), "127.0.0.1")
    assert (entry.tenant_id, entry.job_count) == ("acme", count)


def test_changed_limits_keep_the_values_before_and_after(api, tokens):
    response = api("put", "/tenants/acme/limits", json={
        "tier": "tier2", "limits": {"max_queued_jobs": 9}})
    assert response.status_code == 200
    listed = api("get", "/audit?action=tenant_limits_changed").get_json()["entries"]
    assert [(e["actor_name"], e["before"]["max_queued_jobs"], e["after"]["max_queued_jobs"])
            for e in listed] == [(_prefix(tokens, "admin"), 50, 9)]


def test_a_refused_call_records_nothing(api):
    over = api("post", "/jobs/batch", token="acme", json={
        "jobs": [{"type": "immediate", "handler": "noop"}] * 51})
    assert over.status_code == 429
    invalid = api("post", "/jobs", token="acme", json={"type": "immediate", "handler": "nope"})
    assert invalid.status_code == 422
    assert api("get", "/audit").get_json() == {"entries": [], "next_cursor": None}


def test_pages_and_filters(api, tokens):
    for tenant, token in (("acme", "acme"), ("globex", "globex")):
        for _ in range(3):
            queue(api, tenant=tenant, token=token)
    first = api("get", "/audit?limit=4").get_json()
    assert len(first["entries"]) == 4 and first["next_cursor"]
    rest = api("get", f"/audit?limit=4&cursor={first['next_cursor']}").get_json()
    assert len(rest["entries"]) == 2 and rest["next_cursor"] is None
    ids = [e["id"] for e in first["entries"] + rest["entries"]]
    assert len(set(ids)) == 6
    globex = api("get", "/audit?tenant_id=globex").get_json()["entries"]
    assert {e["tenant_id"] for e in globex} == {"globex"} and len(globex) == 3
    by = api("get", f"/audit?actor={_prefix(tokens, 'acme')}").get_json()["entries"]
    assert {e["tenant_id"] for e in by} == {"acme"}
    assert api("get", "/audit?since=2999-01-01T00:00:00Z").get_json()["entries"] == []


@pytest.mark.parametrize("query,field", [("action=drop", "action"), ("cursor=zzz", "cursor"),
                                         ("limit=0", "limit"), ("since=yesterday", "since"),
                                         ("since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
                                          "until")])
def test_bad_filters_are_422_naming_the_field(api, query, field):
    response = api("get", f"/audit?{query}")
    assert response.status_code == 422, response.get_json()
    assert field in {e["field"] for e in response.get_json()["errors"]}


@pytest.mark.parametrize("token", ["acme", "all"])
def test_only_admin_tokens_read_the_trail(api, token):
    assert api("get", "/audit", token=token).status_code == 403
