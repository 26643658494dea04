"""The Audit screen (admins): who changed what, when, filtered by who, action, tenant and time,
newest first in keyset pages. The query (``AuditQuery``) lives beneath both doors. An admin
bound to tenants sees only its tenants' entries (its ``tenant_scope``): not sign-ins, users or
tokens, which belong to no tenant."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, abort, request

from ...jobs import get_job_service
from ...jobs.audit import ACTIONS, AuditQuery
from ...jobs.models import audit_table
from ..auth.views import role_required
from ..keyset import BadCursor, keyset_page
from ..rendering import render_view
from ..scope import current_scope, tenant_scoped

bp = Blueprint("audit", __name__)
UTC = timezone.utc
PAGE_SIZE = 50
FILTERS = ("actor", "action", "tenant", "since", "until")


@bp.before_request
@role_required("admin")
def admins_only():
    """The trail names every user and address: admins only."""
    return None


def _day(name: str, value: str) -> datetime | None:
    """A ``YYYY-MM-DD`` filter as the start of that UTC day; 400 naming the field otherwise."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        abort(400, f"The {name} filter is a date like 2026-12-04 (UTC); clear it or fix it.")


def _query(args) -> tuple[AuditQuery, dict[str, str]]:
    values = {name: (args.get(name) or "").strip() for name in FILTERS}
    if values["action"] and values["action"] not in ACTIONS:
        abort(400, "The action filter is one of the listed actions; choose one from the list.")
    for name, longest in (("actor", 100), ("tenant", 64)):
        if len(values[name]) > longest or "\x00" in values[name]:
            abort(400, f"The {name} filter is at most {longest} characters; shorten it.")
    since, until = _day("from", values["since"]), _day("to", values["until"])
    if since and until and until < since:
        abort(400, "The to date is before the from date; swap them or clear one.")
    query = AuditQuery(actor=values["actor"] or None, action=values["action"] or None,
                       tenant_id=values["tenant"] or None, since=since,
                       until=until + timedelta(days=1) if until else None,
                       tenant_scope=current_scope())
    return query, values


@bp.get("/audit")
@tenant_scoped
def index():
    query, values = _query(request.args)
    try:
        with get_job_service().engine.connect() as conn:
            page = keyset_page(conn, query.select(), audit_table.c.created_at,
                               audit_table.c.id, before=request.args.get("before"),
                               after=request.args.get("after"), size=PAGE_SIZE)
    except BadCursor:
        abort(400, "That page link is not one this console made; start from the newest entries.")
    return render_view("audit/index.html", "audit/_table.html", listing=page, actions=ACTIONS,
                       filters=values, active={k: v for k, v in values.items() if v})
