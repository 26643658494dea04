"""The runner: claims due jobs, runs them in a thread pool, records every attempt.

One dispatcher thread does all of a runner's job writes, each cycle in one short transaction:
record finished attempts, promote pending jobs that fell due, claim new work for the free
slots. It sleeps until the earliest of: a wake-up (work queued in this process, a slot freed,
a commit by another process), the next pending job's time, the moment a rate limit that held
due work back allows a start again, the nearest attempt deadline, or the poll interval.
Cycles are paced only while they keep finding work a little at a time (see ``_paced``).
APScheduler keeps the housekeeping clock: lease renewal with the runner's heartbeat, and
recovery of jobs whose owner stopped renewing.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, select

from . import attempt_logs, db, webhooks
from .attempt_logs import AttemptLog, capturing, handler_logger
from .attempts import (
    NEVER_FIRES,
    RetryPolicy,
    attempt_values,
    job_last_result,
    next_state,
    not_rearmed,
    run_outcome,
)
from .availability import OutageLog
from .claiming import AGED_LOOK_INTERVAL, FairShare, claim_due_jobs
from .cron import next_fire_time
from .endings import record_endings
from .handlers import JobExecutionContext, LazyTenantContext, system_handler_message
from .models import attempt_lines_table, daily_usage_table, jobs_table, runners_table
from .pauses import PauseSet, hold_paused_jobs, paused_job_ids, read_pauses
from .pool import WorkerPool, WorkItem
from .queue_sql import attempt_row, result_row, write_results
from .records import job_from_row
from .recovery import release_expired_leases
from .rollups import RollupBatch, hour_of, record_rejections, sample_queue_depth
from .types import (
    JobExecutionResult,
    JobNotAllowedError,
    JobStatus,
    JobValidationError,
    SystemJob,
)
from .usage import daily_jobs_used, live_job_counts, recurring_runs_allowed
from .wakeup import NOTIFY_CHANNEL

log = logging.getLogger(__name__)
UTC = timezone.utc
_PROGRESS_MIN_INTERVAL = 0.25  # seconds between progress writes of one job
_SHORT_ATTEMPT_MS = 20.0       # attempts shorter than this (on average) are claimed ahead
_AHEAD_BUDGET_MS = 10.0        # a pool's worth of claimed-ahead work lasts about this long
_MAX_AHEAD = 4                 # pools' worth of jobs claimed ahead, at most
_MIN_CYCLE_INTERVAL = 0.02     # seconds from one dispatch cycle's start to the next's
_LINES_MIN_INTERVAL = 0.25     # seconds between writes of running attempts' log lines


def _build_statements():
    j = jobs_table.c
    # Rows are locked in id order everywhere (here, renewal, recovery), so that on PostgreSQL
    # two of a runner's transactions never wait on each other in a cycle.
    owned = select(j.id).where(j.id.in_(bindparam("ids", expanding=True)),
                               j.lease_owner == bindparam("owner"),
                               j.status == JobStatus.PROCESSING.value).order_by(j.id)
    # A paused job stays pending: never promoted, and no reason to wake up for it.
    promote_due = (jobs_table.update()
                   .where(j.status == JobStatus.PENDING.value,
                          j.scheduled_for <= bindparam("now", type_=j.scheduled_for.type),
                          j.id.not_in(paused_job_ids()))
                   .values(status=JobStatus.QUEUED.value,
                           updated_at=bindparam("now", type_=j.updated_at.type))
                   .returning(*jobs_table.c))
    # A job waiting for its dependencies has no time (NULL, which SQLite sorts first): their
    # release makes it due in the transaction that ends them, and that commit wakes runners.
    next_due = (select(j.scheduled_for)
                .where(j.status == JobStatus.PENDING.value, j.scheduled_for.is_not(None),
                       j.id.not_in(paused_job_ids()))
                .order_by(j.scheduled_for).limit(1))
    next_due_time = select(next_due.scalar_subquery())   # one row, NULL when none
    any_queued = select(j.id).where(j.status == JobStatus.QUEUED.value).limit(1)
    work_waiting = select(any_queued.scalar_subquery(), next_due.scalar_subquery())
    return (owned, owned.with_for_update(skip_locked=True), promote_due, next_due_time,
            work_waiting)


# Built once: constructing a statement costs more than executing it on SQLite.
_OWNED, _OWNED_SKIP_LOCKED, _PROMOTE_DUE, _NEXT_DUE_TIME, _WORK_WAITING = _build_statements()
# A running job whose attempt logged new lines gets a new updated_at: the change feed that
# carries its progress to every process's pages carries its lines too (feeds.py).
_TOUCH_RUNNING = (jobs_table.update()
                  .where(jobs_table.c.id.in_(bindparam("ids", expanding=True)),
                         jobs_table.c.lease_owner == bindparam("owner"),
                         jobs_table.c.status == JobStatus.PROCESSING.value)
                  .values(updated_at=bindparam("now", type_=jobs_table.c.updated_at.type))
                  .returning(*jobs_table.c))


@dataclass
class Finished:
    """An attempt that ended, waiting to be written by the dispatcher."""

    item: WorkItem
    result: JobExecutionResult
    started_at: datetime
    duration_ms: float


@dataclass
class _Record:
    """A finished attempt ready to write (``Runner._prepare_records``)."""

    job_id: str
    result_row: tuple      # the job's next state (queue_sql.result_row)
    attempt_row: tuple     # its attempt (queue_sql.attempt_row)
    updated: SystemJob     # the job as it will be stored
    rollup: tuple          # RollupBatch.add_attempt's arguments
    outcome: str | None    # attempts.run_outcome: how the attempt ended its run


class Runner:
    def __init__(self, service, *, threads: int | None = None,
                 poll_interval: float | None = None, lease_seconds: float | None = None,
                 name: str | None = None):
        self.service = service   # the JobService whose handlers, tenants and streams it uses
        self.engine = service.engine
        self.clock = service.clock   # leases, due times, heartbeats: the database's time
        self.retry_policy = RetryPolicy(service.retry_base_seconds, service.retry_max_seconds)
        self.threads = max(1, threads or service.worker_threads)
        self.poll_interval = poll_interval or service.poll_interval
        self.lease_seconds = lease_seconds or service.lease_seconds
        self.id = f"{socket.gethostname()}:{os.getpid()}:{name or 'runner'}:{secrets.token_hex(3)}"
        self._pool = WorkerPool(self.threads, self._execute, name=name or "jobs",
                                on_slot_freed=self._slot_freed)
        self._fairness = FairShare()
        self._finished: deque[Finished] = deque()
        self._recording: set[str] = set()   # ids of finished attempts being written right now
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Set when the next cycle should not wait out the pacing interval (``_paced``): an
        # attempt of a job that others wait for ended, or a backlog's room came free.
        self._hurry = threading.Event()
        self._last_claimed = 0   # jobs the last cycle claimed
        self._backlog_room = 0   # the room the last cycle filled when it left due work behind
        self._awaited: set[str] = set()   # claimed jobs that have dependents
        self._dispatcher: threading.Thread | None = None
        self._scheduler = None
        self._watcher = None
        self._next_due: datetime | None = None   # the earliest pending job's time
        self._next_due_read = False
        self._paused_jobs: set[str] = set()   # as of the last cycle
        self._pauses = PauseSet([])            # as the last cycle read them
        self._aged_looked_at = float("-inf")   # monotonic time of the last claim that did
        self._progress_written: dict[str, float] = {}
        # Attempt logs (attempt_logs.py): those of running attempts with lines to write, and
        # lines a failed cycle could not write. Running attempts' lines are written at most
        # every _LINES_MIN_INTERVAL; a finished attempt's with its result.
        attempt_logs.install()
        self._log_limits = service.attempt_log_limits
        self._lines_waiting: deque[AttemptLog] = deque()
        self._lines_unwritten: list[dict[str, Any]] = []
        self._lines_written_at = float("-inf")   # monotonic
        # Claims that held back a tenant's due work, per (tenant, limit type): no free
        # concurrency slot (max_concurrent_jobs), or a rate limit with no room (rate_limit);
        # written to limit_rejections with the next lease renewal.
        self._held_back: dict[tuple[str, str], int] = {}
        self._rate_wake: datetime | None = None   # when held-back rate-limited work may start
        self._held_back_lock = threading.Lock()
        self._postgres = self.engine.dialect.name == "postgresql"
        self._connection = db.HeldConnection(self.engine)   # the dispatcher's own
        self._outage = OutageLog(f"runner {self.id}")
        self._renew_after_outage = threading.Event()
        self._recent_duration_ms = _SHORT_ATTEMPT_MS * 10   # assume long until measured
        self._claims: deque[tuple[float, int]] = deque()   # (monotonic time, jobs) last minute
        self.executed = 0   # attempts finished by this runner

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Runner:
        """Run in the background: dispatcher thread, handler pool, APScheduler housekeeping."""
        from apscheduler.schedulers.background import BackgroundScheduler

        from .wakeup import start_watcher

        self._register_heartbeat()
        self.recover_expired_leases()
        self._pool.start()
        self.service.attach_runner(self)
        self._watcher = start_watcher(self.engine, self.wake, NOTIFY_CHANNEL)
        self._scheduler = BackgroundScheduler(timezone=UTC, daemon=True,
                                              job_defaults={"coalesce": True, "max_instances": 1,
                                                            "misfire_grace_time": None})
        self._scheduler.add_job(self.renew_leases, "interval", seconds=self.lease_seconds / 3,
                                id="renew-leases")
        self._scheduler.add_job(self.recover_expired_leases, "interval",
                                seconds=max(1.0, self.lease_seconds / 2), id="recover-leases")
        self._scheduler.start()
        self._dispatcher = threading.Thread(target=self._dispatch_forever,
                                            name="jobs-dispatcher", daemon=True)
        self._dispatcher.start()
        log.info("runner %s started with %d threads", self.id, self.threads)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let running attempts finish for ``grace`` seconds; release the rest."""
        if self._stop.is_set():
            return
        grace = self.service.shutdown_grace_seconds if grace is None else grace
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=10)
        self.service.detach_runner(self)
        if self._watcher is not None:
            self._watcher.stop()
        released = self._drain_and_release(grace)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self._record_stop(released)
        log.info("runner %s stopped", self.id)

    def wake(self) -> None:
        self._wake.set()

    def _slot_freed(self) -> None:
        """A pool thread is free again. While a backlog waits, a cycle starts as soon as half
        the room the last claim filled is free: the interval would leave threads idle."""
        self._wake.set()
        if self._backlog_room and 2 * self._room() >= self._backlog_room:
            self._hurry.set()

    def _room(self) -> int:
        """How many jobs the next claim may take: the free threads and the claim-ahead."""
        return max(0, self._pool.free_slots + self._claim_ahead())

    def run_until_idle(self, timeout: float = 30.0, settle: float = 1.0) -> int:
        """Dispatch in the calling thread until nothing was due for ``settle`` seconds."""
        self._pool.start()
        self.service.attach_runner(self)
        started = time.monotonic()
        idle_since: float | None = None
        next_housekeeping = started
        try:
            while time.monotonic() - started < timeout:
                now_m = time.monotonic()
                if now_m >= next_housekeeping:
                    self.recover_expired_leases()
                    self.renew_leases()
                    next_housekeeping = now_m + max(0.5, self.lease_seconds / 3)
                claimed = self._cycle()
                # Rate-limited due work is work left to do, not idleness.
                busy = (claimed or self._pool.outstanding or self._finished
                        or self._rate_wake is not None)
                if busy:
                    idle_since = None
                else:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= settle:
                        break
                remaining_settle = settle if idle_since is None else settle - (
                    time.monotonic() - idle_since)
                self._sleep(max(0.0, min(remaining_settle, timeout - (time.monotonic() - started))))
        finally:
            self.service.detach_runner(self)
            self._drain_and_release(grace=0.0 if self._stop.is_set() else 5.0)
        return self.executed

    # -- the dispatcher -------------------------------------------------------------------

    def _dispatch_forever(self) -> None:
        last_cycle = 0.0
        while not self._stop.is_set():
            since = time.monotonic() - last_cycle
            if since < _MIN_CYCLE_INTERVAL and self._paced():
                self._hurry.wait(_MIN_CYCLE_INTERVAL - since)
            self._hurry.clear()
            last_cycle = time.monotonic()
            try:
                self._cycle()
            except Exception as exc:
                pause = self._outage.failed(exc, "claim and record jobs")
                if pause is None:
                    log.exception("runner %s: dispatch cycle failed; retrying", self.id)
                    pause = 1.0
                self._wait_to_retry(pause)
                continue
            self._database_answered()
            if self._renew_after_outage.is_set():
                # The database is back: renew the leases (and the heartbeat) now rather than
                # at the next tick, before other runners take this one's jobs for lost.
                self._renew_after_outage.clear()
                self.renew_leases()
            self._sleep(self.poll_interval)

    def _paced(self) -> bool:
        """Whether this cycle waits out the rest of ``_MIN_CYCLE_INTERVAL`` since the last.

        Under load every commit anywhere wakes every runner; cycling on each wake-up would
        claim one job per transaction and take SQLite's single writer's turn more often than
        the API's writes do. Waiting out a short interval lets a cycle take (and record) what
        arrived meanwhile. That is for a runner that keeps finding a little work. One whose
        last cycle claimed nothing was idle: what woke it is new, and it starts at once. One
        whose last claim filled its room left due work behind: it starts once half that room
        is free (``_slot_freed``). So does one whose attempt of a job that others wait for
        ended: recording it is what releases them.
        """
        return self._last_claimed > 0

    def _database_answered(self) -> None:
        """A loop's database call worked; when that ends an outage, renew leases at once."""
        if self._outage.succeeded():
            self._renew_after_outage.set()
            self.wake()

    def _wait_to_retry(self, pause: float) -> None:
        """After a failed cycle: wait ``pause`` seconds, or less when woken — the LISTEN
        watcher wakes us the moment it reconnects, so a restarted server is used at once."""
        if self._stop.wait(0.05):   # never a busy loop, whatever wakes us
            return
        self._wake.wait(max(0.0, pause - 0.05))
        self._wake.clear()

    def _sleep(self, longest: float) -> None:
        """Wait for a wake-up, the next due job or deadline, or ``longest`` seconds."""
        timeout = longest
        for moment in (self._next_due, self._rate_wake):
            if moment is not None:
                timeout = min(timeout, (moment - self.clock.now()).total_seconds())
        deadline = self._nearest_deadline()
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        if self._lines_waiting:
            timeout = min(timeout, self._lines_written_at + _LINES_MIN_INTERVAL
                          - time.monotonic())
        if timeout > 0 and not self._finished:
            self._wake.wait(timeout)
        self._wake.clear()

    def _nearest_deadline(self) -> float | None:
        deadlines = [i.deadline for i in self._pool.running_items() if i.deadline is not None]
        return min(deadlines) if deadlines else None

    def _cycle(self) -> int:
        """Record, promote, claim — one transaction. Returns how many jobs were claimed."""
        self._expire_overdue_attempts()
        finished = self._take_finished()
        lines = self._take_lines(finished, force=self._stop.is_set())
        capacity = 0 if self._stop.is_set() else self._room()
        now = self.clock.now()
        if not finished and self._nothing_to_write(capacity, now):
            if lines:
                self._write_lines_alone(lines, now)
            return 0
        touched: list[Any] = []
        try:
            records = self._prepare_records(finished, now)
            # With a backlog, cycles follow each other at once: writers that wait for
            # SQLite's turn (API calls) go first (see sqlite_lock).
            with self._connection.write_transaction(yielding=bool(self._backlog_room)) as conn:
                recorded = self._write_records(conn, records, now)
                touched = self._write_lines(conn, lines, finished, now)
                pauses = self._pauses = read_pauses(conn)
                if pauses.job_ids != self._paused_jobs:
                    # A resumed job may be overdue: last cycle's next-due read skipped it.
                    self._paused_jobs, self._next_due_read = pauses.job_ids, False
                held = hold_paused_jobs(conn, pauses, now)
                promoted = self._promote_due(conn, now)
                claim = claim_due_jobs(conn, runner_id=self.id, capacity=capacity,
                                       lease_seconds=self.lease_seconds,
                                       handlers=self.service.handlers.names(),
                                       fairness=self._fairness, now=now,
                                       daily_limit_check=self._apply_daily_limit_to_recurring,
                                       pauses=pauses,
                                       aging_seconds=self.service.priority_aging_seconds,
                                       look_for_aged=capacity > 0 and self._look_for_aged())
                [(self._next_due,)] = db.fetch_all(conn, _NEXT_DUE_TIME)
                self._next_due_read = True
        except Exception:
            # Nothing of this cycle was written (database down, deadlock victim): keep the
            # results (and lines) to write them next time.
            self._finished.extendleft(reversed(finished))
            self._lines_unwritten = lines + self._lines_unwritten
            raise
        finally:
            self._recording.clear()
        self.executed += len(finished)
        self._last_claimed = len(claim.rows)
        self._backlog_room = capacity if 0 < capacity <= len(claim.rows) else 0
        self._rate_wake = claim.rate_wake
        self._count_held_back(claim)
        updates = self.service.job_updates
        if updates.has_subscribers:
            updates.publish_many(recorded)
            updates.publish_many(job_from_row(r) for r in promoted + held + touched)
            updates.publish_many(job_from_row(r) for r, _ in claim.deferred)
        if claim.rows:
            self._claims.append((time.monotonic(), len(claim.rows)))
        self._awaited.difference_update(done.item.job.id for done in finished)
        self._awaited.update(row.id for row in claim.rows if row.has_dependents)
        for row in claim.rows:
            job = job_from_row(row)
            updates.publish(job) if updates.has_subscribers else None
            self._pool.submit(WorkItem(job=job, duration_limit=claim.duration_limits.get(
                job.tenant_id)))
        return len(claim.rows)

    def _nothing_to_write(self, capacity: int, now: datetime) -> bool:
        """Whether a cycle with no results to record would write nothing: no job is due to
        promote and none queued (or no room to claim one), as a read shows that takes no
        writer's turn. Every commit anywhere wakes every runner; without this read, each
        wake-up of an idle or full runner would take SQLite's turn from the writers that
        have work (an API call queueing, the runner that claims). Paused jobs that reached
        ``queued`` are put back by a full cycle (``hold_paused_jobs``)."""
        if self._paused_jobs:
            return False
        queued, self._next_due = self._connection.read_row(_WORK_WAITING)
        self._next_due_read = True
        if queued is None:
            self._last_claimed = self._backlog_room = 0
            self._rate_wake = None
        elif capacity:
            return False
        return self._next_due is None or self._next_due > now

    def _count_held_back(self, claim) -> None:
        if not (claim.held_back or claim.rate_held):
            return
        with self._held_back_lock:
            for limit_type, tenants in (("max_concurrent_jobs", claim.held_back),
                                        ("rate_limit", claim.rate_held)):
                for tenant_id in tenants:
                    key = (tenant_id, limit_type)
                    self._held_back[key] = self._held_back.get(key, 0) + 1

    def _look_for_aged(self) -> bool:
        """Whether this cycle's claim reads the oldest jobs of each lower priority (once per
        ``AGED_LOOK_INTERVAL``: a bound counted in aging steps of a minute loses nothing, and
        the other cycles stay one index probe per tenant)."""
        now = time.monotonic()
        if now - self._aged_looked_at < AGED_LOOK_INTERVAL:
            return False
        self._aged_looked_at = now
        return True

    def _claim_ahead(self) -> int:
        """How many jobs to claim beyond the free threads.

        When recent attempts were short, claiming ahead cuts the number of claim transactions
        per job: as many as the threads get through in ``_AHEAD_BUDGET_MS`` at the recent
        attempts' length, at most ``_MAX_AHEAD`` pools' worth. When they were long, a job
        claimed ahead could wait behind them while another runner sits idle, so nothing is
        claimed ahead.
        """
        if self._recent_duration_ms >= _SHORT_ATTEMPT_MS:
            return 0
        per_thread = min(_MAX_AHEAD, _AHEAD_BUDGET_MS / max(self._recent_duration_ms, 0.001))
        return int(self.threads * per_thread)

    def _promote_due(self, conn, now: datetime) -> list[Any]:
        if self._next_due_read and (self._next_due is None or self._next_due > now):
            # Nothing pending, or nothing due yet, as of the last cycle's read. A job made
            # pending since (its commit woke us) is in this cycle's read, and due later.
            return []
        return conn.execute(_PROMOTE_DUE, {"now": now}).all()

    def _apply_daily_limit_to_recurring(self, conn, chosen, tenant_slots, now):
        """Count recurring runs against ``max_daily_jobs``; runs past it move to their next time."""
        runs_by_tenant: dict[str, list[Any]] = {}
        for row in chosen:
            if row.cron_schedule:
                runs_by_tenant.setdefault(row.tenant_id, []).append(row)
        if not runs_by_tenant:
            return chosen, []
        deferred = []
        day = now.date()
        for tenant_id, runs in runs_by_tenant.items():
            allowed = recurring_runs_allowed(conn, tenant_id,
                                             tenant_slots[tenant_id].max_daily_jobs, day,
                                             len(runs))
            if allowed:
                db.upsert(conn, daily_usage_table,
                          {"tenant_id": tenant_id, "day": day, "jobs_accepted": 0,
                           "recurring_runs": allowed},
                          ["tenant_id", "day"], ["recurring_runs"])
            for row in runs[allowed:]:
                try:
                    when = next_fire_time(row.cron_schedule, row.timezone, now)
                    values = {"status": JobStatus.PENDING.value, "scheduled_for": when}
                except JobValidationError as exc:   # stored earlier; it has no next time
                    when = now
                    values = {"status": JobStatus.FAILED.value, "completed_at": now,
                              "last_result": JobExecutionResult(
                                  success=False, executed_at=now, execution_time=timedelta(0),
                                  error_type=NEVER_FIRES,
                                  error_message=not_rearmed(exc)).to_dict()}
                stored = conn.execute(jobs_table.update().where(jobs_table.c.id == row.id)
                                      .values(**values, updated_at=now)
                                      .returning(jobs_table)).one()
                deferred.append((stored, when))
            if len(runs) > allowed:
                record_rejections(conn, tenant_id, "max_daily_jobs",
                                  hour_of(now),
                                  len(runs) - allowed)
        rollups = RollupBatch()
        record_endings(conn, [job_from_row(row) for row, _ in deferred], now, rollups)
        rollups.write(conn)
        deferred_ids = {row.id for row, _ in deferred}
        return [row for row in chosen if row.id not in deferred_ids], deferred

    # -- executing (in pool threads) ------------------------------------------------------

    def _execute(self, item: WorkItem) -> None:
        job: SystemJob = item.job
        started_at = self.clock.now()   # as the attempt's row records it
        # A handler lives in its machine's time: its start and deadline in the local clock,
        # which its own datetime.now() compares with.
        local_start = datetime.now(UTC)
        deadline = (local_start + timedelta(seconds=item.duration_limit)
                    if item.duration_limit is not None else None)
        attempt_log = item.log = AttemptLog(job.id, job.total_attempts, self._log_limits,
                                            self._lines_arrived)
        context = JobExecutionContext(
            job=job, tenant_context=self._tenant_context(job.tenant_id),
            actual_start_time=local_start, deadline=deadline,
            progress_reporter=lambda fraction, message: self._report_progress(
                item, fraction, message), logger=handler_logger(job.handler))
        item.context = context
        handler = self.service.handlers.get(job.handler)
        try:
            if handler is None:
                raise LookupError(f"handler {job.handler!r} is not registered in this process")
            if not self.service.handlers.allows(handler, job.tenant_id):
                # Queued before the rule existed: never run it for another tenant.
                raise JobNotAllowedError(f"{system_handler_message(job.handler)}; job of tenant "
                                        f"{job.tenant_id!r} not run")
            with capturing(attempt_log):
                result = handler.execute(context)
            if not isinstance(result, JobExecutionResult):
                raise TypeError(f"handler {job.handler!r} returned {type(result).__name__}, "
                                "not a JobExecutionResult")
            if not result.success and not result.error_type:
                error_type = (result.metadata or {}).get("error_type") or "JobFailed"
                result = replace(result, error_type=str(error_type))
        except Exception as exc:
            attempt_log.failed(exc, traceback.format_exc())
            result = JobExecutionResult(
                success=False, executed_at=started_at,
                execution_time=self.clock.now() - started_at,
                error_message=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
                metadata=getattr(exc, "job_metadata", None))
        attempt_log.close()   # before the result is handed over: its lines go with it
        duration_ms = (time.monotonic() - item.started_monotonic) * 1000.0
        if item.transition("running", "done"):
            self._finished.append(Finished(item, result, started_at, duration_ms))
            if job.id in self._awaited:
                self._hurry.set()
            # The pool wakes the dispatcher once this thread's slot is free again.
        # else: the attempt already timed out and was recorded; this late result is dropped.

    def _tenant_context(self, tenant_id: str) -> LazyTenantContext:
        def limits():
            config = self.service.tenants.get_tenant_config(tenant_id)
            return config.job_limit.as_dict() if config else {}

        def usage():
            with self.engine.connect() as conn:
                daily = daily_jobs_used(conn, tenant_id, self.clock.now().date())
                counts = live_job_counts(conn, tenant_id)
            return {"daily_jobs": daily,
                    "concurrent_jobs": counts.get((tenant_id, "processing"), 0),
                    "queued_jobs": (counts.get((tenant_id, "pending"), 0)
                                    + counts.get((tenant_id, "queued"), 0))}

        def tenant():
            return self.service.tenants.get_tenant_config(tenant_id)

        return LazyTenantContext({"usage": usage, "limits": limits, "tenant": tenant})

    def _report_progress(self, item: WorkItem, fraction: float, message: str | None) -> None:
        job = item.job
        last = self._progress_written.get(job.id, 0.0)
        now_m = time.monotonic()
        if fraction < 1.0 and now_m - last < _PROGRESS_MIN_INTERVAL:
            return
        self._progress_written[job.id] = now_m
        now = self.clock.now()
        try:
            with db.write_transaction(self.engine) as conn:
                conn.execute(jobs_table.update()
                             .where(jobs_table.c.id == job.id,
                                    jobs_table.c.lease_owner == self.id,
                                    jobs_table.c.status == JobStatus.PROCESSING.value)
                             .values(progress=fraction,
                                     progress_message=(message or "")[:500] or None,
                                     updated_at=now))
        except Exception as exc:
            # Progress is a courtesy to watchers: an outage must not fail the attempt itself.
            if self._outage.failed(exc, "write a job's progress") is None:
                raise
            return
        if self.service.job_updates.has_subscribers:
            self.service.job_updates.publish(replace(job, progress=fraction,
                                                     progress_message=message, updated_at=now))

    # -- recording results ----------------------------------------------------------------

    def _take_finished(self) -> list[Finished]:
        """Take the finished attempts to write (only the dispatcher, or the stopping thread,
        calls this). Each job is marked as being recorded before it leaves the deque, so that
        it always counts as live (``_live_job_ids``)."""
        taken = []
        while self._finished:
            self._recording.add(self._finished[0].item.job.id)
            taken.append(self._finished.popleft())
        return taken

    def _live_job_ids(self) -> set[str]:
        """Jobs this runner holds in memory: waiting or running in its pool, or finished with
        the result not written yet. Only these have their leases renewed, and its own
        recovery leaves them alone even when their leases lapsed (the database was away for
        longer than a lease): the runner is alive and will write their results. A job leased
        to this runner in the database but not in memory (a claim whose commit succeeded while
        the connection broke) is not renewed, so its lease lapses and it is recovered."""
        ids = {item.job.id for item in self._pool.running_items() + self._pool.waiting_items()}
        ids.update(done.item.job.id for done in list(self._finished))
        ids.update(list(self._recording))
        return ids

    def _expire_overdue_attempts(self) -> None:
        now_m = time.monotonic()
        for item in self._pool.running_items():
            if item.deadline is not None and now_m >= item.deadline:
                if item.transition("running", "timed_out"):
                    if item.context is not None:
                        item.context.cancel()
                    self._pool.abandon(item)
                    limit = item.duration_limit or 0.0
                    started_at = self.clock.now() - timedelta(seconds=now_m -
                                                               item.started_monotonic)
                    result = JobExecutionResult(
                        success=False, executed_at=started_at,
                        execution_time=timedelta(seconds=now_m - item.started_monotonic),
                        error_message=f"attempt exceeded the tenant's max_job_duration of "
                                      f"{limit:g} s and was abandoned",
                        error_type="JobTimeoutError")
                    if item.log is not None:
                        item.log.add("ERROR", result.error_message, beyond_cap=True)
                        item.log.close()
                    self._finished.append(Finished(item, result, started_at,
                                                   (now_m - item.started_monotonic) * 1000.0))

    def _record_finished(self, conn, finished: list[Finished], now: datetime) -> list[SystemJob]:
        """Write each finished attempt and the job's next state; return the updated jobs."""
        return self._write_records(conn, self._prepare_records(finished, now), now)

    def _prepare_records(self, finished: list[Finished], now: datetime) -> list[_Record]:
        """Everything ``_write_records`` writes, built before the transaction: on SQLite the
        dispatcher holds the writer's turn (every process's writes wait) for the writes alone."""
        records = []
        for done in finished:
            job, result = done.item.job, done.result
            self._recent_duration_ms += 0.1 * (done.duration_ms - self._recent_duration_ms)
            self._progress_written.pop(job.id, None)
            changes = self.next_state(job, result, now)
            last_result = job_last_result(changes, result)
            due = job.scheduled_for or done.started_at
            released = self._pauses.released_at(job.tenant_id, job.handler, job.id)
            if released is not None and released > due:
                due = released   # the time it was paused is not time it waited for a slot
            scheduled_for = changes.get("scheduled_for", job.scheduled_for)
            progress = changes.get("progress", job.progress)
            attempt = attempt_values(job, result, done.started_at, done.duration_ms, self.id)
            outcome = run_outcome(job, changes, result.success)
            records.append(_Record(
                job.id,
                result_row(self._postgres, {
                    "id": job.id, "status": changes["status"], "scheduled_for": scheduled_for,
                    "current_retries": changes["current_retries"],
                    "completed_at": changes.get("completed_at"),
                    "last_result": last_result.to_dict(), "progress": progress,
                    "updated_at": now}),
                attempt_row(self._postgres, attempt),
                replace(job, status=JobStatus(changes["status"]), scheduled_for=scheduled_for,
                        current_retries=changes["current_retries"],
                        completed_at=changes.get("completed_at"), last_result=last_result,
                        lease_owner=None, updated_at=now, progress=progress),
                (attempt["finished_at"], job.tenant_id, job.handler, job.type,
                 attempt["duration_ms"], result.success, attempt["error_type"],
                 attempt["error_message"], outcome,
                 (done.started_at - due).total_seconds() * 1000.0),
                outcome))
        return records

    def _write_records(self, conn, records: list[_Record], now: datetime) -> list[SystemJob]:
        """Write the prepared attempts and next states, and what follows from the jobs that
        ended (``record_endings``); return the updated jobs (those it changed included).

        Only jobs still leased to this runner are written: if the lease was lost (another runner
        recovered the job and counted the attempt as lost), the late result is dropped.
        """
        if not records:
            return []
        written = write_results(conn, self.id,
                                [(r.job_id, r.result_row, r.attempt_row) for r in records])
        kept = []
        for record in records:
            if record.job_id in written:
                kept.append(record)
            else:
                log.warning("runner %s lost the lease of job %s before its attempt finished; "
                            "the result is dropped", self.id, record.job_id)
        rollups = RollupBatch()
        for record in kept:
            rollups.add_attempt(*record.rollup)
        updated = [r.updated for r in kept]
        consequences = record_endings(conn, updated, now, rollups)
        consequences += webhooks.record_job_events(
            conn, [(r.updated, r.outcome) for r in kept], now, rollups)
        rollups.write(conn)
        return updated + consequences

    # -- attempt logs -----------------------------------------------------------------------

    def _lines_arrived(self, attempt_log: AttemptLog) -> None:
        """A running attempt logged a line, the first since its last were taken (on its
        thread): the dispatcher writes it within ``_LINES_MIN_INTERVAL``."""
        self._lines_waiting.append(attempt_log)
        self._wake.set()

    def _take_lines(self, finished: list[Finished], force: bool = False) -> list[dict[str, Any]]:
        """The log lines this cycle writes: the finished attempts' last ones (with their
        results), and the running attempts' when ``_LINES_MIN_INTERVAL`` has passed since the
        last write (or a result is written anyway, or ``force``). Nothing pending: nothing
        read, nothing written."""
        lines, self._lines_unwritten = self._lines_unwritten, []
        for done in finished:
            if done.item.log is not None:
                lines += done.item.log.take()
        now_m = time.monotonic()
        if self._lines_waiting and (
                finished or force or now_m - self._lines_written_at >= _LINES_MIN_INTERVAL):
            self._lines_written_at = now_m
            # Only the logs waiting now: a chatty attempt must not keep this loop going.
            for _ in range(len(self._lines_waiting)):
                lines += self._lines_waiting.popleft().take()
        return lines

    def _write_lines(self, conn, lines: list[dict[str, Any]], finished: list[Finished],
                     now: datetime) -> list[Any]:
        """Insert ``lines`` (one statement), and touch the running jobs they are of; return
        those jobs' rows, to publish."""
        if not lines:
            return []
        conn.execute(attempt_lines_table.insert(), lines)
        running = {line["job_id"] for line in lines}
        running.difference_update(done.item.job.id for done in finished)
        if not running:
            return []
        ids = sorted(running)
        if self._postgres:   # rows are locked in id order, as everywhere
            ids = conn.execute(_OWNED_SKIP_LOCKED, {"ids": ids, "owner": self.id}
                               ).scalars().all()
            if not ids:
                return []
        return conn.execute(_TOUCH_RUNNING, {"ids": ids, "owner": self.id, "now": now}).all()

    def _write_lines_alone(self, lines: list[dict[str, Any]], now: datetime) -> None:
        """Running attempts' lines, in a cycle that has nothing else to write."""
        try:
            with self._connection.write_transaction() as conn:
                touched = self._write_lines(conn, lines, [], now)
        except Exception:
            self._lines_unwritten = lines + self._lines_unwritten
            raise
        if self.service.job_updates.has_subscribers:
            self.service.job_updates.publish_many(job_from_row(r) for r in touched)

    def next_state(self, job: SystemJob, result: JobExecutionResult, now: datetime) -> dict:
        """The job's fields after an attempt (``attempts.next_state`` with this runner's
        retry policy)."""
        return next_state(job, result, now, self.retry_policy)

    # -- leases and recovery --------------------------------------------------------------

    def renew_leases(self) -> None:
        """Extend the lease of every job this runner holds, beat the heart, and read the
        database's clock again (for the next tick: the dispatcher's cycles never wait for it)."""
        now = self.clock.now()
        live = sorted(self._live_job_ids())
        try:
            with db.write_transaction(self.engine) as conn:
                held = conn.execute(_OWNED_SKIP_LOCKED if self._postgres else _OWNED,
                                    {"ids": live, "owner": self.id}).scalars().all() if live else []
                if held:
                    conn.execute(jobs_table.update()
                                 .where(jobs_table.c.id.in_(held),
                                        jobs_table.c.lease_owner == self.id,
                                        jobs_table.c.status == JobStatus.PROCESSING.value)
                                 .values(lease_expires_at=now + timedelta(
                                     seconds=self.lease_seconds)))
                conn.execute(runners_table.update().where(runners_table.c.id == self.id)
                             .values(heartbeat_at=now, **self._published_state(live)))
                self._write_held_back(conn, now)
                sample_queue_depth(conn, now)
        except Exception as exc:
            if self._outage.failed(exc, "renew its leases") is None:
                log.exception("runner %s could not renew its leases", self.id)
        else:
            self._renew_after_outage.clear()   # just done
            self._outage.succeeded()
            self.clock.measure()

    def _published_state(self, live: list[str]) -> dict[str, Any]:
        """What the heartbeat tells the runners screen and the job explainer."""
        minute_ago = time.monotonic() - 60.0
        while self._claims and self._claims[0][0] < minute_ago:
            self._claims.popleft()
        return {"handlers": self.service.handlers.names(),
                "busy_threads": len(self._pool.running_items()), "jobs_held": len(live),
                "claims_per_minute": sum(count for _, count in self._claims),
                "clock_skew_seconds": round(self.clock.skew_seconds, 3)}

    def _write_held_back(self, conn, now: datetime) -> None:
        with self._held_back_lock:
            held_back, self._held_back = self._held_back, {}
        for (tenant_id, limit_type), count in held_back.items():
            record_rejections(conn, tenant_id, limit_type, hour_of(now), count)

    def recover_expired_leases(self) -> int:
        """Jobs whose owner stopped renewing (a crash, a lost machine): count the lost attempt,
        then queue them again (or fail them when no retries are left). Never raises: this is
        the runners' housekeeping clock; a failure is logged and the next tick tries again."""
        try:
            recovered = len(self.release_expired_leases())
        except Exception as exc:
            if self._outage.failed(exc, "recover expired leases") is None:
                log.exception("runner %s could not recover expired leases", self.id)
            return 0
        self._database_answered()
        return recovered

    def release_expired_leases(self) -> list[SystemJob]:
        """``recover_expired_leases``, raising on a database error. Jobs this runner still
        holds (running, or finished and being recorded) are not lost, whatever their lease
        says. Returns the released jobs in their new state."""
        recovered = release_expired_leases(self.engine, self.retry_policy, self.clock.now(),
                                           held=self._live_job_ids())
        if recovered:
            self.service.job_updates.publish_many(recovered)
            self.wake()
        return recovered

    def _drain_and_release(self, grace: float) -> list[str]:
        """On shutdown: jobs claimed but not started go back to the queue, untouched; running
        ones get ``grace`` seconds to finish, then they too are handed back."""
        released = [i for i in self._pool.waiting_items() if i.transition("waiting", "released")]
        self._pool.stop(wait=grace)
        leftovers = [i for i in self._pool.running_items() if i.transition("running", "released")]
        for item in leftovers:
            if item.log is not None:
                item.log.add("WARNING", f"runner {self.id} stopped before this attempt ended: "
                                        "it was handed back to the queue, to run again",
                             beyond_cap=True)
                item.log.close()
        released_ids = [i.job.id for i in released + leftovers]
        now = self.clock.now()
        finished = self._take_finished()
        lines = self._take_lines(finished, force=True)
        try:
            with db.write_transaction(self.engine) as conn:
                recorded = self._record_finished(conn, finished, now) if finished else []
                self._write_lines(conn, lines, finished, now)
                self.executed += len(finished)
                self._write_held_back(conn, now)
                # Handed back jobs keep their attempt count; the attempt never really happened
                # (waiting) or is cut short by shutdown and will run again.
                if released_ids:
                    conn.execute(jobs_table.update()
                                 .where(jobs_table.c.id.in_(released_ids),
                                        jobs_table.c.lease_owner == self.id)
                                 .values(status=JobStatus.QUEUED.value, lease_owner=None,
                                         lease_expires_at=None, attempt_started_at=None,
                                         total_attempts=jobs_table.c.total_attempts - 1,
                                         updated_at=now))
                    db.notify_channel(conn, NOTIFY_CHANNEL)
            self.service.job_updates.publish_many(recorded)
        except Exception:
            log.exception("runner %s could not release its jobs; their leases will expire and "
                          "another runner will recover them", self.id)
        finally:
            self._recording.clear()
        for item in leftovers:
            if item.context is not None:
                item.context.cancel()
        self._connection.close()
        return released_ids

    # -- heartbeat ------------------------------------------------------------------------

    def _register_heartbeat(self) -> None:
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            conn.execute(runners_table.insert().values(
                id=self.id, hostname=socket.gethostname(), pid=os.getpid(), threads=self.threads,
                started_at=now, heartbeat_at=now, **self._published_state([])))

    def _record_stop(self, released_job_ids: list[str]) -> None:
        """The row stays (the runners screen shows stopped runners for a day), marked
        stopped, with the jobs handed back."""
        now = self.clock.now()
        try:
            with db.write_transaction(self.engine) as conn:
                conn.execute(runners_table.update().where(runners_table.c.id == self.id).values(
                    stopped_at=now, heartbeat_at=now, busy_threads=0, jobs_held=0,
                    claims_per_minute=0, released_job_ids=released_job_ids or None))
        except Exception:
            log.exception("runner %s could not record its stop", self.id)
