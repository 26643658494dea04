"""Crashes, as users deploy it: runner processes (gunicorn workers and ``flask worker``
processes) are SIGKILLed and restarted while jobs run. Every job ends, the only repeats are
attempts in flight at a kill, and notifications through the outbox are sent exactly once.

CI-sized run of ``benchmarks/crash.py`` (same code); the full size (20,000 jobs, a kill every
2 s until they have all ended) runs from the script.
"""
from __future__ import annotations

import pytest

from benchmarks import crash
from tests.conftest import ON_POSTGRES

WEB_WORKERS, WORKERS = (2, 2) if ON_POSTGRES else (2, 1)


@pytest.mark.slow
def test_sigkilled_runners_lose_nothing_and_repeat_only_what_was_in_flight(database_url,
                                                                          tmp_path):
    # 1,500 recording jobs of 100 ms on 4 threads per process keep the runners busy for well
    # over 5 s, so the kills (every 2 s, at most 4) land on attempts in flight. A 3 s lease:
    # short for quick recovery, long enough that a live runner on a busy CI machine still
    # renews in time (a lapse would be reported as a repeat no kill explains).
    result = crash.run(database_url, jobs=2000, web_workers=WEB_WORKERS, workers=WORKERS,
                       threads=4, kill_every=2.0, max_kills=4, lease_seconds=3.0,
                       sleep_ms=100, message_share=0.25, tenants=3, seed=7, workdir=tmp_path,
                       timeout=150)
    crash.print_figures(result)   # shown when the test fails

    assert result["problems"] == []
    assert result["kills"] >= 2, "the jobs ended before the runners could be killed"
    assert result["attempts_lost"] > 0, "no kill caught an attempt in flight"
    assert result["final_statuses"].get("completed", 0) + result["final_statuses"].get(
        "failed", 0) == 2000
    # One outbox message per notification job that completed: none doubled by a repeat.
    assert result["outbox_messages"] == result["notification_jobs_completed"] > 0
