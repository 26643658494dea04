"""``JobService``: the one facade through which the console, the CLI, the API and tests change jobs.

Every rule lives here once: validation, tenant limits (checked atomically with the insert),
state transitions (retry, cancel) and the events each change publishes.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, bindparam, func, select

from . import audit, batches, control, db, dependencies, webhooks
from .attempt_logs import LogLimits, lines_by_attempt, recent_attempts
from .attempts import RetryPolicy
from .audit import Actor
from .availability import reports_outages
from .batches import Batch, NewBatch
from .clock import Clock
from .cron import CronNeverFiresError
from .endings import record_endings
from .explain import JobExplanation, explain
from .handlers import HandlerRegistry, JobHandler
from .keyset import Page
from .limits import (
    RateLimit,
    TenantStore,
    check_queue_room,
    daily_used_up,
    limits_from_row,
    payload_too_large,
    queue_full_reason,
    queue_room,
    type_not_allowed,
    unknown_tenant,
)
from .models import jobs_table, tenants_table
from .pauses import Pause, PauseSet, read_pauses
from .queue_pg import IdempotencyKeyTaken
from .queue_sql import QueueCall, QueueTransaction, QueueWriter, count_waiting
from .rates import (
    HandlerRateLimit,
    KeyState,
    job_limits,
    read_handler_limits,
    states_at,
    store_handler_limit,
    tenant_key,
)
from .records import job_from_row, lock_job, new_job_id
from .recovery import release_expired_leases
from .rollups import RollupBatch, hour_of, record_rejections
from .runners import RunnerInfo, live_runners, stopped_runners
from .types import (
    WAITING_STATUSES,
    JobBlocker,
    JobPriority,
    JobStateError,
    JobStatus,
    JobType,
    JobValidationError,
    SystemJob,
    TenantLimitException,
)
from .validation import PreparedJob, prepare_job, set_dependencies
from .wakeup import NOTIFY_CHANNEL

log = logging.getLogger(__name__)
UTC = timezone.utc

NOTIFICATION_CHANNELS = {"email": "email_handler", "sms": "sms_handler", "push": "push_handler",
                         "webhook": "webhook_handler"}

_BATCH_KEYS = {
    "type": "job_type", "handler": "handler", "payload": "payload", "priority": "priority",
    "scheduled_for": "scheduled_for", "scheduledFor": "scheduled_for",
    "cron_schedule": "cron_schedule", "cronSchedule": "cron_schedule",
    "max_retries": "max_retries", "maxRetries": "max_retries", "metadata": "metadata",
    "timezone": "timezone_name", "idempotency_key": "idempotency_key",
    "idempotencyKey": "idempotency_key", "delay": "delay",
    "depends_on": "depends_on", "dependsOn": "depends_on",
    "on_dependency_failure": "on_dependency_failure",
    "onDependencyFailure": "on_dependency_failure",
}


# What a callback cannot be: it runs once, when its batch ends.
_NOT_IN_CALLBACKS = {
    "cron_schedule": "a callback runs once, when its batch ends; it cannot recur",
    "scheduled_for": "a callback runs when its batch ends; give delay (seconds after that)",
    "idempotency_key": "a callback runs once per batch already; it takes no idempotency key",
}


_TENANT_BY_ID = select(tenants_table).where(tenants_table.c.id == bindparam("tenant_id"))


RETRYABLE_STATUSES = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)
BULK_BATCH_SIZE = 500   # jobs per write transaction in bulk verbs: short locks, few round trips


@dataclass
class BulkOutcome:
    """What a bulk retry or cancel did: the jobs it changed, and why it left the others alone."""

    changed_ids: list[str] = field(default_factory=list)
    left_alone: dict[str, int] = field(default_factory=dict)   # reason → how many jobs

    @property
    def changed(self) -> int:
        return len(self.changed_ids)

    @property
    def left_alone_count(self) -> int:
        return sum(self.left_alone.values())

    held_back: dict[str, int] = field(default_factory=dict)    # tenant → jobs its queue refused

    def leave_alone(self, reason: str, count: int = 1) -> None:
        self.left_alone[reason] = self.left_alone.get(reason, 0) + count

    def hold_back(self, tenant_id: str) -> None:
        """One job left alone because its tenant's queue had no room."""
        self.held_back[tenant_id] = self.held_back.get(tenant_id, 0) + 1
        self.leave_alone(queue_full_reason(tenant_id))


class JobService:
    """Queue, inspect and change jobs. Create one per app (``get_job_service()``)."""

    def __init__(self, engine: Engine, *, retry_base_seconds: float = 2.0,
                 retry_max_seconds: float = 3600.0, lease_seconds: float = 30.0,
                 worker_threads: int = 8, poll_interval: float = 5.0,
                 shutdown_grace_seconds: float = 20.0, metrics_interval: float = 5.0,
                 analytics=None, system_tenant_id: str | None = None,
                 priority_aging_seconds: float | None = 60.0, clock: Clock | None = None,
                 attempt_log_limits: LogLimits | None = None):
        from .events import PeriodicStream
        from .feeds import JobUpdateStream

        self.engine = engine
        self.clock = clock or Clock(engine)   # the one time every process compares (clock.py)
        self._analytics = analytics
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.lease_seconds = lease_seconds
        self.worker_threads = worker_threads
        self.poll_interval = poll_interval
        self.shutdown_grace_seconds = shutdown_grace_seconds
        # A waiting job's priority rises one step per this many seconds (claiming.py).
        self.priority_aging_seconds = priority_aging_seconds
        # How much of its log each attempt keeps (attempt_logs.py).
        self.attempt_log_limits = attempt_log_limits or LogLimits()
        self.handlers = HandlerRegistry(system_tenant_id)
        self.tenants = TenantStore(engine)
        self.job_updates = JobUpdateStream(engine, self.clock)
        self.tenant_metrics_updates = PeriodicStream(
            "tenant_metrics_updates", self._tenant_metrics, metrics_interval)
        self.system_metrics_updates = PeriodicStream(
            "system_metrics_updates", self.get_system_job_statistics, metrics_interval)
        self._local_runners: set[Any] = set()
        self._runners_lock = threading.Lock()
        # The queue path speaks to the driver directly (queue_sql.py), so it sees its errors.
        self._integrity_error = engine.dialect.loaded_dbapi.IntegrityError
        self._queue_writer = QueueWriter(engine, NOTIFY_CHANNEL)

    # -- handlers -------------------------------------------------------------------------

    @property
    def system_tenant_id(self) -> str | None:
        """The operations tenant: the only one that may queue system handlers
        (``JobHandler.system``). ``create_app`` sets it from ``ALERTS_TENANT_ID``; the engine does
        not import ``console/alerts``. None: no tenant may queue them."""
        return self.handlers.system_tenant_id

    @system_tenant_id.setter
    def system_tenant_id(self, tenant_id: str | None) -> None:
        self.handlers.system_tenant_id = tenant_id

    def register_handler(self, handler: JobHandler) -> JobHandler:
        """Add a handler; a second handler with the same name is a ``ValueError``."""
        return self.handlers.register(handler)

    # -- queueing -------------------------------------------------------------------------

    @reports_outages
    def queue_job(self, type: str | JobType, handler: str, payload: dict[str, Any],
                  tenant_id: str, priority: JobPriority | str | None = None,
                  scheduled_for: datetime | None = None, cron_schedule: str | None = None,
                  max_retries: int = 3, metadata: dict[str, Any] | None = None,
                  timezone: str = "UTC", idempotency_key: str | None = None,
                  delay: timedelta | None = None, depends_on: list[str] | None = None,
                  on_dependency_failure: str = "cancel", *, actor: Actor | None = None,
                  audit_action: str = "job_created") -> SystemJob:
        """Queue one job. A due job is ``queued``; a future or cron one ``pending``.

        ``depends_on``: ids of jobs of the same tenant that must complete first (each must
        exist: so no cycle can form). Until they have, the job waits ``pending`` (counted
        against ``max_queued_jobs``); then it is due (at its own time, if that is later).
        When one fails for good or is cancelled, the job is cancelled naming it, or with
        ``on_dependency_failure="run"`` runs anyway once all have ended. Every ``queue_*``
        verb takes both (see ``console/jobs/dependencies.py``).

        With ``actor`` (a person or token), the job's audit entry (``audit_action``) is written
        in the same transaction. Every verb that changes jobs takes ``actor`` likewise.

        :raise JobValidationError: bad input, naming the field; nothing stored.
        :raise TenantLimitException: a tenant limit refused it; nothing stored.
        :raise DatabaseUnavailableError: the database cannot be reached (or, on SQLite, stayed
            locked past SQLITE_BUSY_TIMEOUT); nothing stored, retry later. Every verb that
            changes jobs raises it likewise.
        """
        now = self.clock.now()
        prepared = prepare_job(
            self.handlers, job_type=type, handler=handler, payload=payload, tenant_id=tenant_id,
            priority=priority, scheduled_for=scheduled_for, cron_schedule=cron_schedule,
            max_retries=max_retries, metadata=metadata, timezone_name=timezone,
            idempotency_key=idempotency_key, delay=delay, depends_on=depends_on,
            on_dependency_failure=on_dependency_failure, now=now, job_id=new_job_id())
        return self._store(tenant_id, [prepared], now, actor, audit_action)[0]

    def queue_notification(self, type: str, recipient: str, tenant_id: str,
                           subject: str | None = None, body: Any = None,
                           priority: JobPriority | str | None = None,
                           idempotency_key: str | None = None,
                           depends_on: list[str] | None = None,
                           on_dependency_failure: str = "cancel", *,
                           actor: Actor | None = None, **extra: Any) -> SystemJob:
        """Queue a notification on a channel (``email``, ``sms``, ``push``, ``webhook``).

        Extra keyword arguments go into the payload (``template``, ``headers`` …), except the
        ``queue_job`` options ``scheduled_for``, ``delay``, ``max_retries`` and ``metadata``.
        """
        channel = getattr(type, "value", type)
        if channel not in NOTIFICATION_CHANNELS:
            raise JobValidationError("type", f"unknown channel {channel!r}; use one of "
                                             f"{', '.join(NOTIFICATION_CHANNELS)}")
        if not isinstance(recipient, str) or not recipient.strip():
            raise JobValidationError("recipient", "is required (an address, number, device "
                                                  "token or URL)")
        options = {k: extra.pop(k) for k in ("scheduled_for", "delay", "max_retries", "metadata",
                                              "timezone") if k in extra}
        payload = {"channel": channel, "recipient": recipient, **extra}
        if subject is not None:
            payload["subject"] = subject
        if body is not None:
            payload["body"] = body
        return self.queue_job(JobType.NOTIFICATION.value, NOTIFICATION_CHANNELS[channel], payload,
                              tenant_id, priority=priority, idempotency_key=idempotency_key,
                              depends_on=depends_on,
                              on_dependency_failure=on_dependency_failure, actor=actor,
                              **options)

    def queue_scheduled_job(self, name: str, cron_expression: str, handler: str,
                            parameters: dict[str, Any], tenant_id: str, timezone: str = "UTC",
                            priority: JobPriority | str | None = None, max_retries: int = 3,
                            idempotency_key: str | None = None,
                            metadata: dict[str, Any] | None = None,
                            depends_on: list[str] | None = None,
                            on_dependency_failure: str = "cancel", *,
                            actor: Actor | None = None) -> SystemJob:
        """A recurring job on a cron schedule, ``pending`` until its next time (with
        ``depends_on``: its first run waits for them too, then its schedule goes on).

        The payload is ``parameters`` with ``name`` added (and ``metadata`` gets ``name`` too),
        so a handler or a listing reads the job's name as ``payload["name"]``.
        """
        if not isinstance(name, str) or not name.strip():
            raise JobValidationError("name", "is required: what operators will see")
        if not isinstance(parameters, dict):
            raise JobValidationError("parameters", "must be a JSON object (a dict)")
        if cron_expression is None:
            raise JobValidationError("cron_expression", "is required, e.g. '0 9 * * *'")
        payload = {"name": name, **parameters}
        meta = {"name": name, **(metadata or {})}
        return self.queue_job(JobType.SCHEDULED.value, handler, payload, tenant_id,
                              priority=priority, cron_schedule=cron_expression,
                              max_retries=max_retries, metadata=meta, timezone=timezone,
                              idempotency_key=idempotency_key, depends_on=depends_on,
                              on_dependency_failure=on_dependency_failure, actor=actor)

    def queue_delayed_job(self, handler: str, payload: dict[str, Any], delay: timedelta,
                          tenant_id: str, priority: JobPriority | str | None = None,
                          max_retries: int = 3, metadata: dict[str, Any] | None = None,
                          idempotency_key: str | None = None,
                          depends_on: list[str] | None = None,
                          on_dependency_failure: str = "cancel", *,
                          actor: Actor | None = None) -> SystemJob:
        """Run once, ``delay`` from now (with ``depends_on``: and not before they allow)."""
        if delay is None:
            raise JobValidationError("delay", "is required (a timedelta)")
        return self.queue_job(JobType.DELAYED.value, handler, payload, tenant_id,
                              priority=priority, delay=delay, max_retries=max_retries,
                              metadata=metadata, idempotency_key=idempotency_key,
                              depends_on=depends_on,
                              on_dependency_failure=on_dependency_failure, actor=actor)

    @reports_outages
    def queue_batch_jobs(self, job_specs: list[dict[str, Any]], tenant_id: str,
                         priority: JobPriority | str | None = None, *,
                         on_complete: dict[str, Any] | None = None,
                         on_success: dict[str, Any] | None = None,
                         actor: Actor | None = None) -> list[SystemJob]:
        """Queue many jobs in one transaction: all are stored, or none (with ``actor``: and
        one audit entry, ``jobs_created``, with their count). Every job carries the batch's
        ``batch_id`` (``get_batch`` reads its counts).

        A spec holds ``queue_job``'s argument names; their camelCase spellings
        (``scheduledFor``, ``cronSchedule``, ``maxRetries``, ``dependsOn``,
        ``onDependencyFailure``) are accepted too.

        ``on_complete`` and ``on_success`` are job specs of the same shape, run once when every
        one-off job of the batch has ended (``on_success`` only if all completed), with
        ``payload["batch"]`` holding the batch's id and counts. A callback takes ``delay`` (its
        seconds after the batch ends), not ``scheduled_for``, ``cron_schedule`` or
        ``idempotency_key``; a batch with callbacks holds no recurring job. Callbacks are
        checked and counted against the tenant's limits with the batch (see
        ``console/jobs/batches.py``).
        """
        now = self.clock.now()
        batch = NewBatch(new_job_id())
        prepared = self._prepare_specs(job_specs, tenant_id, priority, now)
        for job in prepared:
            job.row["batch_id"] = batch.id
        for kind, spec in (("on_complete", on_complete), ("on_success", on_success)):
            if spec is not None:
                self._prepare_callback(batch, kind, spec, tenant_id, priority, now)
        if batch.callbacks:
            for index, job in enumerate(prepared):
                if job.is_recurring:
                    raise JobValidationError(
                        f"job_specs[{index}].cron_schedule",
                        "a batch with on_complete or on_success holds no recurring job: it "
                        "never ends, so its callbacks would never run")
        return self._store(tenant_id, prepared, now, actor, "jobs_created", batch)

    @reports_outages
    def queue_chain(self, job_specs: list[dict[str, Any]], tenant_id: str,
                    priority: JobPriority | str | None = None, *,
                    actor: Actor | None = None) -> list[SystemJob]:
        """Queue a sequence: each job waits for the one before it to complete (and for the
        jobs its own spec's ``depends_on`` names; the first job only for those). When one
        fails for good or is cancelled, the rest are cancelled in turn (a spec with
        ``on_dependency_failure: "run"`` runs anyway, and the chain goes on from it).
        Specs as for ``queue_batch_jobs``, and like it all or nothing.
        """
        now = self.clock.now()
        prepared = self._prepare_specs(job_specs, tenant_id, priority, now)
        for before, job in zip(prepared, prepared[1:], strict=False):
            set_dependencies(job, (before.row["id"], *job.depends_on))
        return self._store(tenant_id, prepared, now, actor, "jobs_created")

    def _prepare_specs(self, job_specs: list[dict[str, Any]], tenant_id: str,
                       priority: JobPriority | str | None, now: datetime) -> list[PreparedJob]:
        """Batch specs as prepared jobs; an error names the spec (``job_specs[3].handler``)."""
        if not isinstance(job_specs, (list, tuple)) or not job_specs:
            raise JobValidationError("job_specs", "must be a non-empty list of job specs")
        prepared = []
        for index, spec in enumerate(job_specs):
            job = self._prepare_spec(spec, f"job_specs[{index}]", tenant_id, priority, now)
            job.field_prefix = f"job_specs[{index}]."
            prepared.append(job)
        return prepared

    def _prepare_spec(self, spec: Any, where: str, tenant_id: str,
                      priority: JobPriority | str | None, now: datetime) -> PreparedJob:
        """A batch spec (or a callback: ``where`` names it in errors) validated into a job."""
        if not isinstance(spec, dict):
            raise JobValidationError(where, "must be a dict")
        arguments: dict[str, Any] = {"priority": priority, "payload": {}}
        for key, value in spec.items():
            if key not in _BATCH_KEYS:
                raise JobValidationError(f"{where}.{key}",
                                         f"unknown key; use {', '.join(sorted(_BATCH_KEYS))}")
            if key == "priority" and value is None:
                continue
            arguments[_BATCH_KEYS[key]] = value
        for required in ("type", "handler"):
            if _BATCH_KEYS[required] not in arguments:
                raise JobValidationError(f"{where}.{required}", "is required")
        try:
            return prepare_job(self.handlers, tenant_id=tenant_id, now=now,
                               job_id=new_job_id(), **arguments)
        except JobValidationError as exc:
            raise JobValidationError(f"{where}.{exc.field}",
                                     exc.message.split(": ", 1)[1]) from None

    def _prepare_callback(self, batch: NewBatch, kind: str, spec: Any, tenant_id: str,
                          priority: JobPriority | str | None, now: datetime) -> None:
        """Check a callback as the job it will be (its payload with the batch's counts)."""
        if isinstance(spec, dict):
            for key in spec:
                if _BATCH_KEYS.get(key) in _NOT_IN_CALLBACKS:
                    raise JobValidationError(f"{kind}.{key}",
                                             _NOT_IN_CALLBACKS[_BATCH_KEYS[key]])
            payload = spec.get("payload", {})
            if isinstance(payload, dict) and batches.PAYLOAD_KEY in payload:
                raise JobValidationError(
                    f"{kind}.payload.{batches.PAYLOAD_KEY}",
                    "is filled in when the batch ends (its id and counts); use another key")
            spec = {**spec, "payload": batches.placeholder_payload(payload, batch.id)}
        job = self._prepare_spec(spec, kind, tenant_id, priority, now)
        delay = job.row["scheduled_for"] - now if job.row["status"] == "pending" else None
        batch.callbacks[kind] = job
        batch.delays[kind] = delay.total_seconds() if delay is not None else None

    def _store(self, tenant_id: str, prepared: list[PreparedJob], now: datetime,
               actor: Actor | None = None, audit_action: str = "job_created",
               batch: NewBatch | None = None) -> list[SystemJob]:
        """Check limits and insert, atomically (with the audit entry when ``actor`` is given,
        the batch's row when ``batch`` is). The heart of the queue path."""
        results: list[SystemJob | None] = [None] * len(prepared)
        new, aliases = self._resolve_idempotent(tenant_id, prepared, results)
        # Callbacks are accepted with their batch: limits and rollups count them now.
        accepted = [*new, *batch.callbacks.values()] if batch and batch.callbacks else new
        # Jobs that wait for others: the queue transaction also reads, locks and links those.
        linked = any(job.depends_on for job in new)
        if linked:
            _redirect_dependencies(prepared, results, aliases, new)
        consequences: list[SystemJob] = []
        entry = (_creation_entry(actor, audit_action, tenant_id, new, now)
                 if actor is not None and new else None)

        def insert(tx: QueueTransaction, conn=None) -> None:
            tenant = tx.tenant_limits(tenant_id)
            if tenant is None:
                raise unknown_tenant(tenant_id)
            if conn is not None:
                dependencies.settle(conn, tenant_id, new, now)  # raises → rolled back
            self._check_limits(tx, tenant_id, tenant, accepted, now)  # raises → rolled back
            call.settle_priorities(JobPriority(tenant["default_job_priority"]).rank)
            tx.insert_jobs([job.row for job in new])
            if batch is not None:
                tx.insert_batch(batch.row(tenant_id, new, now))
            if conn is not None:
                dependencies.link(conn, new)
                consequences[:] = _record_born_ended(conn, new, now)
            if entry is not None:
                tx.insert_audit(entry)

        call = QueueCall(tenant_id, now, new, accepted, insert, entry, batch)
        try:
            if linked:
                self._queue_writer.write_with_connection(insert, accepted, now)
            elif new:
                self._queue_writer.write(call)
        except TenantLimitException as rejection:  # nothing stored; count it, then tell the caller
            self._record_rejection(tenant_id, rejection.limit_type, now)
            raise
        except (self._integrity_error, IdempotencyKeyTaken):
            if not any(job.row["idempotency_key"] for job in new):
                raise
            # Another caller stored the same idempotency key a moment ago: answer with its job.
            return self._store(tenant_id, prepared, now, actor, audit_action, batch)
        snapshots = []
        for index, job in enumerate(prepared):
            if results[index] is None and index not in aliases:
                results[index] = job.snapshot()
                snapshots.append(results[index])
        for index, first in aliases.items():
            results[index] = results[first]
        if snapshots:
            self.job_updates.publish_many(snapshots + consequences)
            self.wake_local_runners()
        return results  # type: ignore[return-value]

    def _resolve_idempotent(self, tenant_id, prepared, results) -> tuple[list[PreparedJob],
                                                                         dict[int, int]]:
        """Fill ``results`` with the stored jobs of repeated idempotency keys.

        Returns the jobs still to insert, and for specs that repeat a key earlier in the same
        batch, the index of that earlier spec. (A key stored between this look-up and the insert
        trips the unique index; ``_store`` then looks again.)
        """
        keys = {p.row["idempotency_key"] for p in prepared if p.row["idempotency_key"]}
        if not keys:
            return list(prepared), {}
        with self.engine.connect() as conn:
            existing = {row.idempotency_key: job_from_row(row) for row in conn.execute(
                select(jobs_table).where(jobs_table.c.tenant_id == tenant_id,
                                         jobs_table.c.idempotency_key.in_(keys)))}
        new, first_with_key, aliases = [], {}, {}
        for index, job in enumerate(prepared):
            key = job.row["idempotency_key"]
            if key and key in existing:
                results[index] = existing[key]
            elif key and key in first_with_key:
                aliases[index] = first_with_key[key]
            else:
                new.append(job)
                if key:
                    first_with_key[key] = index
        return new, aliases

    @staticmethod
    def _check_limits(tx: QueueTransaction, tenant_id: str, limits: dict[str, Any],
                      new: list[PreparedJob], now: datetime) -> None:
        """Raise ``TenantLimitException`` for the first limit the new jobs would break (the
        PostgreSQL path applies the same rules in ``queue_calls``: see ``queue_pg.py``)."""
        allowed_types = limits["allowed_job_types"]
        if allowed_types is not None:
            for job in new:
                if job.row["type"] not in allowed_types:
                    raise type_not_allowed(tenant_id, job.row["type"], allowed_types)
        max_payload = limits["max_job_payload_size"]
        if max_payload is not None:
            for job in new:
                if job.payload_size > max_payload:
                    raise payload_too_large(tenant_id, job.payload_size, max_payload)
        max_queued = limits["max_queued_jobs"]
        if max_queued is not None:
            check_queue_room(tenant_id, max_queued, tx.count_waiting(tenant_id, max_queued + 1),
                             len(new))
        counted = sum(1 for job in new if not job.is_recurring)
        if counted:
            # The increment and the check in one statement: the row lock it takes makes
            # concurrent queuers (other processes included) see each other's counts.
            total = tx.count_daily(tenant_id, now.date(), counted)
            max_daily = limits["max_daily_jobs"]
            if max_daily is not None and total > max_daily:
                raise daily_used_up(tenant_id, total - counted, max_daily, now.date())

    def _record_rejection(self, tenant_id: str, limit_type: str, now: datetime) -> None:
        try:
            with db.write_transaction(self.engine) as conn:
                record_rejections(conn, tenant_id, limit_type, hour_of(now), 1)
        except Exception:  # analytics must never turn a clear limit error into a 500
            log.exception("could not record a %s rejection for %s", limit_type, tenant_id)

    # -- maintenance ----------------------------------------------------------------------

    def create_maintenance_jobs(self, tenant_id: str) -> list[SystemJob]:
        """The tenant's standard recurring maintenance jobs (see ``console/jobs/maintenance.py``):
        prune finished jobs, release stuck jobs, compact rollups, a weekly usage report.

        Idempotent: a second call creates nothing and returns the same jobs (idempotency keys).
        All or nothing, like ``queue_batch_jobs``.

        :raise TenantLimitException: the tenant may not queue ``maintenance`` jobs (tier1 by
            default: ``limit_type`` ``allowed_job_types``) or its queue has no room for them;
            nothing is stored.
        :raise JobValidationError: unknown tenant, or a maintenance handler is not registered.
        """
        from .maintenance import maintenance_job_specs

        return self.queue_batch_jobs(maintenance_job_specs(tenant_id), tenant_id)

    def release_stuck_jobs(self, tenant_id: str | None = None) -> list[SystemJob]:
        """Recover ``tenant_id``'s (or every tenant's) jobs still ``processing`` past their lease:
        the runners' own recovery (``recovery.release_expired_leases``), run once, now. Each
        abandoned attempt is recorded as ``WorkerLost``; the job is queued again, or fails when
        it has no retries left. Returns the released jobs."""
        released = release_expired_leases(
            self.engine, RetryPolicy(self.retry_base_seconds, self.retry_max_seconds),
            self.clock.now(), tenant_id=tenant_id)
        if released:
            self.job_updates.publish_many(released)
            self.wake_local_runners()
        return released

    # -- reading --------------------------------------------------------------------------

    def get_job_by_id(self, job_id: str) -> SystemJob | None:
        if not isinstance(job_id, str):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
        return job_from_row(row) if row else None

    @reports_outages
    def get_batch(self, batch_id: str) -> Batch | None:
        """A batch's counts and callbacks (``console/jobs/batches.py``); None when there is
        no such batch."""
        if not isinstance(batch_id, str):
            return None
        with self.engine.connect() as conn:
            return batches.read_batch(conn, batch_id)

    def get_jobs_by_status(self, status: JobStatus | str, tenant_id: str | None = None,
                           limit: int = 100) -> list[SystemJob]:
        """Newest first."""
        status = _parse_status(status)
        query = select(jobs_table).where(jobs_table.c.status == status.value)
        if tenant_id is not None:
            query = query.where(jobs_table.c.tenant_id == tenant_id)
        query = query.order_by(jobs_table.c.created_at.desc(), jobs_table.c.id.desc()).limit(
            max(1, min(int(limit), 10_000)))
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(query)]

    def get_job_attempts(self, job_id: str, with_lines: bool = False) -> list[dict[str, Any]]:
        """Every attempt of a job, oldest first; ``with_lines``: each with the ``lines`` it
        logged (``attempt_logs.py``)."""
        from .models import attempts_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(attempts_table).where(attempts_table.c.job_id == job_id)
                                .order_by(attempts_table.c.attempt, attempts_table.c.id))
            attempts = [dict(r._mapping) for r in rows]
            if with_lines:
                lines = lines_by_attempt(conn, job_id, (a["attempt"] for a in attempts))
                for attempt in attempts:
                    attempt["lines"] = lines[attempt["attempt"]]
            return attempts

    def attempt_history(self, job: SystemJob, limit: int = 10,
                        before: int | None = None) -> list[dict[str, Any]]:
        """The job's newest ``limit`` attempts (numbered below ``before``), newest first, each
        with its log lines; a running attempt first, with the lines it logged so far. The
        caller has checked that whoever asks may see ``job``."""
        with self.engine.connect() as conn:
            return recent_attempts(conn, job, limit, before)

    # -- analytics (console.analytics reads the rollups; nothing here writes) ---------------

    @property
    def analytics(self):
        """The reader the analytics verbs delegate to (``console.analytics.AnalyticsReader``,
        handed over by ``create_app``; the engine itself does not import analytics)."""
        if self._analytics is None:
            raise RuntimeError("this JobService has no analytics reader: build it with "
                               "create_app(), or pass analytics=AnalyticsReader(engine)")
        return self._analytics

    def get_tenant_job_usage(self, tenant_id: str, start_date=None, end_date=None):
        """Usage, rates and limits of one tenant over [start_date, end_date) (whole hours)."""
        return self.analytics.tenant_job_usage(tenant_id, start_date, end_date)

    def get_job_performance_metrics(self, job_type, handler: str, start_date=None,
                                    end_date=None):
        """Executions, rates, average and exact p95 duration, errors by type."""
        return self.analytics.job_performance_metrics(job_type, handler, start_date, end_date)

    def get_tenant_job_health(self, tenant_id: str) -> dict[str, Any]:
        """Health score 0–100, status and recommendations (see console/analytics/health.py)."""
        return self.analytics.tenant_job_health(tenant_id)

    def get_tenants_job_health(self) -> dict[str, dict[str, Any]]:
        """Every tenant's health at once, by tenant id (one grouped query per signal)."""
        return self.analytics.tenants_job_health()

    def get_job_trends(self, tenant_id: str | None = None, handler: str | None = None,
                       job_type=None, start_date=None, end_date=None,
                       granularity: str | None = None, tenant_ids=None) -> dict[str, Any]:
        """Hourly or daily series for charts (see console/analytics/trends.py);
        ``tenant_ids`` keeps only those tenants."""
        return self.analytics.job_trends(tenant_id=tenant_id, handler=handler,
                                         job_type=job_type, start_date=start_date,
                                         end_date=end_date, granularity=granularity,
                                         tenant_ids=tenant_ids)

    def _tenant_metrics(self):
        return self.analytics.tenant_metrics()

    def get_job_queue_status(self, tenant_ids=None) -> dict[str, Any]:
        """The queue now, of every tenant or of ``tenant_ids`` only."""
        return self.analytics.job_queue_status(tenant_ids=tenant_ids)

    def get_system_job_statistics(self, tenant_ids=None):
        """The last 24 h and the health check's warnings, of every tenant or of
        ``tenant_ids`` only."""
        return self.analytics.system_job_statistics(tenant_ids=tenant_ids)

    # -- state changes --------------------------------------------------------------------

    @reports_outages
    def retry_job(self, job_id: str, *, actor: Actor | None = None) -> SystemJob:
        """Run a failed or cancelled job again, now (a recurring one: at its next time).

        :raise JobNotFoundError: no such job.
        :raise JobStateError: the job is not failed or cancelled.
        :raise JobValidationError: the job's handler is a system handler and its tenant is not
            the operations tenant (field ``handler``), or its cron expression never fires
            (field ``cron_schedule``).
        :raise TenantLimitException: its tenant's queue is full.
        """
        now = self.clock.now()
        try:
            with db.write_transaction(self.engine) as conn:
                job = self._lock_job(conn, job_id)
                if job.status.value not in RETRYABLE_STATUSES:
                    raise JobStateError(f"job {job_id} is {job.status.value}; only failed or "
                                        "cancelled jobs can be retried")
                self.handlers.check_allowed(self.handlers.get(job.handler), job.tenant_id)
                max_queued, waiting = self._waiting_against_limit(conn, job.tenant_id)
                check_queue_room(job.tenant_id, max_queued, waiting, 1)
                status, when = _revived_state(job, now)
                conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(
                    status=status.value, scheduled_for=when, current_retries=0,
                    completed_at=None, progress=None, progress_message=None, updated_at=now))
                _record_change(conn, actor, "job_retried", job, status, now)
                batches.count_revivals(conn, [job])
                db.notify_channel(conn, NOTIFY_CHANNEL)
        except TenantLimitException as rejection:  # rolled back; count it, then tell the caller
            self._record_rejection(rejection.tenant_id, rejection.limit_type, now)
            raise
        updated = replace(job, status=status, scheduled_for=when, current_retries=0,
                          completed_at=None, progress=None, progress_message=None, updated_at=now)
        self.job_updates.publish(updated)
        self.wake_local_runners()
        return updated

    @reports_outages
    def cancel_job(self, job_id: str, *, actor: Actor | None = None) -> SystemJob:
        """Stop a pending or queued job from ever running (a recurring one: every future run).

        :raise JobNotFoundError: no such job.
        :raise JobStateError: the job is processing or already finished.
        """
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            job = self._lock_job(conn, job_id)
            if job.status.value not in WAITING_STATUSES:
                raise JobStateError(f"job {job_id} is {job.status.value}; only pending or queued "
                                    "jobs can be cancelled")
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id)
                         .values(status=JobStatus.CANCELLED.value, completed_at=now,
                                 updated_at=now))
            rollups = RollupBatch()
            rollups.add_jobs(now, job.tenant_id, job.handler, job.type, "jobs_cancelled")
            _record_change(conn, actor, "job_cancelled", job, JobStatus.CANCELLED, now)
            updated = replace(job, status=JobStatus.CANCELLED, completed_at=now, updated_at=now)
            consequences = record_endings(conn, [updated], now, rollups)
            rollups.write(conn)
        self.job_updates.publish(updated)
        self.job_updates.publish_many(consequences)
        return updated

    @reports_outages
    def retry_jobs(self, job_ids: Iterable[str], batch_size: int = BULK_BATCH_SIZE, *,
                   actor: Actor | None = None, described_as: str | None = None) -> BulkOutcome:
        """``retry_job`` for many jobs, by the same rules, ``batch_size`` jobs per transaction.

        Never raises for one job: a job that is missing, not failed or cancelled, of a system
        handler and another tenant than the operations tenant, recurring on an expression that
        never fires, or whose tenant's queue is full (``max_queued_jobs``, counted as a
        rejection like ``retry_job`` does) is left alone, and the outcome says how many were,
        and why. With ``actor``, each transaction records per tenant one entry of the jobs it
        changed (``described_as``: the filter or selection the caller acted on).
        """
        outcome = BulkOutcome()
        for chunk in _chunks(job_ids, batch_size, outcome):
            now = self.clock.now()
            revived: list[SystemJob] = []
            with db.write_transaction(self.engine) as conn:
                jobs = self._lock_jobs(conn, chunk)
                room: dict[str, int | None] = {}
                refused: Counter[str] = Counter()
                for job_id in chunk:
                    job = jobs.get(job_id)
                    if job is None:
                        outcome.leave_alone("not found")
                        continue
                    if job.status.value not in RETRYABLE_STATUSES:
                        outcome.leave_alone("not failed or cancelled")
                        continue
                    if not self.handlers.allows(self.handlers.get(job.handler), job.tenant_id):
                        outcome.leave_alone("a system handler of another tenant than the "
                                            "operations tenant")
                        continue
                    try:
                        status, when = _revived_state(job, now)
                    except CronNeverFiresError:
                        outcome.leave_alone("its cron expression never fires")
                        continue
                    if job.tenant_id not in room:
                        room[job.tenant_id] = self._queue_room(conn, job.tenant_id)
                    if room[job.tenant_id] is not None:
                        if room[job.tenant_id] <= 0:
                            refused[job.tenant_id] += 1
                            outcome.hold_back(job.tenant_id)
                            continue
                        room[job.tenant_id] -= 1
                    revived.append(replace(job, status=status, scheduled_for=when,
                                           current_retries=0, completed_at=None, progress=None,
                                           progress_message=None, updated_at=now))
                if revived:
                    conn.execute(_REVIVE, [{"b_id": job.id, "b_status": job.status.value,
                                            "b_when": job.scheduled_for, "b_now": now}
                                           for job in revived])
                    batches.count_revivals(conn, [jobs[job.id] for job in revived])
                    db.notify_channel(conn, NOTIFY_CHANNEL)
                for tenant_id, count in refused.items():
                    record_rejections(conn, tenant_id, "max_queued_jobs", hour_of(now), count)
                _record_bulk(conn, actor, "jobs_retried", revived, described_as, now)
            outcome.changed_ids.extend(job.id for job in revived)
            if revived:
                self.job_updates.publish_many(revived)
                self.wake_local_runners()
        return outcome

    @reports_outages
    def cancel_jobs(self, job_ids: Iterable[str], batch_size: int = BULK_BATCH_SIZE, *,
                    actor: Actor | None = None, described_as: str | None = None
                    ) -> BulkOutcome:
        """``cancel_job`` for many jobs, by the same rules, ``batch_size`` jobs per transaction.

        Never raises for one job: a job that is missing, or not pending or queued, is left
        alone, and the outcome says how many were, and why. ``actor`` and ``described_as``
        as for ``retry_jobs``.
        """
        outcome = BulkOutcome()
        for chunk in _chunks(job_ids, batch_size, outcome):
            now = self.clock.now()
            cancelled: list[SystemJob] = []
            with db.write_transaction(self.engine) as conn:
                jobs = self._lock_jobs(conn, chunk)
                rollups = RollupBatch()
                for job_id in chunk:
                    job = jobs.get(job_id)
                    if job is None:
                        outcome.leave_alone("not found")
                    elif job.status.value not in WAITING_STATUSES:
                        outcome.leave_alone("not pending or queued")
                    else:
                        cancelled.append(replace(job, status=JobStatus.CANCELLED,
                                                 completed_at=now, updated_at=now))
                        rollups.add_jobs(now, job.tenant_id, job.handler, job.type,
                                         "jobs_cancelled")
                if cancelled:
                    conn.execute(jobs_table.update()
                                 .where(jobs_table.c.id.in_([job.id for job in cancelled]))
                                 .values(status=JobStatus.CANCELLED.value, completed_at=now,
                                         updated_at=now))
                    _record_bulk(conn, actor, "jobs_cancelled", cancelled, described_as, now)
                    consequences = record_endings(conn, cancelled, now, rollups)
                    rollups.write(conn)
            outcome.changed_ids.extend(job.id for job in cancelled)
            self.job_updates.publish_many(cancelled)
            if cancelled:
                self.job_updates.publish_many(consequences)
        return outcome

    def _queue_room(self, conn, tenant_id: str) -> int | None:
        """How many more jobs the tenant may have waiting (None: no max_queued_jobs)."""
        return queue_room(*self._waiting_against_limit(conn, tenant_id))

    @staticmethod
    def _waiting_against_limit(conn, tenant_id: str) -> tuple[int | None, int]:
        """The tenant's ``max_queued_jobs`` and its waiting jobs (counted up to just past it)."""
        limits = limits_from_row(conn.execute(_TENANT_BY_ID, {"tenant_id": tenant_id}).first())
        if limits.max_queued_jobs is None:
            return None, 0
        return limits.max_queued_jobs, count_waiting(conn, tenant_id, limits.max_queued_jobs + 1)

    @staticmethod
    def _lock_jobs(conn, job_ids: list[str]) -> dict[str, SystemJob]:
        """The jobs with these ids (row-locked on PostgreSQL, in id order: no deadlocks)."""
        query = select(jobs_table).where(jobs_table.c.id.in_(job_ids)).order_by(jobs_table.c.id)
        if not db.is_sqlite(conn):
            query = query.with_for_update()
        return {row.id: job_from_row(row) for row in conn.execute(query)}

    @staticmethod
    def _lock_job(conn, job_id: str) -> SystemJob:
        return lock_job(conn, job_id)

    # -- operator control -----------------------------------------------------------------
    # ``by``: an ``Actor`` (recorded in the audit trail and on the pause) or a plain name
    # (recorded on the pause only).

    def pause_tenant(self, tenant_id: str, reason: str | None = None,
                     by: Actor | str | None = None) -> Pause:
        """Hold every job of a tenant: they still queue (within its limits), none starts;
        attempts already running finish. Pausing what is paused changes nothing.

        :raise JobValidationError: unknown tenant (``tenant_id``), reason too long.
        """
        def pause(conn, now):
            control.check_tenant(conn, tenant_id)
            return Pause("tenant", tenant_id=tenant_id)
        return self._pause(pause, reason, by)

    def resume_tenant(self, tenant_id: str, by: Actor | str | None = None) -> Pause | None:
        """Lift a tenant's pause; the pause lifted, or None when it was not paused."""
        return self._resume(Pause("tenant", tenant_id=tenant_id), by)

    def pause_handler(self, handler: str, tenant_id: str | None = None,
                      reason: str | None = None, by: Actor | str | None = None) -> Pause:
        """Hold a handler's jobs, for every tenant or for ``tenant_id`` only.

        :raise JobValidationError: unknown handler (neither registered here nor published by
            a runner) or tenant, reason too long.
        """
        def pause(conn, now):
            control.check_handler(conn, handler, self.handlers.names())
            if tenant_id is not None:
                control.check_tenant(conn, tenant_id)
            return Pause("handler", tenant_id=tenant_id, handler=handler)
        return self._pause(pause, reason, by)

    def resume_handler(self, handler: str, tenant_id: str | None = None,
                       by: Actor | str | None = None) -> Pause | None:
        return self._resume(Pause("handler", tenant_id=tenant_id, handler=handler), by)

    def pause_all(self, reason: str | None = None, by: Actor | str | None = None) -> Pause:
        """Maintenance: every runner finishes what runs and claims nothing."""
        return self._pause(lambda conn, now: Pause("all"), reason, by)

    def resume_all(self, by: Actor | str | None = None) -> Pause | None:
        return self._resume(Pause("all"), by)

    @reports_outages
    def pause_job(self, job_id: str, reason: str | None = None,
                  by: Actor | str | None = None) -> SystemJob:
        """Hold one job (a recurring one does not fire; a scheduled one does not start).

        :raise JobNotFoundError: no such job.
        :raise JobStateError: the job has finished.
        """
        actor, name = control.who(by)
        reason = control.check_reason(reason)
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            job = control.pause_job(conn, job_id, reason, actor, name, now)
        self.job_updates.publish(job)
        return job

    @reports_outages
    def resume_job(self, job_id: str, by: Actor | str | None = None) -> SystemJob:
        """Lift a job's pause: a recurring job runs at its next time, a one-off job past its
        time at once. A job that was not paused is returned unchanged.

        :raise JobNotFoundError: no such job.
        """
        actor, name = control.who(by)
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            job = control.resume_job(conn, job_id, actor, name, now)
        self.job_updates.publish(job)
        self.wake_local_runners()
        return job

    @reports_outages
    def pauses(self) -> PauseSet:
        """Every pause in force."""
        with self.engine.connect() as conn:
            return read_pauses(conn)

    @reports_outages
    def run_now(self, job_id: str, by: Actor | str | None = None) -> SystemJob:
        """Run a job once now. A recurring job keeps its schedule: a one-off copy of it is
        queued (``metadata.run_now_of`` names the original) and returned. A delayed job, or one
        waiting out a retry's backoff, becomes due now and is returned.

        :raise JobNotFoundError: no such job.
        :raise JobStateError: the job is paused, finished, queued already or running.
        :raise TenantLimitException: (recurring) the tenant's queue is full.
        """
        actor, _ = control.who(by)
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            job = self._lock_job(conn, job_id)
            if not job.cron_schedule:
                updated = control.make_due_now(conn, job, read_pauses(conn), now)
                audit.record(conn, actor, "job_run_now", tenant_id=job.tenant_id,
                             target_type="job", target_id=job.id, job_ids=[job.id],
                             before={"status": job.status.value,
                                     "scheduled_for": job.scheduled_for.isoformat()
                                     if job.scheduled_for else None},
                             after={"status": updated.status.value}, now=now)
        if not job.cron_schedule:
            self.job_updates.publish(updated)
            self.wake_local_runners()
            return updated
        if job.status in control.FINISHED:
            raise JobStateError(f"job {job_id} is {job.status.value}; retry it to run it again")
        metadata = {**(job.metadata or {}), "run_now_of": job.id}
        return self.queue_job(job.type, job.handler, job.payload, job.tenant_id,
                              priority=job.priority, max_retries=job.max_retries,
                              metadata=metadata, actor=actor, audit_action="job_run_now")

    @reports_outages
    def set_handler_rate_limit(self, handler: str, rate_limit: RateLimit | dict | None,
                               tenant_id: str | None = None,
                               by: Actor | str | None = None) -> RateLimit | None:
        """Limit how many jobs run by ``handler`` start per period, for every tenant or for
        ``tenant_id`` only (a mail provider that takes 10 a second); ``None`` removes the
        limit. In effect from every runner's next claim; work it holds back stays queued.
        Returns the limit now in force for that scope.

        :raise JobValidationError: a bad limit (``rate_limit``, naming what is wrong), an
            unknown handler (neither registered here nor published by a runner) or tenant.
        """
        limit = RateLimit.parse(rate_limit, "rate_limit")
        actor, name = control.who(by)
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            if limit is not None or read_handler_limits(conn).of(handler, tenant_id) is None:
                # Removing a limit of a handler no runner has any more must still work.
                control.check_handler(conn, handler, self.handlers.names())
            if tenant_id is not None:
                control.check_tenant(conn, tenant_id)
            store_handler_limit(conn, handler, tenant_id, limit, actor, name, now)
        self.wake_local_runners()
        return limit

    # -- tenants' event webhooks (webhooks.py) ----------------------------------------------

    @reports_outages
    def subscribe_webhook(self, tenant_id: str, url: str, events: Iterable[str], *,
                          actor: Actor | None = None) -> tuple[webhooks.Subscription, str]:
        """Send the tenant's job events ``events`` (of ``webhooks.EVENTS``) to ``url``, from
        the next one on. Returns the subscription and the tenant's signing secret (created
        now when it had none), which receivers verify with ``verify_signature``.

        :raise JobValidationError: unknown tenant (``tenant_id``); ``url`` not a public http(s)
            URL (the webhook channel's rules); ``events`` empty or naming an unknown event;
            the tenant has ``webhooks.MAX_SUBSCRIPTIONS`` already.
        """
        url = self._check_webhook_url(url)
        if isinstance(events, str) or not isinstance(events, Iterable):
            raise JobValidationError("events", "events must be a list of event names")
        events = list(events)
        unknown = [e for e in events if e not in webhooks.EVENTS]
        if not events or unknown:
            raise JobValidationError("events", f"unknown event {unknown[0]!r}; " if unknown
                                     else "choose at least one event; "
                                     f"events are {', '.join(webhooks.EVENTS)}")
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            control.check_tenant(conn, tenant_id)
            try:
                subscription, secret = webhooks.subscribe(
                    conn, tenant_id, url, events, actor.name if actor else None, now)
            except ValueError as exc:
                raise JobValidationError("url", str(exc)) from None
            audit.record(conn, actor, "webhook_subscribed", tenant_id=tenant_id,
                         target_type="webhook", target_id=subscription.id,
                         after={"url": url, "events": list(subscription.events)}, now=now)
        return subscription, secret

    def _check_webhook_url(self, url: Any) -> str:
        """``url`` as the webhook channel would take it as a recipient (public addresses only)."""
        if not isinstance(url, str) or not url.strip():
            raise JobValidationError("url", "is required: the http(s) URL to post events to")
        url = url.strip()
        if len(url) > webhooks.MAX_URL_CHARS:
            raise JobValidationError("url", f"must be at most {webhooks.MAX_URL_CHARS} "
                                            "characters")
        channel = self.handlers.get(webhooks.DELIVERY_HANDLER)
        if channel is None:
            raise JobValidationError("url", "the webhook channel is not installed here: "
                                            "events cannot be delivered")
        try:
            channel.validate_payload({"recipient": url, "body": {}})
        except JobValidationError as exc:
            raise JobValidationError("url", exc.message) from None
        except ValueError as exc:
            raise JobValidationError("url", str(exc).replace("recipient", "url", 1)) from None
        return url

    @reports_outages
    def unsubscribe_webhook(self, tenant_id: str, subscription_id: str, *,
                            actor: Actor | None = None) -> webhooks.Subscription:
        """Stop sending events to a subscription's URL (deliveries already stored still go).

        :raise SubscriptionNotFound: no such subscription of this tenant.
        """
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            removed = webhooks.unsubscribe(conn, tenant_id, str(subscription_id))
            if removed is None:
                raise webhooks.SubscriptionNotFound(
                    f"tenant {tenant_id!r} has no webhook subscription {subscription_id!r}")
            audit.record(conn, actor, "webhook_unsubscribed", tenant_id=tenant_id,
                         target_type="webhook", target_id=removed.id,
                         before={"url": removed.url, "events": list(removed.events)}, now=now)
        return removed

    @reports_outages
    def webhook_subscriptions(self, tenant_id: str) -> list[webhooks.Subscription]:
        with self.engine.connect() as conn:
            return webhooks.subscriptions(conn, tenant_id)

    @reports_outages
    def webhook_deliveries(self, tenant_id: str, *, before: str | None = None,
                           after: str | None = None, size: int = 20) -> Page:
        """A keyset page of the tenant's delivery log, newest first (rows: ``Delivery``).

        :raise BadCursor: a cursor this list did not write.
        """
        with self.engine.connect() as conn:
            return webhooks.list_deliveries(conn, tenant_id, before=before, after=after,
                                            size=size)

    @reports_outages
    def handler_rate_limits(self, handler: str | None = None) -> list[HandlerRateLimit]:
        """Handlers' rate limits in force (of ``handler`` only, when given), for every tenant
        or one."""
        with self.engine.connect() as conn:
            limits = read_handler_limits(conn).all
        return [limit for limit in limits if handler is None or limit.handler == handler]

    @reports_outages
    def rate_limit_states(self, tenant_id: str | None = None,
                          handler: str | None = None) -> list[KeyState]:
        """The rate limits that work counts against now, each with its starts in the current
        period and when it next allows a start, as a claim now would see them: a tenant's own
        (``tenant_id``), a handler's for every tenant (``handler``), and both with its limit
        for that tenant (both)."""
        now = self.clock.now()
        config = self.tenants.get_tenant_config(tenant_id) if tenant_id else None
        own = config.job_limit.rate_limit if config else None
        with self.engine.connect() as conn:
            handler_limits = read_handler_limits(conn)
            if tenant_id and handler:
                limits = job_limits(tenant_id, own, handler, handler_limits)
            elif handler:
                every = handler_limits.of(handler)
                limits = {every.key: every.limit} if every else {}
            else:
                limits = {tenant_key(tenant_id): own} if own else {}
            return list(states_at(conn, limits, now).values())

    def explain_job(self, job_id: str) -> list[JobBlocker]:
        """Every reason a pending or queued job has not started, each with its figures
        (``lease`` for a processing job whose runner stopped renewing). Empty when nothing
        holds it back.

        :raise JobNotFoundError: no such job.
        """
        return self.explanation(job_id).blockers

    @reports_outages
    def explanation(self, job_id: str) -> JobExplanation:
        """``explain_job``'s blockers with the job as read, and for a processing job the live
        runner that holds it."""
        return explain(self, job_id)

    @reports_outages
    def runners(self) -> dict[str, list[RunnerInfo]]:
        """``live``: every live runner; ``stopped``: those that stopped in the last day, with
        the jobs they held and what became of each."""
        now = self.clock.now()
        with self.engine.connect() as conn:
            return {"live": live_runners(conn, now, self.lease_seconds),
                    "stopped": stopped_runners(conn, now, self.lease_seconds)}

    @reports_outages
    def _pause(self, make_pause, reason: str | None, by: Actor | str | None) -> Pause:
        actor, name = control.who(by)
        reason = control.check_reason(reason)
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            pause = replace(make_pause(conn, now), reason=reason, paused_by=name)
            stored = control.add_pause(conn, pause, actor, now)
        return stored

    @reports_outages
    def _resume(self, pause: Pause, by: Actor | str | None) -> Pause | None:
        actor, name = control.who(by)
        now = self.clock.now()
        with db.write_transaction(self.engine) as conn:
            lifted = control.remove_pause(conn, pause, actor, name, now)
        self.wake_local_runners()
        return lifted

    # -- running --------------------------------------------------------------------------

    def attach_runner(self, runner) -> None:
        with self._runners_lock:
            self._local_runners.add(runner)

    def detach_runner(self, runner) -> None:
        with self._runners_lock:
            self._local_runners.discard(runner)

    def wake_local_runners(self) -> None:
        """Work was queued in this process: its runners look at once instead of at their tick."""
        for runner in list(self._local_runners):
            runner.wake()

    def run_until_idle(self, timeout: float = 30.0, settle: float = 1.0,
                       threads: int | None = None) -> int:
        """Run due jobs in this process until nothing was due for ``settle`` seconds, or
        ``timeout`` passed. Returns how many attempts ran. For tests, scripts and benchmarks."""
        from .runner import Runner

        runner = Runner(self, threads=threads or self.worker_threads, name="run-until-idle")
        return runner.run_until_idle(timeout=timeout, settle=settle)

    def count_jobs(self, tenant_id: str | None = None,
                   statuses: Iterable[str] | None = None) -> int:
        query = select(func.count()).select_from(jobs_table)
        if tenant_id is not None:
            query = query.where(jobs_table.c.tenant_id == tenant_id)
        if statuses is not None:
            query = query.where(jobs_table.c.status.in_([_parse_status(s).value for s in statuses]))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()


_REVIVE = jobs_table.update().where(jobs_table.c.id == bindparam("b_id")).values(
    status=bindparam("b_status"), scheduled_for=bindparam("b_when"), current_retries=0,
    completed_at=None, progress=None, progress_message=None, updated_at=bindparam("b_now"))


def _creation_entry(actor: Actor, action: str, tenant_id: str, new: list[PreparedJob],
                    now: datetime) -> dict[str, Any]:
    """The audit entry of queued jobs: the job itself, or a batch's count (its job ids and
    batch id)."""
    if len(new) == 1 and action != "jobs_created":
        row = new[0].row
        return audit.entry_row(actor, action, tenant_id=tenant_id, target_type="job",
                               target_id=row["id"], job_ids=[row["id"]], now=now,
                               details={"type": row["type"], "handler": row["handler"]})
    details = {"handlers": sorted({job.row["handler"] for job in new})}
    if new[0].row["batch_id"]:
        details["batch_id"] = new[0].row["batch_id"]
    return audit.entry_row(actor, action, tenant_id=tenant_id, target_type="tenant",
                           target_id=tenant_id, job_ids=[job.row["id"] for job in new], now=now,
                           details=details)


def _redirect_dependencies(prepared: list[PreparedJob], results: list[SystemJob | None],
                           aliases: dict[int, int], new: list[PreparedJob]) -> None:
    """A job of this call that an idempotency key answered with a stored one (or with an
    earlier spec of the call): jobs of the call that depend on it (a chain's next link) depend
    on that one instead."""
    stand_ins = {job.row["id"]: results[index].id for index, job in enumerate(prepared)
                 if results[index] is not None}
    for index, first in aliases.items():
        first_id = prepared[first].row["id"]
        stand_ins[prepared[index].row["id"]] = stand_ins.get(first_id, first_id)
    for job in new:
        if any(dep in stand_ins for dep in job.depends_on):
            set_dependencies(job, tuple(dict.fromkeys(stand_ins.get(dep, dep)
                                                      for dep in job.depends_on)))


def _record_born_ended(conn, new: list[PreparedJob], now: datetime) -> list[SystemJob]:
    """New jobs cancelled at once (a dependency had failed): counted, and what follows from
    their ending recorded, in the queue transaction. Returns the jobs that changed."""
    ended = [job.snapshot() for job in new if job.row["status"] == JobStatus.CANCELLED.value]
    if not ended:
        return []
    rollups = RollupBatch()
    dependencies.count_cancelled(rollups, ended, now)
    changed = record_endings(conn, ended, now, rollups)
    rollups.write(conn)
    return changed


def _record_change(conn, actor: Actor | None, action: str, job: SystemJob, status: JobStatus,
                   now: datetime) -> None:
    """One job's retry or cancel, in its transaction: its status before and after."""
    audit.record(conn, actor, action, tenant_id=job.tenant_id, target_type="job",
                 target_id=job.id, job_ids=[job.id], before={"status": job.status.value},
                 after={"status": status.value}, details={"handler": job.handler}, now=now)


def _record_bulk(conn, actor: Actor | None, action: str, changed: list[SystemJob],
                 described_as: str | None, now: datetime) -> None:
    """A bulk verb's transaction: one entry per tenant of the jobs it changed."""
    by_tenant: dict[str, list[str]] = {}
    for job in changed:
        by_tenant.setdefault(job.tenant_id, []).append(job.id)
    for tenant_id, ids in sorted(by_tenant.items()):
        audit.record(conn, actor, action, tenant_id=tenant_id, target_type="tenant",
                     target_id=tenant_id, job_ids=ids, now=now,
                     details={"filter": described_as} if described_as else None)


def _revived_state(job: SystemJob, now: datetime) -> tuple[JobStatus, datetime]:
    """Where a retried job goes: queued now, or a recurring one pending until its next time."""
    from .cron import next_fire_time

    if job.cron_schedule:
        return JobStatus.PENDING, next_fire_time(job.cron_schedule, job.timezone, now)
    return JobStatus.QUEUED, now


def _chunks(job_ids: Iterable[str], size: int, outcome: BulkOutcome):
    """Distinct string ids in batches of ``size``; anything else is counted as not found."""
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    distinct: dict[str, None] = {}
    for job_id in job_ids:
        if isinstance(job_id, str) and job_id:
            distinct[job_id] = None
        else:
            outcome.leave_alone("not found")
    ids = list(distinct)
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _parse_status(status: JobStatus | str) -> JobStatus:
    try:
        return JobStatus(getattr(status, "value", status))
    except ValueError:
        raise JobValidationError("status", f"unknown status {status!r}; use one of "
                                           f"{', '.join(s.value for s in JobStatus)}") from None
