"""Outbox: the SMS and push messages the built-in ``outbox`` provider kept instead of sending,
and the webhooks the catch-all received (``console/web/outbox_store.py``), newest first, by
channel and tenant; a message's page shows all of it. Everyone signed in reads them.

``POST /outbox/webhooks`` is the catch-all receiver itself: public (the webhook channel signs
its requests; it has no session) and without a CSRF token (it is not a form), so it answers
only requests whose signature verifies.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, request

from ..extensions import csrf
from ..jobs import get_job_service
from .auth import PUBLIC_ENDPOINTS
from .keyset import BadCursor
from .outbox_store import CHANNELS, EXCERPT, CatchRefused, catch_webhook, get_message, \
    list_messages
from .rendering import render_view

bp = Blueprint("outbox", __name__)
PUBLIC_ENDPOINTS.add("outbox.catch_webhook")


def _tenants() -> list[tuple[str, str]]:
    return [(config.tenant_id, f"{config.name} ({config.tenant_id})")
            for config in sorted(get_job_service().tenants.list_tenant_configs(),
                                 key=lambda c: c.name.lower())]


@bp.get("/outbox")
def index():
    tenant_id = request.args.get("tenant", "").strip()
    channel = request.args.get("channel", "").strip()
    tenants = _tenants()
    if tenant_id and tenant_id not in {t for t, _ in tenants}:
        abort(404, f"There is no tenant {tenant_id!r}; choose one from the list.")
    if channel and channel not in CHANNELS:
        abort(404, f"There is no channel {channel!r} in the outbox; choose "
                   f"{', '.join(CHANNELS)}.")
    try:
        with get_job_service().engine.connect() as conn:
            page = list_messages(conn, tenant_id or None, channel or None,
                                 request.args.get("before"), request.args.get("after"))
    except BadCursor:
        abort(400, "That page link is not one this console made; start from the newest "
                   "messages.")
    return render_view("outbox/index.html", "outbox/_table.html", listing=page, tenants=tenants,
                       channels=CHANNELS, tenant_id=tenant_id, channel=channel, excerpt=EXCERPT,
                       catch_all=current_app.config.get("WEBHOOK_CATCH_ALL", True))


@bp.get("/outbox/<message_id>")
def show(message_id: str):
    with get_job_service().engine.connect() as conn:
        message = get_message(conn, message_id)
    if message is None:
        abort(404, "There is no such message in the outbox; it may have been cleaned up.")
    return render_view("outbox/show.html", message=message)


@bp.post("/outbox/webhooks", endpoint="catch_webhook")
@csrf.exempt
def catch_webhook_view():
    if not current_app.config.get("WEBHOOK_CATCH_ALL", True):
        abort(404)
    try:
        _, new = catch_webhook(get_job_service(), current_app.config, request.get_data(),
                               request.headers, request.url)
    except CatchRefused as refused:
        return {"error": str(refused)}, refused.status
    return "", 204 if new else 200

