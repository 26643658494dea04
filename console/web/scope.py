"""Which tenants the signed-in user may see: the one place that decides it.

A user bound to tenants (``user_tenants`` rows) sees only those; a user bound to none is staff
and sees every tenant. ``current_scope()`` answers None for staff, else the frozenset of tenant
ids, once per request. Screens apply it one way each: the job listing takes it as
``JobFilter(args, tenant_scope=…)``, a page about one tenant or one of its records asks
``tenant_or_404``, lists of tenants go through ``visible``, and the event stream drops other
tenants' changes with ``in_scope``. Another tenant's page is a 404, as if it did not exist,
so that a bound user cannot learn which tenants or jobs there are.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import TypeVar

from flask import abort, g
from flask_login import current_user
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.orm import Session

from ..extensions import db
from ..jobs.models import tenants_table
from .models import user_tenants_table

Scope = frozenset[str] | None
T = TypeVar("T")
NOT_FOUND = "There is nothing here: the link may be wrong, or what it named was removed."


def tenants_of(user_id: int) -> frozenset[str]:
    """The tenants ``user_id`` is bound to (empty: staff)."""
    c = user_tenants_table.c
    return frozenset(db.session.scalars(select(c.tenant_id).where(c.user_id == user_id)))


def bindings() -> dict[int, list[str]]:
    """Every bound user's tenants, sorted (the users screen shows them on each row)."""
    c = user_tenants_table.c
    bound: dict[int, list[str]] = {}
    for user_id, tenant_id in db.session.execute(
            select(c.user_id, c.tenant_id).order_by(c.user_id, c.tenant_id)):
        bound.setdefault(user_id, []).append(tenant_id)
    return bound


class UnknownTenantError(ValueError):
    """A binding names a tenant that does not exist."""


def bind_tenants(session: Session | Connection, user_id: int, tenant_ids: Iterable[str]) -> None:
    """Bind ``user_id`` to exactly ``tenant_ids`` (none: staff), in the caller's transaction.

    :raise UnknownTenantError: a tenant that does not exist (named in the message).
    """
    wanted = sorted(set(tenant_ids))
    known = set(session.scalars(select(tenants_table.c.id).where(
        tenants_table.c.id.in_(wanted)))) if wanted else set()
    unknown = [tenant_id for tenant_id in wanted if tenant_id not in known]
    if unknown:
        raise UnknownTenantError(f"there is no tenant {unknown[0]!r}; the Tenants page lists them")
    c = user_tenants_table.c
    session.execute(delete(user_tenants_table).where(c.user_id == user_id))
    if wanted:
        session.execute(insert(user_tenants_table),
                        [{"user_id": user_id, "tenant_id": tenant_id} for tenant_id in wanted])


def current_scope() -> Scope:
    """None when the signed-in user is staff, else the tenants it may see. Nobody signed in
    sees no tenant (only public endpoints answer them, and those show none)."""
    if "tenant_scope" not in g:
        if not current_user.is_authenticated:
            g.tenant_scope = frozenset()
        else:
            g.tenant_scope = tenants_of(current_user.id) or None
    return g.tenant_scope


def is_staff() -> bool:
    return current_scope() is None


def in_scope(tenant_id: str | None, scope: Scope) -> bool:
    """Whether a record of ``tenant_id`` is visible in ``scope`` (a record of no tenant — a
    system-wide figure — only to staff)."""
    return scope is None or tenant_id in scope


def tenant_or_404(tenant_id: str | None) -> None:
    """Refuse another tenant's page or record (404: do not confirm it exists)."""
    if not in_scope(tenant_id, current_scope()):
        abort(404, NOT_FOUND)


def visible(items: Iterable[T], tenant_of: Callable[[T], str | None]) -> list[T]:
    """The ``items`` the signed-in user may see, each read for its tenant by ``tenant_of``."""
    scope = current_scope()
    return [item for item in items if in_scope(tenant_of(item), scope)]


def staff_only(view):
    """A system-wide screen or action (tokens for every tenant, adding tenants, system rules):
    a user bound to tenants gets 403 saying why."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not is_staff():
            abort(403, "This is system-wide: it needs a staff account (one bound to no tenant).")
        return view(*args, **kwargs)
    return wrapper
