"""The New job forms, one per kind, and how each turns into a ``JobService`` verb.

What the engine distinguishes (console/jobs/service.py, ``JobType``):

- immediate — ``queue_job`` now (other run-now types too: maintenance, cleanup, data_sync …);
- delayed — ``queue_delayed_job`` after a delay, or ``queue_job("delayed", scheduled_for=…)``;
- scheduled — a *named* job: ``queue_scheduled_job(name, cron, …)`` (runs at every cron time,
  the first being the next one; the name goes into the payload and metadata), or once at a
  date-time (a ``scheduled`` job with ``scheduled_for`` and no cron, as a batch spec may give:
  ``type: scheduled, scheduledFor: …``);
- recurring — ``queue_job("recurring", cron_schedule=…)``: a plain job repeated on a cron;
- notification — ``queue_notification(channel, recipient, …)``: the channel picks the handler.

Messages name the field the way the engine does ("payload: …"), so engine errors and form
errors read alike, and each is shown next to its field.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import StopValidation, ValidationError

from ...jobs import JobPriority, JobType, JobValidationError, SystemJob, TenantConfig
from ...jobs.cron import parse_timezone
from ...jobs.handlers import HandlerRegistry
from ...jobs.service import NOTIFICATION_CHANNELS
from ...jobs.validation import check_dependencies
from ..audit.actor import console_actor
from .fields import (
    ChoiceField,
    HandlerField,
    WholeNumberField,
    choices,
    json_object,
    local_time_to_utc,
    notification_extras_error,
    validate_json_object,
    webhook_body_error,
)
from .previews import parse_json_text

UTC = timezone.utc
KINDS = {"immediate": "Immediate", "delayed": "Delayed", "scheduled": "Scheduled",
         "recurring": "Recurring", "notification": "Notification"}
RUN_NOW_TYPES = [JobType.IMMEDIATE.value, JobType.MAINTENANCE.value, JobType.CLEANUP.value,
                 JobType.DATA_SYNC.value, JobType.FILE_PROCESSING.value]


PRIORITY_CHOICES = [("", "Tenant's default")] + [p.value for p in JobPriority]
DELAY_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
MAX_DELAY = timedelta(days=366)


class JobForm(FlaskForm):
    """Fields every kind shares: tenant, priority, retries, payload, idempotency key, metadata."""

    kind = ""
    job_type = ""
    description = ""
    tenant_id = ChoiceField("Tenant")
    priority = ChoiceField("Priority", choices=choices(PRIORITY_CHOICES), default="")
    max_retries = WholeNumberField("Max retries", default=3, minimum=0, maximum=100)
    payload = TextAreaField("Payload (a JSON object)", default="{}",
                            validators=[validate_json_object])
    idempotency_key = StringField("Idempotency key (optional)")
    metadata = TextAreaField("Metadata (optional JSON object)", validators=[validate_json_object])
    depends_on = StringField("Runs after (optional job ids)")
    on_dependency_failure = ChoiceField(
        "If one of them fails or is cancelled",
        choices=choices([("cancel", "cancel this job too"), ("run", "run this job anyway")]),
        default="cancel")

    def __init__(self, *args, tenants: list[TenantConfig] = (), registry: HandlerRegistry,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.registry = registry
        self.general_errors: list[str] = []
        self.tenant_id.choices = tenant_choices(tenants)
        if "handler" in self._fields:
            self.handler.registry = registry
            self.handler.choices = handler_choices(registry, self.handler_types(),
                                                   self.tenant_id.data)

    def handler_types(self) -> set[str]:
        return {self.job_type}

    def validate_depends_on(self, field):
        try:
            check_dependencies(self.dependency_ids())
        except JobValidationError as exc:
            raise StopValidation(exc.message) from None

    def dependency_ids(self) -> list[str]:
        """The job ids typed or pasted, one per line or separated by commas or spaces."""
        return [part for part in re.split(r"[\s,;]+", self.depends_on.data or "") if part]

    def validate_idempotency_key(self, field):
        field.data = (field.data or "").strip() or None
        if field.data and len(field.data) > 200:
            raise ValidationError("idempotency_key: at most 200 characters")

    def common_arguments(self) -> dict[str, Any]:
        metadata = self.metadata.data
        return {"actor": console_actor(),
                "priority": self.priority.data or None, "max_retries": self.max_retries.data,
                "metadata": json_object("metadata", metadata) if metadata and metadata.strip()
                else None,
                "idempotency_key": self.idempotency_key.data or None,
                "depends_on": self.dependency_ids() or None,
                "on_dependency_failure": self.on_dependency_failure.data or "cancel"}

    def payload_object(self) -> dict[str, Any]:
        return json_object("payload", self.payload.data or "{}")

    def queue(self, service, now: datetime) -> SystemJob:
        """Queue the job with the engine verb this kind maps to."""
        raise NotImplementedError

    def add_error(self, field_name: str, message: str) -> None:
        """Put a message next to its field (engine names mapped to this form's), else on top."""
        target = self.engine_field(field_name, message)
        if target is not None:
            target.errors = [*target.errors, message]
        else:
            self.general_errors.append(message)

    _ALIASES = {"scheduled_for": "run_at", "delay": "delay_amount", "parameters": "payload",
                "cron_expression": "cron_schedule", "job_type": "type"}

    def engine_field(self, field_name: str, message: str):
        base = re.split(r"[\[.]", field_name, maxsplit=1)[0]
        base = self._ALIASES.get(base, base)
        return self._fields.get(base)

    @property
    def has_errors(self) -> bool:
        return bool(self.general_errors or any(f.errors for f in self))


def tenant_choices(tenants: list[TenantConfig]) -> list[SelectChoice]:
    return choices((t.tenant_id, f"{t.name} ({t.tenant_id}) · {t.tier.value}") for t in tenants)


def handler_choices(registry: HandlerRegistry, types: set[str],
                    tenant_id: str | None) -> list[SelectChoice]:
    """The handlers that run these job types and that ``tenant_id`` may queue: system handlers
    only for the operations tenant."""
    found = []
    for handler in registry.available_to(tenant_id):
        supported = {getattr(t, "value", t) for t in handler.supported_job_types}
        if supported & types:
            description = (handler.description or "").strip()
            if len(description) > 70:
                description = description[:69] + "…"
            found.append((handler.handler_name, f"{handler.handler_name} — {description}"
                          if description else handler.handler_name))
    return choices(found)


class ImmediateForm(JobForm):
    kind = job_type = "immediate"
    description = ("Runs as soon as a runner has a free slot for the tenant. Other run-now types "
                   "(maintenance, cleanup, data_sync, file_processing) are chosen here too.")
    type = ChoiceField("Job type", choices=choices(RUN_NOW_TYPES), default="immediate")
    handler = HandlerField("Handler")

    def handler_types(self):
        return set(RUN_NOW_TYPES)

    def queue(self, service, now):
        return service.queue_job(self.type.data, self.handler.data, self.payload_object(),
                                 self.tenant_id.data, **self.common_arguments())


class _TimedForm(JobForm):
    """Fields for a time zone and a local date-time (delayed 'at', scheduled 'once')."""

    run_at = StringField("Run at")
    timezone = StringField("Time zone", default="UTC")

    def zone_name(self) -> str:
        name = (self.timezone.data or "").strip() or "UTC"
        parse_timezone(name)
        return name


class DelayedForm(_TimedForm):
    kind = job_type = "delayed"
    description = "Runs once: after a delay, or at a date and time."
    handler = HandlerField("Handler")
    when = RadioField("Run", choices=choices([("delay", "after a delay"),
                                        ("at", "at a date and time")]),
                      default="delay", validate_choice=False)
    delay_amount = WholeNumberField("Delay", default=5, minimum=0, maximum=10**9)
    delay_unit = ChoiceField("Unit", choices=choices(DELAY_UNITS), default="minutes")

    def queue(self, service, now):
        common = self.common_arguments()
        if self.when.data == "at":
            when = local_time_to_utc(self.run_at.data, self.zone_name(), now)
            return service.queue_job(self.job_type, self.handler.data, self.payload_object(),
                                     self.tenant_id.data, scheduled_for=when, **common)
        if self.delay_amount.data is None:
            raise JobValidationError("delay_amount", "is required (a whole number)")
        seconds = self.delay_amount.data * DELAY_UNITS[self.delay_unit.data]
        if seconds > MAX_DELAY.total_seconds():   # checked before timedelta() can overflow
            raise JobValidationError("delay_amount", "is more than 366 days; for later runs "
                                                     "choose a date and time")
        delay = timedelta(seconds=seconds)
        return service.queue_delayed_job(self.handler.data, self.payload_object(), delay,
                                         self.tenant_id.data, **common)


class RecurringForm(_TimedForm):
    kind = job_type = "recurring"
    description = ("Repeats at every time of a cron expression, read in the time zone you choose, "
                   "until it is cancelled.")
    handler = HandlerField("Handler")
    cron_schedule = StringField("Cron expression", default="0 9 * * 1-5")

    def queue(self, service, now):
        return service.queue_job(self.job_type, self.handler.data, self.payload_object(),
                                 self.tenant_id.data, cron_schedule=self.cron_schedule.data,
                                 timezone=self.zone_name(), **self.common_arguments())


class ScheduledForm(_TimedForm):
    kind = job_type = "scheduled"
    description = ("A named job: at every time of a cron expression, starting with the next "
                   "one, or once at a date and time.")
    name = StringField("Name")
    handler = HandlerField("Handler")
    when = RadioField("Run", choices=choices([("cron", "at every time of a cron expression"),
                                              ("once", "once, at a date and time")]),
                      default="cron", validate_choice=False)
    cron_schedule = StringField("Cron expression", default="0 9 * * *")

    def validate_name(self, field):
        field.data = (field.data or "").strip()
        if not field.data:
            raise StopValidation("name: is required: what operators will see, e.g. "
                                 "'Daily report'")
        if len(field.data) > 200:
            raise StopValidation("name: at most 200 characters")

    def queue(self, service, now):
        common = self.common_arguments()
        name, payload = self.name.data, self.payload_object()
        if self.when.data == "once":
            # Named like queue_scheduled_job's jobs, so handlers read payload["name"] alike.
            when = local_time_to_utc(self.run_at.data, self.zone_name(), now)
            common["metadata"] = {"name": name, **(common["metadata"] or {})}
            return service.queue_job(self.job_type, self.handler.data, {"name": name, **payload},
                                     self.tenant_id.data, scheduled_for=when,
                                     timezone=self.zone_name(), **common)
        return service.queue_scheduled_job(name, self.cron_schedule.data, self.handler.data,
                                           payload, self.tenant_id.data,
                                           timezone=self.zone_name(), **common)


class NotificationForm(JobForm):
    kind = job_type = "notification"
    description = ("Sends an email, text message, push notification or webhook; the channel "
                   "picks the handler.")
    channel = ChoiceField("Channel", choices=choices(NOTIFICATION_CHANNELS),
                          default="email")
    recipient = StringField("Recipient")
    subject = StringField("Subject")
    body = TextAreaField("Body")
    payload = TextAreaField("Extra payload fields (optional JSON object)", default="{}",
                            validators=[validate_json_object])

    def validate_body(self, field):
        error = webhook_body_error(field.data) if self.channel.data == "webhook" else None
        if error:
            raise StopValidation(error)

    def validate_payload(self, field):
        error = notification_extras_error(field.data)
        if error:
            raise StopValidation(error)

    @property
    def handler_name(self) -> str:
        return NOTIFICATION_CHANNELS.get(self.channel.data or "", "")

    def queue(self, service, now):
        channel = self.channel.data
        body: Any = self.body.data if self.body.data and self.body.data.strip() else None
        if channel == "webhook" and body is not None:
            body = parse_json_text(body, "body")
        subject = (self.subject.data or "").strip() or None
        return service.queue_notification(channel, (self.recipient.data or "").strip(),
                                          self.tenant_id.data, subject=subject, body=body,
                                          **self.common_arguments(), **self.payload_object())

    _HANDLER_FIELDS = ("recipient", "body", "subject")

    def engine_field(self, field_name, message):
        if field_name == "type":
            return self.channel
        if field_name == "payload":
            # A channel handler's refusal ("rejected by handler 'x': recipient … must be …")
            # is about the field it names first.
            reason = message.split("': ", 1)[1] if "': " in message else ""
            first = re.match(r"[a-z_]+", reason)
            named = first.group(0) if first else ""
            if named == "html":
                return self.body
            if named in self._HANDLER_FIELDS and named in self._fields:
                return self._fields[named]
        return super().engine_field(field_name, message)


FORMS: dict[str, type[JobForm]] = {"immediate": ImmediateForm, "delayed": DelayedForm,
                                   "scheduled": ScheduledForm, "recurring": RecurringForm,
                                   "notification": NotificationForm}


class BatchForm(FlaskForm):
    """A JSON or CSV file of job specs, queued all or nothing for one tenant."""

    tenant_id = ChoiceField("Tenant")
    priority = ChoiceField("Priority for rows without one", choices=choices(PRIORITY_CHOICES),
                            default="")
    file = FileField("File (JSON or CSV)")

    def __init__(self, *args, tenants: list[TenantConfig] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.general_errors: list[str] = []
        self.tenant_id.choices = tenant_choices(tenants)

    def validate_file(self, field):
        if not field.data or not getattr(field.data, "filename", None):
            raise StopValidation("file: choose a .json or .csv file to upload")
