"""benchmarks/run_all.py writes a report with every section: figures for what ran, the reason
for what did not (at smoke sizes: the speed targets are read from full runs, not asserted)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_md import SECTIONS  # noqa: E402


def _own_postgres_database(name: str) -> str:
    """A database of its own: the benchmarks drop every table of the one they are given."""
    from sqlalchemy import create_engine, text

    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return TEST_DATABASE_URL.rsplit("/", 1)[0] + "/" + name


@pytest.mark.slow
def test_run_all_writes_every_section_with_the_figures_it_measured(tmp_path):
    output = tmp_path / "RESULTS.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick",
               "--only", "engine,load", "--output", str(output),
               "--raw-dir", str(tmp_path / "raw")]
    if TEST_DATABASE_URL:
        database = "postgresql"
        command += ["--databases", database,
                    "--database-url", _own_postgres_database("console_run_all_check")]
    else:
        database = "sqlite"
        command += ["--databases", database]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = output.read_text()

    headers = re.findall(r"^## (.+)$", report, flags=re.MULTILINE)
    assert headers == SECTIONS
    assert re.search(r"\| CPU \| .+ \|", report) and "| SQLite | 3." in report
    # The engine's figures are in its table, for the database that ran.
    engine_row = re.search(r"^\| enqueue one by one, jobs/s \| ([^|]+) \|", report, re.MULTILINE)
    assert engine_row and re.match(r"[\d,.]+", engine_row.group(1).strip()), engine_row
    # The load ran end to end through gunicorn: no API error, the operators got their pages.
    assert re.search(r"^\| errors \| 0 \|", report, re.MULTILINE)
    assert re.search(r"^\| dashboard \| \d+: ", report, re.MULTILINE)
    # What was not asked for says so, section by section, instead of leaving a blank.
    for name in ("analytics", "console_pages", "exactly_once", "crash", "streams"):
        assert f"{database}: not run (not in `--only`)." in report, name


@pytest.mark.slow
def test_history_jobs_times_analytics_and_pages_over_a_second_history_beside_the_first(
        tmp_path):
    """``--history-jobs``: analytics.py and console_pages.py again over a larger history (the
    issue's 10,000,000 jobs; 5,000 here), their figures beside the first history's."""
    output = tmp_path / "RESULTS.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick",
               "--only", "analytics,console_pages", "--history-jobs", "5000",
               "--databases", "sqlite", "--output", str(output),
               "--raw-dir", str(tmp_path / "raw")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = output.read_text()

    for section, what in (("Analytics", "call"), ("Console pages", "page")):
        body = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        assert (f"| {what} (p50 / p95 ms) | sqlite, 3,000 | sqlite, 5,000 | "
                "5,000: ≤ 200 or ≤ 1.5× 3,000 (sqlite) |") in body, body[:2000]
        assert "Generating it (target ≤ 15 min): sqlite " in body
    assert "Analytics against the raw tables: sqlite: all checks hold; sqlite: all checks " \
           "hold (5,000 jobs)." in report
    # Each history was generated once, by analytics.py, and its file removed afterwards.
    assert "--jobs 5000" in report and "--reuse" in report
    assert not list((tmp_path / "raw").glob("history*"))
