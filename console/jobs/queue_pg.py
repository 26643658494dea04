"""PostgreSQL's queue transaction: every waiting queue call in one call of the server-side
function ``queue_calls`` (migration ``0020_queue_function``), sent with its BEGIN and COMMIT in
one round trip.

Why a function: the queue path's statements depend on each other's answers (the tenant's
limits, the waiting count, the daily count), so sent from here they cost a round trip each,
and every one of them is a wait with the tenant's row locked. In the server they cost none,
and the writes of many calls share one transaction and one WAL flush at COMMIT.

The function applies the rules of ``JobService._check_limits`` and answers each call with its
tenant's default priority rank, or with the refusal and its figures; the errors are built here
by the same functions (``limits.py``) the SQLite path raises, so a caller cannot tell the paths
apart by what it is told.
"""
from __future__ import annotations

import json
import os
import select
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event

from .limits import daily_used_up, payload_too_large, queue_full, type_not_allowed, unknown_tenant
from .models import BATCH_COLUMNS
from .rollups import hour_of
from .types import WAITING_STATUSES, JobPriority

if TYPE_CHECKING:
    from .queue_sql import QueueCall

_QUEUE_CALLS = "SELECT queue_calls(%s::jsonb, %s::jsonb, %s::text[], %s::text)"
_UNDEFINED_FUNCTION = "42883"   # SQLSTATE: the database is not migrated to 0020
_RETRYABLE = {"40P01", "40001"}  # SQLSTATE: deadlock detected, serialization failure
_ATTEMPTS = 3
_AUDIT_JSON = ("job_ids", "value_before", "value_after", "details")
_BATCH_JSON = ("on_complete", "on_success", "callback_job_ids")


class IdempotencyKeyTaken(Exception):
    """Another transaction stored a job with this call's idempotency key after the call looked
    for one: the caller looks again and answers with that job."""


def rules(notify_channel: str) -> tuple[str, str, str]:
    """The function's arguments after the calls: what the Python side states once (priority
    ranks, the statuses that count as waiting) and where to NOTIFY. All text, built once: the
    driver adapts a string for nothing, a list at some cost on every call."""
    return (_encode({priority.value: priority.rank for priority in JobPriority}),
            "{" + ",".join(WAITING_STATUSES) + "}", notify_channel)


class QueueStatement:
    """Runs ``queue_calls`` for a ``QueueWriter``, on a connection of its own.

    One statement in autocommit mode is its own transaction: BEGIN, the call and COMMIT in
    one round trip, the answer read after the COMMIT, so that no lock waits on this process in
    between. (psycopg's pipeline mode, with its implicit BEGIN and an explicit COMMIT, took
    three: libpq's trace showed it waiting for the BEGIN's answer, and again on leaving the
    pipeline.) The connection is kept from one batch to the next (only the writer's leader uses
    it, one at a time): a checkout from the pool would cost a liveness ping, a round trip of
    its own, per batch. Instead a look at the socket, without waiting, tells whether the server
    closed it (a restart, an administrator's terminate), and a fresh one replaces it.
    """

    def __init__(self, engine: Engine, notify_channel: str):
        self._engine = engine
        self._rules = rules(notify_channel)
        self._held = None    # SQLAlchemy's pool record, taken out of the pool for good
        self._cursor = None  # the held connection's, kept with it
        self._pid = 0
        event.listen(engine, "engine_disposed", self._on_engine_disposed)

    def write_calls(self, calls: list[QueueCall]) -> None:
        """Write ``calls`` in one transaction and round trip; set each call's outcome (its
        priorities settled, or its ``error``). An error of the statement itself (the
        connection lost, a constraint other than the idempotency key's) is raised: nothing of
        any call was stored."""
        argument = _encode([_call_argument(call) for call in calls])
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                answers = self._run(argument)
                break
            except Exception as exc:
                # The statement rolled back whole: running it again is safe, and a deadlock
                # victim's batch would otherwise fail every caller in it.
                if getattr(exc, "sqlstate", None) not in _RETRYABLE or attempt == _ATTEMPTS:
                    raise
        for call, answer in zip(calls, answers, strict=True):
            refused = answer.get("refused")
            if refused is None:
                call.settle_priorities(answer["rank"])
            else:
                call.error = _refusal(call, refused, answer)

    def _run(self, argument: str) -> list[dict[str, Any]]:
        cursor = self._connection_cursor()
        driver = cursor.connection
        try:
            cursor.execute(_QUEUE_CALLS, (argument, *self._rules))
            return cursor.fetchone()[0]
        except BaseException as exc:
            # Kept only when the server answered with an error and the connection is idle
            # again; anything else (lost, interrupted mid-statement) gets a fresh one.
            if driver.closed or driver.broken or driver.info.transaction_status.name != "IDLE":
                self._drop()
            if getattr(exc, "sqlstate", None) == _UNDEFINED_FUNCTION:
                raise RuntimeError(
                    "the database has no queue_calls function of this version: migrate it "
                    "(`flask --app console db upgrade`, or let the app do it with AUTO_MIGRATE "
                    "on)") from exc
            raise

    def _connection_cursor(self):
        if self._held is not None and (self._pid != os.getpid() or not _usable(self._held)):
            self._drop()
        if self._held is None:
            held = self._engine.raw_connection()
            try:
                held.dbapi_connection.autocommit = True
                self._cursor = held.dbapi_connection.cursor()
            except BaseException:
                held.invalidate()
                raise
            self._held, self._pid = held, os.getpid()
        return self._cursor

    def _drop(self) -> None:
        held, self._held, self._cursor = self._held, None, None
        if held is None:
            return
        if self._pid != os.getpid():
            held.detach()      # the parent process's socket: neither use nor close it here
            return
        try:
            held.invalidate()  # closed, never back in the pool (it is in autocommit mode)
        except Exception:  # already broken: nothing left to release
            pass

    def _on_engine_disposed(self, _engine) -> None:
        self._drop()


def _usable(held) -> bool:
    """Open, and nothing waiting to be read: on an idle connection, anything the server sent
    is its goodbye (or end of file)."""
    driver = held.dbapi_connection
    if driver is None or driver.closed or driver.broken:
        return False
    try:
        readable, _, _ = select.select([driver.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _refusal(call: QueueCall, refused: str, figures: dict[str, Any]) -> Exception:
    tenant_id = call.tenant_id
    if refused == "unknown_tenant":
        return unknown_tenant(tenant_id)
    if refused == "duplicate":
        return IdempotencyKeyTaken(tenant_id)
    if refused == "allowed_job_types":
        return type_not_allowed(tenant_id, figures["job_type"], figures["allowed"])
    if refused == "max_job_payload_size":
        return payload_too_large(tenant_id, figures["size"], figures["max"])
    if refused == "max_queued_jobs":
        return queue_full(tenant_id, figures["waiting"], figures["max"], figures["adding"])
    if refused == "max_daily_jobs":
        return daily_used_up(tenant_id, figures["used"], figures["max"], call.now.date())
    raise RuntimeError(f"queue_calls answered with an unknown refusal {refused!r}: is the "
                       "database migrated to this version's head?")


def _call_argument(call: QueueCall) -> dict[str, Any]:
    """One call as ``queue_calls`` reads it (see the migration's docstring)."""
    call.set_given_priorities()
    accepted = call.accepted
    hour = hour_of(call.now)
    created: dict[tuple[str, str], int] = {}
    for job in accepted:
        key = (job.row["handler"], job.row["type"])
        created[key] = created.get(key, 0) + 1
    sizes = [job.payload_size for job in accepted]
    argument: dict[str, Any] = {
        "tenant_id": call.tenant_id, "day": call.now.date(),
        "types": [job.row["type"] for job in accepted], "sizes": sizes, "largest": max(sizes),
        "adding": len(accepted), "counted": sum(1 for job in accepted if not job.is_recurring),
        # Left out: NULL, and for priority the tenant's default.
        "jobs": [{column: value for column, value in job.row.items() if value is not None}
                 for job in call.inserted],
        "created": [[hour, call.tenant_id, handler, job_type, n]
                    for (handler, job_type), n in created.items()]}
    if call.audit is not None:
        argument["audit"] = _with_json_text(call.audit, _AUDIT_JSON)
    if call.batch is not None:
        row = call.batch.row(call.tenant_id, call.inserted, call.now)
        argument["batch"] = _with_json_text({c: row[c] for c in BATCH_COLUMNS}, _BATCH_JSON)
    return argument


def _with_json_text(row: dict[str, Any], json_columns: tuple[str, ...]) -> dict[str, Any]:
    """A row whose JSON columns hold their text, as ``JSONText`` stores them."""
    return {column: _encode(value) if column in json_columns and value is not None else value
            for column, value in row.items()}


def _encode(value: Any) -> str:
    # Times and dates as str() writes them: PostgreSQL reads both forms.
    return json.dumps(value, separators=(",", ":"), default=str)
