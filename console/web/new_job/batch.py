"""Batch upload: a JSON or CSV file turned into ``queue_batch_jobs`` specs, and the engine's
``job_specs[13].priority`` errors turned back into "row 14, field priority" for the operator.

JSON: a list of specs, or ``{"jobs": [...]}`` (which may also hold the batch's ``on_complete``
and ``on_success`` callbacks, specs of the same shape). CSV: a header row whose columns are
named like ``queue_job``'s arguments; empty cells are left out, ``payload`` and ``metadata``
hold JSON text, ``depends_on`` job ids separated by spaces, commas or semicolons.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from ...jobs import JobValidationError, TenantLimitException

MAX_BATCH_ROWS = 10_000
CSV_COLUMNS = ("type", "handler", "payload", "priority", "scheduled_for", "delay",
               "cron_schedule", "timezone", "max_retries", "idempotency_key", "metadata",
               "depends_on", "on_dependency_failure")
_JSON_COLUMNS = ("payload", "metadata")
_SPEC_FIELD = re.compile(r"^job_specs\[(\d+)\](?:\.(.+))?$")
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


class BatchFileError(ValueError):
    """The file cannot become job specs; ``str()`` names the row and field."""


CALLBACK_KEYS = ("on_complete", "on_success")


@dataclass(frozen=True)
class BatchFile:
    specs: list[dict[str, Any]]
    format: str                     # "JSON" or "CSV"
    lines: list[int] | None = None  # CSV: the file line of each row, for messages
    callbacks: dict[str, Any] | None = None   # JSON: on_complete / on_success, as given


def read_batch_file(filename: str, data: bytes, max_rows: int = MAX_BATCH_ROWS) -> BatchFile:
    """Parse an uploaded file into specs, or raise ``BatchFileError`` saying where it is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchFileError(f"file: not UTF-8 text (byte {exc.start + 1}); save it as UTF-8"
                             ) from None
    if not text.strip():
        raise BatchFileError("file: is empty; it needs a JSON list of jobs or a CSV header row "
                             "and one row per job")
    name = (filename or "").lower()
    looks_json = text.lstrip()[:1] in ("[", "{")
    if name.endswith(".json") or (not name.endswith(".csv") and looks_json):
        return _json_batch(text, max_rows)
    specs, lines = _csv_specs(text, max_rows)
    return BatchFile(specs, "CSV", lines)


def _too_many(count: int, max_rows: int) -> BatchFileError:
    return BatchFileError(f"file: has {count:,}+ jobs; at most {max_rows:,} per upload — split "
                          "it into several files")


def _json_batch(text: str, max_rows: int) -> BatchFile:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchFileError(f"file: not valid JSON: {exc.msg} at line {exc.lineno} column "
                             f"{exc.colno}") from None
    except RecursionError:
        raise BatchFileError("file: JSON nested too deeply") from None
    callbacks = None
    if isinstance(document, dict) and "jobs" in document and set(document) <= {
            "jobs", *CALLBACK_KEYS}:
        callbacks = {key: document[key] for key in CALLBACK_KEYS if key in document}
        document = document["jobs"]
    return BatchFile(_json_specs(document, max_rows), "JSON", callbacks=callbacks)


def _json_specs(document: Any, max_rows: int) -> list[dict[str, Any]]:
    if not isinstance(document, list):
        raise BatchFileError('file: must be a JSON list of jobs, or {"jobs": [...]} with '
                             'optional "on_complete" and "on_success" callbacks')
    if not document:
        raise BatchFileError("file: the list of jobs is empty")
    if len(document) > max_rows:
        raise _too_many(len(document), max_rows)
    for index, spec in enumerate(document):
        if not isinstance(spec, dict):
            raise BatchFileError(f"row {index + 1}: must be a JSON object with type, handler, "
                                 "payload …")
    return document


def _csv_specs(text: str, max_rows: int) -> tuple[list[dict[str, Any]], list[int]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader)]
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if unknown:
            raise BatchFileError(f"header: unknown column {unknown[0]!r}; columns are "
                                 f"{', '.join(CSV_COLUMNS)}")
        repeated = {c for c in header if header.count(c) > 1}
        if repeated:
            raise BatchFileError(f"header: column {sorted(repeated)[0]!r} appears twice")
        specs, lines = [], []
        while True:
            line = reader.line_num + 1        # where the row starts (a cell may span lines)
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue    # blank lines (a trailing newline, a spreadsheet's empty rows)
            number = len(specs) + 1
            if len(specs) == max_rows:
                raise _too_many(max_rows + 1, max_rows)
            if len(row) > len(header):
                raise BatchFileError(f"row {number} (line {line}): has {len(row)} cells but "
                                     f"the header names {len(header)} columns")
            specs.append(_csv_spec(dict(zip(header, row, strict=False)), number, line))
            lines.append(line)
    except csv.Error as exc:
        raise BatchFileError(f"file: CSV error at line {reader.line_num}: {exc}") from None
    if not specs:
        raise BatchFileError("file: has a header row but no jobs")
    return specs, lines


def _csv_spec(cells: dict[str, str], number: int, line: int) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for column, raw in cells.items():
        value = raw.strip()
        if not value:
            continue
        where = f"row {number} (line {line}), field {column}"
        if column in _JSON_COLUMNS:
            try:
                spec[column] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise BatchFileError(f"{where}: not valid JSON: {exc.msg} at column "
                                     f"{exc.colno}") from None
        elif column == "max_retries":
            if not re.fullmatch(r"[0-9]{1,4}", value):
                raise BatchFileError(f"{where}: {value!r} is not a whole number from 0 to 100")
            spec[column] = int(value)
        elif column == "depends_on":   # job ids separated by spaces, commas or semicolons
            spec[column] = re.split(r"[\s,;]+", value)
        elif column == "delay":
            try:
                spec[column] = float(value)
            except ValueError:
                raise BatchFileError(f"{where}: {value!r} is not a number of seconds") from None
        else:
            spec[column] = value
    return spec


def describe_spec_error(exc: JobValidationError, batch: BatchFile) -> str:
    """'job_specs[13].priority: …' → 'row 14, field priority: …' (with the CSV line)."""
    match = _SPEC_FIELD.match(exc.field)
    if not match:
        return exc.message
    index, field = int(match.group(1)), match.group(2)
    detail = exc.message.split(": ", 1)[1] if ": " in exc.message else exc.message
    row = f"row {index + 1}"
    if batch.lines and index < len(batch.lines):
        row += f" (line {batch.lines[index]})"
    return f"{row}, field {field}: {detail}" if field else f"{row}: {detail}"


def row_of_limit(exc: TenantLimitException, specs: list[dict[str, Any]]) -> int | None:
    """The first row a per-job limit (type, payload size) refused, 1-based; None for limits
    about the whole batch (queue length, daily count)."""
    for index, spec in enumerate(specs):
        if exc.limit_type == "allowed_job_types" and spec.get("type") == exc.current_usage:
            return index + 1
        if exc.limit_type == "max_job_payload_size":
            try:
                if len(_encode(spec.get("payload", {})).encode()) == exc.current_usage:
                    return index + 1
            except (TypeError, ValueError):
                continue
    return None
