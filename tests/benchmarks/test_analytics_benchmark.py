"""The analytics benchmark still runs end to end, times every call and its checks hold (at a tiny
size: the 200 ms target is read from its full-size output, not asserted here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent.parent
CALLS = ["get_tenant_job_usage.all_time", "get_tenant_job_usage.7d",
         "get_job_performance_metrics.30d", "get_job_performance_metrics.24h",
         "get_tenant_job_health", "get_job_queue_status", "get_system_job_statistics",
         "get_job_trends.tenant_24h_hourly", "get_job_trends.tenant_30d_daily",
         "get_job_trends.handler_7d", "GET /metrics", "GET /healthz"]


@pytest.mark.slow
def test_analytics_benchmark_times_every_call_and_checks_hold(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "analytics.py"), "--jobs", "5000",
               "--days", "7", "--repeat", "2", "--batch", "2000"]
    if TEST_DATABASE_URL:
        # Its own database: the benchmark drops every table.
        from sqlalchemy import create_engine, text

        admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS console_analytics_bench_check WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE console_analytics_bench_check"))
        admin.dispose()
        command += ["--database-url",
                    TEST_DATABASE_URL.rsplit("/", 1)[0] + "/console_analytics_bench_check"]
    else:
        command += ["--keep", str(tmp_path / "history.sqlite3")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["rows"]["jobs"] == 5000
    assert report["rows"]["job_attempts"] > report["rows"]["jobs"]   # retries: several rows
    statuses = report["generation"]["by_status"]
    assert {"completed", "failed", "cancelled", "pending", "queued", "processing"} <= set(statuses)
    for name in CALLS:
        timing = report["calls_ms"][name]
        assert timing["n"] == 2 and 0 < timing["p50"] <= timing["p95"], (name, timing)
    assert report["checks"] and all(report["checks"].values()), report["checks"]

    if not TEST_DATABASE_URL:   # the kept file is timed again without generating
        again = subprocess.run(command[:-2] + ["--reuse", str(tmp_path / "history.sqlite3")],
                               cwd=ROOT, capture_output=True, text=True, timeout=240,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert again.returncode == 0, again.stderr[-3000:]
        reused = json.loads(again.stdout)
        assert reused["rows"] == report["rows"] and all(reused["checks"].values())
