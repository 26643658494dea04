"""What a batch's page shows, read in one connection: its counts as bar segments, its failed
and cancelled jobs, and its callbacks with their states (or why one did not run)."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection

from ...jobs.batches import CALLBACKS, PAYLOAD_KEY, Batch, batch_failures
from ...jobs.models import jobs_table
from ...jobs.records import job_from_row
from ...jobs.types import SystemJob


@dataclass(frozen=True)
class Segment:
    """A part of the progress bar: one count and its share of the batch, in percent."""

    name: str
    count: int
    percent: float


@dataclass(frozen=True)
class Callback:
    """A callback of the batch: its job once stored; else why there is none (yet)."""

    kind: str
    job: SystemJob | None = None
    note: str | None = None


@dataclass
class BatchProgress:
    batch: Batch
    segments: list[Segment]
    failures: list[SystemJob] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """Worth refreshing: the batch or one of its callbacks has not finished."""
        return not self.batch.is_finished or any(
            c.job is not None and not c.job.is_finished for c in self.callbacks)


def batch_progress(conn: Connection, batch: Batch) -> BatchProgress:
    return BatchProgress(batch, segments(batch), batch_failures(conn, batch),
                         callbacks(conn, batch))


def segments(batch: Batch) -> list[Segment]:
    counts = (("completed", batch.completed), ("failed", batch.failed),
              ("cancelled", batch.cancelled))
    return [Segment(name, count, round(100.0 * count / batch.total, 2) if batch.total else 0.0)
            for name, count in counts if count]


def callbacks(conn: Connection, batch: Batch) -> list[Callback]:
    stored = {}
    if batch.callback_job_ids:
        rows = conn.execute(jobs_table.select().where(
            jobs_table.c.id.in_(batch.callback_job_ids)))
        for job in map(job_from_row, rows):
            stored[job.payload.get(PAYLOAD_KEY, {}).get("callback")] = job
    found = []
    for kind in CALLBACKS:
        if getattr(batch, kind) is None:
            continue
        found.append(Callback(kind, stored.get(kind), None if kind in stored
                              else _missing(batch, kind)))
    return found


def _missing(batch: Batch, kind: str) -> str:
    if not batch.is_finished:
        return "runs when every job of the batch has ended"
    if kind == "on_success" and not batch.succeeded:
        return (f"not run: {batch.failed:,} failed and {batch.cancelled:,} cancelled — "
                "it runs only when every job completes")
    return "not kept: it may have been pruned"
