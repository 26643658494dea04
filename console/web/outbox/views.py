"""Outbox: what the console kept instead of delivering — the SMS and push messages of the
built-in ``outbox`` provider, and the webhooks the catch-all received (``catch_all.py``) —
newest first, by channel and tenant; a message's page shows all of it. Everyone signed in
reads them.

``POST /outbox/webhooks`` is the catch-all receiver's door: public (the webhook channel signs
its requests; it has no session) and without a CSRF token (it is not a form), so it answers
only requests whose signature verifies.
"""
from __future__ import annotations

from datetime import timezone

from flask import Blueprint, abort, current_app, request
from sqlalchemy import func, select

from ...extensions import csrf
from ...handlers.models import outbox_messages_table
from ...jobs import get_job_service
from ..auth.views import PUBLIC_ENDPOINTS
from ..keyset import BadCursor, Page, keyset_page
from ..rendering import render_view
from ..scope import current_scope, record_or_404, tenant_scoped, visible_tenants
from .catch_all import CatchRefused, catch_webhook

UTC = timezone.utc
PAGE_SIZE = 50
EXCERPT = 120
CHANNELS = ("sms", "push", "webhook")


def list_messages(conn, tenant_id: str | None, channel: str | None, before: str | None,
                  after: str | None, tenant_ids: frozenset[str] | None = None) -> Page:
    """One page of messages, newest first, with a body excerpt (never the whole body); of
    ``tenant_ids`` only when given (a tenant-bound user's)."""
    o = outbox_messages_table.c
    query = select(o.id, o.tenant_id, o.channel, o.recipient, o.subject, o.job_id,
                   o.created_at, func.substr(o.body, 1, EXCERPT + 1).label("excerpt"))
    if tenant_id:
        query = query.where(o.tenant_id == tenant_id)
    if tenant_ids is not None:
        query = query.where(o.tenant_id.in_(sorted(tenant_ids)))
    if channel:
        query = query.where(o.channel == channel)
    return keyset_page(conn, query, o.created_at, o.id, before=before, after=after,
                       size=PAGE_SIZE)


def get_message(conn, message_id: str):
    return conn.execute(select(outbox_messages_table)
                        .where(outbox_messages_table.c.id == message_id)).first()


bp = Blueprint("outbox", __name__)
PUBLIC_ENDPOINTS.add("outbox.catch_webhook")


def _tenants() -> list[tuple[str, str]]:
    return [(config.tenant_id, f"{config.name} ({config.tenant_id})")
            for config in sorted(visible_tenants(), key=lambda c: c.name.lower())]


@bp.get("/outbox")
@tenant_scoped
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
                                 request.args.get("before"), request.args.get("after"),
                                 tenant_ids=current_scope())
    except BadCursor:
        abort(400, "That page link is not one this console made; start from the newest "
                   "messages.")
    return render_view("outbox/index.html", "outbox/_table.html", listing=page, tenants=tenants,
                       channels=CHANNELS, tenant_id=tenant_id, channel=channel, excerpt=EXCERPT,
                       catch_all=current_app.config["WEBHOOK_CATCH_ALL"])


@bp.get("/outbox/<message_id>")
@tenant_scoped
def show(message_id: str):
    with get_job_service().engine.connect() as conn:
        message = get_message(conn, message_id)
    record_or_404(message, message="There is no such message in the outbox; it may have been "
                                   "cleaned up.")
    return render_view("outbox/show.html", message=message)


@bp.post("/outbox/webhooks", endpoint="catch_webhook")
@csrf.exempt
def catch_webhook_view():
    if not current_app.config["WEBHOOK_CATCH_ALL"]:
        abort(404)
    try:
        _, new = catch_webhook(get_job_service(), current_app.config, request.get_data(),
                               request.headers, request.url)
    except CatchRefused as refused:
        return {"error": str(refused)}, refused.status
    return "", 204 if new else 200
