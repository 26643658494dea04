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

A runner draining a backlog wants the turn again the moment it lets go, and with two runners
doing so the database is never free: every API call would wait out one of their transactions.
So a runner's cycle with a backlog *yields* (``hold(timeout, yielding=True)``): a writer that
has to wait says so with a shared ``flock`` on ``<db>-waiting.lock`` for as long as it waits;
a yielding writer that gets the turn while somebody says so hands it straight back (its unlock
wakes the waiter) and queues again. It yields for at most ``MOST_YIELD`` seconds, then keeps
the turn: a steady stream of API writes never stops the runners.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .types import DatabaseUnavailableError

YIELD_PAUSE = 0.0005  # seconds a yielding writer leaves the turn to the writer it woke
MOST_YIELD = 0.02     # seconds a yielding writer lets others go first, at most


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
        self._waiting_path = f"{database_path}-waiting.lock" if database_path else None
        self._waiting_fd: int | None = None   # shared-locked while this process's writers wait
        self._looking_fd: int | None = None   # a yielding writer's look at the waiting file
        self._waiters = 0
        self._waiters_guard = threading.Lock()

    @contextmanager
    def hold(self, timeout: float, yielding: bool = False) -> Iterator[None]:
        deadline = time.monotonic() + timeout
        until = deadline if not yielding else min(deadline, time.monotonic() + MOST_YIELD)
        while True:
            fd = self._take(deadline, timeout, announce=not yielding)
            if not yielding or time.monotonic() >= until or not self._others_waiting():
                break
            # Hand the turn to the writer that waits (our unlock wakes it), then queue again.
            self._give_back(fd)
            time.sleep(YIELD_PAUSE)
        try:
            yield
        finally:
            self._give_back(fd)

    def _take(self, deadline: float, timeout: float, announce: bool) -> int | None:
        """The turn: this process's (``_threads``) and, for a file, the file lock's fd."""
        if not self._threads.acquire(blocking=False):
            with self._waiting() if announce else contextlib.nullcontext():
                if not self._threads.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise _busy("this process's other", timeout)
        try:
            return self._lock_file(deadline, timeout, announce) if self._path else None
        except BaseException:
            self._threads.release()
            raise

    def _give_back(self, fd: int | None) -> None:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._threads.release()

    # -- yielding ---------------------------------------------------------------------------

    def _others_waiting(self) -> bool:
        """Whether a writer of any process (this one's included) says it waits."""
        if self._waiting_path is None:
            return False
        if self._looking_fd is None:
            self._looking_fd = self._open(self._waiting_path)
        try:
            fcntl.flock(self._looking_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._looking_fd, fcntl.LOCK_UN)
        return False

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Say that a writer of this process waits for the turn (yielding writers of every
        process let it go first)."""
        if self._waiting_path is None:
            yield
            return
        with self._waiters_guard:
            self._waiters += 1
            if self._waiters == 1:
                if self._waiting_fd is None:
                    self._waiting_fd = self._open(self._waiting_path)
                fcntl.flock(self._waiting_fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            with self._waiters_guard:
                self._waiters -= 1
                if self._waiters == 0:
                    fcntl.flock(self._waiting_fd, fcntl.LOCK_UN)

    # -- between processes ----------------------------------------------------------------

    def _try_file(self) -> int | None:
        """The file lock if it is free now (this thread holds the process's turn)."""
        if self._fast_fd is None:
            self._fast_fd = self._open(self._path)
        try:
            fcntl.flock(self._fast_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return self._fast_fd
        except BlockingIOError:
            return None

    def _lock_file(self, deadline: float, timeout: float, announce: bool = True) -> int:
        """Take the file lock (this thread holds the process's turn); return the locked fd."""
        fd = self._try_file()
        if fd is not None:
            return fd
        with self._waiting() if announce else contextlib.nullcontext(), self._state:
            if self._helper is None:
                self._helper_fd = self._open(self._path)
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

    @staticmethod
    def _open(path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
