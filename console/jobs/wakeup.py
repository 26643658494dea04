"""Waking a runner when another process commits work, without a coarse polling tick.

PostgreSQL: ``LISTEN`` on the channel that every queue transaction ``NOTIFY``s.
SQLite: ``PRAGMA data_version`` on a dedicated connection changes whenever another connection
commits; reading it touches no table, so checking it every 2 ms is cheap.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

log = logging.getLogger(__name__)
SQLITE_CHECK_INTERVAL = 0.002
# The PostgreSQL channel every transaction that makes work due NOTIFYs and every runner LISTENs on.
NOTIFY_CHANNEL = "console_jobs"


class Watcher:
    def __init__(self, target: Callable[[], None], name: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=target, name=name, daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)


def start_watcher(engine: Engine, wake: Callable[[], None], channel: str) -> Watcher:
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        watcher = Watcher(lambda: _watch_sqlite(path, wake, watcher._stop), "jobs-wakeup-sqlite")
    else:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        watcher = Watcher(lambda: _watch_postgres(url, channel, wake, watcher._stop),
                          "jobs-wakeup-postgres")
    return watcher.start()


def _watch_sqlite(path: str, wake: Callable[[], None], stop: threading.Event) -> None:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        last = connection.execute("PRAGMA data_version").fetchone()[0]
        while not stop.wait(SQLITE_CHECK_INTERVAL):
            try:
                version = connection.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                log.exception("data_version check failed")
                stop.wait(1.0)
                continue
            if version != last:
                last = version
                wake()
    finally:
        connection.close()


def _watch_postgres(url: str, channel: str, wake: Callable[[], None],
                    stop: threading.Event) -> None:
    import psycopg

    from .availability import describe

    lost_since: float | None = None
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
                connection.execute(f"LISTEN {channel}")
                if lost_since is not None:
                    log.warning("LISTEN connection back after %.1f s",
                                time.monotonic() - lost_since)
                    lost_since = None
                # Anything committed while we were (re)connecting; after an outage this is
                # also what tells a runner waiting to retry that the database is back.
                wake()
                while not stop.is_set():
                    for _ in connection.notifies(timeout=0.5, stop_after=1):
                        wake()
        except Exception as exc:  # the database restarted or the network blinked: reconnect
            if lost_since is None:   # one line per outage, not one a second
                lost_since = time.monotonic()
                log.warning("LISTEN connection lost (%s); reconnecting every second",
                            describe(exc))
            stop.wait(1.0)
