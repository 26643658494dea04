"""Request and response schemas of the jobs endpoints (marshmallow; the OpenAPI document is
generated from them, so what is validated and what is documented cannot drift apart).

Inputs are strict: numbers must be JSON numbers, strings JSON strings, unknown fields are
refused (a typo like ``max_retry`` would otherwise be silently ignored).
"""
from __future__ import annotations

from datetime import datetime, timezone

import marshmallow as ma
from marshmallow import fields, validate

from ..jobs.listing import JOB_ID_PATTERN, MAX_PAGE_SIZE, PAGE_SIZE, WAITING_REASONS
from ..jobs.pauses import SCOPES
from ..jobs.service import NOTIFICATION_CHANNELS
from ..jobs.types import JobPriority, JobStatus
from ..jobs.validation import DEPENDENCY_FAILURE_MODES, MAX_DEPENDENCIES, MAX_RETRIES_CEILING
from .pausing import request_pauses

PRIORITIES = [p.value for p in JobPriority]
STATUSES = [s.value for s in JobStatus]
MAX_DELAY_SECONDS = 10 * 365 * 24 * 3600      # ten years: later is a mistake, not a plan
MAX_BATCH = 1000
TENANT_ID = validate.Length(1, 64)
EARLIEST = datetime(1970, 1, 2, tzinfo=timezone.utc)
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)


NO_NUL = validate.Regexp(r"^[^\x00]*$", error="must not contain NUL characters (\\u0000)")


class Text(fields.String):
    """A string that the databases can store: PostgreSQL refuses NUL characters in text, so
    they are refused here, as a 422, rather than failing the insert."""

    def __init__(self, *args, validate=None, **kwargs):
        extra = list(validate) if isinstance(validate, (list, tuple)) else [validate] \
            if validate else []
        super().__init__(*args, validate=[NO_NUL, *extra], **kwargs)


class Number(fields.Float):
    """A JSON number only: marshmallow's Float would also take the string "1"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def supported_moment(value: datetime) -> None:
    """Years 1970–9998: beyond them the engine's date arithmetic (and the databases) fail."""
    if not EARLIEST <= value < LATEST:
        raise ma.ValidationError("must be between 1970-01-02 and 9998-12-31 (UTC)")


def _describe(text: str, **extra) -> dict:
    return {"description": text, **extra}


# -- requests ------------------------------------------------------------------------------

class JobOptionsSchema(ma.Schema):
    """What every kind of queued work may carry besides its own fields."""

    priority = Text(validate=validate.OneOf(PRIORITIES), metadata=_describe(
        "Default: the tenant's default priority."))
    scheduled_for = fields.AwareDateTime(
        format="iso", validate=supported_moment, metadata=_describe(
            "ISO 8601 with an offset (`2026-12-01T09:00:00Z`): run then, not now."))
    delay_seconds = Number(validate=validate.Range(0, MAX_DELAY_SECONDS), metadata=_describe(
        "Run this many seconds from now (instead of scheduled_for)."))
    max_retries = fields.Integer(strict=True, validate=validate.Range(0, MAX_RETRIES_CEILING),
                                 metadata=_describe("Attempts after the first (default 3)."))
    metadata = fields.Dict(keys=fields.String(), metadata=_describe(
        "Free-form JSON object kept with the job."))
    idempotency_key = Text(validate=validate.Length(1, 200), metadata=_describe(
        "Repeat a request with the same key (per tenant) to get the first job back, not a "
        "second one."))
    depends_on = fields.List(
        fields.String(validate=validate.Regexp(f"^{JOB_ID_PATTERN.pattern}$",
                                               error="is not a job id")),
        validate=validate.Length(max=MAX_DEPENDENCIES), metadata=_describe(
            "Ids of jobs of the same tenant that must complete first (each must exist). "
            "Until they have, the job waits `pending` with no `scheduled_for` "
            "(`waiting_for_dependencies`)."))
    on_dependency_failure = Text(validate=validate.OneOf(DEPENDENCY_FAILURE_MODES),
                                 metadata=_describe(
        "When a job it depends on fails for good or is cancelled: `cancel` this one too "
        "(default), or `run` it anyway once all of them have ended."))


class JobSpecSchema(JobOptionsSchema):
    """One job, as in a batch."""

    type = Text(required=True, validate=validate.Length(1, 64), metadata=_describe(
        "Job type: notification, immediate, delayed, scheduled, recurring, maintenance, "
        "cleanup, data_sync, file_processing, or a custom type the tenant allows."))
    handler = Text(required=True, validate=validate.Length(1, 100),
                            metadata=_describe("A registered handler's name."))
    payload = fields.Dict(keys=fields.String(), metadata=_describe(
        "The handler's input (a JSON object; default {})."))
    cron_schedule = Text(validate=validate.Length(1, 200), metadata=_describe(
        "Five-field cron expression: the job recurs, `pending` until each run."))
    timezone = Text(validate=validate.Length(1, 64), metadata=_describe(
        "IANA time zone the cron expression is read in (default UTC)."))


class JobCreateSchema(JobSpecSchema):
    tenant_id = Text(validate=TENANT_ID, metadata=_describe(
        "Required with an all-tenant token; a tenant token implies its tenant."))


_CALLBACK = ("A job spec run once when every job of the batch has ended{when}, with "
             "`payload.batch` set to the batch's id and counts (`total`, `completed`, `failed`, "
             "`cancelled`). `delay_seconds` counts from the batch's end; `scheduled_for`, "
             "`cron_schedule` and `idempotency_key` are refused, as are recurring `jobs` in a "
             "batch with callbacks. Checked and counted against the tenant's limits with the "
             "batch.")


class BatchCreateSchema(ma.Schema):
    jobs = fields.List(fields.Nested(JobSpecSchema), required=True,
                       validate=validate.Length(1, MAX_BATCH),
                       metadata=_describe("All are stored, or none (one refusal rejects all)."))
    tenant_id = Text(validate=TENANT_ID)
    priority = Text(validate=validate.OneOf(PRIORITIES),
                             metadata=_describe("For specs that do not give one."))
    on_complete = fields.Nested(JobSpecSchema, metadata=_describe(_CALLBACK.format(when="")))
    on_success = fields.Nested(JobSpecSchema, metadata=_describe(_CALLBACK.format(
        when=", only if all completed")))


class ChainCreateSchema(BatchCreateSchema):
    jobs = fields.List(fields.Nested(JobSpecSchema), required=True,
                       validate=validate.Length(1, MAX_BATCH), metadata=_describe(
        "In order: each waits for the one before it to complete (and for its own "
        "`depends_on`). All are stored, or none."))


class NotificationCreateSchema(JobOptionsSchema):
    type = Text(required=True, validate=validate.OneOf(list(NOTIFICATION_CHANNELS)),
                         metadata=_describe("The channel."))
    recipient = Text(required=True, validate=validate.Length(1, 2048), metadata=_describe(
        "An email address, phone number, device token, or (webhook) the URL."))
    subject = Text(validate=validate.Length(max=1000))
    body = fields.Raw(metadata=_describe("Text; for a webhook, the JSON to post."))
    html = Text(metadata=_describe("email: an HTML body."))
    reply_to = Text(validate=validate.Length(1, 320), metadata=_describe("email"))
    variables = fields.Dict(keys=fields.String(), metadata=_describe(
        "email: values for the subject and body templates."))
    headers = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata=_describe("webhook: extra request headers."))
    data = fields.Dict(keys=fields.String(), metadata=_describe("push: extra data."))
    message_id = Text(validate=validate.Length(1, 200), metadata=_describe(
        "Names the message: it is never delivered twice (default: the job id)."))
    tenant_id = Text(validate=TENANT_ID)


class JobListQuerySchema(ma.Schema):
    status = Text(validate=validate.OneOf(STATUSES))
    waiting = Text(validate=validate.OneOf(WAITING_REASONS), metadata=_describe(
        "`dependencies`: only jobs waiting for the jobs they depend on (pending ones)."))
    type = Text(validate=validate.Length(1, 64))
    handler = Text(validate=validate.Length(1, 100))
    tenant_id = Text(validate=TENANT_ID, metadata=_describe(
        "All-tenant tokens: one tenant's jobs. A tenant token sees only its own."))
    cursor = fields.String(validate=validate.Regexp(
        f"^{JOB_ID_PATTERN.pattern}$", error="is not a cursor from a previous page "
                                             "(next_cursor); start without one"),
        metadata=_describe("`next_cursor` of the previous page."))
    limit = fields.Integer(load_default=PAGE_SIZE, validate=validate.Range(1, MAX_PAGE_SIZE),
                           metadata=_describe(f"Jobs per page, 1–{MAX_PAGE_SIZE} "
                                              f"(default {PAGE_SIZE})."))


ATTEMPTS_PAGE, MAX_ATTEMPTS_PAGE = 10, 50   # an attempt carries up to its cap of lines


class AttemptListQuerySchema(ma.Schema):
    limit = fields.Integer(load_default=ATTEMPTS_PAGE,
                           validate=validate.Range(1, MAX_ATTEMPTS_PAGE),
                           metadata=_describe(f"Attempts per page, 1–{MAX_ATTEMPTS_PAGE} "
                                              f"(default {ATTEMPTS_PAGE}), with their lines."))
    before = fields.Integer(validate=validate.Range(1, 2**31 - 1), metadata=_describe(
        "Only attempts numbered below this: `next_before` of the previous page."))


# -- responses -----------------------------------------------------------------------------

class ResultSchema(ma.Schema):
    success = fields.Boolean()
    executed_at = fields.DateTime(format="iso")
    execution_time_ms = fields.Method("_execution_ms", metadata={"type": "number"})
    result = fields.Dict(allow_none=True)
    error_message = fields.String(allow_none=True)
    error_type = fields.String(allow_none=True)
    metadata = fields.Dict(allow_none=True)

    def _execution_ms(self, result) -> float:
        return round(result.execution_time.total_seconds() * 1000, 3)


class PauseSchema(ma.Schema):
    """A pause in force (``console/jobs/pauses.py``): what it holds, why, who, since when."""

    scope = fields.String(validate=validate.OneOf(SCOPES), metadata=_describe(
        "`all` (maintenance: everything), `tenant`, `handler` or `job`."))
    tenant_id = fields.String(allow_none=True, metadata=_describe(
        "The tenant paused, or the job's tenant; for a handler, null means every tenant."))
    handler = fields.String(allow_none=True)
    job_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    paused_by = fields.String(allow_none=True, metadata=_describe(
        "A console user's name, or the prefix of the API token that paused it."))
    paused_at = fields.DateTime(format="iso")
    what = fields.Function(lambda pause: pause.describe(), metadata=_describe(
        "What is paused, for people: `tenant acme`, `handler email for every tenant` …",
        type="string"))


class _OwnPause(fields.Nested):
    """A job's own pause, or null: looked up in the pauses the request read once, so a list
    of jobs costs one read of them."""

    def get_value(self, obj, attr, accessor=None, default=ma.missing):
        return request_pauses().of("job", job_id=obj.id)


class JobSchema(ma.Schema):
    """A job as stored: every ``SystemJob`` field, and its own pause. Times are ISO 8601 in
    UTC."""

    id = fields.String()
    type = fields.String()
    handler = fields.String()
    payload = fields.Dict()
    priority = fields.Enum(JobPriority, by_value=True)
    status = fields.Enum(JobStatus, by_value=True)
    paused = _OwnPause(PauseSchema, allow_none=True, metadata=_describe(
        "The job's own pause (it stays pending until resumed), or null. Pauses of its tenant "
        "or handler are listed by GET /pauses and named by GET /jobs/{job_id}/explain."))
    tenant_id = fields.String()
    scheduled_for = fields.DateTime(format="iso", allow_none=True)
    cron_schedule = fields.String(allow_none=True)
    timezone = fields.String()
    max_retries = fields.Integer()
    current_retries = fields.Integer()
    total_attempts = fields.Integer()
    last_attempt = fields.DateTime(format="iso", allow_none=True)
    completed_at = fields.DateTime(format="iso", allow_none=True)
    last_result = fields.Nested(ResultSchema, allow_none=True)
    metadata = fields.Dict()
    created_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")
    idempotency_key = fields.String(allow_none=True)
    progress = fields.Float(allow_none=True)
    progress_message = fields.String(allow_none=True)
    lease_owner = fields.String(allow_none=True)
    lease_expires_at = fields.DateTime(format="iso", allow_none=True)
    batch_id = fields.String(allow_none=True, metadata=_describe(
        "The batch it was queued in (GET /batches/{batch_id}); null for a single job."))
    depends_on = fields.List(fields.String(), metadata=_describe(
        "Ids of the jobs (same tenant) it waits for before it may start."))
    on_dependency_failure = fields.String(metadata=_describe(
        "When a job it depends on fails for good or is cancelled: `cancel` this one too, "
        "or `run` it anyway."))
    waiting_for_dependencies = fields.Boolean(metadata=_describe(
        "Pending until the jobs it depends on allow it to start (GET /jobs/{job_id}/explain "
        "names the unfinished ones)."))
    not_before = fields.DateTime(format="iso", allow_none=True, metadata=_describe(
        "While it waits for its dependencies: the time it asked for (it starts then, or when "
        "they allow, whichever is later)."))
    can_retry = fields.Boolean(metadata=_describe(
        "Whether a failed attempt would be followed by another."))
    is_recurring = fields.Boolean()
    is_finished = fields.Boolean()

    class Meta:
        ordered = True


class JobListSchema(ma.Schema):
    jobs = fields.List(fields.Nested(JobSchema), metadata=_describe("Newest first."))
    next_cursor = fields.String(allow_none=True, metadata=_describe(
        "Pass as `cursor` for the next page; null on the last page."))
    searched = fields.Integer(allow_none=True, metadata=_describe(
        "Set when filters other than status and tenant_id were checked within a bounded "
        "window of this many jobs before the page filled: the next cursor continues after it."))


class AttemptLineSchema(ma.Schema):
    logged_at = fields.DateTime(format="iso")
    level = fields.String(metadata=_describe("`DEBUG`, `INFO`, `WARNING`, `ERROR` or "
                                             "`CRITICAL` (logging's level name)."))
    logger = fields.String(allow_none=True, metadata=_describe(
        "The logger it came from: `jobs.handler.<handler>` for the handler's own "
        "(`context.logger`), a library's name for its lines; null for the runner's notes."))
    message = fields.String()
    traceback = fields.String(allow_none=True, metadata=_describe(
        "The exception's traceback, for a failure (and a line logged with one)."))

    class Meta:
        ordered = True


class AttemptSchema(ma.Schema):
    attempt = fields.Integer(metadata=_describe("Its number over the job's whole life."))
    running = fields.Boolean(metadata=_describe(
        "Still running: its lines so far; `finished_at`, `duration_ms` and `success` are null "
        "until it ends."))
    started_at = fields.DateTime(format="iso", allow_none=True)
    finished_at = fields.DateTime(format="iso", allow_none=True)
    duration_ms = fields.Float(allow_none=True)
    success = fields.Boolean(allow_none=True)
    error_type = fields.String(allow_none=True)
    error_message = fields.String(allow_none=True)
    worker = fields.String(allow_none=True, metadata=_describe("The runner that ran it."))
    lines = fields.List(fields.Nested(AttemptLineSchema), metadata=_describe(
        "What it logged, in order: at most JOBS_ATTEMPT_LOG_LINES lines, then one saying how "
        "many were not kept; a failure's exception is kept whatever the cap."))

    class Meta:
        ordered = True


class AttemptListSchema(ma.Schema):
    job_id = fields.String()
    attempts = fields.List(fields.Nested(AttemptSchema), metadata=_describe(
        "Newest first; a running attempt first of all."))
    next_before = fields.Integer(allow_none=True, metadata=_describe(
        "Pass as `before` for older attempts; null when there are none."))


class BatchSchema(ma.Schema):
    jobs = fields.List(fields.Nested(JobSchema))
    batch_id = fields.String(allow_none=True, metadata=_describe(
        "The batch these jobs were queued in (GET /batches/{batch_id}). A request repeated with "
        "the same idempotency keys returns the first request's jobs and batch."))


class BatchStatusSchema(ma.Schema):
    """A batch: its jobs' counts as they end, and the callbacks its end queued."""

    id = fields.String()
    tenant_id = fields.String()
    total = fields.Integer(metadata=_describe(
        "Its one-off jobs (a recurring job carries the batch id but never ends by itself)."))
    completed = fields.Integer()
    failed = fields.Integer()
    cancelled = fields.Integer()
    ended = fields.Integer(metadata=_describe("completed + failed + cancelled."))
    is_finished = fields.Boolean(metadata=_describe(
        "Every job has ended. Retrying one of its failed or cancelled jobs makes it unfinished "
        "again (its callbacks do not run again)."))
    has_on_complete = fields.Function(lambda batch: batch.on_complete is not None,
                                      metadata=_describe("Queued with an on_complete callback.",
                                                         type="boolean"))
    has_on_success = fields.Function(lambda batch: batch.on_success is not None,
                                     metadata=_describe("Queued with an on_success callback.",
                                                        type="boolean"))
    callback_job_ids = fields.List(fields.String(), metadata=_describe(
        "The callback jobs queued when the batch finished (GET /jobs/{job_id}); empty before, "
        "and for a batch without callbacks. on_success is not queued when a job failed or "
        "was cancelled."))
    created_at = fields.DateTime(format="iso")
    finished_at = fields.DateTime(format="iso", allow_none=True)

    class Meta:
        ordered = True
