"""The console's audit entries (one per kind of change, with who, what, target, before and
after), sign-ins, the Audit screen's filters and pages, a tenant's recent changes, and pruning."""
from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from console.jobs.models import audit_table
from console.tokens import create_token
from tests.web.conftest import PASSWORDS, sign_in
from tests.web.test_tenants import limits_form

UTC = timezone.utc


@pytest.fixture
def acme(make_tenant):
    make_tenant("acme", "tier2", "Acme")


def entries(service, action: str | None = None) -> list:
    with service.engine.connect() as conn:
        query = select(audit_table).order_by(audit_table.c.created_at, audit_table.c.id)
        if action:
            query = query.where(audit_table.c.action == action)
        return conn.execute(query).all()


def _user_id(service, username: str) -> int:
    with service.engine.connect() as conn:
        return conn.execute(select(audit_table.metadata.tables["users"].c.id).where(
            audit_table.metadata.tables["users"].c.username == username)).scalar_one()


def _post(client, path, **data):
    return client.post(path, data={"csrf_token": client.csrf, **data})


def _delayed(service):
    return service.queue_job("delayed", "noop", {}, "acme", delay=timedelta(hours=1))


def _failed(service):
    job = service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(timeout=10, settle=0.2)
    return job


# name: (change(client, service) -> target id, action, target type, tenant, before, after)
CHANGES = {
    "new job form": (
        lambda c, s: _post(c, "/jobs/new/immediate", tenant_id="acme", type="immediate",
                           handler="noop", payload="{}", priority="", max_retries="3",
                           metadata="", idempotency_key=""),
        "job_created", "job", "acme", None, None),
    "batch upload": (
        lambda c, s: c.post("/jobs/new/batch", data={
            "csrf_token": c.csrf, "tenant_id": "acme", "priority": "",
            "file": (io.BytesIO(json.dumps([{"type": "immediate", "handler": "noop"}] * 3)
                                .encode()), "jobs.json")}),
        "jobs_created", "tenant", "acme", None, None),
    "retry": (lambda c, s: _post(c, f"/jobs/{_failed(s).id}/retry"),
              "job_retried", "job", "acme", {"status": "failed"}, {"status": "queued"}),
    "cancel": (lambda c, s: _post(c, f"/jobs/{_delayed(s).id}/cancel"),
               "job_cancelled", "job", "acme", {"status": "pending"}, {"status": "cancelled"}),
    "bulk cancel": (lambda c, s: c.post("/jobs/bulk", data={
        "csrf_token": c.csrf, "action": "cancel", "job_ids": [_delayed(s).id, _delayed(s).id]}),
        "jobs_cancelled", "tenant", "acme", None, None),
    "tenant added": (lambda c, s: _post(c, "/tenants", tenant_id="beta", name="Beta",
                                        tier="tier1"),
                     "tenant_added", "tenant", "beta", None, "any"),
    "limits": (lambda c, s: c.post("/tenants/acme/limits",
                                   data=limits_form(c, max_queued_jobs="7")),
               "tenant_limits_changed", "tenant", "acme",
               {"max_queued_jobs": 50, "custom_settings": None},
               {"max_queued_jobs": 7, "custom_settings": {"jobLimits": {"maxQueuedJobs": 7}}}),
    "user added": (lambda c, s: _post(c, "/users", username="newbie", role="viewer",
                                      password="long enough pw"),
                   "user_added", "user", None, None, {"role": "viewer"}),
    "role": (lambda c, s: _post(c, f"/users/{_user_id(s, 'vic')}/role", role="operator"),
             "user_role_changed", "user", None, {"role": "viewer"}, {"role": "operator"}),
    "password": (lambda c, s: _post(c, f"/users/{_user_id(s, 'vic')}/password",
                                    password="another long one"),
                 "user_password_reset", "user", None, None, None),
    "tenants": (lambda c, s: _post(c, f"/users/{_user_id(s, 'vic')}/tenants", tenants="acme"),
                "user_tenants_changed", "user", None, {"tenants": []}, {"tenants": ["acme"]}),
    "sign out everywhere": (lambda c, s: _post(c, f"/users/{_user_id(s, 'vic')}/sessions/end"),
                            "sessions_ended", "user", None, None, None),
    "disable": (lambda c, s: _post(c, f"/users/{_user_id(s, 'vic')}/active", active="0"),
                "user_disabled", "user", None, {"active": True}, {"active": False}),
    "token created": (lambda c, s: _post(c, "/tokens", name="billing", tenant="acme"),
                      "token_created", "token", "acme", None, {"name": "billing",
                                                               "scope": "tenant acme"}),
    "token revoked": (lambda c, s: _post(
        c, f"/tokens/{create_token(s.engine, 'old', 'acme')[0].id}/revoke"),
        "token_revoked", "token", "acme", None, {"name": "old"}),
    "report": (lambda c, s: _post(c, "/reports", tenant="acme",
                                  start_date=datetime.now(UTC).date().isoformat(),
                                  end_date=datetime.now(UTC).date().isoformat()),
               "report_generated", "job", "acme", None, None),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_console_change_is_recorded_once_with_who_what_and_values(
        client_as, service, acme, change):
    do, action, target_type, tenant, before, after = CHANGES[change]
    admin = client_as("admin")
    response = do(admin, service)
    assert response.status_code in (200, 201, 303), response.get_data(as_text=True)[:2000]
    rows = [r for r in entries(service) if not r.action.startswith("sign_in")]
    assert len(rows) == 1, [(r.action, r.target_id) for r in rows]
    entry = rows[0]
    assert (entry.actor_kind, entry.actor_name, entry.actor_address) == (
        "user", "ada", "127.0.0.1")
    assert (entry.action, entry.target_type, entry.tenant_id) == (action, target_type, tenant)
    assert entry.value_before == before
    if after == "any":
        assert entry.value_after["tier"] == "tier1"
    else:
        assert entry.value_after == after
    if action == "jobs_created":
        assert entry.job_count == 3 and len(entry.job_ids) == 3
    if action == "jobs_cancelled":
        assert entry.job_count == 2 and entry.details == {"filter": "the selected jobs"}


def test_changes_from_the_command_line_name_the_machines_user(app, service, acme):
    import getpass

    runner = app.test_cli_runner()
    made = runner.invoke(args=["create-user", "cli-made", "--role", "viewer", "--password",
                               "quiet harbor lantern 7"])
    assert made.exit_code == 0, made.output
    token = runner.invoke(args=["create-token", "--tenant", "acme", "--name", "cli token"])
    assert token.exit_code == 0, token.output
    rows = [(r.actor_kind, r.actor_name, r.actor_address, r.action, r.target_id)
            for r in entries(service)]
    assert ("command", getpass.getuser(), None, "user_added", "cli-made") in rows
    assert any(r[:4] == ("command", getpass.getuser(), None, "token_created") for r in rows)


def test_alert_rules_and_contacts_record_before_and_after(client_as, service, acme):
    from tests.alerts.test_screens import rule_form

    admin = client_as("admin")
    assert admin.post("/alerts/rules", data=rule_form(admin.csrf)).status_code == 303
    created = entries(service, "alert_rule_created")[0]
    assert (created.tenant_id, created.value_after["threshold"]) == ("acme", 0.0)
    rule_id = created.target_id
    admin.post(f"/alerts/rules/{rule_id}", data=rule_form(admin.csrf, threshold="5"))
    changed = entries(service, "alert_rule_changed")[0]
    assert (changed.value_before, changed.value_after) == ({"threshold": 0.0},
                                                          {"threshold": 5.0})
    _post(admin, f"/alerts/rules/{rule_id}/disable")
    assert entries(service, "alert_rule_disabled")[0].value_after == {"enabled": False}
    _post(admin, "/alerts/contacts/acme", alert_email="ops@acme.example", alert_webhook_url="")
    contacts = entries(service, "alert_contacts_changed")
    assert len(contacts) == 1 and contacts[0].value_before == {"custom_settings": None}


REFUSED = {
    "limit over its bound": lambda c, s: c.post(
        "/tenants/acme/limits", data=limits_form(c, max_queued_jobs="-1")),
    "job over the tenant's types": lambda c, s: _post(
        c, "/jobs/new/immediate", tenant_id="acme", type="file_processing", handler="noop",
        payload="{}", priority="", max_retries="3", metadata="", idempotency_key=""),
    "bad payload": lambda c, s: _post(
        c, "/jobs/new/immediate", tenant_id="acme", type="immediate", handler="noop",
        payload="{not json", priority="", max_retries="3", metadata="", idempotency_key=""),
    "demoting the last admin": lambda c, s: _post(
        c, f"/users/{_user_id(s, 'ada')}/role", role="viewer"),
    "short password": lambda c, s: _post(c, "/users", username="x", role="viewer",
                                         password="short"),
}


@pytest.mark.parametrize("refusal", list(REFUSED))
def test_a_refused_change_writes_no_entry(client_as, service, acme, refusal):
    admin = client_as("admin")
    assert REFUSED[refusal](admin, service).status_code == 422
    assert [r.action for r in entries(service)] == ["sign_in"]


def test_sign_ins_are_recorded_failed_ones_with_the_name_tried(app, users, service):
    client = app.test_client()
    assert sign_in(client, "ada", "wrong password").status_code == 401
    assert sign_in(client, "nobody", "whatever").status_code == 401
    assert sign_in(client, "ada", PASSWORDS["ada"]).status_code == 302
    assert [(r.action, r.actor_name, r.actor_address) for r in entries(service)] == [
        ("sign_in_failed", "ada", "127.0.0.1"), ("sign_in_failed", "nobody", "127.0.0.1"),
        ("sign_in", "ada", "127.0.0.1")]


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_only_admins_see_the_audit_screen(client_as, role):
    client = client_as(role)
    assert client.get("/audit").status_code == 403
    assert 'href="/audit"' not in client.get("/").get_data(as_text=True)
    assert 'href="/audit"' in client_as("admin").get("/").get_data(as_text=True)


def _rows(page: str) -> int:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return body.count("<tr>")


def test_the_screen_filters_and_pages(client_as, service, make_tenant):
    from console.jobs.audit import Actor

    make_tenant("acme", "tier4")
    make_tenant("beta", "tier4")
    for _ in range(60):
        service.queue_job("immediate", "noop", {}, "acme", actor=Actor("token", "cjt_A", "x"))
    service.queue_job("immediate", "noop", {}, "beta", actor=Actor("user", "bob", "y"))
    admin = client_as("admin")
    first = admin.get("/audit?action=job_created").get_data(as_text=True)
    assert _rows(first) == 50
    older = re.search(r'href="(/audit\?[^"]*before=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert _rows(admin.get(older).get_data(as_text=True)) == 11
    by_bob = admin.get("/audit?actor=bob").get_data(as_text=True)
    assert _rows(by_bob) == 1 and "beta" in by_bob
    assert _rows(admin.get("/audit?tenant=beta").get_data(as_text=True)) == 1
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert "No changes recorded" in admin.get(f"/audit?since={tomorrow}").get_data(as_text=True)
    fragment = admin.get("/audit?tenant=beta", headers={"HX-Request": "true"})
    assert "<h1>" not in fragment.get_data(as_text=True)


def test_an_admin_bound_to_a_tenant_sees_only_its_entries(app, client_as, service,
                                                          make_tenant):
    from console.jobs.audit import Actor
    from console.web.auth.views import set_user

    from .conftest import sign_in

    make_tenant("acme", "tier4")
    make_tenant("beta", "tier4")
    service.queue_job("immediate", "noop", {}, "acme", actor=Actor("user", "acme-op", "x"))
    service.queue_job("immediate", "noop", {}, "beta", actor=Actor("user", "beta-op", "y"))
    client_as("admin")   # a staff sign-in: an entry of no tenant
    with app.app_context():
        set_user("abe", "admin", "bound password 1", tenants=["acme"])
    bound = app.test_client()
    assert sign_in(bound, "abe", "bound password 1").status_code == 302
    page = bound.get("/audit").get_data(as_text=True)
    assert "acme-op" in page and "beta-op" not in page
    assert _rows(page) == 1     # not the sign-ins, which belong to no tenant
    assert "beta-op" not in bound.get("/audit?tenant=beta").get_data(as_text=True)
    staff = client_as("admin").get("/audit").get_data(as_text=True)
    assert "acme-op" in staff and "beta-op" in staff


@pytest.mark.parametrize("query,field", [("action=drop_tables", "action"),
                                         ("since=yesterday", "from"),
                                         ("before=not-a-cursor", "page link"),
                                         ("since=2026-12-05&until=2026-12-01", "to date")])
def test_bad_filters_are_a_400_naming_the_field(client_as, query, field):
    response = client_as("admin").get(f"/audit?{query}")
    assert response.status_code == 400 and field in response.get_data(as_text=True)


def test_a_tenants_page_shows_its_recent_changes(client_as, service, acme):
    admin = client_as("admin")
    admin.post("/tenants/acme/limits", data=limits_form(admin, max_queued_jobs="7"))
    page = admin.get("/tenants/acme").get_data(as_text=True)
    section = page.split('id="changes-section"', 1)[1]
    assert "changed a tenant&#39;s limits" in section and "ada" in section
    assert "changes-section" not in client_as("viewer").get("/tenants/acme").get_data(
        as_text=True)


def test_the_prune_job_deletes_entries_past_the_retention(app, service, acme):
    from console.jobs.audit import Actor

    service.queue_job("immediate", "noop", {}, "acme", actor=Actor("user", "ada"))
    service.queue_job("immediate", "noop", {}, "acme", actor=Actor("user", "ada"))
    old = datetime.now(UTC) - timedelta(days=app.config["AUDIT_RETENTION_DAYS"] + 1)
    with service.engine.begin() as conn:
        first = conn.execute(select(audit_table.c.id).order_by(audit_table.c.id)).scalars().first()
        conn.execute(update(audit_table).where(audit_table.c.id == first).values(created_at=old))
    service.queue_job("maintenance", "prune_finished_jobs", {}, "acme")
    service.run_until_idle(timeout=10, settle=0.2)
    assert [r.action for r in entries(service)] == ["job_created"]
