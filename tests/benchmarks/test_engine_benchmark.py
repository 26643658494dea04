"""The engine benchmark still runs end to end and reports every figure (at a tiny scale: speed
targets are read from its full-size output, not asserted here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent.parent
FIGURES = ["drain_workers_per_s", "drain_gunicorn_per_s", "start_latency_deployed_ms",
           "delayed_lateness_deployed_ms", "noisy_neighbour_deployed_ms",
           "enqueue_one_by_one_per_s", "enqueue_batched_per_s", "drain_noop_per_s",
           "start_latency_same_process_ms", "start_latency_other_process_ms",
           "delayed_lateness_ms", "noisy_neighbour_ms", "rate_limit",
           "batch_callback_ms", "dependency_release_ms"]


def run_engine_benchmark(*arguments: str) -> dict:
    command = [sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--scale", "0.02",
               *arguments]
    if TEST_DATABASE_URL:
        # Its own database: the benchmark drops and recreates the engine's tables.
        from sqlalchemy import create_engine, text

        admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS console_bench_check WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE console_bench_check"))
        admin.dispose()
        command += ["--database-url", TEST_DATABASE_URL.rsplit("/", 1)[0] + "/console_bench_check"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
def test_engine_benchmark_reports_every_figure():
    figures = run_engine_benchmark("--repeat", "1")
    for name in FIGURES:
        value = figures[name]
        if name == "rate_limit":   # the limit is exact at any scale
            assert value["starts"] > 0 and value["max_in_any_period"] <= 50, value
            assert value["max_in_any_burst_window"] <= 10, value
        elif isinstance(value, dict):
            assert value["n"] > 0 and 0 <= value["p50"] <= value["p99"], (name, value)
        else:
            assert value > 0, (name, value)


@pytest.mark.slow
def test_deployed_figures_are_medians_of_the_runs_each_kept_beside_them():
    figures = run_engine_benchmark("--only", "drain_deployed", "--repeat", "2")
    runs = figures["details"]["drain_deployed"]["runs"]
    assert len(runs) == 2 and all(run["drain_workers_per_s"] > 0 for run in runs)
    assert min(r["drain_workers_per_s"] for r in runs) <= figures["drain_workers_per_s"] \
        <= max(r["drain_workers_per_s"] for r in runs)
