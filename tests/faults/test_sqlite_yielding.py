"""A runner draining a backlog lets writers that wait for SQLite's turn go first, for a moment.

Each ``SqliteWriteTurn`` below stands for one process (each has its own descriptors, and
``flock`` locks belong to descriptors), so threads of this test play three processes.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from console.jobs import sqlite_lock
from console.jobs.sqlite_lock import SqliteWriteTurn
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's write turn: runs in the SQLite pass")


def take_turn(turn: SqliteWriteTurn, name: str, order: list[str], yielding: bool = False):
    def run():
        with turn.hold(10.0, yielding):
            order.append(name)
            time.sleep(0.05)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_waiting_writer_goes_before_a_yielding_one_that_asked_first(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_lock, "MOST_YIELD", 30.0)   # no bound: the order is the rule's
    path = str(tmp_path / "jobs.db")
    holder, runner, api = (SqliteWriteTurn(path) for _ in range(3))
    order: list[str] = []
    with holder.hold(10.0):
        waiting = [take_turn(runner, "runner", order, yielding=True)]
        time.sleep(0.2)   # the runner waits for the turn first
        waiting.append(take_turn(api, "api", order))
        time.sleep(0.2)
    for thread in waiting:
        thread.join(10)
    assert order == ["api", "runner"]


def test_a_yielding_writer_takes_a_free_turn_at_once_and_yields_for_a_moment_only(tmp_path):
    path = str(tmp_path / "jobs.db")
    turn = SqliteWriteTurn(path)
    started = time.monotonic()
    with turn.hold(5.0, yielding=True):
        pass
    assert time.monotonic() - started < sqlite_lock.MOST_YIELD
    # A writer that says it waits and never takes its turn: the runner goes on after a moment.
    forever = os.open(f"{path}-waiting.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(forever, fcntl.LOCK_SH)
        started = time.monotonic()
        with turn.hold(5.0, yielding=True):
            waited = time.monotonic() - started
        assert sqlite_lock.MOST_YIELD <= waited < 2.0
    finally:
        os.close(forever)
