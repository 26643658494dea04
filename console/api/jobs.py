"""``/api/v1/jobs``, ``/notifications``, ``/jobs/batch``, ``/jobs/chain``, ``/batches``: queue,
read, list, retry, cancel; a job's attempts with their log lines; a batch's progress.

Views only translate HTTP into ``JobService`` verbs; the service raises the named exceptions
that errors.py turns into problem details. The list reuses the console's ``JobFilter``, so the
API and the jobs screen page through the same indexed, keyset queries.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask import url_for
from werkzeug.datastructures import MultiDict

from ..jobs import get_job_service
from ..jobs.listing import JobFilter
from .audit import token_actor
from .auth import current_token, scoped_tenant, visible_job
from .errors import ApiProblem, validation_problem
from .openapi import api_blueprint, problems
from .schemas import (
    AttemptListQuerySchema,
    AttemptListSchema,
    BatchCreateSchema,
    BatchSchema,
    BatchStatusSchema,
    ChainCreateSchema,
    JobCreateSchema,
    JobListQuerySchema,
    JobListSchema,
    JobSchema,
    NotificationCreateSchema,
)

bp = api_blueprint("api_jobs", "Queue jobs and notifications; read, list, retry and cancel "
                               "jobs; follow a batch.")
# The request schemas are instances, not classes: webargs builds a new schema from a class on
# every request (about a tenth of a submission's CPU); an instance is reused, and is safe to share
# between threads (loading keeps no state on it).
# JobFilter's parameter names → the API's.
_FILTER_FIELDS = {"status": "status", "tenant": "tenant_id", "type": "type",
                  "handler": "handler", "before": "cursor"}


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """The queue options shared by jobs and notifications, as ``queue_*`` arguments."""
    options = {key: body[key] for key in ("priority", "scheduled_for", "max_retries",
                                          "metadata", "idempotency_key", "depends_on",
                                          "on_dependency_failure") if key in body}
    if "delay_seconds" in body:
        options["delay"] = timedelta(seconds=body["delay_seconds"])
    return options


def _created(job):
    return job, 201, {"Location": url_for("api_jobs.get_job", job_id=job.id)}


@bp.post("/jobs")
@bp.arguments(JobCreateSchema(), example={"type": "immediate", "handler": "data_processor",
                                        "payload": {"data_id": "batch-1",
                                                    "processing_type": "quick"}})
@bp.response(201, JobSchema, headers={"Location": {"schema": {"type": "string"},
                                                   "description": "The job's URL."}})
@problems(400, 401, 404, 415, 422, 429)
def create_job(body):
    """Queue a job

    A due job is `queued`; one with `scheduled_for`, `delay_seconds` or `cron_schedule` is
    `pending` until its time. Limits are checked first: a refusal (429) stores nothing.
    """
    tenant_id = scoped_tenant(body.get("tenant_id"))
    job = get_job_service().queue_job(
        body["type"], body["handler"], body.get("payload", {}), tenant_id,
        cron_schedule=body.get("cron_schedule"), timezone=body.get("timezone", "UTC"),
        actor=token_actor(), **_options(body))
    return _created(job)


@bp.post("/notifications")
@bp.arguments(NotificationCreateSchema(), example={"type": "email",
                                                 "recipient": "ada@example.com",
                                                 "subject": "Welcome", "body": "Hello!"})
@bp.response(201, JobSchema, headers={"Location": {"schema": {"type": "string"}}})
@problems(400, 401, 404, 415, 422, 429)
def create_notification(body):
    """Queue a notification (email, sms, push, webhook)"""
    tenant_id = scoped_tenant(body.get("tenant_id"))
    extra = {key: body[key] for key in ("html", "reply_to", "variables", "headers", "data",
                                        "message_id") if key in body}
    job = get_job_service().queue_notification(
        body["type"], body["recipient"], tenant_id, subject=body.get("subject"),
        body=body.get("body"), actor=token_actor(), **_options(body), **extra)
    return _created(job)


@bp.post("/jobs/batch")
@bp.arguments(BatchCreateSchema())
@bp.response(201, BatchSchema, headers={"Location": {"schema": {"type": "string"},
                                                     "description": "The batch's URL."}})
@problems(400, 401, 404, 415, 422, 429)
def create_batch(body):
    """Queue many jobs: all, or none

    One spec over a limit, or one invalid spec, rejects the whole batch; `errors[].field`
    names the spec (`jobs[3].handler`, `on_complete.handler`). The jobs share a batch: follow
    it with GET /batches/{batch_id}; `on_complete` and `on_success` run once when it ends.
    """
    tenant_id = scoped_tenant(body.get("tenant_id"))
    callbacks = {kind: _spec(body[kind]) for kind in ("on_complete", "on_success")
                 if kind in body}
    jobs = get_job_service().queue_batch_jobs(
        _specs(body), tenant_id, priority=body.get("priority"), actor=token_actor(),
        **callbacks)
    batch_id = _batch_of(jobs)
    headers = {"Location": url_for("api_jobs.get_batch", batch_id=batch_id)} if batch_id else {}
    return {"jobs": jobs, "batch_id": batch_id}, 201, headers


@bp.post("/jobs/chain")
@bp.arguments(ChainCreateSchema(), example={"jobs": [
    {"type": "immediate", "handler": "data_processor",
     "payload": {"data_id": "export-1", "processing_type": "quick"}},
    {"type": "notification", "handler": "email_handler",
     "payload": {"channel": "email", "recipient": "ops@example.com", "subject": "Exported"}}]})
@bp.response(201, BatchSchema)
@problems(400, 401, 404, 415, 422, 429)
def create_chain(body):
    """Queue a chain: each job waits for the one before it

    When one fails for good or is cancelled, the rest are cancelled in turn (a spec with
    `on_dependency_failure: run` runs anyway). All are stored, or none, as for a batch.
    """
    tenant_id = scoped_tenant(body.get("tenant_id"))
    jobs = get_job_service().queue_chain(_specs(body), tenant_id, priority=body.get("priority"),
                                         actor=token_actor())
    return {"jobs": jobs}, 201


def _specs(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's job specs as ``queue_batch_jobs`` takes them."""
    return [_spec(spec) for spec in body["jobs"]]


def _spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A job spec as ``queue_batch_jobs`` reads it."""
    spec = dict(spec)
    if "delay_seconds" in spec:
        spec["delay"] = spec.pop("delay_seconds")
    return spec


def _batch_of(jobs) -> str | None:
    """The batch this request made, or (every job was there already, by its idempotency key)
    the newest batch of those jobs: batch ids are UUIDv7, newer ones greater."""
    return max((job.batch_id for job in jobs if job.batch_id), default=None)


@bp.get("/batches/<batch_id:batch_id>")
@bp.response(200, BatchStatusSchema)
@problems(401, 404)
def get_batch(batch_id: str):
    """Read a batch: its counts as its jobs end, and its callbacks

    A tenant token sees its own tenant's batches only (another's is 404, as a missing one).
    """
    batch = get_job_service().get_batch(batch_id)
    if batch is None or not current_token().sees_tenant(batch.tenant_id):
        raise ApiProblem(404, f"There is no batch {batch_id!r} that this token can see; "
                              "POST /jobs/batch answers with the batch_id of the jobs it "
                              "queued.")
    return batch


@bp.get("/jobs")
@bp.arguments(JobListQuerySchema, location="query", unknown=ma.RAISE)
@bp.response(200, JobListSchema)
@problems(401, 404, 422)
def list_jobs(query):
    """List jobs, newest first (keyset pages)

    Follow `next_cursor` until it is null. Filters on status and tenant use indexes; type,
    handler and `waiting` are checked within a bounded window (`searched` says when it ran
    out first).
    """
    tenant_id = scoped_tenant(query.get("tenant_id"), required=False)
    args = MultiDict({"status": query.get("status", ""), "tenant": tenant_id or "",
                      "type": query.get("type", ""), "handler": query.get("handler", ""),
                      "waiting": query.get("waiting", ""), "before": query.get("cursor", "")})
    job_filter = JobFilter(args)
    if not job_filter.valid:
        raise validation_problem([{"field": _FILTER_FIELDS.get(name, name), "in": "query",
                                   "message": message}
                                  for name, message in job_filter.errors.items()])
    with get_job_service().engine.connect() as conn:
        page = job_filter.page(conn, size=query["limit"])
    return {"jobs": page.jobs, "next_cursor": page.older, "searched": page.searched}


@bp.get("/jobs/<job_id:job_id>")
@bp.response(200, JobSchema)
@problems(401, 404)
def get_job(job_id: str):
    """Read a job"""
    return visible_job(job_id)


@bp.get("/jobs/<job_id:job_id>/attempts")
@bp.arguments(AttemptListQuerySchema, location="query", unknown=ma.RAISE)
@bp.response(200, AttemptListSchema)
@problems(401, 404, 422)
def list_job_attempts(query, job_id: str):
    """A job's attempts, with the lines each logged

    Newest first, `limit` at a time (follow `next_before`). A running attempt comes first
    with the lines it has logged so far. Each keeps at most the lines its runner's
    JOBS_ATTEMPT_LOG_LINES allows, then one saying how many were not kept. A tenant token sees
    only its own tenant's jobs (another's is 404, as a missing one).
    """
    job = visible_job(job_id)
    attempts = get_job_service().attempt_history(job, query["limit"] + 1, query.get("before"))
    more = len(attempts) > query["limit"]
    attempts = attempts[:query["limit"]]
    return {"job_id": job.id, "attempts": attempts,
            "next_before": attempts[-1]["attempt"] if more else None}


@bp.post("/jobs/<job_id:job_id>/retry")
@bp.response(200, JobSchema)
@problems(401, 404, 409, 422, 429)
def retry_job(job_id: str):
    """Run a failed or cancelled job again

    409 for a job in any other state; 422 for a job of a system handler whose tenant is not the
    operations tenant (naming `handler`) or a recurring job whose cron expression never fires
    (naming `cron_schedule`); 429 when its tenant's queue is full.
    """
    job = visible_job(job_id)
    return get_job_service().retry_job(job.id, actor=token_actor())


@bp.post("/jobs/<job_id:job_id>/cancel")
@bp.response(200, JobSchema)
@problems(401, 404, 409)
def cancel_job(job_id: str):
    """Cancel a pending or queued job (a recurring one: every future run)

    409 for a job that is processing or finished.
    """
    job = visible_job(job_id)
    return get_job_service().cancel_job(job.id, actor=token_actor())
