"""Operators' pauses: everything (maintenance), a tenant, a handler (for everyone or one
tenant), one job. Kept in the ``pauses`` table, so a pause made in one process holds in every
process from its next dispatch cycle, and survives restarts.

Pausing never changes what a job is, only whether it may start:

- a paused tenant's or handler's jobs still queue (within the tenant's limits) and fall due;
  claims pass them by (``PauseSet.runnable_handlers``);
- a paused job waits ``pending``: it is never promoted to ``queued``, and one that reaches
  ``queued`` anyway (its lease recovered, handed back at shutdown) is put back by the next
  cycle (``hold_paused_jobs``);
- under a pause of everything, runners finish what runs and claim nothing.

The claim and the job explainer ask the same ``PauseSet``, so the explanation cannot drift
from what runners do.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from . import db
from .models import jobs_table, pauses_table
from .types import JobStatus

SCOPES = ("all", "tenant", "handler", "job")
MAX_REASON_LENGTH = 500
LIFTED_KEPT = timedelta(days=1)   # how long a lifted pause's end is remembered


@dataclass(frozen=True)
class Pause:
    scope: str                       # all | tenant | handler | job
    tenant_id: str | None = None     # the tenant; for a handler, None means every tenant
    handler: str | None = None
    job_id: str | None = None
    reason: str | None = None
    paused_by: str | None = None
    paused_at: datetime | None = None

    @property
    def key(self) -> str:
        return pause_key(self.scope, tenant_id=self.tenant_id, handler=self.handler,
                         job_id=self.job_id)

    def describe(self) -> str:
        """What is paused, for people: "everything", "tenant acme", "handler email for acme"."""
        if self.scope == "all":
            return "everything (maintenance)"
        if self.scope == "tenant":
            return f"tenant {self.tenant_id}"
        if self.scope == "handler":
            return f"handler {self.handler}" + (f" for tenant {self.tenant_id}"
                                                if self.tenant_id else " for every tenant")
        return f"job {self.job_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "tenant_id": self.tenant_id, "handler": self.handler,
                "job_id": self.job_id, "reason": self.reason, "paused_by": self.paused_by,
                "paused_at": self.paused_at.isoformat() if self.paused_at else None,
                "what": self.describe()}


def pause_key(scope: str, *, tenant_id: str | None = None, handler: str | None = None,
              job_id: str | None = None) -> str:
    if scope == "all":
        return "all"
    if scope == "tenant":
        return f"tenant:{tenant_id}"
    if scope == "handler":
        return f"handler:{handler}" + (f"@{tenant_id}" if tenant_id else "")
    if scope == "job":
        return f"job:{job_id}"
    raise ValueError(f"pause scope must be one of {', '.join(SCOPES)}")


class PauseSet:
    """Every pause in force, as one dispatch cycle (or one explanation) sees them, and when
    pauses lifted within ``LIFTED_KEPT`` ended (``lifted``: key → resumed at)."""

    def __init__(self, pauses: list[Pause], lifted: dict[str, datetime] | None = None):
        self.pauses = pauses
        self.lifted = lifted or {}
        self._by_key = {p.key: p for p in pauses}
        self.everything = self._by_key.get("all")
        self.job_ids = {p.job_id for p in pauses if p.scope == "job"}
        self._holds_some_work = any(p.scope in ("tenant", "handler") for p in pauses)

    def __bool__(self) -> bool:
        return bool(self.pauses)

    def holding(self, tenant_id: str, handler: str, job_id: str | None = None) -> list[Pause]:
        """The pauses that keep a job of ``tenant_id`` run by ``handler`` from starting."""
        return [self._by_key[key] for key in _keys_holding(tenant_id, handler, job_id)
                if key in self._by_key]

    def released_at(self, tenant_id: str, handler: str, job_id: str) -> datetime | None:
        """When the latest lifted pause that held such a job ended (None: none did lately):
        the job's wait counts from then, not from when it fell due."""
        if not self.lifted:
            return None
        ends = [self.lifted[key] for key in _keys_holding(tenant_id, handler, job_id)
                if key in self.lifted]
        return max(ends, default=None)

    def runnable_handlers(self, tenant_id: str, handlers: list[str]) -> list[str]:
        """Of ``handlers``, those whose jobs of ``tenant_id`` may start (job pauses aside:
        a paused job is never queued)."""
        if not self._holds_some_work and self.everything is None:
            return handlers
        return [h for h in handlers if not self.holding(tenant_id, h)]

    def for_tenant(self, tenant_id: str) -> list[Pause]:
        """The pauses that touch a tenant's work: everything, the tenant, its handlers."""
        return [p for p in self.pauses if p.scope == "all" or (
            p.scope in ("tenant", "handler") and p.tenant_id == tenant_id) or (
            p.scope == "handler" and p.tenant_id is None)]

    def of(self, scope: str, **keys) -> Pause | None:
        return self._by_key.get(pause_key(scope, **keys))


def _keys_holding(tenant_id: str, handler: str, job_id: str | None) -> tuple[str, ...]:
    return ("all", f"tenant:{tenant_id}", f"handler:{handler}",
            f"handler:{handler}@{tenant_id}") + ((f"job:{job_id}",) if job_id else ())


def read_pauses(conn: Connection) -> PauseSet:
    pauses, lifted = [], {}
    for row in db.fetch_all(conn, _ALL_PAUSES):   # every runner cycle reads them
        if row.resumed_at is None:
            pauses.append(Pause(row.scope, row.tenant_id, row.handler, row.job_id, row.reason,
                                row.paused_by, row.paused_at))
        else:
            lifted[row.key] = row.resumed_at
    return PauseSet(pauses, lifted)


_ALL_PAUSES = select(pauses_table)


def hold_paused_jobs(conn: Connection, pauses: PauseSet, now: datetime) -> list[Any]:
    """Put paused jobs that reached ``queued`` back to ``pending`` (their time unchanged):
    a paused job never waits where a claim could take it. Returns their rows."""
    if not pauses.job_ids:
        return []
    j = jobs_table.c
    return conn.execute(jobs_table.update()
                        .where(j.id.in_(sorted(pauses.job_ids)),
                               j.status == JobStatus.QUEUED.value)
                        .values(status=JobStatus.PENDING.value, updated_at=now)
                        .returning(*jobs_table.c)).all()


def paused_job_ids():
    """A subquery of paused jobs' ids: promotion and the runners' next wake-up skip them."""
    return select(pauses_table.c.job_id).where(pauses_table.c.scope == "job",
                                               pauses_table.c.resumed_at.is_(None))
