"""Whose turn it is to write an SQLite file: one queue for every thread of every process.

SQLite lets one writer at a time hold a database and makes the others wait in its busy handler,
which polls: it sleeps 1, 2, 5, 10, 15, 20, 25… up to 100 ms between tries. Two processes
writing a few hundred times a second each (two gunicorn workers taking API submissions, their
runners claiming) keep finding the lock taken, and the loser sleeps through several of the
winner's transactions: its waits are many times longer than the transactions it waits for.

So writers queue before they ask SQLite. Inside a process, threads queue on a
``threading.Lock`` (woken the moment it is free). Between processes, the thread whose turn it
is takes an exclusive ``flock`` on a lock file beside the database (``<db>-writer.lock``): the
kernel wakes a blocked waiter the moment the holder lets go, and releases the lock of a
process that dies. ``BEGIN IMMEDIATE`` then finds SQLite's lock free; the busy timeout stays as
the safety net for writers that do not take part (the ``sqlite3`` shell, a backup).

``flock`` has no timeout, and a write must never wait without end behind a writer that does not
finish (a stopped process, a disk that hangs). A blocking ``flock`` therefore runs on a helper
thread, one per process, on its own file descriptor (so it conflicts with this process's other
descriptor like with any other process); the thread whose turn it is waits for the helper at
most the busy timeout and gives up with ``DatabaseUnavailableError`` past it. A turn the helper
wins after its waiter gave up is handed back at once.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .types import DatabaseUnavailableError


def _busy(whose: str, waited: float) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(
        "busy", f"the database is busy: {whose} writers held its write lock for longer than "
                f"{waited:g} s; nothing was stored — retry in a few seconds",
        f"waited {waited:g} s for {whose} writers")


class SqliteWriteTurn:
    """One per database file and process; ``hold(timeout)`` is the writer's turn."""

    def __init__(self, database_path: str | None):
        self._threads = threading.Lock()
        self._path = f"{database_path}-writer.lock" if database_path else None
        self.pid = os.getpid()   # a forked child makes its own (descriptors are shared)
        self._fast_fd: int | None = None     # the descriptor writers lock without waiting
        self._helper_fd: int | None = None   # the descriptor the helper blocks on
        self._state = threading.Condition(threading.Lock())
        self._wanted = False      # a writer of this process waits for the helper
        self._granted = False     # the helper holds the file lock for that writer
        self._helper: threading.Thread | None = None

    @contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            raise _busy("this process's other", timeout)
        try:
            fd = self._lock_file(deadline, timeout) if self._path else None
            try:
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    # -- between processes ----------------------------------------------------------------

    def _lock_file(self, deadline: float, timeout: float) -> int:
        """Take the file lock (this thread holds the process's turn); return the locked fd."""
        if self._fast_fd is None:
            self._fast_fd = self._open()
        try:
            fcntl.flock(self._fast_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return self._fast_fd
        except BlockingIOError:
            pass
        with self._state:
            if self._helper is None:
                self._helper_fd = self._open()
                self._helper = threading.Thread(target=self._wait_for_file, daemon=True,
                                                name="sqlite-writer-turn")
                self._helper.start()
            self._wanted = True
            self._state.notify_all()
            if self._state.wait_for(lambda: self._granted,
                                    timeout=max(0.0, deadline - time.monotonic())):
                self._granted = False
                return self._helper_fd
            self._wanted = False   # given up: the helper hands a late turn straight back
        raise _busy("another process's", timeout)

    def _wait_for_file(self) -> None:
        while True:
            with self._state:
                self._state.wait_for(lambda: self._wanted)
            fcntl.flock(self._helper_fd, fcntl.LOCK_EX)   # the GIL is free while blocked
            with self._state:
                if self._wanted:
                    self._wanted = False
                    self._granted = True
                    self._state.notify_all()
                else:
                    fcntl.flock(self._helper_fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        return os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
