"""Field errors as a client reads them: the names it sent (``jobs[2].delay_seconds``, not the
engine's ``job_specs[2].delay``), and messages that say what to send instead of marshmallow's
stock texts."""
from __future__ import annotations

from typing import Any

from werkzeug.exceptions import HTTPException

_FIELD_RENAMES = {"delay": "delay_seconds", "job_specs": "jobs", "start_date": "start",
                  "end_date": "end", "job_type": "type"}


def api_field(field: str) -> str:
    """``job_specs[2].delay`` → ``jobs[2].delay_seconds``, ``on_complete.delay`` →
    ``on_complete.delay_seconds``: what the client sent."""
    head, sep, rest = field.partition("[")
    if sep:
        index, _, tail = rest.partition("]")
        tail = tail.lstrip(".")
        return f"{_FIELD_RENAMES.get(head, head)}[{index}]" + (f".{api_field(tail)}" if tail
                                                               else "")
    head, dot, tail = field.partition(".")
    return _FIELD_RENAMES.get(head, head) + (f".{api_field(tail)}" if dot else "")


def _flatten(messages: Any, path: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested messages → ``[("jobs[0].handler", "…"), …]``."""
    if isinstance(messages, dict):
        found = []
        for key, value in messages.items():
            if key == "_schema":
                name = path or "body"
            elif isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                name = f"{path}[{key}]"
            else:
                name = f"{path}.{key}" if path else str(key)
            found += _flatten(value, name)
        return found
    if isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            return [(path or "body", " ".join(messages))]
        return [item for m in messages for item in _flatten(m, path)]
    return [(path or "body", str(messages))]


_MOMENT = "must be an ISO 8601 date-time with an offset, e.g. 2026-12-01T09:00:00Z"
_STOCK_MESSAGES = {
    "Missing data for required field.": "is required",
    "Field may not be null.": "may not be null: leave it out instead",
    "Not a valid integer.": "must be a whole number (a JSON number, not a string)",
    "Not a valid number.": "must be a number (a JSON number, not a string)",
    "Not a valid string.": "must be a string",
    "Not a valid mapping type.": "must be a JSON object",
    "Not a valid list.": "must be a JSON array",
    "Not a valid boolean.": "must be true or false",
    "Not a valid datetime.": _MOMENT,
    "Not a valid aware datetime.": _MOMENT,
    "Invalid input type.": "the body must be a JSON object",
}


def _clearer(message: str, field: str, schema, location: str) -> str:
    """marshmallow's stock messages, made to say what to do."""
    if message == "Unknown field.":
        top_level = "." not in field and "[" not in field
        known = sorted(getattr(schema, "fields", {}) or []) if top_level else []
        what = "query parameter" if location == "query" else "field"
        return f"unknown {what}" + (f"; the {what}s are: {', '.join(known)}" if known
                                    else "; remove it")
    clearer = _STOCK_MESSAGES.get(message, message)
    return clearer.replace(" (a JSON number, not a string)", "") if location == "query" \
        else clearer


def webargs_errors(error: HTTPException) -> list[dict[str, str]] | None:
    """The field errors webargs attached to a 422 (or 400), flattened; None when it did not."""
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if not messages:
        return None
    schema = data.get("schema")
    errors = []
    for location, by_field in messages.items() if isinstance(messages, dict) else []:
        for field, message in _flatten(by_field):
            errors.append({"field": field, "in": location,
                           "message": _clearer(message, field, schema, location)})
    return errors or None
