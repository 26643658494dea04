"""Operator control: pause and resume a tenant, a handler or a job; run a job now; why a job is
not running; the pauses in force; the runners.

The scope rules are the API's own (``auth.py``): a tenant token acts on its own tenant and its
own jobs, and pauses a handler for its own tenant only; pausing a handler for every tenant needs
an admin token; the runners work for every tenant, so only all-tenant tokens list them. Each
change names the token in the audit trail.
"""
from __future__ import annotations

from typing import Any

import marshmallow as ma

from ..jobs import get_job_service
from ..jobs.control import check_handler, check_tenant
from .audit import token_actor
from .auth import (
    current_token,
    require_admin,
    require_all_tenants,
    scoped_tenant,
    visible_job,
    visible_tenant,
)
from .control_schemas import (
    ExplanationSchema,
    HandlerPauseBodySchema,
    HandlerPauseStateSchema,
    HandlerResumeBodySchema,
    PauseBodySchema,
    PauseListQuerySchema,
    PauseListSchema,
    RunnersSchema,
    TenantPauseSchema,
)
from .openapi import api_blueprint, problems
from .pausing import holding_tenant, in_order, request_pauses
from .schemas import JobSchema

bp = api_blueprint("api_control", "Pause and resume tenants, handlers and jobs; run a job now; "
                                  "why a job is not running; the pauses in force; the runners.")
REASON_EXAMPLE = {"reason": "Billing dispute: hold their work until it is settled"}
# Details of a blocker that name other tenants: a tenant token's explanation leaves them out.
_OTHER_TENANTS_DETAILS = {"fair_share": ("competing_tenants",)}


# -- tenants -------------------------------------------------------------------------------

@bp.post("/tenants/<tenant_id>/pause")
@bp.arguments(PauseBodySchema(), required=False, example=REASON_EXAMPLE)
@bp.response(200, TenantPauseSchema)
@problems(400, 401, 404, 415, 422)
def pause_tenant(body, tenant_id: str):
    """Pause a tenant

    Its jobs still queue (within its limits) and fall due, but none starts until it is
    resumed; attempts already running finish. Pausing a paused tenant changes nothing (the
    first pause and its reason stay). A tenant token pauses its own tenant only.
    """
    visible_tenant(tenant_id)
    get_job_service().pause_tenant(tenant_id, body.get("reason"), by=token_actor())
    return _tenant_state(tenant_id)


@bp.post("/tenants/<tenant_id>/resume")
@bp.response(200, TenantPauseSchema)
@problems(401, 404)
def resume_tenant(tenant_id: str):
    """Resume a tenant

    Its due jobs start at once, unless another pause still holds them (`also_held_by`).
    Resuming a tenant that is not paused changes nothing.
    """
    visible_tenant(tenant_id)
    get_job_service().resume_tenant(tenant_id, by=token_actor())
    return _tenant_state(tenant_id)


def _tenant_state(tenant_id: str) -> dict[str, Any]:
    pauses = request_pauses()
    own = pauses.of("tenant", tenant_id=tenant_id)
    return {"tenant_id": tenant_id, "paused": own,
            "also_held_by": [p for p in holding_tenant(pauses, tenant_id) if p != own]}


# -- handlers ------------------------------------------------------------------------------

@bp.post("/handlers/<handler>/pause")
@bp.arguments(HandlerPauseBodySchema(), required=False,
              example={**REASON_EXAMPLE, "tenant_id": "acme"})
@bp.response(200, HandlerPauseStateSchema)
@problems(400, 401, 403, 404, 415, 422)
def pause_handler(body, handler: str):
    """Pause a handler, for one tenant or for every tenant

    Its jobs still queue and fall due, but none starts until it is resumed; attempts already
    running finish. A tenant token pauses it for its own tenant; an all-tenant token names
    `tenant_id`, or leaves it out to pause the handler for every tenant (admin tokens only).
    422 naming `handler` for a handler no runner has.
    """
    tenant_id = handler_tenant(body, "Pausing")
    get_job_service().pause_handler(handler, tenant_id, body.get("reason"), by=token_actor())
    return _handler_state(handler, tenant_id)


@bp.post("/handlers/<handler>/resume")
@bp.arguments(HandlerResumeBodySchema(), required=False,
              example={"tenant_id": "acme"})
@bp.response(200, HandlerPauseStateSchema)
@problems(400, 401, 403, 404, 415, 422)
def resume_handler(body, handler: str):
    """Resume a handler, for one tenant or for every tenant

    Lifts the pause made for the same scope: `tenant_id` (implied for a tenant token) lifts
    that tenant's pause of the handler, none lifts the pause for every tenant (admin tokens
    only). Resuming what is not paused changes nothing; 422 when the handler or tenant is
    unknown as well.
    """
    tenant_id = handler_tenant(body, "Resuming")
    service = get_job_service()
    if service.resume_handler(handler, tenant_id, by=token_actor()) is None:
        _check_known(handler, tenant_id)
    return _handler_state(handler, tenant_id)


def handler_tenant(body: dict[str, Any], doing: str) -> str | None:
    """The tenant a handler's pause (or rate limit) is for: a tenant token's own; for an
    all-tenant token the one named, or None (every tenant) when its token is an admin's."""
    tenant_id = scoped_tenant(body.get("tenant_id"), required=False)
    if tenant_id is None:
        require_admin(f"{doing} a handler for every tenant")
    return tenant_id


def _check_known(handler: str, tenant_id: str | None) -> None:
    """A resume that lifted nothing answers 422 for a handler or tenant that does not exist,
    as a pause would, so a typo is not a silent success. (Only then: a pause of a handler that
    no runner has any more must stay liftable.)"""
    service = get_job_service()
    with service.engine.connect() as conn:
        check_handler(conn, handler, service.handlers.names())
        if tenant_id is not None:
            check_tenant(conn, tenant_id)


def _handler_state(handler: str, tenant_id: str | None) -> dict[str, Any]:
    return {"handler": handler, "tenant_id": tenant_id,
            "paused": request_pauses().of("handler", handler=handler, tenant_id=tenant_id)}


# -- jobs ----------------------------------------------------------------------------------

@bp.post("/jobs/<job_id:job_id>/pause")
@bp.arguments(PauseBodySchema(), required=False, example=REASON_EXAMPLE)
@bp.response(200, JobSchema)
@problems(400, 401, 404, 409, 415, 422)
def pause_job(body, job_id: str):
    """Pause a job

    A waiting job stays `pending`, its time kept, until it is resumed: a recurring job does not
    fire, a delayed one does not start. A running job finishes its attempt; its next run or
    retry waits. 409 for a finished job.
    """
    job = visible_job(job_id)
    return get_job_service().pause_job(job.id, body.get("reason"), by=token_actor())


@bp.post("/jobs/<job_id:job_id>/resume")
@bp.response(200, JobSchema)
@problems(401, 404)
def resume_job(job_id: str):
    """Resume a job

    A recurring job whose time passed while it was paused runs at its next time (missed runs
    are not made up); a one-off job past its time is due at once. A job that was not paused is
    returned unchanged.
    """
    job = visible_job(job_id)
    return get_job_service().resume_job(job.id, by=token_actor())


@bp.post("/jobs/<job_id:job_id>/run-now")
@bp.response(200, JobSchema)
@problems(401, 404, 409, 422, 429)
def run_now(job_id: str):
    """Run a job now

    The answer is the job that will run. A delayed job, or one waiting out a retry's backoff,
    is queued now. A recurring job keeps its schedule: a one-off copy of it is queued and
    returned (a new id; `metadata.run_now_of` names the original), even while the recurring
    job is paused (it stays paused). 409 for a one-off job that is paused, queued already,
    running or finished, and for a cancelled recurring job; 429 when the tenant's queue is
    full; 422 when the copy may not be queued any more (its handler or type, naming the field).
    """
    job = visible_job(job_id)
    return get_job_service().run_now(job.id, by=token_actor())


@bp.get("/jobs/<job_id:job_id>/explain")
@bp.response(200, ExplanationSchema)
@problems(401, 404)
def explain_job(job_id: str):
    """Why is this job not running?

    Every reason a pending or queued job has not started, each with a `code`, a `message` and
    its figures, read through the rules the runners claim by: its time, pauses, its tenant's
    concurrency and daily limits, live runners and their handlers, its fair share. For a
    processing job, the runner that holds it (`held_by`), or a `lease` blocker when that runner
    stopped renewing. `blockers` is empty when nothing holds the job back. A tenant token's
    answer names no other tenant (a `fair_share` blocker counts them).
    """
    job = visible_job(job_id)
    explanation = get_job_service().explanation(job.id).to_dict()
    if current_token().tenant_id is not None:
        explanation["blockers"] = [_without_other_tenants(b) for b in explanation["blockers"]]
    return explanation


def _without_other_tenants(blocker: dict[str, Any]) -> dict[str, Any]:
    hidden = _OTHER_TENANTS_DETAILS.get(blocker["code"], ())
    return {**blocker, "details": {k: v for k, v in blocker["details"].items()
                                   if k not in hidden}}


# -- what is paused, who is working --------------------------------------------------------

@bp.get("/pauses")
@bp.arguments(PauseListQuerySchema(), location="query", unknown=ma.RAISE)
@bp.response(200, PauseListSchema)
@problems(401, 404, 422)
def list_pauses(query):
    """The pauses in force

    An all-tenant token sees every pause, or with `tenant_id` those that hold that tenant's
    work. A tenant token sees those that hold its own work — everything (maintenance), its
    tenant, handlers paused for every tenant or for it, its jobs — and nothing of any other
    tenant.
    """
    tenant_id = scoped_tenant(query.get("tenant_id"), required=False)
    pauses = request_pauses()
    return {"pauses": in_order(pauses.pauses) if tenant_id is None
            else holding_tenant(pauses, tenant_id)}


@bp.get("/runners")
@bp.response(200, RunnersSchema)
@problems(401, 403)
def list_runners():
    """The runners: live ones, and those that stopped in the last day

    Each with its host and process, threads (and how many are busy), the handlers it runs, the
    jobs it holds and its claims per minute; a stopped one with how it ended and what became of
    the jobs it held. All-tenant tokens only: runners work for every tenant.
    """
    require_all_tenants("The list of runners")
    return get_job_service().runners()
