"""Rate limits: how many jobs may START per period, per tenant (its tier limit ``rate_limit``)
and per handler (for every tenant, or for one: ``JobService.set_handler_rate_limit``).

What a limit means (``RateLimit``): in any window of ``period_seconds`` its jobs' starts never
exceed ``count``, and in any window of ``period_seconds × burst / count`` they never exceed
``burst`` — the same rate at a finer grain, so at most ``burst`` start back to back and the
rest follow as the finer window slides. A start is the claim that marks the job ``processing``
(its ``last_attempt``), never the queue call: a limit holds work back, it refuses nothing.

Why it is exact across processes: claims are serialised (SQLite's write lock; on PostgreSQL
the claim's advisory lock), and each claim reads a limit's logged starts, decides, and logs
its own starts in the same transaction. So every claim sees every earlier claim's starts, and
a start is allowed only when the windows ending at its claim time hold room for it, counting
every logged start after the window's beginning (one that another machine logged with a
slightly later clock included). A claim's time is never earlier than the latest start logged
for a limit it checks (``RateBook.at``): a limit's log is thus written in time order, and a
claim may delete what has left its windows without a later claim needing it.

What is kept (``rate_limit_starts``): per limit and claim, the claim's time and how many of the
limit's jobs it started. A claim prunes what left the period, so a limit holds at most
``count`` rows (fewer under load: one claim starting twenty jobs is one row). That is what an
exact sliding window costs; a token bucket would be one row, but a bucket that lets ``burst``
start at once lets ``burst + count − 1`` start within one period, and one whose windows are
exact must give up the rate (``count − burst + 1`` per period), so it is not used.

The claim and the job explainer read limits through the same functions (``RateBook.read``,
``key_state``), so an explanation cannot say one thing while the runners do another.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select

from . import audit, db
from .audit import Actor
from .limits import RateLimit, rate_limit_columns, rate_limit_of
from .models import handler_rate_limits_table, rate_limit_starts_table
from .wakeup import NOTIFY_CHANNEL

Entries = list[tuple[datetime, int]]   # (claim time, starts), newest first


def tenant_key(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def handler_key(handler: str, tenant_id: str | None = None) -> str:
    return f"handler:{handler}" + (f"@{tenant_id}" if tenant_id else "")


@dataclass(frozen=True)
class KeyState:
    """A limit as a claim at ``at`` sees it."""

    key: str
    limit: RateLimit
    at: datetime
    started: int                  # starts in the period ending at ``at``
    allowed: int                  # starts the limit allows at ``at``
    next_start: datetime | None   # when a start is allowed again; None: now

    def describe(self) -> str:
        """"tenant acme's rate limit", "handler email's rate limit for every tenant" …"""
        scope, _, name = self.key.partition(":")
        if scope == "tenant":
            return f"tenant {name}'s rate limit"
        handler, _, tenant_id = name.partition("@")
        whom = f"tenant {tenant_id}" if tenant_id else "every tenant"
        return f"handler {handler}'s rate limit for {whom}"

    def to_dict(self) -> dict[str, Any]:
        scope, _, name = self.key.partition(":")
        handler, _, tenant_id = name.partition("@")
        return {"scope": scope, "tenant_id": name if scope == "tenant" else tenant_id or None,
                "handler": handler if scope == "handler" else None,
                **self.limit.to_dict(), "started_in_period": self.started,
                "allowed_now": self.allowed,
                "next_start_at": self.next_start.isoformat() if self.next_start else None,
                "in_seconds": round((self.next_start - self.at).total_seconds(), 3)
                if self.next_start else 0.0}


def key_state(key: str, limit: RateLimit, entries: Entries, at: datetime) -> KeyState:
    """How many starts ``limit`` allows at ``at`` given its logged ``entries``, and when it
    next allows one. Every start logged after a window's beginning counts, later ones too."""
    allowed, next_start, started = limit.count, None, None
    for most, seconds in limit.windows:   # the period first
        inside = [(moment, n) for moment, n in entries if moment > at - timedelta(seconds=seconds)]
        used = sum(n for _, n in inside)
        started = used if started is None else started
        allowed = min(allowed, max(0, most - used))
        if used >= most:
            free_at = _frees_a_start(inside, most, seconds)
            next_start = free_at if next_start is None else max(next_start, free_at)
    return KeyState(key, limit, at, started, allowed, next_start)


def _frees_a_start(inside: Entries, most: int, seconds: float) -> datetime:
    """When a full window has room again: once the entry at which the newest starts add up
    to ``most`` has left it (with everything older)."""
    total = 0
    for moment, n in inside:
        total += n
        if total >= most:
            return moment + timedelta(seconds=seconds)
    raise AssertionError("a full window holds at least its limit's starts")


def read_entries(conn: Connection, keys: Iterable[str]) -> dict[str, Entries]:
    """Every logged start of these limits, newest first (pruning bounds them by ``count``)."""
    s = rate_limit_starts_table.c
    found: dict[str, Entries] = {key: [] for key in keys}
    if found:
        for key, moment, n in conn.execute(
                select(s.key, s.started_at, s.starts).where(s.key.in_(sorted(found)))
                .order_by(s.key, s.started_at.desc())):
            found[key].append((moment, n))
    return found


class RateBook:
    """The limits one claim checks: what each allows, and the starts the claim adds."""

    def __init__(self, limits: Mapping[str, RateLimit], entries: Mapping[str, Entries],
                 now: datetime):
        latest = [found[0][0] for found in entries.values() if found]
        # Never before a start already logged for these limits (see the module's docstring).
        self.at = max([now, *latest])
        self.limits = dict(limits)
        self.entries = dict(entries)
        self.states = {key: key_state(key, limit, self.entries[key], self.at)
                       for key, limit in self.limits.items()}
        self.started: Counter[str] = Counter()

    @classmethod
    def read(cls, conn: Connection, limits: Mapping[str, RateLimit], now: datetime) -> RateBook:
        return cls(limits, read_entries(conn, limits), now)

    def allowed(self, key: str) -> int:
        """Starts the limit still allows in this claim (a key with no limit: unbounded)."""
        state = self.states.get(key)
        return 1 << 62 if state is None else max(0, state.allowed - self.started[key])

    def start(self, keys: Iterable[str], n: int = 1) -> None:
        for key in keys:
            if key in self.states:
                self.started[key] += n

    def next_start(self, key: str) -> datetime:
        """When ``key`` allows a start again, counting this claim's starts (``at``: now)."""
        entries = self.entries[key]
        if self.started[key]:
            entries = [(self.at, self.started[key]), *entries]
        state = key_state(key, self.limits[key], entries, self.at)
        return state.next_start or self.at

    def write(self, conn: Connection) -> None:
        """Log this claim's starts and prune what has left each written limit's period."""
        rows = [{"key": key, "started_at": self.at, "starts": n}
                for key, n in sorted(self.started.items()) if n]
        if not rows:
            return
        # A claim whose clock read earlier than the latest start logged counts its starts at
        # that start's moment (``at``): they add up in its row.
        db.upsert_many(conn, rate_limit_starts_table, rows, ["key", "started_at"], ["starts"])
        conn.execute(_PRUNE, [{"key": row["key"], "before": self.at - timedelta(
            seconds=self.limits[row["key"]].period_seconds)} for row in rows])


_s = rate_limit_starts_table.c
_PRUNE = delete(rate_limit_starts_table).where(
    _s.key == bindparam("key"), _s.started_at <= bindparam("before", type_=_s.started_at.type))


# -- handler limits --------------------------------------------------------------------------

@dataclass(frozen=True)
class HandlerRateLimit:
    """An operator's limit on a handler, for every tenant (``tenant_id`` None) or one."""

    handler: str
    tenant_id: str | None
    limit: RateLimit
    set_by: str | None = None
    set_at: datetime | None = None

    @property
    def key(self) -> str:
        return handler_key(self.handler, self.tenant_id)

    def to_dict(self) -> dict[str, Any]:
        return {"handler": self.handler, "tenant_id": self.tenant_id, **self.limit.to_dict(),
                "set_by": self.set_by, "set_at": self.set_at.isoformat() if self.set_at else None}


class HandlerLimits:
    """Every handler limit in force, as one claim (or one explanation) reads them."""

    def __init__(self, limits: list[HandlerRateLimit]):
        self.all = limits
        self._by_key = {limit.key: limit for limit in limits}

    def __bool__(self) -> bool:
        return bool(self.all)

    def of(self, handler: str, tenant_id: str | None = None) -> HandlerRateLimit | None:
        return self._by_key.get(handler_key(handler, tenant_id))

    def holding(self, handler: str, tenant_id: str) -> list[HandlerRateLimit]:
        """The limits a job of ``tenant_id`` run by ``handler`` counts against."""
        return [limit for limit in (self.of(handler), self.of(handler, tenant_id)) if limit]


def read_handler_limits(conn: Connection) -> HandlerLimits:
    return HandlerLimits([
        HandlerRateLimit(row.handler, row.tenant_id, rate_limit_of(row), row.set_by, row.set_at)
        for row in conn.execute(_HANDLER_LIMITS)])


# Built once: every claim reads it, and building a statement costs more than running it.
_HANDLER_LIMITS = select(handler_rate_limits_table).order_by(handler_rate_limits_table.c.key)


def store_handler_limit(conn: Connection, handler: str, tenant_id: str | None,
                        limit: RateLimit | None, actor: Actor | None, set_by: str | None,
                        now: datetime) -> HandlerRateLimit | None:
    """Set (``limit``) or remove (None) a handler's limit, in effect from every runner's next
    claim; the limit as it was before (None: there was none). Recorded when it changed."""
    key = handler_key(handler, tenant_id)
    before = read_handler_limits(conn).of(handler, tenant_id)
    if (before.limit if before else None) == limit:
        return before
    h = handler_rate_limits_table.c
    if limit is None:
        conn.execute(delete(handler_rate_limits_table).where(h.key == key))
        # Its starts count for nothing now; a limit set again starts from a clean log.
        conn.execute(delete(rate_limit_starts_table).where(_s.key == key))
    else:
        values = {"handler": handler, "tenant_id": tenant_id, **rate_limit_columns(limit),
                  "set_by": set_by, "set_at": now}
        db.upsert_many(conn, handler_rate_limits_table, [{"key": key, **values}], ["key"], [],
                       replace=list(values))
    audit.record(conn, actor, "handler_rate_limit_set" if limit else "handler_rate_limit_removed",
                 tenant_id=tenant_id, target_type="handler", target_id=handler,
                 before=before.limit.to_dict() if before else None,
                 after=limit.to_dict() if limit else None, now=now)
    db.notify_channel(conn, NOTIFY_CHANNEL)   # work a limit held may start now
    return before


def job_limits(tenant_id: str, tenant_limit: RateLimit | None, handler: str,
               handler_limits: HandlerLimits) -> dict[str, RateLimit]:
    """Every limit a job of ``tenant_id`` run by ``handler`` counts against, by key."""
    found = {tenant_key(tenant_id): tenant_limit} if tenant_limit else {}
    found.update({limit.key: limit.limit for limit in handler_limits.holding(handler, tenant_id)})
    return found


def states_at(conn: Connection, limits: Mapping[str, RateLimit],
              now: datetime) -> dict[str, KeyState]:
    """Each limit as a claim at ``now`` would see it."""
    return RateBook.read(conn, limits, now).states if limits else {}


# -- one claim -------------------------------------------------------------------------------

class ClaimLimits:
    """The rate limits one claim applies: how far each lets it go, the starts it makes, and
    which tenants (``held``) and limits had due work held back (to wake when they allow more)."""

    def __init__(self, book: RateBook, tenant_limits: Mapping[str, RateLimit | None],
                 handler_limits: HandlerLimits):
        self.book = book
        self.held: set[str] = set()
        self._limited_tenants = {t for t, limit in tenant_limits.items() if limit is not None}
        self._handler_limits = handler_limits
        self._caps: dict[str, dict[str, int]] = {}   # tenant → handler → starts allowed
        self._bound: set[str] = set()                 # tenants whose own limit set their room
        self._admitted: Counter[str] = Counter()
        self._waiting: set[str] = set()

    @classmethod
    def read(cls, conn: Connection, tenant_limits: Mapping[str, RateLimit | None],
             runnable: Mapping[str, list[str]], now: datetime,
             handler_limits_set: bool = True) -> ClaimLimits | None:
        """The limits of the tenants and handlers this claim may start; None: there are none.
        Handlers' limits are read only when ``handler_limits_set``."""
        handler_limits = read_handler_limits(conn) if handler_limits_set else HandlerLimits([])
        limits: dict[str, RateLimit] = {}
        for tenant_id, handlers in runnable.items():
            for handler in handlers:
                limits.update(job_limits(tenant_id, tenant_limits[tenant_id], handler,
                                         handler_limits))
        if not limits:
            return None
        return cls(RateBook.read(conn, limits, now), tenant_limits, handler_limits)

    @property
    def at(self) -> datetime:
        """The claim's time as its limits count it."""
        return self.book.at

    def keys(self, tenant_id: str, handler: str) -> list[str]:
        """The limits a start of this tenant's job run by ``handler`` counts against."""
        own = [tenant_key(tenant_id)] if tenant_id in self._limited_tenants else []
        return own + [limit.key for limit in self._handler_limits.holding(handler, tenant_id)]

    def probes(self, rooms: Mapping[str, int], runnable: Mapping[str, list[str]]
               ) -> tuple[list[tuple[str, list[str], int]], dict[str, int]]:
        """The claim's probes (tenant, handlers, how many jobs) and each tenant's room under
        its limits. A tenant whose limit allows no start is left out; a handler whose limits
        allow fewer starts than the tenant's room gets a probe of its own. A probe bounded by
        a limit reads one job more, to tell whether the limit holds work back."""
        probes: list[tuple[str, list[str], int]] = []
        limited: dict[str, int] = {}
        for tenant_id, room in rooms.items():
            allowed = self.book.allowed(tenant_key(tenant_id))
            if allowed == 0:
                self._hold(tenant_id, tenant_key(tenant_id))
                continue
            if allowed < room:
                self._bound.add(tenant_id)
                room = allowed
            limited[tenant_id] = room
            caps = self._caps[tenant_id] = self._handler_caps(tenant_id, runnable[tenant_id],
                                                              room)
            free = [handler for handler in runnable[tenant_id] if handler not in caps]
            if free:
                probes.append((tenant_id, free, room + (tenant_id in self._bound)))
            probes += [(tenant_id, [handler], cap + 1) for handler, cap in caps.items()]
        return probes, limited

    def _handler_caps(self, tenant_id: str, handlers: list[str], room: int) -> dict[str, int]:
        """The handlers whose limits allow fewer than ``room`` starts: how many they allow."""
        caps = {}
        for handler in handlers:
            keys = [limit.key for limit in self._handler_limits.holding(handler, tenant_id)]
            cap = min((self.book.allowed(key) for key in keys), default=room)
            if cap < room:
                caps[handler] = cap
        return caps

    def keep(self, tenant_id: str, rows: list[Any], room: int) -> list[Any]:
        """Of a tenant's rows (best first), those the claim may take: at most ``room``, and
        of a capped handler at most its cap. The rest is work a limit holds back."""
        caps = self._caps.get(tenant_id, {})
        kept: list[Any] = []
        per_handler: Counter[str] = Counter()
        for row in rows:
            cap = caps.get(row.handler)
            if cap is not None and per_handler[row.handler] >= cap:
                self._hold(tenant_id, *[key for key in self.keys(tenant_id, row.handler)
                                        if self.book.allowed(key) <= per_handler[row.handler]])
                continue
            if len(kept) == room:
                if tenant_id in self._bound:
                    self._hold(tenant_id, tenant_key(tenant_id))
                break
            per_handler[row.handler] += 1
            kept.append(row)
        return kept

    def admit(self, row: Any) -> bool:
        """Whether the fair share may take ``row``: limits shared by several tenants (a
        handler's for every tenant) are counted as the claim picks."""
        keys = self.keys(row.tenant_id, row.handler)
        full = [key for key in keys if self.book.allowed(key) <= self._admitted[key]]
        if full:
            self._hold(row.tenant_id, *full)
            return False
        self._admitted.update(keys)
        return True

    def record(self, conn: Connection, rows: list[Any]) -> None:
        """Log the starts of the jobs the claim takes, in its transaction."""
        for row in rows:
            self.book.start(self.keys(row.tenant_id, row.handler))
        self.book.write(conn)

    def wake_at(self) -> datetime | None:
        """When a limit that held work back allows a start again (None: none held any)."""
        return min((self.book.next_start(key) for key in self._waiting), default=None)

    def _hold(self, tenant_id: str, *keys: str) -> None:
        self.held.add(tenant_id)
        self._waiting.update(keys)
