"""Attempt logs: the lines an attempt logs while it runs, kept with the attempt.

A handler logs through ``context.logger`` (``jobs.handler.<name>``, a standard
``logging.Logger`` at INFO unless configured otherwise). Any other logging call made on the
attempt's thread while it runs is kept too: one ``logging.Handler`` on the root logger,
installed once per process (``install``), hands each record to the ``AttemptLog`` its thread
is running (a thread-local the runner sets around ``handler.execute``); records of other
threads pass through untouched. Lines logged from threads a handler starts itself are not
the attempt's. The product's own loggers (``console.*``) stay out: they write for operators,
and may name what a tenant must not learn (the internal address a webhook's host resolved to,
another tenant's jobs, the database's host); so does a record logged with
``extra=OPERATORS_ONLY``.

An attempt keeps its first ``LogLimits.lines`` lines (``JOBS_ATTEMPT_LOG_LINES``), each cut at
``LogLimits.line_chars`` characters; past the cap, one last line says how many were not kept
and which setting raises the cap. A failure's line (its exception and traceback) is kept
whatever the cap. The runner writes the lines of running attempts with its dispatcher's cycle,
a few times a second at most, and a finished attempt's last ones with its result
(runner.py); they are pruned with their attempts (``delete_lines_of_jobs``,
``delete_lines_of_attempts``).
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select

from .models import attempt_lines_table, attempts_table
from .types import JobStatus, SystemJob

UTC = timezone.utc
LOGGER_PREFIX = "jobs.handler"   # context.logger is LOGGER_PREFIX + "." + the handler's name
LINES_SETTING = "JOBS_ATTEMPT_LOG_LINES"
LINE_CHARS_SETTING = "JOBS_ATTEMPT_LOG_LINE_CHARS"
TRACEBACK_CHARS = 16_000   # a traceback keeps its last this many characters (where it failed)
_LEVEL_CHARS, _LOGGER_CHARS = 10, 200   # the columns' widths

_current = threading.local()   # .log: the AttemptLog of the attempt this thread runs, or None
_installed = False
_install_lock = threading.Lock()
_formatter = logging.Formatter()
_OPERATORS_LOGGERS = __name__.split(".")[0] + "."   # "console.": the product's own
OPERATORS_ONLY = {"attempt_log": False}   # logger.warning(…, extra=OPERATORS_ONLY)


@dataclass(frozen=True)
class LogLimits:
    """How much of its log an attempt keeps: ``lines`` lines (``JOBS_ATTEMPT_LOG_LINES``; 0
    keeps none but the failure), each of at most ``line_chars`` characters
    (``JOBS_ATTEMPT_LOG_LINE_CHARS``)."""

    lines: int = 200
    line_chars: int = 2000

    def __post_init__(self):
        for name, value, least in ((LINES_SETTING, self.lines, 0),
                                   (LINE_CHARS_SETTING, self.line_chars, 80)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, "
                                 f"got {value!r}")


@functools.lru_cache(maxsize=1024)
def handler_logger(handler_name: str) -> logging.Logger:
    """The ``context.logger`` of a handler's attempts (looked up once per handler: every
    attempt asks, and ``logging.getLogger`` takes the logging module's lock)."""
    return logging.getLogger(f"{LOGGER_PREFIX}.{handler_name}")


class AttemptLog:
    """One attempt's lines on their way to the database. Lines arrive on the attempt's thread
    (and, for a timeout, the dispatcher's); the dispatcher takes what is pending each cycle.
    ``on_pending`` is called when a line arrives and nothing was pending: the runner's cue
    that this log has lines to write (one call per write, however many lines)."""

    __slots__ = ("job_id", "attempt", "_limits", "_on_pending", "_lock", "_pending", "_kept",
                 "_dropped", "_closed")

    def __init__(self, job_id: str, attempt: int, limits: LogLimits,
                 on_pending: Callable[[AttemptLog], None]):
        self.job_id = job_id
        self.attempt = attempt
        self._limits = limits
        self._on_pending = on_pending
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._kept = 0
        self._dropped = 0
        self._closed = False

    def add(self, level: str, message: str, *, logger: str | None = None,
            traceback: str | None = None, logged_at: datetime | None = None,
            beyond_cap: bool = False) -> None:
        """Keep a line, unless the attempt ended or (``beyond_cap`` False) reached its cap."""
        line = {"job_id": self.job_id, "attempt": self.attempt,
                "logged_at": logged_at or datetime.now(UTC), "level": level[:_LEVEL_CHARS],
                "logger": logger[:_LOGGER_CHARS] if logger else None,
                "message": _bounded(message, self._limits.line_chars),
                "traceback": _tail(traceback, TRACEBACK_CHARS) if traceback else None}
        with self._lock:
            if self._closed:
                return
            if not beyond_cap:
                if self._kept >= self._limits.lines:
                    self._dropped += 1
                    return
                self._kept += 1
            first = not self._pending
            self._pending.append(line)
        if first:
            self._on_pending(self)

    def add_record(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:   # arguments that do not fit the format: keep what was meant
            message = f"{record.msg!r} {record.args!r}"
        traceback = None
        if record.exc_info:
            traceback = _formatter.formatException(record.exc_info)
        if record.stack_info:
            traceback = f"{traceback}\n{record.stack_info}" if traceback else record.stack_info
        self.add(record.levelname, message, logger=record.name, traceback=traceback,
                 logged_at=datetime.fromtimestamp(record.created, UTC))

    def failed(self, error: BaseException, traceback: str) -> None:
        """The attempt's exception, kept whatever the cap: what an operator reads first."""
        self.add("ERROR", f"{type(error).__name__}: {error}", traceback=traceback,
                 beyond_cap=True)

    def close(self) -> None:
        """The attempt ended: no more lines but the cap's own (lines logged later, by a thread
        the runner gave up on, are not kept)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._dropped:
                self._pending.append({
                    "job_id": self.job_id, "attempt": self.attempt,
                    "logged_at": datetime.now(UTC), "level": "WARNING", "logger": None,
                    "message": cap_note(self._dropped, self._limits.lines), "traceback": None})

    def take(self) -> list[dict[str, Any]]:
        """The lines pending since the last take (rows of ``job_attempt_lines``)."""
        with self._lock:
            lines, self._pending = self._pending, []
        return lines


def cap_note(dropped: int, cap: int) -> str:
    lines = "line was" if dropped == 1 else "lines were"
    return (f"{dropped} more {lines} not kept: an attempt keeps its first {cap} lines "
            f"(the {LINES_SETTING} setting raises this cap)")


def _bounded(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    return f"{text[:chars]} … ({len(text) - chars} more characters not kept)"


def _tail(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    return f"… ({len(text) - chars} characters not kept)\n{text[-chars:]}"


# -- capture --------------------------------------------------------------------------------

class _AttemptCapture(logging.Handler):
    """On the root logger: a record logged on a thread running an attempt joins its log."""

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: each attempt's log has its own, and most records (other threads')
        # are only looked at.
        attempt_log = getattr(_current, "log", None)
        if (attempt_log is not None and not record.name.startswith(_OPERATORS_LOGGERS)
                and getattr(record, "attempt_log", True)):
            attempt_log.add_record(record)
        self._print_when_alone(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:   # handle() does the work
        pass

    def _print_when_alone(self, record: logging.LogRecord) -> None:
        """Do what logging does when no handler is configured (print warnings and worse on
        stderr, ``logging.lastResort``): this handler must not silence a process whose
        logging nobody configured."""
        last = logging.lastResort
        if last is None or record.levelno < last.level:
            return
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return
            if not logger.propagate:
                break
            logger = logger.parent
        last.handle(record)


def install() -> None:
    """Capture attempts' lines in this process (once, whoever calls it first): the handler on
    the root logger, and INFO for ``context.logger`` unless the process configured it."""
    global _installed
    with _install_lock:
        if _installed:
            return
        logging.getLogger().addHandler(_AttemptCapture())
        handlers_logger = logging.getLogger(LOGGER_PREFIX)
        if handlers_logger.level == logging.NOTSET:
            handlers_logger.setLevel(logging.INFO)
        _installed = True


@contextmanager
def capturing(attempt_log: AttemptLog) -> Iterator[None]:
    """While the block runs, this thread's log records go to ``attempt_log``."""
    _current.log = attempt_log
    try:
        yield
    finally:
        _current.log = None


# -- reading ----------------------------------------------------------------------------------

_l = attempt_lines_table.c
_a = attempts_table.c


def lines_by_attempt(conn: Connection, job_id: str,
                     attempts: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """The lines of the job's ``attempts`` (numbers), each attempt's in the order logged."""
    numbers = sorted(set(attempts))
    found: dict[int, list[dict[str, Any]]] = {n: [] for n in numbers}
    if not numbers:
        return found
    rows = conn.execute(select(_l.attempt, _l.logged_at, _l.level, _l.logger, _l.message,
                               _l.traceback)
                        .where(_l.job_id == job_id, _l.attempt.in_(numbers))
                        .order_by(_l.attempt, _l.id))
    for row in rows:
        line = dict(row._mapping)
        found[line.pop("attempt")].append(line)
    return found


def recent_attempts(conn: Connection, job: SystemJob, limit: int, before: int | None = None,
                    with_lines: bool = True) -> list[dict[str, Any]]:
    """The job's newest ``limit`` attempts (numbered below ``before``, when given), newest
    first, each with its ``lines``. A running attempt comes first, ``running`` True, with the
    lines it logged so far (it has no row until it ends)."""
    attempts: list[dict[str, Any]] = []
    current = job.total_attempts
    if (job.status is JobStatus.PROCESSING and current and (before is None or current < before)):
        attempts.append({"attempt": current, "started_at": job.last_attempt,
                         "finished_at": None, "duration_ms": None, "success": None,
                         "error_type": None, "error_message": None, "worker": job.lease_owner,
                         "running": True})
    query = (select(_a.attempt, _a.started_at, _a.finished_at, _a.duration_ms, _a.success,
                    _a.error_type, _a.error_message, _a.worker)
             .where(_a.job_id == job.id).order_by(_a.attempt.desc(), _a.id.desc())
             .limit(max(0, limit - len(attempts))))
    if before is not None:
        query = query.where(_a.attempt < before)
    attempts += [{**row._mapping, "running": False} for row in conn.execute(query)]
    if with_lines:
        lines = lines_by_attempt(conn, job.id, (a["attempt"] for a in attempts))
        for attempt in attempts:
            attempt["lines"] = lines[attempt["attempt"]]
    return attempts


# -- pruning ----------------------------------------------------------------------------------

def delete_lines_of_jobs(conn: Connection, job_ids: list[str]) -> int:
    """Delete every line of these jobs (pruned with them)."""
    return conn.execute(delete(attempt_lines_table).where(_l.job_id.in_(job_ids))).rowcount


def delete_lines_of_attempts(conn: Connection, attempt_ids: list[int]) -> int:
    """Delete the lines of these attempt rows (by ``job_attempts.id``), before the rows go."""
    of_those = exists().where(_a.id.in_(attempt_ids), _a.job_id == _l.job_id,
                              _a.attempt == _l.attempt)
    return conn.execute(delete(attempt_lines_table).where(
        and_(_l.job_id.in_(select(_a.job_id).where(_a.id.in_(attempt_ids))), of_those))
    ).rowcount
