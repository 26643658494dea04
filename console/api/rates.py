"""``/api/v1/handlers/{handler}/rate-limit``: a handler's rate limit, for every tenant or one.

Scopes are those of pausing a handler (``control.handler_tenant``): a tenant token acts for its
own tenant (a limit on its own work); an all-tenant token names ``tenant_id``, or leaves it out
for the limit every tenant shares, which only admin tokens may change. A tenant's own rate
limit is one of its limits (``PUT /tenants/{id}/limits``, admin tokens). Each change names the
token in the audit trail.
"""
from __future__ import annotations

from typing import Any

import marshmallow as ma

from ..jobs import get_job_service
from ..jobs.control import check_handler
from ..jobs.limits import RateLimit
from .audit import token_actor
from .auth import scoped_tenant, visible_tenant
from .control import handler_tenant
from .control_schemas import (
    HandlerRateLimitBodySchema,
    HandlerRateLimitQuerySchema,
    HandlerRateLimitStateSchema,
)
from .errors import ApiProblem
from .openapi import api_blueprint, problems

bp = api_blueprint("api_rates", "Rate limits of handlers, for every tenant or one tenant.")


@bp.get("/handlers/<handler>/rate-limit")
@bp.arguments(HandlerRateLimitQuerySchema(), location="query", unknown=ma.RAISE)
@bp.response(200, HandlerRateLimitStateSchema)
@problems(401, 404, 422)
def get_rate_limit(query, handler: str):
    """A handler's rate limit, for one tenant or for every tenant

    With its starts in the current period and when it next allows a start. `rate_limit` is
    null when none is set for that scope. A tenant token reads the limit for its own tenant;
    an all-tenant token the one for `tenant_id`, or without it the one every tenant shares.
    """
    tenant_id = scoped_tenant(query.get("tenant_id"), required=False)
    if tenant_id is not None:
        visible_tenant(tenant_id)
    return _state(handler, tenant_id, must_exist=True)


@bp.put("/handlers/<handler>/rate-limit")
@bp.arguments(HandlerRateLimitBodySchema(), example={"count": 10, "period_seconds": 1,
                                                     "burst": 5})
@bp.response(200, HandlerRateLimitStateSchema)
@problems(400, 401, 403, 404, 415, 422)
def put_rate_limit(body, handler: str):
    """Set a handler's rate limit, for one tenant or for every tenant

    At most `count` of its jobs start in any window of `period_seconds`, at most `burst` back
    to back; work past it waits queued (nothing is refused) and starts as the window slides,
    from every runner's next claim. A limit for every tenant is shared by all of them (fairly:
    a tenant that uses it up holds no one else's other work back). A tenant token limits its
    own tenant's jobs; an all-tenant token names `tenant_id`, or leaves it out to limit the
    handler for every tenant (admin tokens only). 422 naming `handler` for a handler no runner
    has.
    """
    tenant_id = handler_tenant(body, "Rate-limiting")
    limit = RateLimit(body["count"], body["period_seconds"], body.get("burst"))
    get_job_service().set_handler_rate_limit(handler, limit, tenant_id, by=token_actor())
    return _state(handler, tenant_id)


@bp.delete("/handlers/<handler>/rate-limit")
@bp.arguments(HandlerRateLimitQuerySchema(), location="query", unknown=ma.RAISE)
@bp.response(200, HandlerRateLimitStateSchema)
@problems(401, 403, 404, 422)
def delete_rate_limit(query, handler: str):
    """Remove a handler's rate limit, for one tenant or for every tenant

    Its held-back jobs start at the next claim, unless another limit still holds them.
    Removing what is not set changes nothing (422 when the handler or tenant is unknown).
    Scopes as for setting it.
    """
    tenant_id = handler_tenant(query, "Removing the rate limit of")
    get_job_service().set_handler_rate_limit(handler, None, tenant_id, by=token_actor())
    return _state(handler, tenant_id)


def _state(handler: str, tenant_id: str | None, must_exist: bool = False) -> dict[str, Any]:
    service = get_job_service()
    limit = next((found for found in service.handler_rate_limits(handler)
                  if found.tenant_id == tenant_id), None)
    if limit is None and must_exist:
        with service.engine.connect() as conn:
            try:
                check_handler(conn, handler, service.handlers.names())
            except ValueError:
                raise ApiProblem(404, f"There is no handler {handler[:100]!r}: no runner "
                                      "has it.") from None
    state = next((s for s in service.rate_limit_states(tenant_id, handler)
                  if limit is not None and s.key == limit.key), None)
    return {"handler": handler, "tenant_id": tenant_id,
            "rate_limit": limit.limit.to_dict() if limit else None,
            "set_by": limit.set_by if limit else None, "set_at": limit.set_at if limit else None,
            "started_in_period": state.started if state else None,
            "next_start_at": state.next_start if state else None}
