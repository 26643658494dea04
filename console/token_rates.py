"""Per-token request rates, held across processes: a sliding window counted in the database,
spent from allowances each process takes in slices.

The count is the sliding-window counter of Flask-Limiter's ``limits`` library: requests in the
current minute plus the previous minute's weighted by how much of it still lies within the last
60 s. It lives in the token's row (``rate_window``, ``rate_used``, ``rate_previous``), so every
process and machine shares it. Writing it on every request would add a write transaction to
every API call (on SQLite, a turn at the file's single write lock), so a process reserves a
slice of ``limit // 100`` requests (at least 1) in one write and admits that many from memory.

Tolerance: the count can never pass the limit (a slice is counted when it is taken), but
requests a process reserved and did not use before its minute ended are lost, so a token may be
refused up to one slice per process (1 % of its limit each) early. A refused request writes
nothing, and a process that was refused asks the database again at most once a second for that
token, so a client hammering past its limit does not queue for the write lock either.
"""
from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, update

from .jobs import db as jobs_db

PERIOD_SECONDS = 60        # limits are requests per minute
SLICE_FRACTION = 100       # a process reserves limit // SLICE_FRACTION requests at a time
REFUSAL_RECHECK_SECONDS = 1.0


class RateLimitedError(Exception):
    """The token used its requests per minute; ``retry_after`` seconds until one is free."""

    def __init__(self, limit: int, retry_after: int):
        super().__init__(f"this token may send {limit} requests a minute and has used them; "
                         f"retry in {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after


@dataclass
class _Allowance:
    window: int
    left: int = 0
    refused_until: float = 0.0     # time.time(): refused without asking the database again
    refused_at: float = 0.0
    retry_after: int = 0


def slice_size(limit: int) -> int:
    return max(1, limit // SLICE_FRACTION)


def weighted_count(used: int, previous: int, elapsed: float) -> float:
    """The sliding window's count: this minute's requests plus the previous minute's share
    that still lies within the last 60 s (``elapsed``: fraction of this minute gone)."""
    return previous * (1.0 - elapsed) + used


def seconds_until_free(used: int, previous: int, limit: int, elapsed: float) -> int:
    """Seconds until one more request fits, if no other is admitted meanwhile (at least 1)."""
    room = limit - 1 - used
    if room >= 0 and previous > 0:       # later in this minute, as the previous one fades
        fraction = 1.0 - room / previous
        return _whole_seconds((fraction - elapsed) * PERIOD_SECONDS)
    # In the next minute, as this one (then the previous) fades.
    fraction = 1.0 - (limit - 1) / used if used else 0.0
    return _whole_seconds((1.0 - elapsed + fraction) * PERIOD_SECONDS)


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))   # 31.000000000004 s of float arithmetic is 31


def reserve(engine, table: Table, token_id: int, limit: int, wanted: int, now: float
            ) -> tuple[int, int]:
    """Take up to ``wanted`` requests of the token's window in one transaction: (granted,
    seconds until free when none was granted). Refused, nothing is written."""
    window, elapsed = divmod(now / PERIOD_SECONDS, 1.0)
    window = int(window)
    c = table.c
    with jobs_db.write_transaction(engine) as conn:
        row = conn.execute(select(c.rate_window, c.rate_used, c.rate_previous)
                           .where(c.id == token_id).with_for_update()).first()
        if row is None:
            return 0, PERIOD_SECONDS
        if row.rate_window == window:
            used, previous = row.rate_used, row.rate_previous
        elif row.rate_window == window - 1:
            used, previous = 0, row.rate_used
        else:
            used, previous = 0, 0
        granted = min(wanted, math.floor(limit - weighted_count(used, previous, elapsed)))
        if granted <= 0:
            return 0, seconds_until_free(used, previous, limit, elapsed)
        conn.execute(update(table).where(c.id == token_id).values(
            rate_window=window, rate_used=used + granted, rate_previous=previous))
    return granted, 0


class TokenRates:
    """This process's allowances, per token (one per engine: see ``rates_for``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._allowances: dict[int, _Allowance] = {}

    def admit(self, engine, table: Table, token_id: int, limit: int,
              now: float | None = None) -> None:
        """Count one request of the token, or refuse it.

        :raise RateLimitedError: the token has no request left this minute.
        """
        now = time.time() if now is None else now
        window = int(now // PERIOD_SECONDS)
        with self._lock:
            allowance = self._allowances.get(token_id)
            if allowance is None or allowance.window != window:
                allowance = self._allowances[token_id] = _Allowance(window)
            if allowance.left > 0:
                allowance.left -= 1
                return
            if now < allowance.refused_until:
                raise RateLimitedError(limit, max(1, math.ceil(allowance.retry_after
                                                               - (now - allowance.refused_at))))
        granted, retry_after = reserve(engine, table, token_id, limit, slice_size(limit), now)
        with self._lock:
            allowance = self._allowances.get(token_id)
            if allowance is None or allowance.window != window:
                allowance = self._allowances[token_id] = _Allowance(window)
            if not granted:
                allowance.refused_until = now + min(retry_after, REFUSAL_RECHECK_SECONDS)
                allowance.refused_at, allowance.retry_after = now, retry_after
                raise RateLimitedError(limit, retry_after)
            allowance.left += granted - 1


_rates: weakref.WeakKeyDictionary[Any, TokenRates] = weakref.WeakKeyDictionary()
_rates_lock = threading.Lock()


def rates_for(engine) -> TokenRates:
    with _rates_lock:
        rates = _rates.get(engine)
        if rates is None:
            rates = _rates[engine] = TokenRates()
        return rates
