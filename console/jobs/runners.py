"""Who is working: runners' heartbeat rows, read by health checks, ``/metrics``, the job
explainer and the runners screen.

A runner is *live* while it beats (every ``lease_seconds / 3``): a row silent for a whole lease
period belongs to a process that crashed or lost the database, and whose leases other runners
will recover. Stopped and silent rows stay ``RUNNER_HISTORY`` long, so operators can see what
became of the jobs such a runner held.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select

from .clock import SKEW_TOLERANCE_SECONDS
from .models import jobs_table, runners_table
from .types import JobStatus

RUNNER_HISTORY = timedelta(hours=24)
# Readers that do not know the lease period (analytics, /metrics) count a runner live while
# it beat this recently: several lease periods at the default settings.
LIVE_RUNNER_SILENCE_SECONDS = 120.0
MAX_LISTED_JOBS = 1000   # per runner: the ids of jobs it left behind


def live_clause(now: datetime, lease_seconds: float):
    """The rows of live runners: not stopped, and beating within a lease period."""
    r = runners_table.c
    return and_(r.stopped_at.is_(None),
                r.heartbeat_at >= now - timedelta(seconds=lease_seconds))


def count_live(conn: Connection, now: datetime, lease_seconds: float) -> int:
    return conn.execute(select(func.count()).select_from(runners_table)
                        .where(live_clause(now, lease_seconds))).scalar_one()


@dataclass
class RunnerInfo:
    id: str
    hostname: str
    pid: int
    threads: int
    busy_threads: int
    handlers: list[str]
    jobs_held: int
    claims_per_minute: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    live: bool = True
    clock_skew_seconds: float = 0.0   # its clock minus the database's (clock.py)
    # Stopped runners: the jobs they held when they stopped, and what became of each.
    left_behind: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clock_skewed(self) -> bool:
        return abs(self.clock_skew_seconds) > SKEW_TOLERANCE_SECONDS

    @property
    def how_it_ended(self) -> str | None:
        if self.live:
            return None
        return "stopped cleanly" if self.stopped_at else "stopped beating (crashed or cut off)"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "hostname": self.hostname, "pid": self.pid,
                "threads": self.threads, "busy_threads": self.busy_threads,
                "handlers": self.handlers, "jobs_held": self.jobs_held,
                "claims_per_minute": self.claims_per_minute,
                "started_at": self.started_at.isoformat(),
                "heartbeat_at": self.heartbeat_at.isoformat(),
                "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
                "live": self.live, "how_it_ended": self.how_it_ended,
                "clock_skew_seconds": self.clock_skew_seconds,
                "left_behind": self.left_behind}


def _info(row, live: bool) -> RunnerInfo:
    return RunnerInfo(row.id, row.hostname, row.pid, row.threads, row.busy_threads or 0,
                      list(row.handlers or []), row.jobs_held or 0, row.claims_per_minute or 0,
                      row.started_at, row.heartbeat_at, row.stopped_at, live,
                      clock_skew_seconds=row.clock_skew_seconds or 0.0)


def live_runners(conn: Connection, now: datetime, lease_seconds: float) -> list[RunnerInfo]:
    rows = conn.execute(select(runners_table).where(live_clause(now, lease_seconds))
                        .order_by(runners_table.c.hostname, runners_table.c.pid)).all()
    return [_info(row, True) for row in rows]


def stopped_runners(conn: Connection, now: datetime, lease_seconds: float,
                    limit: int = 50) -> list[RunnerInfo]:
    """Runners seen in the last day that stopped (cleanly, or by going silent), newest first,
    each with the jobs it held at the end: those it handed back on a clean stop, and those
    whose attempt other runners recorded as lost — with each job's state now."""
    r = runners_table.c
    rows = conn.execute(select(runners_table).where(
        r.heartbeat_at >= now - RUNNER_HISTORY,
        or_(r.stopped_at.is_not(None), r.heartbeat_at < now - timedelta(seconds=lease_seconds)))
        .order_by(r.heartbeat_at.desc()).limit(limit)).all()
    runners = []
    for row in rows:
        runner = _info(row, False)
        runners.append(runner)
        released = set(row.released_job_ids or [])
        lost = set(row.lost_job_ids or [])
        ids = sorted(released | lost)
        states = {job.id: job for job in conn.execute(
            select(jobs_table.c.id, jobs_table.c.status, jobs_table.c.tenant_id,
                   jobs_table.c.handler, jobs_table.c.lease_owner)
            .where(jobs_table.c.id.in_(ids)))} if ids else {}
        for job_id in ids:
            job = states.get(job_id)
            runner.left_behind.append({
                "job_id": job_id,
                "how": "handed back at shutdown" if job_id in released
                       else "attempt recorded as lost",
                "status": job.status if job else "pruned",
                "tenant_id": job.tenant_id if job else None,
                "handler": job.handler if job else None,
                "now_held_by": job.lease_owner if job is not None
                               and job.status == JobStatus.PROCESSING.value else None})
    return runners


def record_lost_jobs(conn: Connection, lost: dict[str, list[str]]) -> None:
    """Recovery took these jobs (by runner id) from runners that stopped renewing: note them
    on the runners' rows for the runners screen."""
    for runner_id, job_ids in sorted(lost.items()):
        known = conn.execute(select(runners_table.c.lost_job_ids)
                             .where(runners_table.c.id == runner_id)).first()
        if known is not None:
            ids = (list(known.lost_job_ids or []) + sorted(job_ids))[:MAX_LISTED_JOBS]
            conn.execute(runners_table.update().where(runners_table.c.id == runner_id)
                         .values(lost_job_ids=ids))


def forget_old_runners(conn: Connection, now: datetime) -> None:
    conn.execute(delete(runners_table).where(runners_table.c.heartbeat_at < now - RUNNER_HISTORY))
