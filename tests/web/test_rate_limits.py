"""Rate limits in the console: the limits form edits a tenant's (admins), the handler's page sets
a handler's for every tenant (staff admins) or one tenant (operators), the tenant's page sets
one for its handlers and shows its limits with their current period; each refusal says why."""
from __future__ import annotations

import pytest

from console.jobs import RateLimit
from console.web.auth.views import set_user
from tests.web.conftest import sign_in
from tests.web.test_tenants import field_error, limits_form


def rate_form(client, **values):
    return limits_form(client, **{"rate_limit_count": "", "rate_limit_period": "",
                                  "rate_limit_burst": "", **values})


# -- the tenant's own limit ----------------------------------------------------------------------

def test_the_limits_form_sets_changes_and_clears_a_rate_limit(client_as, make_tenant, service):
    make_tenant("acme", "tier2")
    admin = client_as("admin")
    response = admin.post("/tenants/acme/limits", data=rate_form(
        admin, rate_limit_count="20", rate_limit_period="2", rate_limit_burst="5"))
    assert response.status_code == 303, response.get_data(as_text=True)
    assert service.tenants.get_tenant_config("acme").job_limit.rate_limit == RateLimit(20, 2, 5)
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "rate_limit unlimited → 20 per 2 s (burst 5)" in page
    assert 'name="rate_limit_count" type="text" value="20"' in page
    assert 'name="rate_limit_period" type="text" value="2"' in page
    assert "Started in the last 2 s" in page                       # the usage bar

    admin.post("/tenants/acme/limits", data=rate_form(admin, rate_limit_count="20",
                                                      rate_limit_period="0.5"))
    assert service.tenants.get_tenant_config("acme").job_limit.rate_limit == RateLimit(20, 0.5)
    admin.post("/tenants/acme/limits", data=rate_form(admin))     # blank: the tier's (none)
    config = service.tenants.get_tenant_config("acme")
    assert config.job_limit.rate_limit is None and "jobLimits" not in config.custom_settings


def test_a_tier_with_a_rate_limit_shows_it_and_unlimited_overrides_it(client_as, make_tenant,
                                                                      service):
    make_tenant("acme", "tier1")
    admin = client_as("admin")
    page = admin.get("/tenants/acme").get_data(as_text=True)
    assert 'placeholder="60 (tier)"' in page and 'placeholder="all (tier)"' in page
    response = admin.post("/tenants/acme/limits", data=rate_form(
        admin, tier="tier1", allowed_job_types=["notification"], rate_limit_count="unlimited"))
    assert response.status_code == 303
    config = service.tenants.get_tenant_config("acme")
    assert config.job_limit.rate_limit is None
    assert config.custom_settings["jobLimits"] == {"rateLimit": None}


@pytest.mark.parametrize("values, field, message", [
    ({"rate_limit_count": "20"}, "rate_limit_period", "Type the period in seconds"),
    ({"rate_limit_count": "0", "rate_limit_period": "1"}, "rate_limit_count",
     "Type a whole number from 1"),
    ({"rate_limit_count": "2.5", "rate_limit_period": "1"}, "rate_limit_count",
     "Type a whole number"),
    ({"rate_limit_count": "20", "rate_limit_period": "0"}, "rate_limit_period",
     "Type seconds from 0.001"),
    ({"rate_limit_count": "20", "rate_limit_period": "soon"}, "rate_limit_period",
     "Type a number"),
    ({"rate_limit_count": "20", "rate_limit_period": "1", "rate_limit_burst": "21"},
     "rate_limit_burst", "at most the number of starts"),
    ({"rate_limit_period": "1"}, "rate_limit_count", "Type the number of starts too"),
])
def test_bad_rate_limits_get_field_messages_and_change_nothing(client_as, make_tenant, service,
                                                               values, field, message):
    make_tenant("acme", "tier2")
    before = service.tenants.get_tenant_config("acme")
    admin = client_as("admin")
    response = admin.post("/tenants/acme/limits", data=rate_form(admin, **values))
    assert response.status_code == 422
    assert message in field_error(response.get_data(as_text=True), field)
    assert service.tenants.get_tenant_config("acme") == before


# -- handlers' limits ----------------------------------------------------------------------------

def test_a_staff_admin_limits_a_handler_for_every_tenant_on_its_page(client_as, make_tenant,
                                                                    service):
    make_tenant("acme")
    admin = client_as("admin")
    assert "No rate limit." in admin.get("/handlers/noop").get_data(as_text=True)
    response = admin.post("/handlers/rate-limit", data={
        "csrf_token": admin.csrf, "handler": "noop", "tenant_id": "", "count": "10",
        "period_seconds": "1", "burst": ""})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/handlers/noop")
    [limit] = service.handler_rate_limits()
    assert (limit.tenant_id, limit.limit, limit.set_by) == (None, RateLimit(10, 1), "ada")
    page = admin.get("/handlers/noop").get_data(as_text=True)
    assert "Handler noop limited to 10 per 1 s for every tenant" in page
    assert "every tenant</td>" in page and "0 / 10" in page

    refused = admin.post("/handlers/rate-limit", data={
        "csrf_token": admin.csrf, "handler": "noop", "count": "10", "period_seconds": "1",
        "burst": "11"})
    assert refused.status_code == 422
    assert "burst must be a whole number from 1 to count (10)" in refused.get_data(as_text=True)
    assert service.handler_rate_limits()[0].limit == RateLimit(10, 1)

    removed = admin.post("/handlers/rate-limit/remove", data={"csrf_token": admin.csrf,
                                                              "handler": "noop"})
    assert removed.status_code == 303 and service.handler_rate_limits() == []


def test_an_operator_limits_a_handler_for_a_tenant_but_not_for_everyone(client_as, make_tenant,
                                                                       service):
    make_tenant("acme")
    operator = client_as("operator")
    for_everyone = operator.post("/handlers/rate-limit", data={
        "csrf_token": operator.csrf, "handler": "noop", "count": "10", "period_seconds": "1"})
    assert for_everyone.status_code == 403 and service.handler_rate_limits() == []
    for_acme = operator.post("/handlers/rate-limit", data={
        "csrf_token": operator.csrf, "handler": "noop", "tenant_id": "acme", "count": "3",
        "period_seconds": "60", "next": "/tenants/acme"})
    assert for_acme.status_code == 303 and for_acme.headers["Location"] == "/tenants/acme"
    [limit] = service.handler_rate_limits()
    assert (limit.tenant_id, limit.limit) == ("acme", RateLimit(3, 60))
    page = operator.get("/tenants/acme").get_data(as_text=True)
    assert "<code>noop</code>" in page and "3 per 60 s" in page and "Set rate limit" in page

    viewer = client_as("viewer")
    assert viewer.post("/handlers/rate-limit/remove", data={
        "csrf_token": viewer.csrf, "handler": "noop", "tenant_id": "acme"}).status_code == 403
    assert "Set rate limit" not in viewer.get("/tenants/acme").get_data(as_text=True)


def test_a_user_bound_to_a_tenant_limits_only_its_handlers(app, make_tenant, service):
    make_tenant("acme")
    make_tenant("globex")
    with app.app_context():
        set_user("otto", "operator", "bound operator pw", tenants=["acme"])
    client = app.test_client()
    sign_in(client, "otto", "bound operator pw")
    csrf = client.get("/tenants/acme").get_data(as_text=True).split(
        'name="csrf_token" value="')[1].split('"')[0]
    other = client.post("/handlers/rate-limit", data={
        "csrf_token": csrf, "handler": "noop", "tenant_id": "globex", "count": "3",
        "period_seconds": "60"})
    assert other.status_code == 404 and service.handler_rate_limits() == []
    own = client.post("/handlers/rate-limit", data={
        "csrf_token": csrf, "handler": "noop", "tenant_id": "acme", "count": "3",
        "period_seconds": "60"})
    assert own.status_code == 303
    assert [limit.key for limit in service.handler_rate_limits()] == ["handler:noop@acme"]


def test_a_jobs_page_says_which_rate_limit_holds_it(client_as, make_tenant, service):
    make_tenant("acme", rateLimit={"count": 1, "periodSeconds": 60})
    jobs = [service.queue_job("immediate", "noop", {}, "acme") for _ in range(2)]
    service.run_until_idle(timeout=0.5, settle=0.1)
    held = next(job for job in jobs if service.get_job_by_id(job.id).status.value == "queued")
    page = client_as("viewer").get(f"/jobs/{held.id}").get_data(as_text=True)
    assert 'data-code="rate_limit"' in page and "Rate limit" in page
    assert "Held by tenant acme&#39;s rate limit, 1 per 60 s" in page
    assert "<dt>Started in the period</dt><dd>1 of 1</dd>" in page
    assert "<dt>Next start allowed</dt>" in page
