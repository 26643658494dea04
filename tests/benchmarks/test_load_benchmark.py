"""benchmarks/load.py's rate search: when the asked rate misses the p99 target, the report
says the highest rate that holds it, stepping down by a fifth."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import load  # noqa: E402


def test_the_rate_search_steps_down_to_the_first_rate_that_holds(monkeypatch):
    """A stand-in for the cluster whose p99 holds at 200/s and below."""
    asked = []

    def phase(cluster, setup, sampler, args, recent_ids, seconds, rate):
        asked.append((rate, seconds))
        p99 = 40.0 if rate <= 200 else 900.0
        return {"achieved_rate_per_s": rate, "latency_ms": {"p99": p99},
                "meets_target": p99 <= load.API_P99_TARGET_MS,
                "cpu_percent_of_one_core": {"machine": rate / 2}}

    monkeypatch.setattr(load, "submit_phase", phase)
    monkeypatch.setattr(load, "_log_api", lambda api: None)
    search = load.search_rate(None, None, None, SimpleNamespace(rate=400.0, search_seconds=5.0),
                              None)
    assert asked == [(320, 5.0), (256, 5.0), (205, 5.0), (164, 5.0)]
    assert search["highest_holding_rate"] == 164
    assert search["cpu_percent_of_one_core_there"] == {"machine": 82.0}
    assert [step["meets_target"] for step in search["steps"]] == [False, False, False, True]
    assert "highest rate holding p99 ≤ 100 ms: 164/s" in load.text_table({
        "database": "postgresql", "web_workers": 2, "web_threads": 8, "workers": 1,
        "tenants": 6, "api": _api(), "rate_search": search})


def test_no_rate_holds_says_so(monkeypatch):
    monkeypatch.setattr(load, "submit_phase", lambda *a: {
        "achieved_rate_per_s": a[-1], "latency_ms": {"p99": 5000.0}, "meets_target": False,
        "cpu_percent_of_one_core": {}})
    monkeypatch.setattr(load, "_log_api", lambda api: None)
    search = load.search_rate(None, None, None, SimpleNamespace(rate=40.0, search_seconds=1.0),
                              None)
    assert [step["rate"] for step in search["steps"]] == [32, 26, 21]
    assert search["highest_holding_rate"] is None


def _api() -> dict:
    return {"requests": 100, "achieved_rate_per_s": 400.0, "target_rate_per_s": 400.0,
            "error_count": 0, "meets_target": False,
            "latency_ms": {"p50": 1, "p95": 2, "p99": 900, "max": 1000},
            "backlog": {"queued_max": 1, "queued_at_end": 0, "drain_seconds": 0.1},
            "executed_rate_per_s": 400.0,
            "generator": {"timer_lag_ms": {"p99": 1}, "slots_with_every_sender_busy": 0},
            "cpu_percent_of_one_core": {}}
