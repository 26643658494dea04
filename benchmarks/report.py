"""What every benchmark reports besides its figures: progress lines, nearest-rank percentiles,
the machine, the commit and the date.

One module so that every script (engine, analytics, console pages, load, soak, run_all) describes
the machine and the code the same way: figures from different scripts can then be put side by
side in benchmarks/RESULTS.md without wondering whether they came from the same place.
"""
from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UTC = timezone.utc
NOISE_NOTE = "2-core shared machine; figures are noisy, compare runs on the same machine"

_T0 = time.monotonic()


def log(message: str) -> None:
    """A progress line on stderr (stdout is kept for the JSON), with seconds since start."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def nearest_rank(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile (an observed value, never interpolated); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100.0 * len(ordered))) - 1]


def latency_summary(values: list[float], points=(50, 95, 99)) -> dict[str, Any]:
    """``{"p50", "p95", "p99", "max", "mean", "n"}`` in the values' unit, rounded to 0.01."""
    if not values:
        return {**{f"p{p}": None for p in points}, "max": None, "mean": None, "n": 0}
    out: dict[str, Any] = {f"p{p}": round(nearest_rank(values, p), 2) for p in points}
    out.update(max=round(max(values), 2), mean=round(sum(values) / len(values), 2),
               n=len(values))
    return out


def git_commit(paths: tuple[str, ...] = ("console", "benchmarks")) -> str | None:
    """The short commit, with ``+dirty`` when ``paths`` have uncommitted changes (the figures
    then describe code that no commit holds)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT,
                               text=True, capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip().strip('"')
                return f"{name} (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def postgres_version(url: str | None) -> str | None:
    """``SHOW server_version`` of the server at ``url``; None without one or when unreachable."""
    if not url or not url.startswith("postgres"):
        return None
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return conn.execute(text("SHOW server_version")).scalar()
        finally:
            engine.dispose()
    except Exception as exc:   # a version line is not worth failing a benchmark for
        return f"unknown ({type(exc).__name__})"


def machine(database_url: str | None = None) -> dict[str, Any]:
    """The machine the figures came from: CPU, cores, RAM, OS, Python, SQLite (the library
    Python links), PostgreSQL when ``database_url`` is one, and the load average now."""
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "os": _os_name(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "loadavg": load_average()}
    version = postgres_version(database_url)
    if version:
        info["postgresql"] = version
    return info


def run_info(database_url: str | None = None, load_before: list[float] | None = None,
             started: float | None = None) -> dict[str, Any]:
    """The keys every benchmark's JSON ends with: machine, date, commit, elapsed, note."""
    info = machine(database_url)
    if load_before is not None:
        info["loadavg_before"] = load_before
        info["loadavg_after"] = info.pop("loadavg")
    out: dict[str, Any] = {"python": info["python"], "machine": info, "date": now_iso(),
                           "commit": git_commit()}
    if started is not None:
        out["elapsed_s"] = round(time.monotonic() - started, 1)
    out["note"] = NOISE_NOTE
    return out


def dig(data: Any, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; None where a level is missing (figures of a benchmark
    that failed or did not run)."""
    value = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
