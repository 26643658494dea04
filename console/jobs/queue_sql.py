"""The two hottest writes in hand-written SQL on the driver's own connection: the queue path's
transaction, and the runner's recording of finished attempts; and ``QueueWriter``, which
commits queue calls that wait together as one transaction on either database.

Queueing is the one write that callers wait on one by one, and recording results runs for every
attempt, so both skip SQLAlchemy's per-statement and per-row machinery, whose overhead
outweighs SQLite's own work on statements this small. The SQL is small and fixed; the values
are written exactly as SQLAlchemy writes them (SQLite: UTC times as 'YYYY-MM-DD HH:MM:SS.ffffff',
dates as ISO text), so every other module reads these rows through the ordinary models. On
PostgreSQL the queue path's statements run in the server instead (``queue_pg.py``); the ones
here serve it only for jobs with dependencies.
"""
from __future__ import annotations

import contextlib
import json
import operator
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import Engine

from . import db, queue_pg
from .models import AUDIT_COLUMNS, BATCH_COLUMNS, JOB_COLUMNS
from .rollups import hour_of
from .types import WAITING_STATUSES, DatabaseUnavailableError

UTC = timezone.utc

_TIME_POSITIONS = [i for i, c in enumerate(JOB_COLUMNS)
                   if c in {"scheduled_for", "last_attempt", "completed_at", "lease_expires_at",
                            "attempt_started_at", "created_at", "updated_at", "not_before"}]
_ROW_GETTER = operator.itemgetter(*JOB_COLUMNS)


def _row_values(row: dict[str, Any]) -> list[Any]:
    return list(_ROW_GETTER(row))


_TENANT_LIMITS = ("SELECT max_queued_jobs, max_daily_jobs, max_job_payload_size, "
                  "allowed_job_types, default_job_priority FROM tenants WHERE id = ?")
_COUNT_WAITING = ("SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE tenant_id = ? AND status IN "
                  f"({', '.join(repr(s) for s in WAITING_STATUSES)}) LIMIT ?) AS waiting")
_COUNT_DAILY = ("INSERT INTO tenant_daily_usage (tenant_id, day, jobs_accepted, recurring_runs) "
                "VALUES (?, ?, ?, 0) ON CONFLICT (tenant_id, day) DO UPDATE SET "
                "jobs_accepted = tenant_daily_usage.jobs_accepted + excluded.jobs_accepted "
                "RETURNING jobs_accepted + recurring_runs")
_COUNT_CREATED = (
    "INSERT INTO job_rollups (hour, tenant_id, handler, job_type, attempts, attempts_succeeded, "
    "attempts_failed, attempts_timed_out, attempts_lost, duration_ms_sum, wait_ms_sum, "
    "jobs_created, jobs_completed, jobs_failed, jobs_cancelled) "
    "VALUES (?, ?, ?, ?, 0, 0, 0, 0, 0, 0, 0, ?, 0, 0, 0) "
    "ON CONFLICT (hour, tenant_id, handler, job_type) DO UPDATE SET "
    "jobs_created = job_rollups.jobs_created + excluded.jobs_created")
_COUNT_CREATED_TOTAL = (
    "INSERT INTO job_totals (handler, job_type, duration_bucket, attempts, attempts_failed, "
    "attempts_timed_out, duration_ms_sum, jobs_created) VALUES (?, ?, -1, 0, 0, 0, 0, ?) "
    "ON CONFLICT (handler, job_type, duration_bucket) DO UPDATE SET "
    "jobs_created = job_totals.jobs_created + excluded.jobs_created")
_INSERT_AUDIT = (f"INSERT INTO audit_entries ({', '.join(AUDIT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in AUDIT_COLUMNS)})")
_AUDIT_JSON = {"job_ids", "value_before", "value_after", "details"}
_INSERT_BATCH = (f"INSERT INTO batches ({', '.join(BATCH_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in BATCH_COLUMNS)})")
_BATCH_JSON = {"on_complete", "on_success", "callback_job_ids"}
_INSERT_JOB = (f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in JOB_COLUMNS)})")


_RECORD_RESULT = (
    "UPDATE jobs SET status = ?, scheduled_for = ?, current_retries = ?, completed_at = ?, "
    "last_result = ?, progress = ?, lease_owner = NULL, lease_expires_at = NULL, "
    "attempt_started_at = NULL, updated_at = ? WHERE id = ?")
_INSERT_ATTEMPT = (
    "INSERT INTO job_attempts (job_id, tenant_id, job_type, handler, attempt, started_at, "
    "finished_at, duration_ms, success, error_type, error_message, worker) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_ATTEMPT_COLUMNS = ("job_id", "tenant_id", "job_type", "handler", "attempt", "started_at",
                    "finished_at", "duration_ms", "success", "error_type", "error_message",
                    "worker")


def result_row(postgres: bool, result: dict[str, Any]) -> tuple:
    """A job's next state as ``write_results`` writes it (``result``: status, scheduled_for,
    current_retries, completed_at, last_result (a dict), progress, updated_at, id); built
    before the writer's turn, so that the turn holds the database for the writes alone."""
    value = db.driver_value(postgres)
    return (result["status"], value(result["scheduled_for"]), result["current_retries"],
            value(result["completed_at"]),
            json.dumps(result["last_result"], separators=(",", ":"), default=str),
            result["progress"], value(result["updated_at"]), result["id"])


def attempt_row(postgres: bool, attempt: dict[str, Any]) -> tuple:
    """An attempt row (``_ATTEMPT_COLUMNS``) as ``write_results`` writes it."""
    value = db.driver_value(postgres)
    return tuple(value(attempt[c]) for c in _ATTEMPT_COLUMNS)


def count_waiting(conn, tenant_id: str, bound: int) -> int:
    """``QueueTransaction.count_waiting`` inside the SQLAlchemy transaction ``conn``."""
    postgres = conn.dialect.name == "postgresql"
    return QueueTransaction(conn.connection.dbapi_connection.cursor(), postgres).count_waiting(
        tenant_id, bound)


def write_results(conn, owner: str, records: list[tuple[str, tuple, tuple]]) -> set[str]:
    """The runner's result writes, inside its SQLAlchemy transaction ``conn``: for each
    ``(job_id, result_row, attempt_row)`` whose job is still leased to ``owner``, the job's next
    state and its attempt. Returns the ids written: a job whose lease was lost (another runner
    recovered it and counted the attempt as lost) is left alone. Rows are locked in id order,
    as everywhere (PostgreSQL)."""
    postgres = conn.dialect.name == "postgresql"
    cursor = conn.connection.dbapi_connection.cursor()
    ids = sorted(job_id for job_id, _, _ in records)
    if postgres:
        cursor.execute(_OWNED_PG, [ids, owner])
    else:
        cursor.execute(_OWNED_SQLITE.format(marks=", ".join("?" * len(ids))), [*ids, owner])
    owned = {job_id for job_id, in cursor.fetchall()}
    writer = QueueTransaction(cursor, postgres)
    cursor.executemany(writer._sql(_RECORD_RESULT),
                       [r for job_id, r, _ in records if job_id in owned])
    cursor.executemany(writer._sql(_INSERT_ATTEMPT),
                       [a for job_id, _, a in records if job_id in owned])
    return owned


_OWNED_SQLITE = ("SELECT id FROM jobs WHERE id IN ({marks}) AND lease_owner = ? "
                 "AND status = 'processing'")
# Each job through the primary key, in id order (the ids come sorted): never a scan of the
# 'processing' entries of a status index, which a drain fills with dead ones faster than
# vacuum clears them.
_OWNED_PG = ("SELECT leased.id FROM unnest(%s::text[]) AS o(id), LATERAL ("
             "SELECT id FROM jobs WHERE jobs.id = o.id AND lease_owner = %s "
             "AND status = 'processing' FOR UPDATE) AS leased")


def _json(value: Any) -> str | None:
    """A JSON column's value as ``JSONText`` writes it."""
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


class QueueTransaction:
    """The statements of one queue transaction, on a DB-API cursor: SQLite's queue path, and
    on both databases the path of jobs with dependencies (``QueueWriter.write_with_connection``).
    PostgreSQL's ordinary queue path runs the same rules in the server (``queue_pg.py``)."""

    def __init__(self, cursor, postgres: bool):
        self._cursor = cursor
        self._postgres = postgres

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement

    def _value(self, value: Any) -> Any:
        return value if self._postgres else db.sqlite_value(value)

    def tenant_limits(self, tenant_id: str) -> dict[str, Any] | None:
        """The tenant's queue limits, its row locked until commit (PostgreSQL).

        ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: it still queues this tenant's queuers one
        behind the other (the limits' atomicity), but lets foreign-key checks through (``FOR KEY
        SHARE``). A runner's cycle promotes and claims a job in one transaction, and claiming a
        row its own transaction just updated makes PostgreSQL check the job's tenant key; under
        ``FOR UPDATE`` that check waited for a queuer that was itself waiting for a rollup row
        the runner had written earlier in its cycle — a deadlock, and the queue call failed.
        """
        sql = self._sql(_TENANT_LIMITS) + (" FOR NO KEY UPDATE" if self._postgres else "")
        self._cursor.execute(sql, (tenant_id,))
        row = self._cursor.fetchone()
        if row is None:
            return None
        allowed = json.loads(row[3]) if row[3] is not None else None
        return {"max_queued_jobs": row[0], "max_daily_jobs": row[1],
                "max_job_payload_size": row[2],
                "allowed_job_types": frozenset(allowed) if allowed is not None else None,
                "default_job_priority": row[4]}

    def count_waiting(self, tenant_id: str, bound: int) -> int:
        """The tenant's waiting jobs (pending + queued), counted only up to ``bound``: the
        cost follows the limit, not the length of the queue."""
        self._cursor.execute(self._sql(_COUNT_WAITING), (tenant_id, bound))
        return self._cursor.fetchone()[0]

    def count_daily(self, tenant_id: str, day: date, jobs: int) -> int:
        """Add ``jobs`` to the tenant's count for ``day``; return the new total."""
        self._cursor.execute(self._sql(_COUNT_DAILY), (tenant_id, self._value(day), jobs))
        return self._cursor.fetchone()[0]

    def insert_jobs(self, rows: list[dict[str, Any]]) -> None:
        values = [_row_values(row) for row in rows]
        if not self._postgres:  # only the time columns need converting to SQLite's text form
            texts: dict[datetime, str] = {}   # a batch shares created_at/updated_at values
            for row_values in values:
                for i in _TIME_POSITIONS:
                    moment = row_values[i]
                    if moment is not None:
                        text = texts.get(moment)
                        if text is None:
                            text = texts[moment] = self._value(moment)
                        row_values[i] = text
        if len(values) == 1:
            self._cursor.execute(self._sql(_INSERT_JOB), values[0])
        else:
            self._cursor.executemany(self._sql(_INSERT_JOB), values)

    def insert_audit(self, entry: dict[str, Any]) -> None:
        """The queue call's audit entry (``console.jobs.audit.entry_row``), in its transaction."""
        self._cursor.execute(self._sql(_INSERT_AUDIT), [
            _json(entry[c]) if c in _AUDIT_JSON else self._value(entry[c])
            for c in AUDIT_COLUMNS])

    def insert_batch(self, row: dict[str, Any]) -> None:
        """The queue call's batch row (``console.jobs.batches.NewBatch.row``)."""
        self._cursor.execute(self._sql(_INSERT_BATCH), [
            _json(row[c]) if c in _BATCH_JSON else self._value(row[c]) for c in BATCH_COLUMNS])

    def count_created(self, jobs, now: datetime) -> None:
        """Add the new jobs to the hour's rollup (see ``console.jobs.rollups``)."""
        counts: dict[tuple[str, str, str], int] = {}
        for job in jobs:
            key = (job.row["tenant_id"], job.row["handler"], job.row["type"])
            counts[key] = counts.get(key, 0) + 1
        hour = self._value(hour_of(now))
        # Rows in key order, the rollups before the totals: the lock order of every writer
        # (see RollupBatch.write), so that no two transactions wait on each other in a cycle.
        self._execute_rows(_COUNT_CREATED, [(hour, *key, n) for key, n in sorted(counts.items())])
        totals: dict[tuple[str, str], int] = {}
        for (_, handler, job_type), n in counts.items():
            totals[(handler, job_type)] = totals.get((handler, job_type), 0) + n
        self._execute_rows(_COUNT_CREATED_TOTAL,
                           [(*key, n) for key, n in sorted(totals.items())])

    def _execute_rows(self, statement: str, rows: list[tuple]) -> None:
        if len(rows) == 1:
            self._cursor.execute(self._sql(statement), rows[0])
        else:
            self._cursor.executemany(self._sql(statement), rows)

    def savepoint(self) -> None:
        self._cursor.execute("SAVEPOINT queue_call")

    def rollback_to_savepoint(self) -> None:
        self._cursor.execute("ROLLBACK TO queue_call")
        self._cursor.execute("RELEASE queue_call")

    def release_savepoint(self) -> None:
        self._cursor.execute("RELEASE queue_call")

    def notify(self, channel: str) -> None:
        if self._postgres:
            self._cursor.execute(f"NOTIFY {channel}")


@contextmanager
def queue_transaction(engine: Engine, locked: bool = False) -> Iterator[QueueTransaction]:
    """A write transaction on a pooled SQLite driver connection (BEGIN IMMEDIATE in the
    writer's turn, which ``locked`` says the caller holds already), committed on success and
    rolled back on any exception."""
    with contextlib.nullcontext() if locked else db.process_write_lock(engine):
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield QueueTransaction(cursor, postgres=False)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            connection.close()  # back to the pool


class QueueCall:
    """One queue call waiting for its transaction: what it stores and, once written, its
    outcome (``error`` None: stored; ``done`` set either way).

    ``inserted``: the jobs it inserts; ``accepted``: the jobs its tenant's limits and the
    rollups count (``inserted`` and a batch's callbacks); ``audit``: its audit entry's row, or
    None; ``batch``: its ``NewBatch``, or None. ``work(tx)`` does its limit checks and inserts
    in a transaction of this module's (the SQLite path); PostgreSQL's ``queue_calls`` does the
    same from the data (``queue_pg.py``).
    """

    __slots__ = ("tenant_id", "now", "inserted", "accepted", "audit", "batch", "work", "error",
                 "done")

    def __init__(self, tenant_id: str, now: datetime, inserted: list, accepted: list,
                 work: Callable[[QueueTransaction], None], audit: dict[str, Any] | None = None,
                 batch=None):
        self.tenant_id = tenant_id
        self.now = now
        self.inserted = inserted
        self.accepted = accepted
        self.work = work
        self.audit = audit
        self.batch = batch
        self.error: BaseException | None = None
        self.done = threading.Event()

    def set_given_priorities(self) -> None:
        """The rank of each job that names its priority; the others wait for the tenant's
        default (``settle_priorities``), which only the transaction can read."""
        for job in self.accepted:
            if job.priority is not None:
                job.row["priority"] = job.priority.rank

    def settle_priorities(self, default_rank: int) -> None:
        """Every job's rank, the tenant's default where the job named none."""
        for job in self.accepted:
            job.row["priority"] = job.priority.rank if job.priority else default_rank


class QueueWriter:
    """Runs queue transactions, committing the queue calls that wait together as one.

    ``write(call)`` stores one ``QueueCall`` (its limit checks, its rows, the hour's rollups)
    and returns once it is committed, or raises the call's own refusal or error.

    A transaction costs far more than the rows in it: on SQLite, taking the writer's turn,
    BEGIN, the rollup upserts, COMMIT, and on a busy web process a GIL hand-over after each of
    them; on PostgreSQL, a round trip and a WAL flush at COMMIT. So one caller at a time
    leads: it writes every call waiting at that moment in one transaction — each call on its
    own (a SAVEPOINT on SQLite, a sub-transaction of ``queue_calls`` on PostgreSQL), so that
    one call's refusal (a tenant limit, a duplicate idempotency key) rolls back that call alone
    and is raised to its own caller — with one rollup write and one COMMIT, and goes on while
    calls are waiting. The others wait for their own call's answer, not for a lock: a lock they
    all took in turn would cost a GIL hand-over per call, each waiter needing the GIL back to
    let the next one in. A failed COMMIT fails every call of its batch: nothing of any of them
    is stored. On SQLite, when the writer's turn does not come within the busy timeout, every
    call waiting is told "busy" and none of them is written later.

    On PostgreSQL a batch is one statement (``queue_pg.py``); other processes' writers run
    side by side, each tenant's queuers in line on the tenant row. The price of a shared
    transaction, on either database: a call that waits (on PostgreSQL, for a tenant row another
    transaction holds) holds up the calls of its batch and the batches behind it in this
    process.
    """

    MAX_BATCH = 64   # calls per transaction: bounds how long one turn holds the database

    def __init__(self, engine: Engine, notify_channel: str):
        self._engine = engine
        self._notify_channel = notify_channel
        self._postgres = engine.dialect.name == "postgresql"
        self._statement = (queue_pg.QueueStatement(engine, notify_channel)
                           if self._postgres else None)
        self._waiting: list[QueueCall] = []
        self._leading = False    # a caller is writing the waiting calls
        self._guard = threading.Lock()

    def write(self, call: QueueCall) -> None:
        with self._guard:
            self._waiting.append(call)
            lead = not self._leading
            self._leading = True
        while True:
            if lead:
                self._lead()
            # The leader answers within a busy timeout per batch; looking again every half
            # second only matters if a leader died (an interrupt) with calls still waiting.
            if call.done.wait(0.5):
                break
            with self._guard:
                lead = not self._leading and call in self._waiting
                self._leading = self._leading or lead
        if call.error is not None:
            raise call.error

    def write_with_connection(self, work: Callable[[QueueTransaction, Any], None], jobs: list,
                              now: datetime) -> None:
        """``write`` for a call whose work also needs the SQLAlchemy connection (``work(tx,
        conn)``: jobs with dependencies read, lock and link other jobs through the models). Its
        own write transaction, never combined with other calls: none of the hot path's."""
        with db.write_transaction(self._engine) as conn:
            tx = QueueTransaction(conn.connection.dbapi_connection.cursor(),
                                  conn.dialect.name == "postgresql")
            work(tx, conn)
            tx.count_created(jobs, now)
            tx.notify(self._notify_channel)

    def _lead(self) -> None:
        """Write batches while calls wait; then step down (under the guard, so that a call
        arriving meanwhile either is taken or makes its caller the next leader)."""
        try:
            while True:
                with self._guard:
                    if not self._waiting:
                        self._leading = False
                        return
                try:
                    with db.process_write_lock(self._engine):
                        with self._guard:   # taken now: what arrived while we waited joins in
                            batch = self._waiting[:self.MAX_BATCH]
                            del self._waiting[:self.MAX_BATCH]
                        self._write_batch(batch)
                except DatabaseUnavailableError as busy:   # the turn never came
                    with self._guard:
                        batch, self._waiting = self._waiting, []
                    for call in batch:
                        call.error = busy
                        call.done.set()
        except BaseException:
            with self._guard:
                self._leading = False
            raise

    def _write_batch(self, batch: list[QueueCall]) -> None:
        try:
            if self._postgres:
                self._statement.write_calls(batch)
            else:
                self._write_sqlite_batch(batch)
        except BaseException as exc:   # the batch's transaction failed: nothing of it is stored
            for call in batch:
                if call.error is None:
                    call.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for call in batch:
                call.done.set()

    def _write_sqlite_batch(self, batch: list[QueueCall]) -> None:
        together = len(batch) > 1   # a lone call needs no savepoint: its error rolls back
        with queue_transaction(self._engine, locked=True) as tx:
            written: dict[datetime, list] = {}   # jobs by the hour they were queued in
            for call in batch:
                if together:
                    tx.savepoint()
                try:
                    call.work(tx)
                except Exception as exc:
                    call.error = exc
                    if not together:
                        raise
                    tx.rollback_to_savepoint()
                else:
                    hour = hour_of(call.now)
                    written.setdefault(hour, []).extend(call.accepted)
                    if together:
                        tx.release_savepoint()
            for hour, jobs in sorted(written.items()):
                tx.count_created(jobs, hour)
