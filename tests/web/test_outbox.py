"""Outbox screen: SMS and push messages the outbox provider kept and webhooks the catch-all
received — the list (channel and tenant filters, keyset pages), a message's page — and the
catch-all receiver itself, reached by a real webhook job over HTTP."""
from __future__ import annotations

import html
import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from sqlalchemy import func, select

from console.handlers.models import outbox_messages_table
from console.handlers.webhook import signature_header
from console.jobs import JobStatus

UTC = timezone.utc


def send(service, channel, tenant, body, **extra):
    recipient = "+14155550123" if channel == "sms" else "device-token-1"
    job = service.queue_notification(channel, recipient, tenant, body=body, **extra)
    service.run_until_idle(settle=0.2)
    return job


def outbox_ids(page: str) -> list[str]:
    return re.findall(r'href="/outbox/([0-9a-f-]{36})"', page)


def kept(service, **where) -> int:
    o = outbox_messages_table
    with service.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(o).where(
            *(o.c[k] == v for k, v in where.items()))).scalar()


def test_signed_out_requests_go_to_sign_in(app, service, make_tenant, users):
    make_tenant("acme", "tier2")
    send(service, "sms", "acme", "hello")
    client = app.test_client()
    for url in ("/outbox", "/outbox/whatever"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_viewers_see_messages_and_a_message_page(service, make_tenant, client_as):
    make_tenant("acme", "tier2")
    job = send(service, "push", "acme", "Your order shipped", subject="Shipping",
               data={"order": 17})
    viewer = client_as("viewer")
    page = viewer.get("/outbox").get_data(as_text=True)
    [message_id] = outbox_ids(page)
    assert "push" in page and "device-token-1" in page and "Your order shipped" in page
    assert f'href="/jobs/{job.id}"' in page

    show = viewer.get(f"/outbox/{message_id}").get_data(as_text=True)
    assert "PUSH to device-token-1" in show and "Shipping" in show
    assert "Your order shipped" in show and '"order": 17' in html.unescape(show)
    assert f'href="/jobs/{job.id}"' in show
    assert viewer.get("/outbox/no-such-message").status_code == 404


def test_long_bodies_are_cut_in_the_list(service, make_tenant, client_as):
    make_tenant("acme", "tier2")
    send(service, "sms", "acme", "x" * 1000)
    page = client_as("viewer").get("/outbox").get_data(as_text=True)
    assert "x" * 119 + "…" in page and "x" * 200 not in page


def test_filters_by_channel_and_tenant_with_keyset_pages(service, make_tenant, client_as,
                                                         monkeypatch):
    import console.web.outbox.views as outbox
    monkeypatch.setattr(outbox, "PAGE_SIZE", 2)
    make_tenant("acme", "tier2")
    make_tenant("globex", "tier2")
    for i in range(3):
        service.queue_notification("sms", "+14155550123", "acme", body=f"acme sms {i}")
    service.queue_notification("push", "token", "acme", body="acme push")
    service.queue_notification("sms", "+14155550123", "globex", body="globex sms")
    service.run_until_idle(settle=0.2)
    with service.engine.begin() as conn:   # distinct, known times: the order to expect
        for n, row in enumerate(conn.execute(select(outbox_messages_table.c.id,
                                                    outbox_messages_table.c.body)).all()):
            stamp = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=int(row.body[-1])
                                                                 if row.body[-1].isdigit()
                                                                 else 10 + n)
            conn.execute(outbox_messages_table.update().where(
                outbox_messages_table.c.id == row.id).values(created_at=stamp))
    viewer = client_as("viewer")

    def bodies(page):
        return re.findall(r"(acme sms \d|acme push|globex sms)", page)

    first = viewer.get("/outbox?channel=sms&tenant=acme").get_data(as_text=True)
    assert bodies(first) == ["acme sms 2", "acme sms 1"]
    older = re.search(r'href="(/outbox\?[^"]*before=[^"]+)"', first).group(1).replace("&amp;",
                                                                                      "&")
    assert "channel=sms" in older and "tenant=acme" in older
    assert bodies(viewer.get(older).get_data(as_text=True)) == ["acme sms 0"]
    assert bodies(viewer.get("/outbox?channel=push").get_data(as_text=True)) == ["acme push"]
    assert set(bodies(viewer.get("/outbox?tenant=globex").get_data(as_text=True))) == {
        "globex sms"}
    assert viewer.get("/outbox?channel=fax").status_code == 404
    assert viewer.get("/outbox?tenant=nobody").status_code == 404
    assert viewer.get("/outbox?before=not-a-cursor").status_code == 400


def test_bodies_and_tenant_names_are_escaped(service, make_tenant, client_as):
    make_tenant("evil", "tier2", name="<script>alert(1)</script>")
    send(service, "sms", "evil", "<script>alert(2)</script>")
    viewer = client_as("viewer")
    page = viewer.get("/outbox").get_data(as_text=True)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    [message_id] = outbox_ids(page)
    show = viewer.get(f"/outbox/{message_id}").get_data(as_text=True)
    assert "<script>alert" not in show and "&lt;script&gt;alert(2)&lt;/script&gt;" in show


# -- the webhook catch-all --------------------------------------------------------------------

def signed(secret, data, tenant_id="acme", message_id="evt-1"):
    timestamp = int(time.time())
    raw = json.dumps({"id": message_id, "timestamp": timestamp, "tenant_id": tenant_id,
                      "data": data}).encode()
    return raw, {"Content-Type": "application/json",
                 "X-Console-Signature": signature_header(secret, timestamp, raw)}


def test_the_catch_all_keeps_signed_webhooks_once(app, service, make_tenant):
    make_tenant("acme", "tier2")
    service.tenants.set_tenant_config(service.tenants.get_tenant_config("acme").copy_with(
        custom_settings={"webhookSecret": "s3cret"}))
    client = app.test_client()   # no session, no CSRF token: a receiver's view of the world
    raw, headers = signed("s3cret", {"order": 17})
    assert client.post("/outbox/webhooks", data=raw, headers=headers).status_code == 204
    assert client.post("/outbox/webhooks", data=raw, headers=headers).status_code == 200
    assert kept(service, channel="webhook", tenant_id="acme", message_id="evt-1") == 1

    bad_raw, bad_headers = signed("wrong", {"order": 18}, message_id="evt-2")
    assert client.post("/outbox/webhooks", data=bad_raw, headers=bad_headers).status_code == 400
    assert client.post("/outbox/webhooks", data=bad_raw).status_code == 400   # unsigned
    assert client.post("/outbox/webhooks", data=b"not json", headers=headers).status_code == 400
    other_raw, other_headers = signed("s3cret", {}, tenant_id="nobody", message_id="evt-3")
    assert client.post("/outbox/webhooks", data=other_raw,
                       headers=other_headers).status_code == 400
    big_raw, big_headers = signed("s3cret", "x" * 70_000, message_id="evt-4")
    assert client.post("/outbox/webhooks", data=big_raw, headers=big_headers).status_code == 413
    assert kept(service, channel="webhook") == 1


@pytest.fixture
def console_server(app):
    """The console served over real HTTP on 127.0.0.1, for the webhook channel to post to."""
    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_webhook_job_lands_in_the_outbox(service, make_tenant, client_as, console_server):
    make_tenant("acme", "tier2")
    service.tenants.set_tenant_config(service.tenants.get_tenant_config("acme").copy_with(
        custom_settings={"webhookSecret": "s3cret"}))
    job = service.queue_notification("webhook", f"{console_server}/outbox/webhooks", "acme",
                                     body={"event": "order.shipped", "note": "<b>hi</b>"})
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status is JobStatus.COMPLETED, done.last_result
    assert done.last_result.result["status_code"] == 204

    viewer = client_as("viewer")
    page = viewer.get("/outbox?channel=webhook").get_data(as_text=True)
    [message_id] = outbox_ids(page)
    assert f'href="/jobs/{job.id}"' in page
    show = viewer.get(f"/outbox/{message_id}").get_data(as_text=True)
    assert "order.shipped" in show and "&lt;b&gt;hi&lt;/b&gt;" in show
    assert "X-Console-Signature" in show


def test_the_catch_all_can_be_turned_off(app_config, service, make_tenant):
    from console import create_app

    app = create_app({**app_config, "WEBHOOK_CATCH_ALL": False})
    try:
        raw, headers = signed("s3cret", {})
        assert app.test_client().post("/outbox/webhooks", data=raw,
                                      headers=headers).status_code == 404
    finally:
        app.extensions["jobs"].engine.dispose()
