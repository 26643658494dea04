"""Tenants screen: the list with usage bars, adding a tenant, a tenant's analytics page, and the
limits form whose changes the engine enforces at once."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest

from console.jobs import JobLimitConfig, TenantLimitException

UTC = timezone.utc
XSS = "<script>alert(1)</script>"
TIER2_TYPES = ["delayed", "immediate", "maintenance", "notification", "recurring", "scheduled"]


def limits_form(client, **values):
    """The limits form as a browser posts it: blanks (the tier's values) unless given."""
    data = {"csrf_token": client.csrf, "tier": "tier2", "max_queued_jobs": "",
            "max_concurrent_jobs": "", "max_daily_jobs": "", "max_job_payload_size": "",
            "max_job_duration": "", "default_job_priority": "", "other_job_types": "",
            "allowed_job_types": TIER2_TYPES}
    data.update(values)
    return data


def field_error(page: str, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>([^<]+)<', page)
    return match.group(1) if match else ""


# -- access ---------------------------------------------------------------------------------------

def test_every_tenant_route_needs_sign_in(app, make_tenant):
    make_tenant("acme")
    client = app.test_client()
    for url in ("/tenants", "/tenants/acme", "/tenants/acme/health", "/tenants/acme/charts",
                "/tenants/acme/limits"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_viewers_read_tenants_but_see_no_admin_forms(client_as, make_tenant):
    make_tenant("acme", "tier2")
    viewer = client_as("viewer")
    listing = viewer.get("/tenants")
    assert listing.status_code == 200
    assert "Add a tenant" not in listing.get_data(as_text=True)
    page = viewer.get("/tenants/acme")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "max_queued_jobs</dt><dd>50</dd>" in text          # read-only limits
    assert "Save limits" not in text and "Only admins change limits" in text
    assert viewer.get("/tenants/acme/health").status_code == 200
    assert viewer.get("/tenants/acme/charts").status_code == 200


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_add_tenants_and_change_limits(client_as, make_tenant, service, role):
    make_tenant("acme", "tier2")
    client = client_as(role)
    added = client.post("/tenants", data={"csrf_token": client.csrf, "tenant_id": "new",
                                          "name": "New", "tier": "tier1"})
    assert added.status_code == 403 and service.tenants.get_tenant_config("new") is None
    changed = client.post("/tenants/acme/limits", data=limits_form(client, max_queued_jobs="1"))
    assert changed.status_code == 403
    assert service.tenants.get_tenant_config("acme").job_limit.max_queued_jobs == 50
    assert client.get("/tenants/acme/limits?tier=tier3",
                      headers={"HX-Request": "true"}).status_code == 403


def test_posts_without_csrf_token_are_refused(client_as, make_tenant, service):
    make_tenant("acme", "tier2")
    admin = client_as("admin")
    assert admin.post("/tenants", data={"tenant_id": "new", "name": "New",
                                        "tier": "tier1"}).status_code == 400
    form = limits_form(admin, max_queued_jobs="1")
    del form["csrf_token"]
    assert admin.post("/tenants/acme/limits", data=form).status_code == 400
    assert service.tenants.get_tenant_config("new") is None
    assert service.tenants.get_tenant_config("acme").job_limit.max_queued_jobs == 50


def test_unknown_tenant_is_404(client_as):
    viewer = client_as("viewer")
    for url in ("/tenants/nobody", "/tenants/nobody/health", "/tenants/nobody/charts"):
        assert viewer.get(url).status_code == 404, url
    admin = client_as("admin")
    assert admin.post("/tenants/nobody/limits", data=limits_form(admin)).status_code == 404


def test_tenant_names_are_escaped_on_the_list_and_page(client_as, make_tenant):
    make_tenant("acme", "tier2", name=XSS)
    viewer = client_as("viewer")
    for url in ("/tenants", "/tenants/acme"):
        text = viewer.get(url).get_data(as_text=True)
        assert XSS not in text, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, url


# -- the list ------------------------------------------------------------------------------------

def test_list_shows_usage_against_each_limit(client_as, make_tenant, service):
    make_tenant("acme", "tier2", maxQueuedJobs=8)
    make_tenant("globex", "tier1")
    for _ in range(3):
        service.queue_delayed_job("sleeps", {}, timedelta(hours=1), "acme")
    text = client_as("viewer").get("/tenants").get_data(as_text=True)
    acme = text[text.index("/tenants/acme"):text.index("/tenants/globex")]
    assert '<meter min="0" max="8" value="3"' in acme and "3 / 8" in acme   # queued now
    assert "0 / 5" in acme                                                 # running now
    assert "3 / 1,000" in acme                                             # jobs today
    assert 'hx-get="/tenants/acme/health" hx-trigger="load"' in acme
    assert "0 / 10" in text[text.index("/tenants/globex"):]


def test_health_fragment_shows_score_and_status(client_as, make_tenant, service):
    make_tenant("acme", "tier2")
    for _ in range(10):
        service.queue_job("immediate", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(settle=0.2)
    text = client_as("viewer").get("/tenants/acme/health",
                                   headers={"HX-Request": "true"}).get_data(as_text=True)
    health = service.get_tenant_job_health("acme")
    assert health["health_status"] != "healthy"
    score, status = round(health["health_score"]), health["health_status"]
    assert f"<strong>{score}</strong>/100 · {status}" in text
    assert "recommendation" in text


# -- adding a tenant -----------------------------------------------------------------------------

def test_admin_adds_a_tenant_with_its_tier_preset(client_as, service):
    admin = client_as("admin")
    response = admin.post("/tenants", data={"csrf_token": admin.csrf, "tenant_id": "new-co_2",
                                            "name": "New Co", "tier": "tier3"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/tenants/new-co_2")
    config = service.tenants.get_tenant_config("new-co_2")
    assert config.name == "New Co" and config.job_limit == JobLimitConfig.for_tier("tier3")
    assert "Tenant New Co (new-co_2) added" in admin.get("/tenants/new-co_2").get_data(as_text=True)


@pytest.mark.parametrize("tenant_id, message", [
    ("acme", "already exists"),
    ("bad id!", "letters, digits, - and _ only"),
    ("", "Give the tenant an ID"),
    ("x" * 65, "At most 64 characters"),
])
def test_bad_or_taken_tenant_ids_get_a_message(client_as, make_tenant, service, tenant_id,
                                               message):
    make_tenant("acme", "tier2", name="Acme")
    admin = client_as("admin")
    response = admin.post("/tenants", data={"csrf_token": admin.csrf, "tenant_id": tenant_id,
                                            "name": "Someone Else", "tier": "tier4"})
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert message in field_error(text, "tenant_id")
    assert 'id="tenant_id" name="tenant_id" type="text" value=' in text
    assert 'aria-invalid="true"' in text
    config = service.tenants.get_tenant_config("acme")
    assert config.name == "Acme" and config.tier.value == "tier2"      # not overwritten
    assert len(service.tenants.list_tenant_configs()) == 1


def test_a_tenant_needs_a_name(client_as, service):
    admin = client_as("admin")
    response = admin.post("/tenants", data={"csrf_token": admin.csrf, "tenant_id": "new",
                                            "name": "  ", "tier": "tier1"})
    assert response.status_code == 422
    assert "Give the tenant a name" in field_error(response.get_data(as_text=True), "name")
    assert service.tenants.get_tenant_config("new") is None


# -- a tenant's page -----------------------------------------------------------------------------

def test_tenant_page_shows_usage_health_and_a_link_to_its_jobs(client_as, make_tenant, service):
    make_tenant("acme", "tier4")
    for _ in range(3):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.queue_job("data_sync", "always_fails", {}, "acme", max_retries=0)
    service.run_until_idle(settle=0.2)
    text = client_as("viewer").get("/tenants/acme").get_data(as_text=True)
    assert 'href="/jobs?tenant=acme"' in text
    assert re.search(r'<div class="stat">4</div>jobs queued', text)
    assert re.search(r'<div class="stat">75.0 %</div>success rate', text)
    assert re.search(r"<td>immediate</td><td class=\"num\">3</td>", text)
    assert re.search(r"<td>data_sync</td><td class=\"num\">1</td>", text)
    assert re.search(r'status-failed">failed</span></td><td class="num">1</td>', text)
    health = service.get_tenant_job_health("acme")
    assert f"{round(health['health_score'])}<small>/100 · {health['health_status']}" in text
    today = datetime.now(UTC).date()
    assert f'value="{(today - timedelta(days=6)).isoformat()}"' in text   # last 7 days
    assert f'hx-get="/tenants/acme/charts?start={(today - timedelta(days=6)).isoformat()}' in text


def test_range_changes_the_figures(client_as, make_tenant, service):
    make_tenant("acme", "tier4")
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.run_until_idle(settle=0.2)
    viewer = client_as("viewer")
    long_ago = date.today() - timedelta(days=40)
    text = viewer.get(f"/tenants/acme?start={long_ago}&end={long_ago + timedelta(days=2)}",
                      headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<h1>" not in text                                  # the analytics partial only
    assert re.search(r'<div class="stat">0</div>jobs queued', text)


@pytest.mark.parametrize("query, field, message", [
    ("start=2026-13-45", "range-start", "YYYY-MM-DD"),
    ("start=2026-03-10&end=2026-03-01", "range-end", "The end is before the start"),
    ("start=2026-03-01&end=2026-04-01", "range-end", "choose at most 31 days"),
])
def test_bad_ranges_get_a_message_not_an_error(client_as, make_tenant, query, field, message):
    make_tenant("acme", "tier2")
    response = client_as("viewer").get(f"/tenants/acme?{query}")
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert message in field_error(text, field)
    assert "(the last 7 days)" in text
    assert client_as("viewer").get(f"/tenants/acme/charts?{query}").status_code == 200


def test_charts_are_embedded_as_figures(client_as, make_tenant, service):
    make_tenant("acme", "tier4")
    service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.run_until_idle(settle=0.2)
    text = client_as("viewer").get("/tenants/acme/charts",
                                   headers={"HX-Request": "true"}).get_data(as_text=True)
    for name in ("throughput", "failures", "duration", "queue-depth"):
        assert re.search(rf'<figure class="chart" data-chart="{name}"[^>]*>\s*'
                         r'<div class="chart-canvas"></div>\s*'
                         r'<script type="application/json">\{"data"', text), name


# -- the limits form -----------------------------------------------------------------------------

def test_lowering_max_queued_jobs_applies_at_once(client_as, make_tenant, service):
    make_tenant("acme", "tier2")
    admin = client_as("admin")
    response = admin.post("/tenants/acme/limits", data=limits_form(admin, max_queued_jobs="2"))
    assert response.status_code == 303
    for _ in range(2):                     # no runner here: they stay queued
        service.queue_job("immediate", "sleeps", {}, "acme")
    with pytest.raises(TenantLimitException) as refused:
        service.queue_job("immediate", "sleeps", {}, "acme")
    assert refused.value.limit_type == "max_queued_jobs" and refused.value.limit == 2
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "Limits of Acme saved, in effect now: max_queued_jobs 50 → 2." in page
    assert 'name="max_queued_jobs" type="text" value="2"' in page     # shown as an override
    config = service.tenants.get_tenant_config("acme")
    assert config.custom_settings["jobLimits"] == {"maxQueuedJobs": 2}


def test_every_override_is_saved(client_as, make_tenant, service):
    make_tenant("acme", "tier2")
    admin = client_as("admin")
    response = admin.post("/tenants/acme/limits", data=limits_form(
        admin, max_concurrent_jobs="7", max_daily_jobs="unlimited", max_job_payload_size="2048",
        max_job_duration="90.5", default_job_priority="urgent", other_job_types="custom_processing",
        allowed_job_types=["notification", "cleanup"]))
    assert response.status_code == 303
    limits = service.tenants.get_tenant_config("acme").job_limit
    assert limits.max_queued_jobs == 50                              # blank: the tier's
    assert limits.max_concurrent_jobs == 7 and limits.max_daily_jobs is None
    assert limits.max_job_payload_size == 2048
    assert limits.max_job_duration == timedelta(seconds=90.5)
    assert limits.default_job_priority.value == "urgent"
    assert limits.allowed_job_types == {"notification", "cleanup", "custom_processing"}
    page = admin.get("/tenants/acme").get_data(as_text=True)
    assert 'value="unlimited"' in page and 'value="90.5"' in page
    assert 'value="custom_processing" checked' in page               # custom type kept on the form
    with pytest.raises(TenantLimitException):
        service.queue_job("immediate", "sleeps", {}, "acme")           # no longer allowed


def test_choosing_a_tier_sets_its_preset_values(client_as, make_tenant, service):
    make_tenant("acme", "tier2", maxConcurrentJobs=8)
    admin = client_as("admin")
    fragment = admin.get("/tenants/acme/limits?tier=tier3", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert text.lstrip().startswith('<fieldset id="limit-fields"') and "<html" not in text
    assert 'placeholder="200 (tier)"' in text                          # tier3's max_queued_jobs
    assert 'name="max_concurrent_jobs" type="text" value=""' in text   # the override cleared
    assert 'value="cleanup" checked' in text and 'value="data_sync" checked' in text
    # Saved as the fragment filled it (blank fields, tier3's types): tier3's limits exactly.
    response = admin.post("/tenants/acme/limits", data=limits_form(
        admin, tier="tier3", allowed_job_types=TIER2_TYPES + ["cleanup", "data_sync"]))
    assert response.status_code == 303
    config = service.tenants.get_tenant_config("acme")
    assert config.tier.value == "tier3" and config.job_limit == JobLimitConfig.for_tier("tier3")
    page = admin.get("/tenants/acme").get_data(as_text=True)
    assert "tier tier2 → tier3" in page and "max_queued_jobs 50 → 200" in page


def test_a_tier_change_without_scripts_moves_the_types_too(client_as, make_tenant, service):
    make_tenant("acme", "tier2")
    admin = client_as("admin")
    # The checkboxes still show tier2's set, as they would with the select changed and no htmx.
    admin.post("/tenants/acme/limits", data=limits_form(admin, tier="tier4"))
    assert service.tenants.get_tenant_config("acme").job_limit == JobLimitConfig.for_tier("tier4")


@pytest.mark.parametrize("values, field, message", [
    ({"max_queued_jobs": "-1"}, "max_queued_jobs", "cannot be negative"),
    ({"max_queued_jobs": "lots"}, "max_queued_jobs", "Type a whole number"),
    ({"max_queued_jobs": "2.5"}, "max_queued_jobs", "no decimals"),
    ({"max_concurrent_jobs": "0"}, "max_concurrent_jobs", "no job would ever run"),
    ({"max_daily_jobs": "3000000000"}, "max_daily_jobs", "At most 2,147,483,647"),
    ({"max_job_payload_size": "0"}, "max_job_payload_size", "2 bytes"),
    ({"max_job_duration": "0"}, "max_job_duration", "greater than 0"),
    ({"max_job_duration": "ten"}, "max_job_duration", "seconds"),
    ({"allowed_job_types": []}, "allowed_job_types", "Choose at least one job type"),
    ({"other_job_types": "Bad Type"}, "other_job_types", "lower-case letters"),
    ({"tier": "tier9"}, "tier", "Not a valid choice"),
])
def test_invalid_limits_get_field_messages_and_change_nothing(client_as, make_tenant, service,
                                                               values, field, message):
    make_tenant("acme", "tier2")
    before = service.tenants.get_tenant_config("acme")
    admin = client_as("admin")
    response = admin.post("/tenants/acme/limits",
                          data=limits_form(admin, **{"max_queued_jobs": "3", **values}))
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert message in field_error(text, field), text[text.find("field-error") - 300:][:800]
    assert service.tenants.get_tenant_config("acme") == before
    assert "Save limits" in text                               # the form is back, to fix


def test_saving_unchanged_limits_says_so(client_as, make_tenant, service):
    make_tenant("acme", "tier2")
    admin = client_as("admin")
    response = admin.post("/tenants/acme/limits", data=limits_form(admin))
    assert "Nothing changed" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "jobLimits" not in service.tenants.get_tenant_config("acme").custom_settings


def test_other_custom_settings_survive_a_limits_change(client_as, service):
    from console.jobs import TenantConfig
    service.tenants.set_tenant_config(TenantConfig.for_tier(
        "acme", "Acme", "tier2", {"webhookSecret": "s3cret", "jobLimits": {"maxDailyJobs": 5}}))
    admin = client_as("admin")
    page = admin.get("/tenants/acme").get_data(as_text=True)
    assert 'name="max_daily_jobs" type="text" value="5"' in page
    admin.post("/tenants/acme/limits", data=limits_form(admin, max_daily_jobs="6"))
    config = service.tenants.get_tenant_config("acme")
    assert config.custom_settings == {"webhookSecret": "s3cret", "jobLimits": {"maxDailyJobs": 6}}
