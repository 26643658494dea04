"""API tokens: the ``api_tokens`` table, creating, finding and revoking tokens.

A token is ``cjt_`` + 43 URL-safe characters (256 random bits from ``secrets``). Only its
SHA-256 is stored, with the first characters (``prefix``) kept in clear so people can tell
tokens apart. Why a fast hash and not bcrypt/argon2: slow hashes protect *guessable* secrets
(passwords); nobody can guess a 256-bit random value, however fast each guess is, so a slow hash
would add nothing but its deliberate cost to every API call. An unsalted hash also lets the
lookup be one indexed equality (``token_hash = ?``), and comparing hashes, not secrets, leaks
nothing useful through timing.

A token with ``tenant_id`` reaches that tenant only; ``tenant_id`` NULL reaches every tenant.
``is_admin`` (all-tenant tokens only) may also change tenants' limits. A token may expire
(``expires_at``), and may send at most ``rate_limit`` requests a minute (NULL: the
``API_RATE_LIMIT`` setting), counted across processes by console/token_rates.py.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .jobs import db as jobs_db
from .jobs.audit import Actor, record
from .jobs.models import Base, UTCDateTime, tenants_table
from .token_rates import rates_for

log = logging.getLogger(__name__)
UTC = timezone.utc
TOKEN_PREFIX = "cjt_"
SHOWN_CHARS = len(TOKEN_PREFIX) + 8        # "cjt_AbCd1234": enough to tell tokens apart
SECRET_BYTES = 32
LAST_USED_RESOLUTION = timedelta(minutes=1)   # at most one write per token per minute
AUTH_CACHE_SECONDS = 2.0    # how long a process trusts a token it has read (see authenticate)
_AUTH_CACHE_SIZE = 10_000
MAX_NAME_LENGTH = 100
MAX_LIFETIME = timedelta(days=3650)
MAX_RATE_LIMIT = 1_000_000          # requests a minute
_EXPIRES_IN = re.compile(r"\s*(\d{1,6})\s*([hd])\s*", re.IGNORECASE)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_tenant_id", "tenant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey(tenants_table.c.id, ondelete="CASCADE"))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Requests a minute; None: the API_RATE_LIMIT setting.
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    # The sliding window's count (console/token_rates.py): the minute (epoch minutes) and the
    # requests counted in it and in the minute before.
    rate_window: Mapped[int | None] = mapped_column(Integer)
    rate_used: Mapped[int] = mapped_column(Integer, default=0)
    rate_previous: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def scope(self) -> str:
        """``tenant acme``, ``all tenants`` or ``all tenants (admin)``, as people read it."""
        if self.tenant_id is not None:
            return f"tenant {self.tenant_id}"
        return "all tenants (admin)" if self.is_admin else "all tenants"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


api_tokens_table = ApiToken.__table__


@dataclass(frozen=True)
class TokenIdentity:
    """Who is calling: what one authenticated request may reach."""

    id: int
    name: str
    tenant_id: str | None
    is_admin: bool
    expires_at: datetime | None = None
    rate_limit: int | None = None
    prefix: str = ""   # the token's first characters: how audit entries name it

    @property
    def all_tenants(self) -> bool:
        return self.tenant_id is None

    def sees_tenant(self, tenant_id: str | None) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id


class TokenExpiredError(Exception):
    """A valid token past its ``expires_at``."""

    def __init__(self, expires_at: datetime):
        super().__init__(f"the token expired at {expires_at:%Y-%m-%d %H:%M} UTC")
        self.expires_at = expires_at


class TokenError(ValueError):
    """A token could not be created as asked (``field`` names the argument at fault)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    """Shape only (prefix, length, alphabet): a malformed token costs no database read."""
    body = token[len(TOKEN_PREFIX):]
    return (token.startswith(TOKEN_PREFIX) and 40 <= len(body) <= 64
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in body))


def parse_expires_in(text: str) -> timedelta:
    """``90d`` or ``12h`` → how long a new token lives.

    :raise TokenError: anything else, or a lifetime outside 1 hour – 10 years.
    """
    match = _EXPIRES_IN.fullmatch(text or "")
    if match is None:
        raise TokenError("expires_in", f"{text!r} is not a lifetime: give hours or days, such "
                                       "as 12h or 90d")
    number, unit = int(match.group(1)), match.group(2).lower()
    lifetime = timedelta(hours=number) if unit == "h" else timedelta(days=number)
    check_lifetime(lifetime)
    return lifetime


def check_lifetime(lifetime: timedelta) -> None:
    if not timedelta(hours=1) <= lifetime <= MAX_LIFETIME:
        raise TokenError("expires_in", "must be between 1 hour (1h) and 10 years (3650d)")


def create_token(engine, name: str, tenant_id: str | None, is_admin: bool = False,
                 expires_in: timedelta | None = None, rate_limit: int | None = None,
                 actor: Actor | None = None) -> tuple[ApiToken, str]:
    """Store a new token; returns the row and the secret (shown once, never stored). With
    ``actor``, its audit entry is written in the same transaction.

    :param expires_in: how long it lives (None: until revoked).
    :param rate_limit: requests a minute (None: the ``API_RATE_LIMIT`` setting).
    :raise TokenError: unknown tenant, an admin tenant token, a bad name, lifetime or rate.
    """
    name = (name or "").strip()
    if expires_in is not None:
        check_lifetime(expires_in)
    if rate_limit is not None and not 1 <= rate_limit <= MAX_RATE_LIMIT:
        raise TokenError("rate_limit", f"must be 1–{MAX_RATE_LIMIT:,} requests a minute (leave "
                                       "it out for the default)")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise TokenError("name", f"must be 1–{MAX_NAME_LENGTH} characters: say who uses it "
                                 "(e.g. 'billing service')")
    if is_admin and tenant_id is not None:
        raise TokenError("admin", "only all-tenant tokens can be admin tokens: a tenant must not "
                                  "change its own limits")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    now = datetime.now(UTC)
    row = {"name": name, "token_hash": hash_token(secret), "prefix": secret[:SHOWN_CHARS],
           "tenant_id": tenant_id, "is_admin": bool(is_admin), "created_at": now,
           "last_used_at": None, "revoked_at": None,
           "expires_at": now + expires_in if expires_in is not None else None,
           "rate_limit": rate_limit, "rate_window": None, "rate_used": 0, "rate_previous": 0}
    with jobs_db.write_transaction(engine) as conn:
        if tenant_id is not None and conn.execute(
                select(tenants_table.c.id).where(tenants_table.c.id == tenant_id)).first() is None:
            raise TokenError("tenant", f"there is no tenant {tenant_id!r}; create the tenant "
                                       "first, or make an all-tenant token")
        token_id = conn.execute(api_tokens_table.insert().values(**row)
                                .returning(api_tokens_table.c.id)).scalar_one()
        token = ApiToken(id=token_id, **row)
        record(conn, actor, "token_created", tenant_id=tenant_id, target_type="token",
               target_id=token.prefix, after={"name": name, "scope": token.scope}, now=now)
    return token, secret


def authenticate(engine, token: str, now: datetime | None = None,
                 default_rate_limit: int | None = None) -> TokenIdentity | None:
    """The identity of a valid, unrevoked token, or None. Counts the request against the
    token's rate, then records its use (see ``touch``); a refused request records nothing.

    A valid token is remembered for ``AUTH_CACHE_SECONDS`` in this process: a client sending
    hundreds of calls a second costs one token read per interval, not a database read on every
    call. Revoking clears what the revoking process remembers at once; other processes refuse
    the token within ``AUTH_CACHE_SECONDS``.

    :param default_rate_limit: requests a minute for tokens without their own (None: no limit).
    :raise TokenExpiredError: the token is past its ``expires_at``.
    :raise RateLimitedError: the token has used its requests of the last minute.
    """
    now = now or datetime.now(UTC)
    token_hash = hash_token(token)
    remembered = _recent_tokens(engine)
    entry = remembered.get(token_hash)
    if entry is None or entry.expires < time.monotonic():
        t = api_tokens_table.c
        with engine.connect() as conn:
            row = conn.execute(select(t.id, t.name, t.tenant_id, t.is_admin, t.revoked_at,
                                      t.last_used_at, t.expires_at, t.rate_limit, t.prefix)
                               .where(t.token_hash == token_hash)).first()
        if row is None or row.revoked_at is not None:
            remembered.pop(token_hash, None)
            return None
        if len(remembered) >= _AUTH_CACHE_SIZE:
            remembered.clear()
        entry = remembered[token_hash] = _Remembered(
            TokenIdentity(row.id, row.name, row.tenant_id, bool(row.is_admin), row.expires_at,
                          row.rate_limit, row.prefix),
            row.last_used_at, time.monotonic() + AUTH_CACHE_SECONDS)
    identity = entry.identity
    if identity.expires_at is not None and identity.expires_at <= now:
        raise TokenExpiredError(identity.expires_at)
    limit = identity.rate_limit or default_rate_limit
    if limit:
        rates_for(engine).admit(engine, api_tokens_table, identity.id, int(limit))
    if entry.last_used_at is None or now - entry.last_used_at >= LAST_USED_RESOLUTION:
        entry.last_used_at = now
        try:
            touch(engine, entry.identity.id, now)
        except SQLAlchemyError:  # bookkeeping: never refuse a valid call because of it
            log.warning("could not record the use of API token %s", entry.identity.id,
                        exc_info=True)
    return entry.identity


@dataclass
class _Remembered:
    identity: TokenIdentity
    last_used_at: datetime | None
    expires: float   # time.monotonic()


_remembered: weakref.WeakKeyDictionary[Any, dict[str, _Remembered]] = (
    weakref.WeakKeyDictionary())


def _recent_tokens(engine) -> dict[str, _Remembered]:
    return _remembered.setdefault(engine, {})


def touch(engine, token_id: int, now: datetime) -> None:
    """Record a use, at most once a minute per token: a busy client costs one write a minute,
    not one per request. The condition in the UPDATE keeps concurrent requests (or processes)
    that all saw a stale time from writing more than once."""
    t = api_tokens_table.c
    with jobs_db.write_transaction(engine) as conn:
        conn.execute(update(api_tokens_table).where(
            t.id == token_id,
            (t.last_used_at.is_(None)) | (t.last_used_at <= now - LAST_USED_RESOLUTION))
            .values(last_used_at=now))


def revoke_token(engine, token_id: int, actor: Actor | None = None) -> ApiToken | None:
    """Revoke for good (idempotent: a second revoke keeps the first time, and writes no second
    audit entry). None: no such id."""
    t = api_tokens_table.c
    now = datetime.now(UTC)
    with jobs_db.write_transaction(engine) as conn:
        revoked = conn.execute(update(api_tokens_table)
                               .where(t.id == token_id, t.revoked_at.is_(None))
                               .values(revoked_at=now)).rowcount
        row = conn.execute(select(api_tokens_table).where(t.id == token_id)).first()
        if revoked:
            record(conn, actor, "token_revoked", tenant_id=row.tenant_id, target_type="token",
                   target_id=row.prefix, after={"name": row.name}, now=now)
    _recent_tokens(engine).clear()   # refused from now on in this process
    return ApiToken(**row._mapping) if row else None


def list_tokens(engine) -> list[ApiToken]:
    """Every token, active ones first, newest first."""
    t = api_tokens_table.c
    with engine.connect() as conn:
        rows = conn.execute(select(api_tokens_table).order_by(
            t.revoked_at.is_not(None), t.id.desc())).all()
    return [ApiToken(**row._mapping) for row in rows]
