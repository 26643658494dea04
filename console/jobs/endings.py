"""What follows when jobs end for good (completed, failed, cancelled).

Every path that ends a job — the runner recording an attempt, lease recovery giving up, a
cancel, a recurring job whose schedule never fires again — calls ``record_endings`` in the
transaction that ends it. What follows (dependent jobs released or cancelled, a batch's counts
and callbacks, deliveries of the tenant's event webhooks) is then written in that same
transaction: a crash can never leave the ending without its consequences, nor the reverse.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection

from . import batches, dependencies, webhooks
from .rollups import RollupBatch
from .types import JobStatus, SystemJob

ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def record_endings(conn: Connection, jobs: Iterable[SystemJob], now: datetime,
                   rollups: RollupBatch) -> list[SystemJob]:
    """Write, in ``conn``'s transaction, what follows from those of ``jobs`` (as now stored)
    that have ended. Returns the other jobs it changed, for the caller to publish.

    What it counts (jobs cancelled, deliveries created) goes into ``rollups``, which the
    caller writes last: every writer takes rollup rows in one order (``RollupBatch.write``).
    """
    ended = [job for job in jobs if job.status in ENDED]
    if not ended:
        return []
    changed: list[SystemJob] = []
    # Dependents first: the ones it cancels come back through record_endings (their batches
    # count them there); then the batches of the jobs ended here.
    changed += dependencies.release(conn, ended, now, rollups, record_endings)
    callbacks, finished = batches.count_endings(conn, ended, now)
    changed += callbacks
    changed += webhooks.record_batch_events(conn, finished, now, rollups)
    return changed
