"""Database plumbing the engine relies on: SQLite pragmas and write locks, dialect-specific SQL.

SQLite: every connection runs in WAL mode with a busy timeout. pysqlite's own transaction
handling is switched off so that SQLAlchemy's BEGIN is the real one; write transactions begin
with ``BEGIN IMMEDIATE``, taking the database's write lock up front. That makes a limit check
and the insert that follows it atomic against every other process, and a writer waits for the
lock (busy timeout) instead of failing with "database is locked" halfway through.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Integer,
    Numeric,
    Select,
    String,
    TypeDecorator,
    event,
    func,
    text,
)
from sqlalchemy.types import TypeEngine

from .sqlite_lock import SqliteWriteTurn

SQLITE_BUSY_TIMEOUT_MS = 30_000
IMMEDIATE_OPTION = "console_begin_immediate"
# Engines given another busy timeout (SQLITE_BUSY_TIMEOUT) by ``set_sqlite_busy_timeout``.
_busy_timeouts: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
# One writer's turn per SQLite engine and process (see sqlite_lock): writers queue there,
# woken the moment it is free, instead of in SQLite's busy handler.
_write_turns: weakref.WeakKeyDictionary[Engine, SqliteWriteTurn] = weakref.WeakKeyDictionary()
_turns_guard = threading.Lock()


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_conn, _record):
    if isinstance(dbapi_conn, sqlite3.Connection):
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event below emits BEGIN
        cursor = dbapi_conn.cursor()
        # The busy timeout first: switching to WAL needs a lock another process may hold.
        for pragma in (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "journal_mode=WAL",
                       "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_on_begin(conn: Connection):
    if conn.dialect.name == "sqlite":
        immediate = conn.get_execution_options().get(IMMEDIATE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


def set_sqlite_busy_timeout(engine: Engine, seconds: float) -> None:
    """How long a writer on this SQLite engine waits for the write lock (another process's,
    or this process's other writers') before failing as busy; set before first use."""
    _busy_timeouts[engine] = float(seconds)

    @event.listens_for(engine, "connect")
    def _busy_timeout(dbapi_conn, _record):  # runs after _sqlite_on_connect
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")


def sqlite_busy_timeout(engine: Engine) -> float:
    """Seconds a writer waits for SQLite's write lock on this engine."""
    return _busy_timeouts.get(engine, SQLITE_BUSY_TIMEOUT_MS / 1000)


@contextmanager
def process_write_lock(engine: Engine, yielding: bool = False) -> Iterator[None]:
    """Hold this writer's turn at the SQLite file, among this process's threads and every
    other process's (nothing to hold on PostgreSQL; see ``sqlite_lock``). A ``yielding``
    writer (a runner's cycle) lets writers that wait for the turn go first, for a moment.

    Waits at most the busy timeout, like SQLite's own lock: past it the caller gets
    ``DatabaseUnavailableError`` (busy: retry later) — never a wait without end behind a writer
    that does not finish.
    """
    if not is_sqlite(engine):
        yield
        return
    with _turns_guard:
        turn = _write_turns.get(engine)
        if turn is None or turn.pid != os.getpid():
            turn = _write_turns[engine] = SqliteWriteTurn(_database_file(engine))
    with turn.hold(sqlite_busy_timeout(engine), yielding):
        yield


def _database_file(engine: Engine) -> str | None:
    """The SQLite file's path, or None for an in-memory database (one process, no file)."""
    name = engine.url.database
    return None if not name or name == ":memory:" or name.startswith("file:") else name


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement on SQLite.

    On PostgreSQL it is an ordinary transaction; callers lock the rows they need. Do not nest
    write transactions: on SQLite the inner one would wait for the outer one's lock.
    """
    with process_write_lock(engine), engine.connect() as conn:
        if is_sqlite(engine):
            conn = conn.execution_options(**{IMMEDIATE_OPTION: True})
        with conn.begin():
            yield conn


class HeldConnection:
    """A connection kept open by one long-lived loop (the runner's dispatcher): no pool checkout
    or liveness ping per transaction. After an error it is dropped and a fresh one is opened."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._conn: Connection | None = None


    def read_row(self, query: Select) -> tuple:
        """The one row of ``query`` (``fetch_all``'s kind of statement), read outside any
        transaction and any writer's turn: on SQLite it never makes a writer wait."""
        dbapi = self._open().connection.dbapi_connection
        try:
            try:
                [row] = _fetch(dbapi, self._engine.dialect, query)
            finally:
                if not is_sqlite(self._engine):
                    dbapi.rollback()   # the read's own transaction (SQLite's autocommits)
        except BaseException:
            self.close()
            raise
        return row

    @contextmanager
    def write_transaction(self, yielding: bool = False) -> Iterator[Connection]:
        with process_write_lock(self._engine, yielding):
            conn = self._open()
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                self.close()
                raise

    def _open(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
            if is_sqlite(self._engine):
                self._conn = self._conn.execution_options(**{IMMEDIATE_OPTION: True})
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken: nothing left to release
                pass
            self._conn = None


def fetch_all(conn: Connection, query: Select) -> list[tuple]:
    """The rows of ``query`` in ``conn``'s transaction, on the driver's own cursor: for the
    statements a runner's every cycle runs, where SQLAlchemy's work per statement outweighs
    SQLite's. ``query`` is built once (it is the cache key) and takes no parameters; rows are
    named tuples of the values the columns' types make (aware times, decoded JSON)."""
    return _fetch(conn.connection.dbapi_connection, conn.dialect, query)


class _Compiled(NamedTuple):
    sql: str
    converters: list[Callable[[Any], Any] | None]
    row: type


_compiled: dict[tuple[str, Select], _Compiled] = {}


def _fetch(dbapi_connection, dialect, query: Select) -> list[tuple]:
    compiled = _compiled.get((dialect.name, query))
    if compiled is None:
        sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        columns = list(query.selected_columns)
        compiled = _compiled[(dialect.name, query)] = _Compiled(
            sql, [_converter(column.type, dialect) for column in columns],
            namedtuple("Row", [column.key or "_" for column in columns], rename=True))
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(compiled.sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    converters = compiled.converters
    return [compiled.row(*[value if convert is None or value is None else convert(value)
                           for convert, value in zip(converters, row, strict=True)])
            for row in rows]


def _converter(kind: TypeEngine, dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy does to a column's value on the way out: nothing for numbers and text
    (the drivers return them as they are; a numeric type's processor wants the driver's type
    code, which a raw cursor does not give); the type's own processing for the rest (times,
    JSON, booleans on SQLite)."""
    if isinstance(kind, (Integer, Float, Numeric, String)) and not isinstance(kind, TypeDecorator):
        return None
    return kind.dialect_impl(dialect).result_processor(dialect, None)


def advisory_xact_lock(conn: Connection, key: int) -> None:
    """Serialise a critical section across every process (PostgreSQL; SQLite's write lock
    already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def upsert_statement(dialect_name: str, table, key_columns: list[str], increments: list[str],
                     returning=None, replace: list[str] = (), greatest: list[str] = ()):
    """INSERT … ON CONFLICT (key) DO UPDATE SET col = col + excluded.col (and col = excluded.col
    for ``replace``), built once; execute it with the rows' values as parameters."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    updates = {col: table.c[col] + statement.excluded[col] for col in increments}
    updates.update({col: statement.excluded[col] for col in replace})
    # GREATEST on PostgreSQL; SQLite's two-argument MAX is the same thing.
    larger = func.greatest if dialect_name == "postgresql" else func.max
    updates.update({col: larger(table.c[col], statement.excluded[col]) for col in greatest})
    statement = statement.on_conflict_do_update(index_elements=key_columns, set_=updates)
    if returning is not None:
        statement = statement.returning(*returning)
    return statement


_upserts: dict[tuple, object] = {}


def upsert(conn: Connection, table, values: dict, key_columns: list[str], increments: list[str],
           returning=None):
    """Run a cached ``upsert_statement`` for ``values``."""
    key = (conn.dialect.name, table.name, tuple(key_columns), tuple(increments),
           tuple(str(r) for r in returning) if returning is not None else None)
    statement = _upserts.get(key)
    if statement is None:
        statement = _upserts[key] = upsert_statement(conn.dialect.name, table, key_columns,
                                                     increments, returning)
    return conn.execute(statement, values)


def upsert_many(conn: Connection, table, rows: list[dict], key_columns: list[str],
                increments: list[str], replace: list[str] = (), greatest: list[str] = ()):
    """``upsert`` for many rows in one executemany; rows must not repeat a key."""
    key = ("many", conn.dialect.name, table.name, tuple(key_columns), tuple(increments),
           tuple(replace), tuple(greatest))
    statement = _upserts.get(key)
    if statement is None:
        statement = _upserts[key] = upsert_statement(conn.dialect.name, table, key_columns,
                                                     increments, replace=replace,
                                                     greatest=greatest)
    return conn.execute(statement, rows)


def upsert_sql(table: str, key: Sequence[str], increments: Sequence[str],
               replace: Sequence[str] = (), postgres: bool = False) -> str:
    """``upsert_statement``'s SQL as text, for the driver's own ``executemany`` on hot paths
    (values in the order key, increments, replace; as ``driver_value`` makes them)."""
    columns = [*key, *increments, *replace]
    mark = "%s" if postgres else "?"
    updates = [f"{c} = {table}.{c} + excluded.{c}" for c in increments]
    updates += [f"{c} = excluded.{c}" for c in replace]
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(mark for _ in columns)}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(updates)}")


def driver_value(postgres: bool) -> Callable[[Any], Any]:
    """How a value goes to the driver's own cursor as SQLAlchemy would write it."""
    return _same if postgres else sqlite_value


def _same(value: Any) -> Any:
    return value


def sqlite_value(value: Any) -> Any:
    """A value as SQLAlchemy writes it to SQLite: UTC times as text, dates as ISO text."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def notify_channel(conn: Connection, channel: str) -> None:
    """PostgreSQL NOTIFY, delivered to listeners when the transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
