"""Which tenants the signed-in user may see: the one place that decides it.

A user bound to tenants (``user_tenants`` rows) sees only those; a user bound to none is staff
and sees every tenant. ``current_scope()`` answers None for staff, else the frozenset of tenant
ids, once per request. Screens apply it one way each: the job listing takes it as
``JobFilter(args, tenant_scope=…)``, analytics readers take it as ``tenant_ids``, a page
about one tenant asks ``tenant_or_404`` and one about a record ``record_or_404``, lists and
forms offer ``visible_tenants()``, and the event stream drops other tenants' changes with
``in_scope``. Another tenant's page is a 404, as if it did not exist,
so that a bound user cannot learn which tenants or jobs there are.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from flask import abort, g
from flask_login import current_user
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.orm import Session

from ..extensions import db
from ..jobs import get_job_service
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


def record_or_404(record, tenant_of: Callable = lambda record: record.tenant_id,
                  message: str = NOT_FOUND):
    """``record`` when it exists and is of a tenant the user may see; else 404 with one
    ``message`` for both (do not confirm it exists)."""
    if record is None or not in_scope(tenant_of(record), current_scope()):
        abort(404, message)
    return record


def visible(items: Iterable[T], tenant_of: Callable[[T], str | None]) -> list[T]:
    """The ``items`` the signed-in user may see, each read for its tenant by ``tenant_of``."""
    scope = current_scope()
    return [item for item in items if in_scope(tenant_of(item), scope)]


def visible_tenants() -> list:
    """The ``TenantConfig`` of every tenant the signed-in user may see, by id (what lists,
    filters and forms offer)."""
    configs = get_job_service().tenants.list_tenant_configs()
    return sorted(visible(configs, lambda config: config.tenant_id), key=lambda c: c.tenant_id)


def visible_tenant(tenant_id: str | None):
    """The tenant's ``TenantConfig`` when it exists and the signed-in user may see it, else
    None (the caller answers as for a tenant that does not exist)."""
    # A NUL cannot be in a tenant id, and PostgreSQL refuses even to compare one.
    if (not tenant_id or len(tenant_id) > 64 or "\x00" in tenant_id
            or not in_scope(tenant_id, current_scope())):
        return None
    return get_job_service().tenants.get_tenant_config(tenant_id)


def tenant_or_404(tenant_id: str | None):
    """The tenant's ``TenantConfig``; 404 for a tenant that does not exist or that the user
    may not see, with one message for both (do not confirm it exists)."""
    config = visible_tenant(tenant_id)
    if config is None:
        abort(404, "There is no such tenant; the Tenants page lists those you can see.")
    return config


STAFF_ONLY = "This is system-wide: it needs a staff account (one bound to no tenant)."


def tenant_scoped(view):
    """Declare that ``view`` applies the signed-in user's scope itself (with the helpers
    above), so users bound to tenants may open it. Views without it are staff-only: a new
    screen shows a bound user nothing until it has been scoped, rather than everything."""
    view.tenant_scoped = True
    return view


def refuse_unscoped(view) -> None:
    """403 for a user bound to tenants on a view not declared ``tenant_scoped`` (system-wide
    screens: API tokens, adding tenants, system alert rules; console/web/auth runs this)."""
    if view is not None and not getattr(view, "tenant_scoped", False) and not is_staff():
        abort(403, STAFF_ONLY)
