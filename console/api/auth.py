"""Bearer-token authentication and the scope rules every endpoint applies.

The API never looks at the console's session: a request with a signed-in cookie but no token
is refused like any other (so a page on another site cannot ride on an operator's session, and
CSRF tokens are not needed here). Scope rules:

- a tenant token reaches its own tenant only. Another tenant's job or tenant is answered
  exactly like one that does not exist (404), so a token cannot even learn which ids exist;
- all-tenant tokens also read the queue and system statistics;
- admin tokens (all-tenant) also change limits.
"""
from __future__ import annotations

from flask import current_app, g, request

from ..jobs import get_job_service
from ..jobs.types import SystemJob
from ..token_rates import PERIOD_SECONDS, RateLimitedError
from ..tokens import TokenExpiredError, TokenIdentity, authenticate, looks_like_token
from .errors import ApiProblem, unauthorized


def authenticate_request() -> None:
    """``before_request`` of the API's blueprints: sets ``g.api_token`` or raises 401."""
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise unauthorized("This endpoint needs an API token: send "
                           "`Authorization: Bearer <token>`.")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("The Authorization header must be `Bearer <token>`.",
                           "invalid_request")
    if not looks_like_token(token):
        raise unauthorized("That is not an API token (they start with `cjt_`); copy the whole "
                           "token you were given.", "invalid_token")
    try:
        identity = authenticate(get_job_service().engine, token,
                                default_rate_limit=current_app.config["API_RATE_LIMIT"])
    except TokenExpiredError as exc:
        expired = exc.expires_at.isoformat().replace("+00:00", "Z")
        problem = unauthorized(f"The token expired at {expired}; ask an admin for a new one "
                               "(expired tokens cannot be renewed).", "invalid_token")
        problem.extensions["expired_at"] = expired
        raise problem from None
    except RateLimitedError as exc:
        raise ApiProblem(429, f"This token may send {exc.limit} requests a minute and has sent "
                              f"them; retry in {exc.retry_after} s (Retry-After), or ask an "
                              "admin for a higher rate on the token.", slug="rate-limit",
                         headers={"Retry-After": str(exc.retry_after)}, limit=exc.limit,
                         period_seconds=PERIOD_SECONDS) from None
    if identity is None:
        raise unauthorized("The token is unknown or was revoked; ask an admin for a new one.",
                           "invalid_token")
    g.api_token = identity


def current_token() -> TokenIdentity:
    return g.api_token


def tenant_not_found(tenant_id: str) -> ApiProblem:
    return ApiProblem(404, f"There is no tenant {tenant_id!r} that this token can see.")


def scoped_tenant(requested: str | None, *, required: bool = True) -> str | None:
    """The tenant a request acts for: a tenant token's own (``requested`` must be it or
    absent), or for all-tenant tokens the one requested.

    :raise ApiProblem: 404 for another tenant; 422 when an all-tenant token names none.
    """
    token = current_token()
    if token.tenant_id is not None:
        if requested is not None and requested != token.tenant_id:
            raise tenant_not_found(requested)
        return token.tenant_id
    if requested is None and required:
        raise ApiProblem(422, "tenant_id: is required with an all-tenant token (tenant tokens "
                              "imply their tenant)",
                         errors=[{"field": "tenant_id", "in": "json",
                                  "message": "is required with an all-tenant token"}])
    return requested


def is_storable_id(tenant_id: str) -> bool:
    """What a tenant id can be (1–64 characters, no NUL): anything else cannot exist, and
    PostgreSQL would refuse to even compare a NUL character."""
    return 0 < len(tenant_id) <= 64 and "\x00" not in tenant_id


def visible_tenant(tenant_id: str):
    """The tenant's config, when it exists and this token may see it; else 404."""
    if not current_token().sees_tenant(tenant_id) or not is_storable_id(tenant_id):
        raise tenant_not_found(tenant_id)
    config = get_job_service().tenants.get_tenant_config(tenant_id)
    if config is None:
        raise tenant_not_found(tenant_id)
    return config


def visible_job(job_id: str) -> SystemJob:
    """The job, when it exists and this token may see it; else 404 (the same answer)."""
    job = get_job_service().get_job_by_id(job_id)
    if job is None or not current_token().sees_tenant(job.tenant_id):
        raise ApiProblem(404, f"There is no job {job_id!r} that this token can see; list jobs "
                              "with GET /api/v1/jobs.")
    return job


def require_all_tenants(what: str) -> None:
    if not current_token().all_tenants:
        raise ApiProblem(403, f"{what} spans every tenant: it needs an all-tenant token, and "
                              "this one is scoped to one tenant.")


def require_admin(what: str) -> None:
    if not current_token().is_admin:
        raise ApiProblem(403, f"{what} needs an admin token (an all-tenant token created with "
                              "--admin, or marked admin on the console's API tokens page).")
