"""Answers the New job form asks for while the operator types: the next run times of a cron
expression, and whether a payload would be accepted. Both use the engine's own validation
(``console.jobs.cron``, ``prepare_job``), so the preview never disagrees with the submit."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from croniter import croniter

from ...jobs import JobValidationError
from ...jobs.cron import CronNeverFiresError, next_fire_times, parse_timezone, validate_cron
from ...jobs.handlers import HandlerRegistry
from ...jobs.validation import prepare_job

UTC = timezone.utc
CRON_EXAMPLE = "expected 5 fields like '*/15 * * * *' (minute hour day-of-month month day-of-week)"
_CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"),
                ("month", "1-12 or jan-dec"), ("day-of-week", "0-6 or sun-sat"))


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """Every IANA zone name, for the time zone inputs' suggestion list."""
    return tuple(sorted(available_timezones() - {"localtime", "Factory"}))


@dataclass(frozen=True)
class FireTime:
    local: datetime    # in the job's time zone
    utc: datetime


@dataclass(frozen=True)
class CronPreview:
    expression: str
    timezone: str
    times: list[FireTime]
    errors: dict[str, str]     # field name ("cron_schedule", "timezone") → message


def explain_cron_error(expression: str) -> str:
    """Say which field of a bad expression is wrong: '61' as minute is out of 0-59."""
    parts = " ".join((expression or "").split()).split(" ")
    if not expression or not expression.strip():
        return f"cron expression: is empty — {CRON_EXAMPLE}"
    if len(parts) not in (5, 6):
        return (f"cron expression: {expression.strip()!r} has {len(parts)} field"
                f"{'s' if len(parts) != 1 else ''} — {CRON_EXAMPLE}")
    for index, (name, allowed) in enumerate(_CRON_FIELDS):
        probe = ["*"] * 5
        probe[index] = parts[index]
        if not croniter.is_valid(" ".join(probe)):
            return (f"cron expression: {parts[index]!r} is not a valid {name} (allowed: "
                    f"{allowed}, *, lists, ranges, steps) — {CRON_EXAMPLE}")
    return f"cron expression: {expression.strip()!r} is not valid — {CRON_EXAMPLE}"


def cron_preview(expression: str, tz_name: str, now: datetime | None = None,
                 count: int = 5) -> CronPreview:
    """The next ``count`` run times, in the chosen zone and UTC, or what is wrong."""
    now = now or datetime.now(UTC)
    expression = " ".join((expression or "").split())
    tz_name = (tz_name or "").strip() or "UTC"
    errors: dict[str, str] = {}
    try:
        zone = parse_timezone(tz_name)
    except JobValidationError as exc:
        errors["timezone"] = exc.message
        zone = None
    try:
        validate_cron(expression)
    except CronNeverFiresError as exc:     # e.g. '0 0 31 2 *': valid fields, no such date
        errors["cron_schedule"] = _never_fires(exc)
    except JobValidationError:
        errors["cron_schedule"] = explain_cron_error(expression)
    if errors:
        return CronPreview(expression, tz_name, [], errors)
    try:
        times = next_fire_times(expression, tz_name, now, count)
    except JobValidationError as exc:      # never fires after ``now``, or cannot be read
        return CronPreview(expression, tz_name, [], {"cron_schedule": _never_fires(exc)})
    return CronPreview(expression, tz_name,
                       [FireTime(t.astimezone(zone), t) for t in times], {})


def _never_fires(exc: JobValidationError) -> str:
    return f"cron expression: {exc.message.split(': ', 1)[-1]}"


def json_object_error(text: str, field: str) -> str | None:
    """None if ``text`` is a JSON object, else the message to show next to the field."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{field}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return f"{field}: nested too deeply"
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "true/false", type(None): "null",
                int: "a number", float: "a number"}.get(type(value), type(value).__name__)
        return f"{field} must be a JSON object like {{\"key\": \"value\"}}, not {kind}"
    return None


def parse_json_text(text: str, field: str) -> Any:
    """JSON text → value, or ``JobValidationError`` with the message ``json_object_error`` gives."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobValidationError(field, f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                        f"column {exc.colno}") from None
    except RecursionError:
        raise JobValidationError(field, "nested too deeply") from None


def check_payload(registry: HandlerRegistry, text: str, handler: str | None,
                  job_type: str | None, max_size: int | None = None,
                  tenant_label: str = "the tenant") -> tuple[str | None, int | None]:
    """(error message or None, payload size in bytes) for the payload field as typed.

    Runs the engine's own checks (JSON object, the handler's JSON schema and validator) when a
    handler is chosen; other fields' problems are left for the submit to report.
    """
    error = json_object_error(text, "payload")
    if error:
        return error, None
    payload = json.loads(text)
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if max_size is not None and size > max_size:
        return (f"payload: {size:,} bytes; {tenant_label} allows at most {max_size:,} bytes per "
                "job"), size
    if handler and registry.get(handler) is not None:
        try:
            prepare_job(registry, job_type=job_type or "immediate", handler=handler,
                        payload=payload, tenant_id="preview", now=datetime.now(UTC),
                        job_id="preview")
        except JobValidationError as exc:
            if exc.field.startswith("payload"):
                return exc.message, size
    return None, size
