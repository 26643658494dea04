"""The database going away: recognising it, telling callers, and waiting it out.

A PostgreSQL server restarts, fails over or drops off the network; an SQLite file stays locked
by another process past the busy timeout. Neither is a bug in the call that met it, so callers
get one named error (``DatabaseUnavailableError``: retry later; 503 over HTTP) instead of a
driver's exception, and the runner's loops log one line per outage instead of a traceback a
second, and carry on when the database is back.
"""
from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError

from . import db
from .types import DatabaseUnavailableError

log = logging.getLogger(__name__)

# SQLSTATEs of a server that is going or gone: connection exceptions (class 08), and a server
# shutting down, crashed, or starting up (57P01–57P03).
_UNREACHABLE_SQLSTATES = ("57P01", "57P02", "57P03")


def unavailable_reason(error: BaseException) -> str | None:
    """``"unreachable"`` or ``"busy"`` when ``error`` means the database could not serve the
    call; None for every other error (a constraint, a bug), which must stay visible as such."""
    if isinstance(error, DatabaseUnavailableError):
        return error.reason
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return "unreachable"
        error = error.orig
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        if "locked" in text or "busy" in text:
            return "busy"
        if "unable to open" in text or "disk i/o" in text:
            return "unreachable"
        return None
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(error, psycopg.OperationalError):
        # A connection that failed or broke carries no SQLSTATE (the server never answered);
        # lock timeouts, deadlocks and the like do, and are not outages.
        state = getattr(error, "sqlstate", None)
        if state is None or state.startswith("08") or state in _UNREACHABLE_SQLSTATES:
            return "unreachable"
    return None


def describe(error: BaseException) -> str:
    """The driver's first line, without SQLAlchemy's wrapping: what an operator can act on."""
    inner = error.orig if isinstance(error, DBAPIError) else error
    first_line = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
    return first_line[:300]


def as_unavailable(error: BaseException, busy_wait: float | None = None
                   ) -> DatabaseUnavailableError | None:
    """The ``DatabaseUnavailableError`` that ``error`` amounts to, or None."""
    if isinstance(error, DatabaseUnavailableError):
        return error
    reason = unavailable_reason(error)
    if reason is None:
        return None
    why = describe(error)
    if reason == "busy":
        waited = f" for longer than {busy_wait:g} s" if busy_wait else ""
        return DatabaseUnavailableError(
            "busy", f"the database is busy: another process held its write lock{waited} "
                    f"({why}); nothing was stored — retry in a few seconds", why)
    return DatabaseUnavailableError(
        "unreachable", f"the database cannot be reached ({why}); retry in a few seconds. "
                       "Nothing was stored, unless the connection broke during the commit "
                       "itself: retrying with the same idempotency_key is safe either way", why)


@contextmanager
def unavailable_as_error(busy_wait: float | None = None) -> Iterator[None]:
    """Turn an outage met inside the block into ``DatabaseUnavailableError``; let every other
    error through untouched."""
    try:
        yield
    except DatabaseUnavailableError:
        raise
    except Exception as exc:
        error = as_unavailable(exc, busy_wait)
        if error is None:
            raise
        raise error from exc


class OutageLog:
    """What a long-lived loop (the runner's dispatcher, lease renewal, recovery) says about an
    outage: one warning when it starts, a reminder every ``remind_every`` seconds, one line
    when the database answers again — never a traceback a second. Also the loop's back-off:
    0.25 s doubling to ``max_backoff``, so a dead server costs a connection attempt every few
    seconds, not a busy loop. Shared by the loops of one runner (thread-safe)."""

    def __init__(self, who: str, max_backoff: float = 5.0, remind_every: float = 60.0):
        self._who = who
        self._max_backoff = max_backoff
        self._remind_every = remind_every
        self._lock = threading.Lock()
        self._since: float | None = None
        self._reminded: float = 0.0
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException, doing: str) -> float | None:
        """Record a failed database call of a loop; returns the seconds to wait before the
        next try when it was an outage, or None when it was some other error (the caller logs
        that one in full)."""
        if unavailable_reason(error) is None:
            return None
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._since is None:
                self._since = self._reminded = now
                log.warning("%s: the database is unavailable (%s) while trying to %s; "
                            "retrying until it is back", self._who, describe(error), doing)
            elif now - self._reminded >= self._remind_every:
                self._reminded = now
                log.warning("%s: the database is still unavailable after %.0f s (%s)",
                            self._who, now - self._since, describe(error))
            return min(self._max_backoff, 0.25 * 2 ** min(self._failures - 1, 10))

    def succeeded(self) -> bool:
        """A database call of a loop worked: end the outage, if there was one. True when this
        call ended it."""
        if self._since is None:
            return False
        with self._lock:
            if self._since is None:
                return False
            log.warning("%s: the database is back after %.1f s", self._who,
                        time.monotonic() - self._since)
            self._since = None
            self._failures = 0
            return True


def reports_outages(method):
    """Decorate a ``JobService`` verb: an outage it meets raises ``DatabaseUnavailableError``."""
    @functools.wraps(method)
    def verb(self, *args, **kwargs):
        busy_wait = db.sqlite_busy_timeout(self.engine) if db.is_sqlite(self.engine) else None
        with unavailable_as_error(busy_wait):
            return method(self, *args, **kwargs)
    return verb
