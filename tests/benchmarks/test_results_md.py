"""benchmarks/RESULTS.md puts the larger history's figures (``run_all.py --history-jobs``) beside
the 1,000,000-job ones, with the generation time and whether each figure met the scale target
(p95 ≤ 200 ms, or at most 1.5× its 1M figure). Fed hand-made JSON, so every verdict is known."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_md import SECTIONS, render  # noqa: E402
from benchmarks.run_all import Outcome, _sizes  # noqa: E402

DATABASES = ["sqlite", "postgresql"]


def timing(p50: float, p95: float) -> dict:
    return {"p50": float(p50), "p95": float(p95)}


def analytics(jobs: int, calls: dict, generation_seconds: float | None = None) -> dict:
    return {"rows": {"jobs": jobs}, "calls_ms": calls, "checks": {"ok": True},
            "generation_seconds": generation_seconds,
            "generation": {"loadavg_after": [1.5, 1.2, 1.0]},
            "machine": {"loadavg_before": [0.5, 0.4, 0.3], "loadavg_after": [1.1, 1.0, 0.9]}}


def pages(jobs: int, timings: dict) -> dict:
    return {"rows": {"jobs": jobs}, "pages_ms": timings,
            "machine": {"loadavg_before": [0.5, 0.4, 0.3], "loadavg_after": [1.1, 1.0, 0.9]}}


def outcomes_with_a_larger_history() -> dict:
    small_calls = {"usage": timing(5, 8), "trends": timing(80, 150), "p95": timing(60, 70)}
    large_calls = {"usage": timing(6, 9),            # under 200 ms
                   "trends": timing(190, 210),       # over 200 ms but 1.4× its 1M figure
                   "p95": timing(400, 450)}          # over both: 6.4×
    runs = {}
    for db in DATABASES:
        runs[("analytics", db)] = analytics(1_000_000, small_calls, 95.0)
        runs[("analytics_large", db)] = analytics(10_000_000, large_calls,
                                                  600.0 if db == "sqlite" else 780.0)
        runs[("console_pages", db)] = pages(1_000_000, {"GET /jobs": timing(10, 11)})
        runs[("console_pages_large", db)] = pages(10_000_000, {"GET /jobs": timing(11, 12)})
    return {key: Outcome(key[0], key[1], data=data) for key, data in runs.items()}


def rendered(outcomes: dict, wanted: list[str]) -> str:
    info = {"finished": "2026-12-06T00:00:00+00:00", "commit": "abc1234", "elapsed_s": 10,
            "machine": {"cores": 2}, "loadavg_before": [0.1], "loadavg_after": [0.2]}
    return render(outcomes, info, wanted, DATABASES)


def table_rows(report: str, section: str) -> list[list[str]]:
    body = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split(" | ")]
            for line in body.splitlines() if line.startswith("| ")]


def test_the_larger_history_sits_beside_the_1m_figures_with_its_verdicts():
    report = rendered(outcomes_with_a_larger_history(),
                      ["analytics", "console_pages", "analytics_large", "console_pages_large"])

    assert re.findall(r"^## (.+)$", report, flags=re.MULTILINE) == SECTIONS
    header, *rows = table_rows(report, "Analytics")
    assert header == ["call (p50 / p95 ms)", "sqlite, 1M", "sqlite, 10M", "postgresql, 1M",
                      "postgresql, 10M", "10M: ≤ 200 or ≤ 1.5× 1M (sqlite / postgresql)"]
    by_call = {row[0]: row[1:] for row in rows}
    assert by_call["usage"] == ["5.0 / 8.0", "6.0 / 9.0", "5.0 / 8.0", "6.0 / 9.0", "yes / yes"]
    assert by_call["trends"][-1] == "yes (1.40×) / yes (1.40×)"
    assert by_call["p95"][-1] == "**no** (6.4×) / **no** (6.4×)"
    # The generation time (minutes) and the target, per database.
    assert "sqlite 10.0 min (executemany" in report
    assert "postgresql 13.0 min (COPY, ANALYZE included" in report
    assert "(target ≤ 15 min)" in report

    header, *rows = table_rows(report, "Console pages")
    assert header[1:5] == ["sqlite, 1M", "sqlite, 10M", "postgresql, 1M", "postgresql, 10M"]
    assert rows == [["GET /jobs", "10.0 / 11.0", "11.0 / 12.0", "10.0 / 11.0", "11.0 / 12.0",
                     "yes / yes"]]

    summary = {row[0]: row[1:] for row in table_rows(report, "Summary")}
    assert summary["history of 10M jobs: generated in, min"] == ["10.0", "13.0", "≤ 15"]
    assert summary["analytics at 10M: calls over their target"] == ["p95", "p95", "none"]
    assert summary["console at 10M: pages over their target"] == ["none", "none", "none"]


def test_without_a_larger_history_the_tables_keep_one_column_per_database():
    outcomes = {key: outcome for key, outcome in outcomes_with_a_larger_history().items()
                if not key[0].endswith("_large")}
    report = rendered(outcomes, ["analytics", "console_pages"])

    header, *rows = table_rows(report, "Analytics")
    assert header == ["call (p50 / p95 ms)", "sqlite", "postgresql"]
    assert "10M" not in report and "--history-jobs" not in report


def test_history_jobs_gives_the_large_runs_the_same_options_with_more_jobs():
    sizes = _sizes(quick=True, history_jobs=10_000_000)
    assert sizes["analytics_large"] == ["--jobs", "10000000", *sizes["analytics"][2:]]
    assert sizes["console_pages_large"] == ["--jobs", "10000000", *sizes["console_pages"][2:]]
    assert "analytics_large" not in _sizes(quick=False)
