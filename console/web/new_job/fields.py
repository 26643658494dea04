"""Form fields and checks the New job forms share: selects that say what they accept, bounded
whole numbers, JSON-object text, a local date-time read in a chosen time zone, and the two
checks the notification form's inline validation also uses."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from wtforms import IntegerField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import StopValidation

from ...jobs import JobValidationError
from ...jobs.cron import parse_timezone
from ...jobs.handlers import HandlerRegistry, system_handler_message
from .previews import json_object_error, parse_json_text

UTC = timezone.utc
MAX_AHEAD = timedelta(days=3660)
_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")
# Keys a notification's extra payload may not use: queue_notification takes them as arguments.
RESERVED_NOTIFICATION_KEYS = {"type", "channel", "recipient", "tenant_id", "subject", "body",
                              "priority", "idempotency_key", "scheduled_for", "delay",
                              "max_retries", "metadata", "timezone", "actor", "depends_on",
                              "on_dependency_failure"}


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs, or bare values, as WTForms' options."""
    return [SelectChoice(*pair) if isinstance(pair, tuple) else SelectChoice(pair)
            for pair in pairs]


def choice_values(field) -> list[str]:
    return [choice.value for choice in field.choices or []]


class ChoiceField(SelectField):
    """A select whose refusal says what was sent and what is allowed."""

    def pre_validate(self, form):
        values = choice_values(self)
        if not self.data and "" not in values:
            raise StopValidation(f"{self.name}: is required; choose one")
        if (self.data or "") not in values:
            allowed = ", ".join(repr(v) for v in values if v) or "none yet"
            raise StopValidation(f"{self.name}: {self.data!r} is not one of the choices "
                                 f"({allowed})")


class HandlerField(ChoiceField):
    """The registered handlers that run this kind of job."""

    registry: HandlerRegistry | None = None

    def pre_validate(self, form):
        if self.data in choice_values(self):
            return
        registry = self.registry
        if registry is not None and not registry.allows(registry.get(self.data),
                                                        form.tenant_id.data):
            raise StopValidation(f"handler: {system_handler_message(self.data)}")
        if registry is not None and self.data in registry:
            raise StopValidation(f"handler: {self.data!r} does not run {form.kind} jobs; choose "
                                 f"one of {', '.join(choice_values(self))}")
        known = ", ".join(registry.names()) if registry is not None else ""
        raise StopValidation(f"handler: unknown handler {self.data!r}; registered: "
                             f"{known or 'none'}")


class WholeNumberField(IntegerField):
    """An integer within bounds, with the engine's wording when it is not."""

    def __init__(self, label=None, validators=None, minimum: int = 0, maximum: int = 100,
                 **kwargs):
        super().__init__(label, validators, **kwargs)
        self.minimum, self.maximum = minimum, maximum

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        text = valuelist[0].strip()
        if not re.fullmatch(r"[0-9]{1,12}", text):
            self.data = None
            raise ValueError(f"{self.name}: must be a whole number from {self.minimum:,} to "
                             f"{self.maximum:,}, got {text!r}" if text else
                             f"{self.name}: is required (a whole number from {self.minimum:,} "
                             f"to {self.maximum:,})")
        self.data = int(text)

    def pre_validate(self, form):
        if self.process_errors or self.data is None:
            return
        if not self.minimum <= self.data <= self.maximum:
            raise StopValidation(f"{self.name}: must be a whole number from {self.minimum:,} to "
                                 f"{self.maximum:,}, got {self.data:,}")


def json_object(field_name: str, text: str) -> dict[str, Any]:
    value = parse_json_text(text, field_name)
    if not isinstance(value, dict):
        raise JobValidationError(field_name, "must be a JSON object like {\"key\": \"value\"}")
    return value


def validate_json_object(form, field):
    """A JSON-object textarea (an empty payload means {})."""
    if field.data and field.data.strip():
        error = json_object_error(field.data, field.name)
        if error:
            raise StopValidation(error)
    elif field.name == "payload":
        field.data = "{}"


def local_time_to_utc(text: str, tz_name: str, now: datetime,
                      field_name: str = "run_at") -> datetime:
    """A ``datetime-local`` value read as wall-clock time in ``tz_name`` → UTC, refusing times
    that do not exist there (the hour skipped in spring), the past, and the far future."""
    zone = parse_timezone(tz_name)
    text = (text or "").strip()
    for layout in _LOCAL_FORMATS:
        try:
            naive = datetime.strptime(text, layout)
            break
        except ValueError:
            continue
    else:
        raise JobValidationError(field_name, f"{text!r} is not a date and time like "
                                             "2026-06-01T09:30" if text else
                                             "is required: the date and time to run at")
    local = naive.replace(tzinfo=zone)
    try:
        utc = local.astimezone(UTC)
    except OverflowError:
        raise JobValidationError(field_name, "is out of range") from None
    if utc.astimezone(zone).replace(tzinfo=None) != naive:
        raise JobValidationError(field_name, f"{naive:%Y-%m-%d %H:%M} does not exist in "
                                             f"{tz_name} (the clocks skip it); pick another time")
    if utc <= now:
        raise JobValidationError(field_name, f"{naive:%Y-%m-%d %H:%M} {tz_name} is in the past "
                                             f"(now: {now.astimezone(zone):%Y-%m-%d %H:%M}); "
                                             "choose a later time")
    if utc - now > MAX_AHEAD:
        raise JobValidationError(field_name, "is more than ten years ahead")
    return utc


def webhook_body_error(text: str) -> str | None:
    """A webhook posts its body as JSON (any JSON value): None, or what is wrong with it."""
    if not (text or "").strip():
        return None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return (f"body: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                "(a webhook posts JSON)")
    except RecursionError:
        return "body: nested too deeply"
    return None


def notification_extras_error(text: str) -> str | None:
    """The notification form's extra payload fields: a JSON object without the keys that have
    their own field (or are queue options)."""
    error = json_object_error(text or "{}", "payload")
    if error:
        return error
    clash = sorted(RESERVED_NOTIFICATION_KEYS & set(json.loads(text or "{}")))
    if clash:
        return (f"payload: {clash[0]!r} has its own field on this form (or is an option); "
                "remove it from the extra fields")
    return None
