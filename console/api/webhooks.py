"""``/api/v1/tenants/{id}/webhooks``: a tenant's event webhooks, and their delivery log.

A tenant token manages its own tenant's subscriptions; an all-tenant token any tenant's. The
signing secret is in the answer to creating a subscription, and nowhere else: receivers keep
it to check ``X-Console-Signature``. Each change names the token in the audit trail.
"""
from __future__ import annotations

import marshmallow as ma
from flask import Response
from marshmallow import fields, validate

from ..jobs import get_job_service
from ..jobs.keyset import BadCursor
from ..jobs.webhooks import EVENTS, MAX_URL_CHARS, SubscriptionNotFound
from .audit import token_actor
from .auth import visible_tenant
from .errors import ApiProblem, validation_problem
from .openapi import api_blueprint, problems
from .schemas import Text

bp = api_blueprint("api_webhooks", "A tenant's event webhooks and their delivery log.")
PAGE_SIZE = 20
MAX_PAGE_SIZE = 200


def _describe(text: str) -> dict:
    return {"description": text}


class SubscriptionBodySchema(ma.Schema):
    url = Text(required=True, validate=validate.Length(1, MAX_URL_CHARS), metadata=_describe(
        "An http(s) URL at a public address: events are POSTed to it, signed."))
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)), required=True,
                         validate=validate.Length(1, len(EVENTS)),
                         metadata=_describe(f"Any of {', '.join(EVENTS)}."))


class SubscriptionSchema(ma.Schema):
    id = fields.String()
    tenant_id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    created_at = fields.DateTime(format="iso")
    created_by = fields.String(allow_none=True)


class NewSubscriptionSchema(SubscriptionSchema):
    signing_secret = fields.String(metadata=_describe(
        "The tenant's webhook secret: verify each delivery's `X-Console-Signature` with it "
        "(HMAC-SHA256 over `{timestamp}.{raw body}`). Shown only here."))


class SubscriptionListSchema(ma.Schema):
    subscriptions = fields.List(fields.Nested(SubscriptionSchema))


class DeliveryQuerySchema(ma.Schema):
    cursor = Text(validate=validate.Length(1, 100), metadata=_describe(
        "`next_cursor` of the previous page."))
    limit = fields.Integer(load_default=PAGE_SIZE, validate=validate.Range(1, MAX_PAGE_SIZE),
                           metadata=_describe(f"Deliveries per page, 1–{MAX_PAGE_SIZE} "
                                              f"(default {PAGE_SIZE})."))


class DeliverySchema(ma.Schema):
    id = fields.String(metadata=_describe("The message id the receiver sees on every try."))
    event = fields.String()
    subject_id = fields.String(metadata=_describe("The job or batch the event is about."))
    subscription_id = fields.String()
    job_id = fields.String(metadata=_describe("The job that delivers it."))
    created_at = fields.DateTime(format="iso")
    url = fields.String(allow_none=True)
    status = fields.String(allow_none=True, metadata=_describe(
        "The delivering job's status (null once it is pruned)."))
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)


class DeliveryListSchema(ma.Schema):
    deliveries = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.String(allow_none=True, metadata=_describe(
        "Pass as `cursor` for older deliveries; null on the last page."))


@bp.get("/tenants/<tenant_id>/webhooks")
@bp.response(200, SubscriptionListSchema)
@problems(401, 404)
def list_subscriptions(tenant_id: str):
    """List a tenant's event webhooks"""
    visible_tenant(tenant_id)
    return {"subscriptions": [s.to_dict() for s in
                              get_job_service().webhook_subscriptions(tenant_id)]}


@bp.post("/tenants/<tenant_id>/webhooks")
@bp.arguments(SubscriptionBodySchema(), example={"url": "https://example.com/hooks",
                                                 "events": ["job.completed", "job.failed"]})
@bp.response(201, NewSubscriptionSchema)
@problems(400, 401, 404, 415, 422)
def create_subscription(body, tenant_id: str):
    """Subscribe a URL to a tenant's job events

    From the next event on, each `job.completed`, `job.failed`, `job.retried` or
    `batch.completed` of the tenant's jobs asked for is POSTed to `url` by a webhook job of
    the tenant: signed with the tenant's secret (created now if it had none, and returned
    here), retried with backoff, with the same message id on every try, in order per job.
    422 naming `url` for an address inside the network; at most 10 per tenant.
    """
    visible_tenant(tenant_id)
    subscription, secret = get_job_service().subscribe_webhook(
        tenant_id, body["url"], body["events"], actor=token_actor())
    return {**subscription.to_dict(), "signing_secret": secret}


@bp.delete("/tenants/<tenant_id>/webhooks/<subscription_id>")
@bp.response(204)
@problems(401, 404)
def delete_subscription(tenant_id: str, subscription_id: str):
    """Remove an event webhook

    No event is delivered to it from now on; deliveries already made still go out.
    """
    visible_tenant(tenant_id)
    try:
        get_job_service().unsubscribe_webhook(tenant_id, subscription_id[:100],
                                              actor=token_actor())
    except SubscriptionNotFound:
        raise ApiProblem(404, f"Tenant {tenant_id!r} has no event webhook "
                              f"{subscription_id[:100]!r}.") from None
    return Response(status=204)


@bp.get("/tenants/<tenant_id>/webhook-deliveries")
@bp.arguments(DeliveryQuerySchema(), location="query", unknown=ma.RAISE)
@bp.response(200, DeliveryListSchema)
@problems(401, 404, 422)
def list_deliveries(query, tenant_id: str):
    """A tenant's webhook delivery log, newest first (keyset pages)

    Each event delivered or being delivered, with its delivering job's status, attempts and
    last error.
    """
    visible_tenant(tenant_id)
    try:
        page = get_job_service().webhook_deliveries(tenant_id, before=query.get("cursor"),
                                                    size=query["limit"])
    except BadCursor:
        raise validation_problem([{"field": "cursor", "in": "query",
                                   "message": "is not a cursor from a previous page "
                                              "(next_cursor); start without one"}]) from None
    return {"deliveries": [d.to_dict() for d in page.rows], "next_cursor": page.older}
