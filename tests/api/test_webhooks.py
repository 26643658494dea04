"""Tenants' event webhooks through the API: each scope, each refusal with its status and the
field it names (nothing stored), and the delivery log after the engine has delivered."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from console.jobs.models import audit_table
from tests.api.conftest import queue
from tests.handlers.conftest import http_receiver  # noqa: F401  (a real HTTP server)

HOOK = {"url": "https://hooks.example.com/acme", "events": ["job.completed"]}


def test_a_tenant_token_subscribes_lists_and_removes_its_own(api, service, tokens):
    created = api("post", "/tenants/acme/webhooks", token="acme", json=HOOK)
    assert created.status_code == 201, created.get_json()
    subscription = created.get_json()
    assert subscription["url"] == HOOK["url"] and subscription["events"] == ["job.completed"]
    assert subscription["tenant_id"] == "acme" and subscription["created_by"] == tokens["acme"][:12]
    secret = subscription["signing_secret"]
    assert len(secret) >= 32
    assert service.tenants.get_tenant_config("acme").custom_settings["webhookSecret"] == secret

    listed = api("get", "/tenants/acme/webhooks", token="acme").get_json()["subscriptions"]
    assert [s["id"] for s in listed] == [subscription["id"]]
    assert "signing_secret" not in listed[0]

    assert api("delete", f"/tenants/acme/webhooks/{subscription['id']}",
               token="acme").status_code == 204
    assert api("get", "/tenants/acme/webhooks", token="acme").get_json() == {"subscriptions": []}
    gone = api("delete", f"/tenants/acme/webhooks/{subscription['id']}", token="acme")
    assert gone.status_code == 404

    with service.engine.connect() as conn:
        actions = conn.execute(select(audit_table.c.action, audit_table.c.actor_name)
                               .where(audit_table.c.tenant_id == "acme")
                               .order_by(audit_table.c.created_at)).all()
    assert [tuple(a) for a in actions] == [("webhook_subscribed", tokens["acme"][:12]),
                                            ("webhook_unsubscribed", tokens["acme"][:12])]


def test_another_tenants_webhooks_are_not_found(api, service):
    theirs = api("post", "/tenants/globex/webhooks", token="admin", json=HOOK).get_json()
    for method, path, body in (
            ("get", "/tenants/globex/webhooks", None),
            ("post", "/tenants/globex/webhooks", HOOK),
            ("delete", f"/tenants/globex/webhooks/{theirs['id']}", None),
            ("get", "/tenants/globex/webhook-deliveries", None)):
        response = api(method, path, token="acme", json=body)
        assert response.status_code == 404, (method, path)
    # acme's own id space does not reach globex's subscription either.
    assert api("delete", f"/tenants/acme/webhooks/{theirs['id']}",
               token="acme").status_code == 404
    assert len(service.webhook_subscriptions("globex")) == 1


@pytest.mark.parametrize("body,field", [
    ({"url": "ftp://example.com/x", "events": ["job.completed"]}, "url"),
    ({"url": "https://example.com/hook", "events": []}, "events"),
    ({"url": "https://example.com/hook", "events": ["job.deleted"]}, "events"),
    ({"url": "https://example.com/hook"}, "events"),
    ({"events": ["job.failed"]}, "url"),
])
def test_bad_subscriptions_are_422_naming_the_field(api, service, body, field):
    response = api("post", "/tenants/acme/webhooks", token="acme", json=body)
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert field in {e["field"].split(".")[0].split("[")[0] for e in problem["errors"]}, problem
    assert service.webhook_subscriptions("acme") == []


def test_the_delivery_log_pages_newest_first(api, service, http_receiver):  # noqa: F811
    api("post", "/tenants/acme/webhooks", token="acme",
        json={"url": http_receiver.url, "events": ["job.completed"]})
    jobs = [queue(api, token="acme")["id"] for _ in range(3)]
    service.run_until_idle(timeout=10, settle=0.5)
    assert len(http_receiver.requests) == 3

    first = api("get", "/tenants/acme/webhook-deliveries?limit=2", token="acme").get_json()
    second = api("get", f"/tenants/acme/webhook-deliveries?limit=2&cursor="
                        f"{first['next_cursor']}", token="acme").get_json()
    lines = first["deliveries"] + second["deliveries"]
    assert second["next_cursor"] is None
    assert sorted(line["subject_id"] for line in lines) == sorted(jobs)
    assert [line["created_at"] for line in lines] == sorted(
        (line["created_at"] for line in lines), reverse=True)
    assert {(line["event"], line["status"], line["attempts"], line["url"]) for line in lines} == {
        ("job.completed", "completed", 1, http_receiver.url)}
    bad = api("get", "/tenants/acme/webhook-deliveries?cursor=nonsense", token="acme")
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "cursor"


class TestInsideTheNetwork:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WEBHOOK_ALLOW_PRIVATE": False}

    def test_a_private_address_is_422_naming_the_url(self, api, service):
        response = api("post", "/tenants/acme/webhooks", token="acme",
                       json={"url": "http://10.1.2.3/hook", "events": ["job.completed"]})
        assert response.status_code == 422
        [error] = response.get_json()["errors"]
        assert error["field"] == "url" and "public addresses only" in error["message"]
        assert service.webhook_subscriptions("acme") == []
