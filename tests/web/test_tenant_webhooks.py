"""Event webhooks on a tenant's page: subscribing (the signing secret in that answer only),
removing, refusals on their fields with nothing stored, who may do what, and the delivery log
that the page refreshes, after the engine has really delivered."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from console.jobs.models import audit_table
from console.web.auth.views import set_user
from tests.handlers.conftest import http_receiver  # noqa: F401  (a real HTTP server)

from .conftest import csrf_token, sign_in

HOOK = "https://hooks.example.com/acme"
HX = {"HX-Request": "true"}
SECRET_TITLE = "Signing secret — shown once"


def subscribe(client, tenant="acme", url=HOOK, events=("job.completed",)):
    return client.post(f"/tenants/{tenant}/webhooks",
                       data={"csrf_token": client.csrf, "url": url, "events": list(events)})


def field_error(page: str, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>([^<]+)<', page)
    return html.unescape(match.group(1)) if match else ""


def secret_shown(page: str) -> str | None:
    match = re.search(r'id="webhook-secret-value"[^>]*>([^<]+)<', page)
    return match.group(1) if match else None


@pytest.fixture
def acme(make_tenant):
    make_tenant("acme", name="Acme")
    make_tenant("globex", name="Globex")


# -- subscribing --------------------------------------------------------------------------------

def test_an_operator_subscribes_and_sees_the_secret_once(client_as, acme, service):
    operator = client_as("operator")
    page = operator.get("/tenants/acme").get_data(as_text=True)
    assert 'id="webhooks-section"' in page and 'id="webhooks"' in page
    assert "Send events to a URL" in page and "No event webhooks" in page

    answer = subscribe(operator, events=("job.completed", "job.failed"))
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    text = answer.get_data(as_text=True)
    [subscription] = service.webhook_subscriptions("acme")
    assert subscription.url == HOOK and subscription.events == ("job.completed", "job.failed")
    assert subscription.created_by == "olga"
    secret = service.tenants.get_tenant_config("acme").custom_settings["webhookSecret"]
    assert SECRET_TITLE in text and secret_shown(text) == secret
    assert "receivers verify X-Console-Signature with it" in text
    assert f'data-subscription="{subscription.id}"' in text and HOOK in text

    # Not in the session cookie (flash) nor on any later page.
    assert secret not in (answer.headers.get("Set-Cookie") or "")
    later = operator.get("/tenants/acme").get_data(as_text=True)
    assert secret not in later and SECRET_TITLE not in later
    assert f'data-subscription="{subscription.id}"' in later
    with service.engine.connect() as conn:
        actions = conn.execute(select(audit_table.c.action, audit_table.c.actor_name)
                               .where(audit_table.c.tenant_id == "acme")).all()
    assert ("webhook_subscribed", "olga") in [tuple(a) for a in actions]


def test_a_second_subscription_shows_the_same_tenant_secret(client_as, acme, service):
    operator = client_as("operator")
    first = secret_shown(subscribe(operator).get_data(as_text=True))
    second = secret_shown(subscribe(operator, url=HOOK + "/2").get_data(as_text=True))
    assert first and first == second
    assert len(service.webhook_subscriptions("acme")) == 2


def test_viewers_get_no_form_and_403_on_post(client_as, acme, service):
    operator = client_as("operator")
    subscribe(operator)
    [subscription] = service.webhook_subscriptions("acme")
    viewer = client_as("viewer")
    page = viewer.get("/tenants/acme").get_data(as_text=True)
    assert "Send events to a URL" not in page and ">Remove</button>" not in page
    assert HOOK in page and "need the operator role" in page
    assert subscribe(viewer, url=HOOK + "/viewer").status_code == 403
    removed = viewer.post(f"/tenants/acme/webhooks/{subscription.id}/remove",
                          data={"csrf_token": viewer.csrf})
    assert removed.status_code == 403
    assert [s.url for s in service.webhook_subscriptions("acme")] == [HOOK]


@pytest.mark.parametrize("url,events,field,message", [
    ("ftp://x", ["job.completed"], "url", "http"),
    ("", ["job.completed"], "url", "Type the URL"),
    (HOOK, [], "events", "Choose at least one event"),
    (HOOK, ["job.deleted"], "events", "not a valid choice"),
])
def test_bad_input_is_422_on_its_field_and_nothing_is_stored(client_as, acme, service, url,
                                                             events, field, message):
    operator = client_as("operator")
    answer = subscribe(operator, url=url, events=events)
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert message in field_error(text, field), field_error(text, field)
    assert 'aria-invalid="true"' in text
    assert SECRET_TITLE not in text
    assert service.webhook_subscriptions("acme") == []
    assert "webhookSecret" not in service.tenants.get_tenant_config("acme").custom_settings


def test_the_eleventh_subscription_is_refused_on_the_url(client_as, acme, service):
    operator = client_as("operator")
    for n in range(10):
        assert subscribe(operator, url=f"{HOOK}/{n}").status_code == 200
    answer = subscribe(operator, url=f"{HOOK}/10")
    assert answer.status_code == 422
    assert "remove one first" in field_error(answer.get_data(as_text=True), "url")
    assert len(service.webhook_subscriptions("acme")) == 10


class TestPrivateAddresses:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WEBHOOK_ALLOW_PRIVATE": False}

    def test_a_private_url_is_refused_on_the_url_field(self, client_as, acme, service):
        operator = client_as("operator")
        answer = subscribe(operator, url="http://127.0.0.1:8080/hooks")
        assert answer.status_code == 422
        error = field_error(answer.get_data(as_text=True), "url")
        assert error and "127.0.0.1" in error, error
        assert service.webhook_subscriptions("acme") == []


# -- removing -----------------------------------------------------------------------------------

def test_an_operator_removes_a_subscription(client_as, acme, service):
    operator = client_as("operator")
    subscribe(operator)
    [subscription] = service.webhook_subscriptions("acme")
    page = operator.get("/tenants/acme").get_data(as_text=True)
    assert f"/tenants/acme/webhooks/{subscription.id}/remove" in page
    removed = operator.post(f"/tenants/acme/webhooks/{subscription.id}/remove",
                            data={"csrf_token": operator.csrf})
    assert removed.status_code == 303
    assert removed.headers["Location"].endswith("/tenants/acme#webhooks")
    assert service.webhook_subscriptions("acme") == []
    after = operator.get("/tenants/acme").get_data(as_text=True)
    assert "removed" in after and "No event webhooks" in after
    again = operator.post(f"/tenants/acme/webhooks/{subscription.id}/remove",
                          data={"csrf_token": operator.csrf})
    assert again.status_code == 404


def test_a_subscription_of_another_tenant_is_not_removed_through_this_one(client_as, acme,
                                                                         service):
    operator = client_as("operator")
    subscribe(operator, tenant="globex")
    [theirs] = service.webhook_subscriptions("globex")
    answer = operator.post(f"/tenants/acme/webhooks/{theirs.id}/remove",
                           data={"csrf_token": operator.csrf})
    assert answer.status_code == 404
    assert service.webhook_subscriptions("globex") == [theirs]


# -- scope --------------------------------------------------------------------------------------

def test_a_user_bound_to_another_tenant_gets_404_everywhere(app, acme, service, client_as):
    subscribe(client_as("operator"), tenant="globex")
    [theirs] = service.webhook_subscriptions("globex")
    with app.app_context():
        set_user("boris", "operator", "bound operator pw", tenants=["acme"])
    client = app.test_client()
    assert sign_in(client, "boris", "bound operator pw").status_code == 302
    token = csrf_token(client, "/tenants/acme")
    for method, url, data in (
            ("get", "/tenants/globex", None),
            ("get", "/tenants/globex/webhook-deliveries", None),
            ("post", "/tenants/globex/webhooks", {"url": HOOK, "events": ["job.completed"]}),
            ("post", f"/tenants/globex/webhooks/{theirs.id}/remove", {})):
        kwargs = {"data": {"csrf_token": token, **data}} if data is not None else {}
        response = getattr(client, method)(url, headers=HX, **kwargs)
        assert response.status_code == 404, (method, url, response.status_code)
        assert theirs.id not in response.get_data(as_text=True)
    assert service.webhook_subscriptions("globex") == [theirs]
    client.csrf = token                    # its own tenant's page and forms work
    assert subscribe(client, url=HOOK, events=["job.failed"]).status_code == 200
    assert [s.url for s in service.webhook_subscriptions("acme")] == [HOOK]


# -- the delivery log ---------------------------------------------------------------------------

def test_the_deliveries_partial_lists_a_delivery_after_a_job_completes(
        client_as, acme, service, http_receiver):  # noqa: F811
    operator = client_as("operator")
    empty = operator.get("/tenants/acme/webhook-deliveries", headers=HX)
    assert empty.status_code == 200 and "No deliveries yet" in empty.get_data(as_text=True)
    assert 'data-live="off"' in empty.get_data(as_text=True)   # nothing to follow: no polling

    assert subscribe(operator, url=http_receiver.url).status_code == 200
    job = service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(timeout=10, settle=0.5)
    assert len(http_receiver.requests) == 1

    partial = operator.get("/tenants/acme/webhook-deliveries", headers=HX)
    assert partial.status_code == 200
    text = partial.get_data(as_text=True)
    assert "<html" not in text and text.lstrip().startswith("<")
    [delivery] = service.webhook_deliveries("acme").rows
    row = re.search(rf'<tr data-delivery="{delivery.id}">(.*?)</tr>', text, re.S).group(1)
    assert "<code>job.completed</code>" in row
    assert f'href="/jobs/{job.id}"' in row                       # the subject
    assert f'href="/jobs/{delivery.job_id}"' in row              # the delivering job
    assert 'class="status status-completed"' in row
    assert f'<code class="webhook-url">{http_receiver.url}</code>' in row
    assert f'<a href="{http_receiver.url}' not in text           # shown, never linked
    assert 'hx-trigger="every 5s"' in text and 'data-live="on"' in text
    # The page renders the same table, for a browser without scripts.
    page = operator.get("/tenants/acme").get_data(as_text=True)
    assert f'<tr data-delivery="{delivery.id}">' in page


def test_batch_events_link_to_the_batch(client_as, acme, service, http_receiver):  # noqa: F811
    operator = client_as("operator")
    subscribe(operator, url=http_receiver.url, events=("batch.completed",))
    jobs = service.queue_batch_jobs([{"type": "immediate", "handler": "noop"}], "acme")
    service.run_until_idle(timeout=10, settle=0.5)
    text = operator.get("/tenants/acme/webhook-deliveries", headers=HX).get_data(as_text=True)
    assert "<code>batch.completed</code>" in text
    assert f'href="/batches/{jobs[0].batch_id}"' in text


def test_the_delivery_log_pages_with_older_links(client_as, acme, service, monkeypatch,
                                                 http_receiver):  # noqa: F811
    from console.web.tenants import views
    monkeypatch.setattr(views, "DELIVERIES_PAGE", 2)
    operator = client_as("operator")
    subscribe(operator, url=http_receiver.url)
    for _ in range(3):
        service.queue_job("immediate", "noop", {}, "acme")
    service.run_until_idle(timeout=10, settle=0.5)
    rows = service.webhook_deliveries("acme", size=3).rows
    page = operator.get("/tenants/acme").get_data(as_text=True)
    assert all(f'data-delivery="{d.id}"' in page for d in rows[:2])
    assert f'data-delivery="{rows[2].id}"' not in page
    older = html.unescape(re.search(r'<a href="([^"]+)"[^>]*rel="next"', page).group(1))
    assert "deliveries_before=" in older and older.endswith("#webhooks")
    second = operator.get(older.split("#")[0]).get_data(as_text=True)
    assert f'data-delivery="{rows[2].id}"' in second
    assert f'data-delivery="{rows[0].id}"' not in second
    # Its refresh keeps the page it shows.
    refresh = html.unescape(re.search(r'id="webhook-deliveries"[^>]*hx-get="([^"]+)"',
                                      second).group(1))
    assert "deliveries_before=" in refresh
    partial = operator.get(refresh, headers=HX).get_data(as_text=True)
    assert f'data-delivery="{rows[2].id}"' in partial
    # A made-up cursor: the newest page, with a note, not an error page.
    bad = operator.get("/tenants/acme?deliveries_before=nonsense")
    assert bad.status_code == 200
    assert "not one this console made" in bad.get_data(as_text=True)


# -- escaping -----------------------------------------------------------------------------------

def test_tenant_urls_are_escaped_and_never_links(client_as, acme, service):
    operator = client_as("operator")
    url = "https://example.com/?q=<b>x</b>&r=\"'"
    answer = subscribe(operator, url=url)
    assert answer.status_code == 200, field_error(answer.get_data(as_text=True), "url")
    for text in (answer.get_data(as_text=True),
                 operator.get("/tenants/acme").get_data(as_text=True)):
        assert "<b>x</b>" not in text
        assert "https://example.com/?q=&lt;b&gt;x&lt;/b&gt;" in text
        assert 'href="https://example.com' not in text
