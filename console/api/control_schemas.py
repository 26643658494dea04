"""Schemas of operator control: pause and resume bodies, pause states, handlers' rate limits,
a job's explanation and the runners."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..jobs.pauses import MAX_REASON_LENGTH
from ..jobs.types import BLOCKER_CODES
from .schemas import TENANT_ID, PauseSchema, Text
from .tenant_schemas import RateLimitSchema


def _describe(text: str, **extra) -> dict:
    return {"description": text, **extra}


def _moment(text: str) -> fields.String:
    """An ISO 8601 moment as the engine's ``to_dict()`` writes it (already a string)."""
    return fields.String(allow_none=True, metadata=_describe(text, format="date-time"))


# -- requests ------------------------------------------------------------------------------

def _reason() -> Text:
    return Text(validate=validate.Length(max=MAX_REASON_LENGTH), metadata=_describe(
        f"Why, for the people who will wonder (at most {MAX_REASON_LENGTH} characters)."))


class PauseBodySchema(ma.Schema):
    reason = _reason()


class HandlerResumeBodySchema(ma.Schema):
    tenant_id = Text(validate=TENANT_ID, metadata=_describe(
        "For this tenant only. A tenant token always acts for its own tenant; with an "
        "all-tenant token, leaving it out means every tenant, which needs an admin token."))


class HandlerPauseBodySchema(HandlerResumeBodySchema):
    reason = _reason()


class HandlerRateLimitQuerySchema(HandlerResumeBodySchema):
    pass


class HandlerRateLimitBodySchema(RateLimitSchema, HandlerResumeBodySchema):
    pass


class PauseListQuerySchema(ma.Schema):
    tenant_id = Text(validate=TENANT_ID, metadata=_describe(
        "All-tenant tokens: only the pauses that hold this tenant's work. A tenant token sees "
        "only those that hold its own."))


# -- responses -----------------------------------------------------------------------------

class TenantPauseSchema(ma.Schema):
    tenant_id = fields.String()
    paused = fields.Nested(PauseSchema, allow_none=True, metadata=_describe(
        "The tenant's own pause, or null when it is not paused."))
    also_held_by = fields.List(fields.Nested(PauseSchema), metadata=_describe(
        "Other pauses that hold some or all of its work: everything (maintenance), its "
        "handlers (for it or for every tenant), its jobs."))


class HandlerPauseStateSchema(ma.Schema):
    handler = fields.String()
    tenant_id = fields.String(allow_none=True, metadata=_describe("null: every tenant."))
    paused = fields.Nested(PauseSchema, allow_none=True, metadata=_describe(
        "The pause of this handler for this tenant (or for every tenant), or null."))


class HandlerRateLimitStateSchema(ma.Schema):
    handler = fields.String()
    tenant_id = fields.String(allow_none=True, metadata=_describe("null: every tenant."))
    rate_limit = fields.Nested(RateLimitSchema, allow_none=True, metadata=_describe(
        "The limit for this scope, or null when none is set."))
    set_by = fields.String(allow_none=True, metadata=_describe("Who set it (a user or token)."))
    set_at = fields.DateTime(format="iso", allow_none=True)
    started_in_period = fields.Integer(allow_none=True, metadata=_describe(
        "Its jobs started in the last `period_seconds`."))
    next_start_at = fields.DateTime(format="iso", allow_none=True, metadata=_describe(
        "When it next allows a start; null: now (or no limit)."))


class PauseListSchema(ma.Schema):
    pauses = fields.List(fields.Nested(PauseSchema), metadata=_describe(
        "Broadest first (everything, tenants, handlers, jobs), then oldest first."))


class BlockerSchema(ma.Schema):
    code = fields.String(validate=validate.OneOf(BLOCKER_CODES))
    message = fields.String(metadata=_describe("What holds the job back, for people."))
    details = fields.Dict(keys=fields.String(), metadata=_describe(
        "The figures behind it (for `paused`, the pause)."))


class HolderSchema(ma.Schema):
    runner = fields.String()
    hostname = fields.String()
    pid = fields.Integer()
    since = _moment("When its attempt started.")
    progress = fields.Float(allow_none=True)
    progress_message = fields.String(allow_none=True)


class ExplanationSchema(ma.Schema):
    job_id = fields.String()
    status = fields.String()
    checked_at = _moment("When the job was looked at.")
    blockers = fields.List(fields.Nested(BlockerSchema), metadata=_describe(
        "Every reason a pending or queued job has not started (`lease` for a processing job "
        "whose runner stopped renewing); empty when nothing holds it back."))
    held_by = fields.Nested(HolderSchema, allow_none=True, metadata=_describe(
        "A processing job: the live runner that holds it."))


class LeftBehindSchema(ma.Schema):
    job_id = fields.String()
    how = fields.String(metadata=_describe(
        "`handed back at shutdown` or `attempt recorded as lost`."))
    status = fields.String(metadata=_describe("The job's status now (`pruned`: deleted since)."))
    tenant_id = fields.String(allow_none=True)
    handler = fields.String(allow_none=True)
    now_held_by = fields.String(allow_none=True)


class RunnerSchema(ma.Schema):
    id = fields.String()
    hostname = fields.String()
    pid = fields.Integer()
    threads = fields.Integer()
    busy_threads = fields.Integer()
    handlers = fields.List(fields.String(), metadata=_describe("The handlers it runs."))
    jobs_held = fields.Integer()
    claims_per_minute = fields.Integer()
    started_at = fields.DateTime(format="iso")
    heartbeat_at = fields.DateTime(format="iso")
    stopped_at = fields.DateTime(format="iso", allow_none=True, metadata=_describe(
        "Set on a clean stop; null for a runner that stopped beating."))
    live = fields.Boolean()
    how_it_ended = fields.String(allow_none=True)
    clock_skew_seconds = fields.Float(metadata=_describe(
        "Its clock minus the database's, in seconds (0 on SQLite). The engine uses the "
        "database's time; over 1 s, fix the machine's clock."))
    left_behind = fields.List(fields.Nested(LeftBehindSchema), metadata=_describe(
        "A stopped runner: the jobs it held at the end, and what became of each."))


class RunnersSchema(ma.Schema):
    live = fields.List(fields.Nested(RunnerSchema))
    stopped = fields.List(fields.Nested(RunnerSchema), metadata=_describe(
        "Runners that stopped in the last day, newest first."))
