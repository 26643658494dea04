"""``/api/v1/audit`` (admin tokens): the audit trail, newest first, in keyset pages; and the
``Actor`` every changing API call hands the engine (the token's prefix, the client's address).
"""
from __future__ import annotations

import marshmallow as ma
from flask import request
from marshmallow import fields, validate

from ..jobs import get_job_service
from ..jobs.audit import ACTIONS, Actor, AuditQuery
from ..jobs.keyset import BadCursor, keyset_page
from ..jobs.models import audit_table
from .auth import current_token, require_admin
from .errors import validation_problem
from .openapi import api_blueprint, problems
from .schemas import TENANT_ID, Text, supported_moment

bp = api_blueprint("api_audit", "The audit trail: who changed what, when (admin tokens).")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def token_actor() -> Actor:
    """The calling token, as audit entries name it."""
    return Actor("token", current_token().prefix, request.remote_addr)


def _describe(text: str) -> dict:
    return {"description": text}


class AuditQuerySchema(ma.Schema):
    actor = Text(validate=validate.Length(1, 100), metadata=_describe(
        "A user name, or a token's prefix (`cjt_AbCd1234`)."))
    action = Text(validate=validate.OneOf(list(ACTIONS)))
    tenant_id = Text(validate=TENANT_ID)
    since = fields.AwareDateTime(format="iso", validate=supported_moment, metadata=_describe(
        "Entries at or after this moment (ISO 8601 with an offset)."))
    until = fields.AwareDateTime(format="iso", validate=supported_moment, metadata=_describe(
        "Entries before this moment."))
    cursor = Text(validate=validate.Length(1, 100), metadata=_describe(
        "`next_cursor` of the previous page."))
    limit = fields.Integer(load_default=PAGE_SIZE, validate=validate.Range(1, MAX_PAGE_SIZE),
                           metadata=_describe(f"Entries per page, 1–{MAX_PAGE_SIZE} "
                                              f"(default {PAGE_SIZE})."))


class AuditEntrySchema(ma.Schema):
    id = fields.String()
    created_at = fields.DateTime(format="iso")
    actor_kind = fields.String(metadata=_describe(
        "`user` (console), `token` (API) or `command` (the command line)."))
    actor_name = fields.String()
    actor_address = fields.String(allow_none=True)
    action = fields.String()
    tenant_id = fields.String(allow_none=True)
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    job_ids = fields.List(fields.String(), allow_none=True)
    job_count = fields.Integer(allow_none=True)
    before = fields.Dict(attribute="value_before", allow_none=True)
    after = fields.Dict(attribute="value_after", allow_none=True)
    details = fields.Dict(allow_none=True)


class AuditListSchema(ma.Schema):
    entries = fields.List(fields.Nested(AuditEntrySchema))
    next_cursor = fields.String(allow_none=True, metadata=_describe(
        "Pass as `cursor` for older entries; null on the last page."))


@bp.get("/audit")
@bp.arguments(AuditQuerySchema(), location="query", unknown=ma.RAISE)
@bp.response(200, AuditListSchema)
@problems(401, 403, 422)
def list_audit(query):
    """List audit entries, newest first (keyset pages)

    Every change made by a console user or an API token, and every sign-in. Follow
    `next_cursor` until it is null. Admin tokens only.
    """
    require_admin("Reading the audit trail")
    if "since" in query and "until" in query and query["since"] >= query["until"]:
        raise validation_problem([{"field": "until", "in": "query",
                                   "message": "must be later than since"}])
    audit_query = AuditQuery(actor=query.get("actor"), action=query.get("action"),
                             tenant_id=query.get("tenant_id"), since=query.get("since"),
                             until=query.get("until"))
    try:
        with get_job_service().engine.connect() as conn:
            page = keyset_page(conn, audit_query.select(), audit_table.c.created_at,
                               audit_table.c.id, before=query.get("cursor"),
                               size=query["limit"])
    except BadCursor:
        raise validation_problem([{"field": "cursor", "in": "query",
                                   "message": "is not a cursor from a previous page "
                                              "(next_cursor); start without one"}]) from None
    return {"entries": page.rows, "next_cursor": page.older}
