"""The streams benchmark still runs end to end: past the process caps (2 workers × half of 8
threads) the streams are closed and their pages poll, and every call is timed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_streams_benchmark_keeps_threads_for_pages_and_the_api(tmp_path):
    output = tmp_path / "streams.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "streams.py"), "--streams", "20",
         "--repeat", "3", "--json", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert output.exists(), result.stdout + result.stderr
    report = json.loads(output.read_text())
    assert report["streaming"] == 8 and report["polling"] == 12
    assert set(report["calls"]) >= {"page: dashboard", "API: GET /jobs", "API: POST /jobs"}
    assert all(call["p95_ms"] > 0 for call in report["calls"].values())
