"""Rate limits through the API: a tenant's as one of its limits (admin tokens), a handler's for
every tenant (admin tokens) or one tenant (its own token, or an all-tenant one), each change
audited, each refusal with its status and the field it names, and nothing stored."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from console.jobs import RateLimit
from console.jobs.models import audit_table
from tests.api.conftest import queue

LIMIT = {"count": 10, "period_seconds": 60, "burst": 5}   # 5 per 30 s back to back


def actions(service) -> list[tuple]:
    with service.engine.connect() as conn:
        return conn.execute(select(audit_table.c.action, audit_table.c.tenant_id,
                                   audit_table.c.target_id)
                            .where(audit_table.c.action.like("handler_rate_limit%"))
                            .order_by(audit_table.c.id)).all()


# -- a tenant's own limit ----------------------------------------------------------------------

def test_a_tenants_rate_limit_is_one_of_its_limits(api, service):
    response = api("put", "/tenants/acme/limits", json={
        "limits": {"rate_limit": {"count": 20, "period_seconds": 2}}})
    assert response.status_code == 200, response.get_json()
    document = response.get_json()
    assert document["limits"]["rate_limit"] == {"count": 20, "period_seconds": 2.0, "burst": None}
    assert document["overridden"] == ["rate_limit"]
    config = service.tenants.get_tenant_config("acme")
    assert config.job_limit.rate_limit == RateLimit(20, 2)
    assert config.custom_settings["jobLimits"] == {
        "rateLimit": {"count": 20, "periodSeconds": 2.0, "burst": None}}
    assert api("get", "/tenants/acme/limits", token="acme").get_json()["limits"][
        "rate_limit"]["count"] == 20
    usage = api("get", "/tenants/acme/usage", token="acme").get_json()
    assert usage["limits"]["rate_limit"]["count"] == 20
    assert usage["current_usage"]["rate_limit_starts"] == 0

    tier1 = api("put", "/tenants/acme/limits", json={"tier": "tier1"}).get_json()
    assert tier1["limits"]["rate_limit"] == {"count": 60, "period_seconds": 60.0, "burst": None}
    assert tier1["overridden"] == []                     # the tier's preset, not an override
    none = api("put", "/tenants/acme/limits", json={"tier": "tier1",
                                                    "limits": {"rate_limit": None}}).get_json()
    assert none["limits"]["rate_limit"] is None and none["overridden"] == ["rate_limit"]


@pytest.mark.parametrize("rate, field", [
    ({"count": 0, "period_seconds": 1}, "limits.rate_limit.count"),
    ({"count": 5, "period_seconds": 0}, "limits.rate_limit.period_seconds"),
    ({"count": 5, "period_seconds": "1"}, "limits.rate_limit.period_seconds"),
    ({"count": 5, "period_seconds": 1, "burst": 6}, "limits.rate_limit.burst"),
    ({"count": 5}, "limits.rate_limit.period_seconds"),
    ({"count": 5, "period_seconds": 1, "per": 2}, "limits.rate_limit.per"),
    (20, "limits.rate_limit"),
])
def test_bad_tenant_rate_limits_are_422_and_change_nothing(api, service, rate, field):
    response = api("put", "/tenants/acme/limits", json={"limits": {"rate_limit": rate}})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"][0]["field"] == field
    assert service.tenants.get_tenant_config("acme").job_limit.rate_limit is None


# -- a handler's -------------------------------------------------------------------------------

def test_an_admin_token_limits_a_handler_for_every_tenant(api, service, tokens):
    assert api("get", "/handlers/noop/rate-limit").get_json()["rate_limit"] is None
    response = api("put", "/handlers/noop/rate-limit", json=LIMIT)
    assert response.status_code == 200, response.get_json()
    state = response.get_json()
    assert state["handler"] == "noop" and state["tenant_id"] is None
    assert state["rate_limit"] == {"count": 10, "period_seconds": 60.0, "burst": 5}
    assert state["set_by"] == tokens["admin"][:12] and state["started_in_period"] == 0
    assert state["next_start_at"] is None
    assert [limit.key for limit in service.handler_rate_limits()] == ["handler:noop"]
    assert api("get", "/handlers/noop/rate-limit", token="all").get_json() == state

    jobs = [queue(api) for _ in range(6)]
    # 5 back to back, then the burst waits (the runner stays busy until the timeout: rate-limited
    # work is work left to do; a short one could end before a loaded machine ran the five).
    service.run_until_idle(timeout=3, settle=0.1)
    read = api("get", "/handlers/noop/rate-limit").get_json()
    assert read["started_in_period"] == 5
    assert datetime.fromisoformat(read["next_start_at"]) > datetime.fromisoformat(read["set_at"])
    waiting = [job for job in jobs if api("get", f"/jobs/{job['id']}").get_json()["status"]
               == "queued"]
    assert len(waiting) == 1
    [blocker] = [b for b in api("get", f"/jobs/{waiting[0]['id']}/explain",
                                token="acme").get_json()["blockers"] if b["code"] == "rate_limit"]
    assert blocker["details"]["handler"] == "noop" and blocker["details"]["burst"] == 5

    removed = api("delete", "/handlers/noop/rate-limit")
    assert removed.status_code == 200 and removed.get_json()["rate_limit"] is None
    assert service.handler_rate_limits() == []
    assert actions(service) == [("handler_rate_limit_set", None, "noop"),
                                ("handler_rate_limit_removed", None, "noop")]


def test_a_tenant_token_limits_a_handler_for_its_own_tenant_only(api, service):
    response = api("put", "/handlers/noop/rate-limit", token="acme", json=LIMIT)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["tenant_id"] == "acme"        # implied: its own tenant
    [limit] = service.handler_rate_limits()
    assert (limit.handler, limit.tenant_id) == ("noop", "acme")
    assert api("get", "/handlers/noop/rate-limit", token="acme").get_json()["rate_limit"][
        "count"] == 10
    other = api("put", "/handlers/noop/rate-limit", token="acme",
                json={**LIMIT, "tenant_id": "globex"})
    assert other.status_code == 404                          # as if it did not exist
    assert api("get", "/handlers/noop/rate-limit?tenant_id=globex",
               token="acme").status_code == 404
    assert api("delete", "/handlers/noop/rate-limit?tenant_id=globex",
               token="acme").status_code == 404
    assert api("get", "/handlers/noop/rate-limit", token="globex").get_json()[
        "rate_limit"] is None                                # globex's own scope: nothing
    assert api("delete", "/handlers/noop/rate-limit", token="acme").status_code == 200
    assert service.handler_rate_limits() == []
    assert actions(service) == [("handler_rate_limit_set", "acme", "noop"),
                                ("handler_rate_limit_removed", "acme", "noop")]


def test_only_admin_tokens_limit_a_handler_for_every_tenant(api, service):
    response = api("put", "/handlers/noop/rate-limit", token="all", json=LIMIT)
    assert response.status_code == 403 and "admin token" in response.get_json()["detail"]
    assert api("delete", "/handlers/noop/rate-limit", token="all").status_code == 403
    named = api("put", "/handlers/noop/rate-limit", token="all",
                json={**LIMIT, "tenant_id": "globex"})
    assert named.status_code == 200 and named.get_json()["tenant_id"] == "globex"
    assert [limit.key for limit in service.handler_rate_limits()] == ["handler:noop@globex"]


@pytest.mark.parametrize("body, field", [
    ({"count": 0, "period_seconds": 1}, "count"),
    ({"count": 1.5, "period_seconds": 1}, "count"),
    ({"count": 5, "period_seconds": 31 * 86400}, "period_seconds"),
    ({"count": 5, "period_seconds": 1, "burst": 9}, "burst"),
    ({"period_seconds": 1}, "count"),
    ({"count": 5, "period_seconds": 1, "tenant_id": ""}, "tenant_id"),
    ({"count": 5, "period_seconds": 1, "tenant_id": "nobody"}, "tenant_id"),
])
def test_bad_handler_rate_limits_are_422_and_store_nothing(api, service, body, field):
    response = api("put", "/handlers/noop/rate-limit", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"][0]["field"] == field
    assert service.handler_rate_limits() == [] and actions(service) == []


def test_an_unknown_handler_is_422_to_change_and_404_to_read(api, service):
    response = api("put", "/handlers/nope/rate-limit", json=LIMIT)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "handler"
    assert api("delete", "/handlers/nope/rate-limit").status_code == 422
    assert api("get", "/handlers/nope/rate-limit").status_code == 404
