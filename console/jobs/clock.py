"""The engine's one clock (``service.clock``): the time leases, due times, recovery,
heartbeats, rate-limit windows and the daily window are stamped and compared in.

On SQLite every process is on one machine: the local clock. On PostgreSQL processes on several
machines compare each other's times, so the database's clock is the only one that counts: the
engine's time is the local clock plus an offset measured against ``clock_timestamp()``. The
offset is measured at the first use, again at each of the runner's heartbeats, and by a process
with no runner at the first use after ``REMEASURE_SECONDS``; reading the time never waits for
the database otherwise. A process whose clock is more than ``SKEW_TOLERANCE_SECONDS`` off the
database's says so in its log (once per change) and publishes it with its heartbeat
(``/healthz``, the runners screen).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)
UTC = timezone.utc
SKEW_TOLERANCE_SECONDS = 1.0
REMEASURE_SECONDS = 60.0
RETRY_SECONDS = 5.0    # after a failed reading (the database away): not at every call
SAMPLES = 3            # readings per measurement; the one with the shortest round trip counts
# What the readings' own resolution blurs (PostgreSQL's microseconds, the float seconds).
_RESOLUTION = 0.001
_READ = text("SELECT clock_timestamp()")


class Clock:
    """``now()``: the engine's time. ``skew_seconds``: how far this process's own clock is
    ahead of it (negative: behind); 0.0 on SQLite."""

    def __init__(self, engine: Engine, read_offset: Callable[[], float] | None = None):
        """:param read_offset: the database's clock minus ours, in seconds (tests give their
            own); by default ``database_offset`` on PostgreSQL, none on SQLite."""
        if read_offset is None and engine.dialect.name == "postgresql":
            read_offset = partial(database_offset, engine)
        self._read_offset = read_offset
        self._offset = timedelta(0)
        self._next_reading = 0.0 if read_offset else float("inf")   # monotonic time
        self._measured = threading.Event()
        self._lock = threading.Lock()
        self._reported: float | None = None   # the skew last logged, while past the tolerance

    def now(self) -> datetime:
        if time.monotonic() >= self._next_reading:
            # The first reading is waited for (the local clock may be far off); a later one
            # is taken by one caller while the others go on with the current offset.
            if self._lock.acquire(blocking=not self._measured.is_set()):
                try:
                    if time.monotonic() >= self._next_reading:
                        self._measure()
                finally:
                    self._lock.release()
        return datetime.now(UTC) + self._offset

    @property
    def skew_seconds(self) -> float:
        return -self._offset.total_seconds()

    def measure(self) -> None:
        """Read the database's clock again now (the runner's heartbeat calls this). Never
        raises: when the database is away the offset stays as it was."""
        if self._read_offset is not None:
            with self._lock:
                self._measure()

    def _measure(self) -> None:
        try:
            offset = self._read_offset()
        except Exception as exc:   # the database is away: its callers will say so
            log.debug("could not read the database's clock: %s", exc)
            self._next_reading = time.monotonic() + RETRY_SECONDS
            return
        self._offset = timedelta(seconds=offset)
        self._measured.set()
        self._next_reading = time.monotonic() + REMEASURE_SECONDS
        self._report()

    def _report(self) -> None:
        skew = self.skew_seconds
        if abs(skew) > SKEW_TOLERANCE_SECONDS:
            if self._reported is None or abs(skew - self._reported) > SKEW_TOLERANCE_SECONDS:
                log.warning("this process's clock is %+.1f s off the database's; leases, due "
                            "times and recovery use the database's time, but set this "
                            "machine's clock right (NTP)", skew)
                self._reported = skew
        elif self._reported is not None:
            log.warning("this process's clock is within %g s of the database's again",
                        SKEW_TOLERANCE_SECONDS)
            self._reported = None


def database_offset(engine: Engine) -> float:
    """The database's clock minus ours, in seconds: ``clock_timestamp()`` against the
    midpoint of the local readings around it, from the reading with the shortest round
    trip. 0.0 when the difference is within what the reading can tell (the same machine).

    :raise: whatever the database raises.
    """
    samples = []   # (round trip, offset)
    with engine.connect() as conn:
        for _ in range(SAMPLES):
            sent, sent_m = time.time(), time.monotonic()
            database = conn.execute(_READ).scalar_one()
            received, round_trip = time.time(), time.monotonic() - sent_m
            samples.append((round_trip, database.timestamp() - (sent + received) / 2))
        conn.rollback()
    round_trip, offset = min(samples)
    return 0.0 if abs(offset) <= round_trip / 2 + _RESOLUTION else offset
