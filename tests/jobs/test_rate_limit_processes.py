"""A tenant's rate limit holds exactly across three worker processes: over 30 seconds of a
backlog, no window of the period ever holds more starts than the limit, and the limit is used.

A start is the claim that marked the job ``processing``: its ``last_attempt`` (each job here
runs once), the time the claim's rate limit counted it at. Windows are derived from those
times alone, so the check is the limit itself and nothing about how fast the machine is.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from benchmarks.engine import most_in_a_window
from console.jobs.models import attempts_table, jobs_table
from tests.jobs.test_processes import app_config  # noqa: F401  (the short lease)

COUNT, PERIOD, SECONDS = 20, 2.0, 30.0
pytestmark = pytest.mark.slow


def test_three_workers_never_start_more_than_the_limit_in_any_window(service, make_tenant,
                                                                      workers):
    make_tenant("acme", maxQueuedJobs=None, rateLimit={"count": COUNT, "periodSeconds": PERIOD})
    for name in ("a", "b", "c"):
        workers.start(name, threads=4)
    # More than 30 s can start (15 periods × 20): the backlog never runs dry.
    service.queue_batch_jobs([{"type": "immediate", "handler": "noop", "payload": {},
                               "maxRetries": 0}] * 600, "acme")
    time.sleep(SECONDS + PERIOD)
    with service.engine.connect() as conn:
        rows = conn.execute(select(jobs_table.c.last_attempt, jobs_table.c.total_attempts)
                            .where(jobs_table.c.last_attempt.is_not(None))).all()
        runners = conn.execute(select(attempts_table.c.worker).distinct()).scalars().all()
    assert {attempts for _, attempts in rows} == {1}
    starts = sorted(moment for moment, _ in rows)
    assert most_in_a_window(starts, PERIOD) <= COUNT
    in_30_s = [t for t in starts if t < starts[0] + timedelta(seconds=SECONDS)]
    print(f"{len(in_30_s)} starts in the first {SECONDS:g} s, {len(rows)} in all, by "
          f"{len(runners)} runners")
    # Used, not just obeyed: 15 periods' worth, less the few wake-ups' delays.
    assert len(in_30_s) >= 0.85 * COUNT * SECONDS / PERIOD, len(in_30_s)
    assert most_in_a_window(starts, PERIOD) == COUNT


def test_windows_are_counted_from_the_start_times():
    """The busiest window of [t, t + period) begins at a start."""
    t = datetime(2026, 1, 1)
    starts = [t, t + timedelta(seconds=1), t + timedelta(seconds=1.5), t + timedelta(seconds=2)]
    assert most_in_a_window(starts, 2.0) == 3          # [1, 3) holds 1, 1.5 and 2
    assert most_in_a_window(starts, 2.5) == 4
