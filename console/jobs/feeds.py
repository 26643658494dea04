"""``job_updates`` across processes: local changes at once, other processes' from the database.

A process publishes its own status changes the moment they commit. While anyone in this process
subscribes, a poller also reads jobs whose ``updated_at`` moved since it last looked (indexed),
so a change made by another process — a `flask worker`, another gunicorn worker, another
machine — reaches this process's subscribers within ``POLL_SECONDS``. Both paths go through one
de-duplication, keyed by (job, status, progress, updated_at), so each change is published once.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, bindparam, or_, select

from .availability import OutageLog
from .clock import Clock
from .events import EventStream
from .models import jobs_table
from .records import job_from_row
from .types import SystemJob

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
# Writers stamp updated_at before they commit; looking back this far catches a transaction that
# committed a little after a later one.
OVERLAP = timedelta(seconds=3)
PAGE = 2000
_j = jobs_table.c
_CHANGED_AFTER = (select(_j.id, _j.status, _j.progress, _j.updated_at)
                  .where(or_(_j.updated_at > bindparam("after", type_=_j.updated_at.type),
                             and_(_j.updated_at == bindparam("after", type_=_j.updated_at.type),
                                  _j.id > bindparam("after_id"))))
                  .order_by(_j.updated_at, _j.id).limit(PAGE))
_JOBS_BY_ID = select(jobs_table).where(_j.id.in_(bindparam("ids", expanding=True)))


class JobUpdateStream(EventStream):
    def __init__(self, engine: Engine, clock: Clock, poll_seconds: float = POLL_SECONDS):
        super().__init__("job_updates")
        self._engine = engine
        self._clock = clock   # the time writers stamp updated_at in
        self._poll_seconds = poll_seconds
        self._seen: dict[tuple, float] = {}
        self._seen_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._poller_stop = threading.Event()
        self._outage = OutageLog("job_updates poller")

    def subscribe(self, callback):
        unsubscribe = super().subscribe(callback)
        self._ensure_poller()

        def unsubscribe_and_maybe_stop() -> None:
            unsubscribe()
            if not self.has_subscribers:
                self._poller_stop.set()
        return unsubscribe_and_maybe_stop

    def publish(self, job: SystemJob) -> None:
        if not self.has_subscribers:
            return
        key = (job.id, job.status.value, job.progress, job.updated_at)
        now = time.monotonic()
        with self._seen_lock:
            if key in self._seen:
                return
            self._seen[key] = now
        super().publish(job)

    def _ensure_poller(self) -> None:
        with self._lock:
            if self._poller is not None and self._poller.is_alive() and not \
                    self._poller_stop.is_set():
                return
            self._poller_stop = threading.Event()
            self._poller = threading.Thread(target=self._poll, args=(self._poller_stop,),
                                            name="job-updates-poller", daemon=True)
            self._poller.start()

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self._poll_seconds):
            try:
                self._publish_changes_since(self._clock.now() - OVERLAP)
            except Exception as exc:  # the database blinked: try again next tick
                if self._outage.failed(exc, "read job changes") is None:
                    log.warning("job_updates poller could not read changes", exc_info=True)
            else:
                self._outage.succeeded()
            self._forget_old()

    def _publish_changes_since(self, after: datetime) -> None:
        """Publish every change stamped after ``after`` that was not published yet. A light
        query finds them page by page; only unseen ones are read whole."""
        after_id = ""
        with self._engine.connect() as conn:
            while True:
                changed = conn.execute(_CHANGED_AFTER, {"after": after,
                                                        "after_id": after_id}).all()
                with self._seen_lock:
                    unseen = [row.id for row in changed
                              if (row.id, row.status, row.progress, row.updated_at)
                              not in self._seen]
                if unseen:
                    rows = conn.execute(_JOBS_BY_ID, {"ids": unseen}).all()
                    for job in sorted((job_from_row(r) for r in rows),
                                      key=lambda j: j.updated_at):
                        self.publish(job)
                if len(changed) < PAGE:
                    return
                after, after_id = changed[-1].updated_at, changed[-1].id

    def _forget_old(self) -> None:
        horizon = time.monotonic() - 3 * OVERLAP.total_seconds()
        with self._seen_lock:
            if len(self._seen) > 1000:
                self._seen = {k: t for k, t in self._seen.items() if t > horizon}
