"""The pauses a request sees: read once per request (a page of 200 jobs, each showing its own
pause, costs one read, not 200), and the part of them that concerns one tenant.
"""
from __future__ import annotations

from flask import g

from ..jobs import get_job_service
from ..jobs.pauses import SCOPES, Pause, PauseSet


def request_pauses() -> PauseSet:
    """Every pause in force, read at the request's first call and kept for the rest of it.

    Responses are serialized after the view returns, so a view that pauses or resumes reads
    them after its change as long as it does not call this before making it.
    """
    if "api_pauses" not in g:
        g.api_pauses = get_job_service().pauses()
    return g.api_pauses


def holding_tenant(pauses: PauseSet, tenant_id: str) -> list[Pause]:
    """The pauses that hold some of a tenant's work — everything, the tenant, handlers paused
    for everyone or for it, its jobs — and none that concerns only another tenant."""
    own_jobs = [p for p in pauses.pauses if p.scope == "job" and p.tenant_id == tenant_id]
    return in_order(pauses.for_tenant(tenant_id) + own_jobs)


def in_order(pauses: list[Pause]) -> list[Pause]:
    """Broadest first (everything, tenants, handlers, jobs), then oldest first: a stable
    order for lists (the table has none)."""
    return sorted(pauses, key=lambda p: (SCOPES.index(p.scope), p.paused_at, p.key))
