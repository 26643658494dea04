"""The console's alert screens: admins create, edit, mute and disable rules and set a tenant's
alert contacts; operators and viewers read; firing alerts show on the dashboard and the
tenant's page; bad input is a 422 with a message on the field, and nothing is stored."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from console.alerts.store import get_rule, list_rules
from console.web.alerts import views as alert_views
from tests.alerts.conftest import alerts_of

UTC = timezone.utc
SCRIPT = "<script>alert(1)</script>"


def rule_form(csrf: str, **overrides) -> dict:
    form = {"csrf_token": csrf, "name": "Acme backlog", "kind": "queue_backlog",
            "scope": "tenant:acme", "threshold": "0", "window_hours": "24", "handler": "",
            "limit_name": "", "cooldown_minutes": "30", "notify_operators": "y",
            "notify_tenant": "y", "enabled": "y"}
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def field_error(page: str, field: str) -> str:
    found = re.search(rf'id="{field}-error">([^<]*)<', page)
    return found.group(1) if found else ""


@pytest.fixture
def acme(make_tenant):
    return make_tenant("acme")


def test_an_admin_creates_edits_mutes_and_disables_a_rule(service, client_as, acme):
    admin = client_as("admin")
    page = admin.get("/alerts/rules").get_data(as_text=True)
    assert 'action="/alerts/rules"' in page and "Add a rule" in page

    created = admin.post("/alerts/rules", data=rule_form(admin.csrf))
    assert created.status_code == 303
    [rule] = list_rules(service.engine)
    assert created.headers["Location"].endswith(f"/alerts/rules/{rule.id}")
    assert (rule.kind, rule.scope, rule.tenant_id, rule.threshold, rule.cooldown_seconds,
            rule.updated_by) == ("queue_backlog", "tenant", "acme", 0.0, 1800, "ada")
    page = admin.get(f"/alerts/rules/{rule.id}").get_data(as_text=True)
    assert "queue backlog above 0 queued jobs" in page and "tenant acme" in page

    edited = admin.post(f"/alerts/rules/{rule.id}", data=rule_form(
        admin.csrf, kind="success_rate", scope="each_tenant", threshold="95",
        window_hours="6", notify_tenant=None))
    assert edited.status_code == 303
    rule = get_rule(service.engine, rule.id)
    assert (rule.kind, rule.scope, rule.tenant_id, rule.threshold, rule.window_hours,
            rule.notify_tenant) == ("success_rate", "each_tenant", None, 95.0, 6, False)

    until = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    muted = admin.post(f"/alerts/rules/{rule.id}/mute",
                       data={"csrf_token": admin.csrf, "until": until.strftime("%Y-%m-%dT%H:%M")})
    assert muted.status_code == 303
    assert get_rule(service.engine, rule.id).muted_until == until
    assert "muted until" in admin.get("/alerts/rules").get_data(as_text=True)
    admin.post(f"/alerts/rules/{rule.id}/unmute", data={"csrf_token": admin.csrf})
    assert get_rule(service.engine, rule.id).muted_until is None

    admin.post(f"/alerts/rules/{rule.id}/disable", data={"csrf_token": admin.csrf})
    assert not get_rule(service.engine, rule.id).enabled
    admin.post(f"/alerts/rules/{rule.id}/enable", data={"csrf_token": admin.csrf})
    assert get_rule(service.engine, rule.id).enabled


BAD_RULES = [
    ({"threshold": "lots"}, "threshold", "Type a number, e.g. 90 or 1000."),
    ({"threshold": "2.5"}, "threshold", "Give a whole number"),
    ({"name": "  "}, "name", "Name the rule after what it watches"),
    ({"kind": "health_score", "scope": "system", "threshold": "70"}, "scope",
     "Health score belongs to a tenant"),
    ({"kind": "success_rate", "threshold": "0"}, "threshold", "Nothing is below 0"),
    ({"kind": "success_rate", "threshold": "90", "window_hours": "0"}, "window_hours",
     "whole hours, 1 to 168"),
    ({"kind": "handler_failure_rate", "threshold": "20"}, "handler",
     "Choose a registered handler"),
    ({"kind": "limit_usage", "threshold": "100", "limit_name": "max_queued_jobs"},
     "threshold", "Nothing is above 100"),
    ({"scope": "tenant:nobody"}, "scope", "There is no such tenant"),
    ({"cooldown_minutes": "-5"}, "cooldown_minutes", "0 to 10,080 minutes"),
]


def test_bad_input_is_refused_on_its_field_and_nothing_is_stored(service, client_as, acme,
                                                                   add_rule):
    admin = client_as("admin")
    rule = add_rule("queue_backlog", 5, name="Kept as it was")
    for overrides, field, message in BAD_RULES:
        for path in ("/alerts/rules", f"/alerts/rules/{rule.id}"):     # create, edit
            response = admin.post(path, data=rule_form(admin.csrf, **overrides))
            assert response.status_code == 422, (overrides, path)
            assert message in field_error(response.get_data(as_text=True), field), (
                overrides, path)
    assert list_rules(service.engine) == [rule]
    for until, message in ((datetime.now(UTC) - timedelta(hours=1), "in the future"),
                           (datetime.now(UTC) + timedelta(days=100), "at most 90 days"),
                           (None, "Type a time as YYYY-MM-DD HH:MM")):
        response = admin.post(f"/alerts/rules/{rule.id}/mute", data={
            "csrf_token": admin.csrf,
            "until": until.strftime("%Y-%m-%dT%H:%M") if until else "tomorrow"})
        assert response.status_code == 422
        assert message in field_error(response.get_data(as_text=True), "until")
    assert get_rule(service.engine, rule.id).muted_until is None


def test_operators_and_viewers_read_but_do_not_change(app, service, client_as, acme,
                                                      add_rule):
    rule = add_rule("queue_backlog", 0)
    for role in ("operator", "viewer"):
        client = client_as(role)
        for path in ("/alerts", "/alerts/rules", f"/alerts/rules/{rule.id}",
                     "/alerts/contacts/acme"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert '<form method="post" action="/alerts' not in page.get_data(as_text=True)
        for path, data in ((("/alerts/rules", rule_form(client.csrf))),
                           (f"/alerts/rules/{rule.id}", rule_form(client.csrf)),
                           (f"/alerts/rules/{rule.id}/mute", {"csrf_token": client.csrf,
                                                              "until": "2099-01-01T00:00"}),
                           (f"/alerts/rules/{rule.id}/unmute", {"csrf_token": client.csrf}),
                           (f"/alerts/rules/{rule.id}/disable", {"csrf_token": client.csrf}),
                           ("/alerts/contacts/acme", {"csrf_token": client.csrf,
                                                      "alert_email": "x@example.com"})):
            assert client.post(path, data=data).status_code == 403, (role, path)
    assert list_rules(service.engine) == [rule]

    response = app.test_client().get("/alerts/rules")            # signed out
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    admin = client_as("admin")                                   # a form without its token
    refused = admin.post("/alerts/rules", data=rule_form("not-the-token"))
    assert refused.status_code == 400 and "The form expired" in refused.get_data(as_text=True)
    assert list_rules(service.engine) == [rule]


def test_firing_alerts_show_on_the_dashboard_the_tenants_page_and_their_own_page(
        service, client_as, make_tenant, add_rule, evaluate):
    make_tenant("acme")
    make_tenant("globex")
    rule = add_rule("queue_backlog", 0, name="Acme backlog")
    job = service.queue_job("immediate", "sleeps", {}, "acme")
    viewer = client_as("viewer")
    assert "alert firing" not in viewer.get("/").get_data(as_text=True)
    evaluate(ALERTS_EMAIL_TO="ops@example.com")
    [alert] = alerts_of(service, rule)
    for path in ("/", "/dashboard/summary", "/tenants/acme"):
        page = viewer.get(path).get_data(as_text=True)
        assert "1 alert firing" in page, path
        assert f'href="/alerts/{alert.id}">Acme backlog</a>' in page, path
        assert alert.message in page, path
    assert "No alert is firing for this tenant." in viewer.get("/tenants/globex").get_data(
        as_text=True)

    page = viewer.get(f"/alerts/{alert.id}").get_data(as_text=True)   # with its history
    notice = service.get_jobs_by_status("queued", "console")[0]
    assert f'href="/jobs/{notice.id}"' in page and "ops@example.com" in page
    assert "Notices queued" in page and alert.recommendation in page
    assert viewer.get("/alerts/no-such-alert").status_code == 404

    service.cancel_job(job.id)
    evaluate()
    assert "alert firing" not in viewer.get("/").get_data(as_text=True)
    assert "Resolved" in viewer.get(f"/alerts/{alert.id}").get_data(as_text=True)


def test_a_script_in_a_rule_name_is_shown_as_text_everywhere(service, client_as, acme,
                                                            add_rule, evaluate):
    rule = add_rule("queue_backlog", 0, name=SCRIPT)
    service.queue_job("immediate", "sleeps", {}, "acme")
    evaluate()
    [alert] = alerts_of(service, rule)
    viewer = client_as("viewer")
    for path in ("/alerts", "/alerts/rules", f"/alerts/rules/{rule.id}",
                 f"/alerts/{alert.id}", "/", "/dashboard/summary", "/tenants/acme"):
        page = viewer.get(path).get_data(as_text=True)
        assert SCRIPT not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_the_alerts_screen_filters_and_pages(service, client_as, make_tenant, add_rule,
                                             evaluate, monkeypatch):
    for tenant in ("acme", "globex", "initech"):
        make_tenant(tenant)
        service.queue_job("immediate", "sleeps", {}, tenant)
    each = add_rule("queue_backlog", 0, scope="each_tenant", name="Any backlog")
    system = add_rule("queue_backlog", 0, scope="system", name="System backlog")
    evaluate()
    acme_job = service.get_jobs_by_status("queued", "acme")[0]
    service.cancel_job(acme_job.id)
    evaluate()                                        # acme's alert resolves; the sum holds
    viewer = client_as("viewer")

    def listed(**query):
        page = viewer.get("/alerts", query_string=query, headers={"HX-Request": "true"})
        assert page.status_code == 200
        return page.get_data(as_text=True)

    assert listed().count('class="status ') == 4
    assert listed(state="resolved").count('class="status ') == 1
    assert listed(state="firing", rule=each.id).count('class="status ') == 2
    assert listed(tenant="system").count("System backlog") == 1
    assert "Any backlog" not in listed(tenant="system")
    assert listed(tenant="acme").count('class="status status-completed"') == 1

    monkeypatch.setattr(alert_views, "PAGE_SIZE", 3)
    first = listed()
    assert first.count('class="status ') == 3
    older = re.search(r'href="(/alerts\?[^"]*before=[^"]+)"', first).group(1)
    second = viewer.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert second.count('class="status ') == 1 and "« Newest" in second
    assert viewer.get("/alerts?before=garbage").status_code == 400
    assert viewer.get("/alerts?state=sideways").status_code == 400
    assert system.id


def test_an_admin_sets_a_tenants_alert_contacts(app, service, client_as, make_tenant):
    make_tenant("acme", maxQueuedJobs=7)
    admin = client_as("admin")
    bad = admin.post("/alerts/contacts/acme", data={
        "csrf_token": admin.csrf, "alert_email": "ada@example.com, not-an-address",
        "alert_webhook_url": "ftp://example.com/x"})
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    assert "“not-an-address” is not an email address" in field_error(page, "alert_email")
    assert "Give an http:// or https:// URL." in field_error(page, "alert_webhook_url")
    assert "alertEmail" not in service.tenants.get_tenant_config("acme").custom_settings

    # Where tenants' webhooks may not go, neither may their alert webhooks (checked on save
    # for what needs no DNS; names are judged when the alert is sent).
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    for url, kind in (("http://127.0.0.1:5099/internal", "a loopback address"),
                      ("http://localhost/x", "a loopback address"),
                      ("http://169.254.169.254/latest", "a link-local address")):
        inside = admin.post("/alerts/contacts/acme", data={
            "csrf_token": admin.csrf, "alert_email": "", "alert_webhook_url": url})
        assert inside.status_code == 422, url
        assert f"It points at {kind}; alert webhooks go to public addresses only." in \
            field_error(inside.get_data(as_text=True), "alert_webhook_url")
    assert "alertWebhookUrl" not in service.tenants.get_tenant_config("acme").custom_settings

    saved = admin.post("/alerts/contacts/acme", data={
        "csrf_token": admin.csrf, "alert_email": " ada@example.com ,bob@example.com",
        "alert_webhook_url": "https://hooks.example.com/acme"})
    assert saved.status_code == 303
    config = service.tenants.get_tenant_config("acme")
    assert config.custom_settings["alertEmail"] == "ada@example.com, bob@example.com"
    assert config.custom_settings["alertWebhookUrl"] == "https://hooks.example.com/acme"
    assert config.job_limit.max_queued_jobs == 7                # other settings kept
    assert "ada@example.com, bob@example.com" in admin.get("/tenants/acme").get_data(
        as_text=True)
    assert admin.get("/alerts/contacts/nobody").status_code == 404


def test_values_no_database_can_hold_are_answered_not_queried(service, client_as, acme,
                                                             add_rule):
    """PostgreSQL refuses even to compare a NUL character, or an integer past 2^31: such
    values get a 4xx from the console on both databases, never a 500."""
    admin = client_as("admin")
    rule = add_rule("queue_backlog", 0)
    for path, status in (("/alerts?tenant=ac%00me", 400), ("/alerts?rule=99999999999", 400),
                         ("/alerts?rule=%C2%B2", 400), ("/alerts/ab%00cd", 404),
                         ("/alerts/rules/99999999999", 404), ("/alerts/contacts/ac%00me", 404)):
        assert admin.get(path).status_code == status, path
    named = admin.post(f"/alerts/rules/{rule.id}", data=rule_form(admin.csrf, name="a\x00b"))
    assert named.status_code == 422
    assert "NUL" in field_error(named.get_data(as_text=True), "name")
    contacts = admin.post("/alerts/contacts/acme", data={
        "csrf_token": admin.csrf, "alert_email": "a\x00@example.com",
        "alert_webhook_url": "https://x.example/\x00"})
    assert contacts.status_code == 422
    assert "alertEmail" not in service.tenants.get_tenant_config("acme").custom_settings
