"""Sign-in throttling, kept in the database so that it holds across processes and machines.

Failed sign-ins are counted per key: the username tried (``user:<name>``) and the client's
address (``addr:<ip>``, see PROXY_FIX). A key's first ``SIGN_IN_FREE_TRIES`` failures are
answered at once; the last of them blocks the key for ``SIGN_IN_FIRST_DELAY_SECONDS``, and each
further failure (once the block is over) for twice as long, up to ``SIGN_IN_MAX_DELAY_SECONDS``.
A try while either key is blocked is refused before any password hash is computed: scrypt's
cost is what a flood of guesses wants us to spend.

A success forgets the username's failures but not the address's: otherwise an attacker with
one account of their own could sign in to it between guesses and never be slowed. A key with
no failure for ``SIGN_IN_FORGET_SECONDS`` starts again from zero; such rows are deleted by the
transaction that records the next failure (they belong to no tenant, so no tenant's
maintenance job is theirs to prune), which keeps the table to the keys that failed lately.

Two tries racing past the check before either failure is stored both get their hash: the
block lands one failure later, never lost (each failure is counted under a lock).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, or_, select

from ...jobs import db as jobs_db
from ..models import SignInThrottle

UTC = timezone.utc
# pg_advisory_xact_lock key: failures are counted one transaction at a time (SQLite's write
# lock already does), so two processes never insert the same new key at once.
_LOCK_KEY = 0x5167_6E49
_MAX_KEY_LENGTH = 120


@dataclass(frozen=True)
class ThrottlePolicy:
    free_tries: int
    first_delay: float
    max_delay: float
    forget_after: float

    @classmethod
    def from_config(cls, config: Mapping) -> ThrottlePolicy:
        max_delay = float(config["SIGN_IN_MAX_DELAY_SECONDS"])
        # A row is never forgotten while it still blocks.
        return cls(int(config["SIGN_IN_FREE_TRIES"]), float(config["SIGN_IN_FIRST_DELAY_SECONDS"]),
                   max_delay, max(float(config["SIGN_IN_FORGET_SECONDS"]), max_delay))

    def delay_after(self, failures: int) -> float:
        """Seconds a key is blocked after its ``failures``-th failure in a row."""
        beyond = failures - self.free_tries
        if beyond < 0:
            return 0.0
        return min(self.max_delay, self.first_delay * 2 ** min(beyond, 40))


def throttle_keys(username: str, address: str | None) -> tuple[str, str]:
    """The username's key and the address's key (a missing address shares one key)."""
    return (f"user:{username}"[:_MAX_KEY_LENGTH], f"addr:{address or '-'}"[:_MAX_KEY_LENGTH])


def seconds_blocked(engine, keys: tuple[str, ...], now: datetime) -> int:
    """Whole seconds until every key may try again; 0 when none is blocked."""
    t = SignInThrottle.__table__.c
    with engine.connect() as conn:
        until = conn.scalar(select(t.blocked_until).where(
            t.key.in_(keys), t.blocked_until > now).order_by(t.blocked_until.desc()).limit(1))
    return math.ceil((until - now).total_seconds()) if until else 0


def record_failure(engine, keys: tuple[str, ...], now: datetime, policy: ThrottlePolicy) -> None:
    """Count one failed sign-in against each key, block those past their free tries, and
    delete the rows nobody has failed with for ``forget_after`` seconds."""
    table = SignInThrottle.__table__
    t = table.c
    forgotten = now - timedelta(seconds=policy.forget_after)
    with jobs_db.write_transaction(engine) as conn:
        jobs_db.advisory_xact_lock(conn, _LOCK_KEY)
        conn.execute(delete(table).where(t.last_failure_at < forgotten, or_(
            t.blocked_until.is_(None), t.blocked_until <= now)))
        known = dict(conn.execute(select(t.key, t.failures).where(t.key.in_(keys))).all())
        for key in dict.fromkeys(keys):
            failures = known.get(key, 0) + 1
            delay = policy.delay_after(failures)
            values = {"failures": failures, "last_failure_at": now,
                      "blocked_until": now + timedelta(seconds=delay) if delay else None}
            if key in known:
                conn.execute(table.update().where(t.key == key).values(**values))
            else:
                conn.execute(table.insert().values(key=key, **values))


def forget_failures(session, key: str) -> None:
    """A success: ``key`` (the username's) starts again from zero, in ``session``'s write
    transaction (the one that records the sign-in)."""
    session.execute(delete(SignInThrottle).where(SignInThrottle.key == key))
