"""PostgreSQL: a queue call costs one round trip to the server — BEGIN, the limit checks, the
inserts, the rollups and COMMIT all in one exchange (``queue_pg.py``).

Counted with libpq's protocol trace on every connection the app opens: each round trip ends
with the server's ReadyForQuery, the message after which the client may speak again.
"""
from __future__ import annotations

import os

import pytest
from sqlalchemy import event, text

from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="round trips to a PostgreSQL server")


class ProtocolTrace:
    """libpq's trace of every connection ``engine`` opens from now on, into a file per
    ``window``."""

    def __init__(self, engine, folder):
        self._folder = folder
        self._connections: list = []
        self._fd: int | None = None
        self._windows = 0
        event.listen(engine, "connect", self._on_connect)
        engine.dispose()   # the connections opened so far are not traced: open new ones

    def _on_connect(self, dbapi_connection, _record) -> None:
        self._connections.append(dbapi_connection)
        if self._fd is not None:
            self._trace(dbapi_connection)

    def _trace(self, dbapi_connection) -> None:
        if not dbapi_connection.closed:
            dbapi_connection.pgconn.trace(self._fd)
            dbapi_connection.pgconn.set_trace_flags(0)

    def start(self) -> None:
        self.stop()
        self._windows += 1
        self._path = self._folder / f"trace-{self._windows}.txt"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        for connection in self._connections:
            self._trace(connection)

    def stop(self) -> str:
        """End the window (libpq flushes on untrace); its messages, one per line."""
        if self._fd is None:
            return ""
        for connection in self._connections:
            if not connection.closed:
                connection.pgconn.untrace()
        os.close(self._fd)
        self._fd = None
        return self._path.read_text()


def round_trips(trace: str) -> int:
    return sum(1 for line in trace.splitlines() if "\tB\t" in line and "\tReadyForQuery" in line)


def test_one_round_trip_per_queue_job(service, make_tenant, tmp_path):
    make_tenant("acme", "tier2", maxQueuedJobs=500, maxDailyJobs=1000)
    trace = ProtocolTrace(service.engine, tmp_path)
    trace.start()
    for i in range(6):   # warm: connections opened, statements prepared
        service.queue_job("immediate", "sleeps", {"warm": i}, "acme")

    trace.start()
    for i in range(20):
        service.queue_job("immediate", "sleeps", {"i": i}, "acme",
                          priority="high" if i % 2 else None)
    messages = trace.stop()

    assert round_trips(messages) == 20, messages[-3000:]
    assert messages.count("\tCommandComplete\t \"SELECT 1\"") == 20   # one statement each
    assert service.count_jobs("acme") == 26



def test_a_database_without_the_queue_function_is_named_as_not_migrated(service, make_tenant):
    make_tenant("acme")
    signature = "queue_calls(jsonb, jsonb, text[], text)"
    with service.engine.begin() as conn:
        conn.execute(text(f"ALTER FUNCTION {signature} RENAME TO queue_calls_away"))
    try:
        with pytest.raises(RuntimeError, match="migrate it"):
            service.queue_job("immediate", "sleeps", {}, "acme")
    finally:
        with service.engine.begin() as conn:
            conn.execute(text("ALTER FUNCTION queue_calls_away(jsonb, jsonb, text[], text) "
                              "RENAME TO queue_calls"))
    assert service.queue_job("immediate", "sleeps", {}, "acme").status.value == "queued"
