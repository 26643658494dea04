#!/usr/bin/env python
"""Memory over a long steady load: does any process of the product keep growing? (Not in CI.)

    python benchmarks/soak.py                          # 30 minutes on SQLite
    python benchmarks/soak.py --minutes 5              # a shortened run
    python benchmarks/soak.py --database-url postgresql+psycopg://user@host:port/db --json soak.json

The product runs as in ``benchmarks/load.py`` (gunicorn with ``--web-workers`` workers, each with
its runner, plus ``--workers`` ``flask worker`` processes, through ``benchmarks/cluster.py``) on a
fresh database, under a steady mix for ``--minutes``: API submissions at ``--rate`` a second
(open loop, one minute at a time, so the generator keeps no growing history), the runners
executing them, and ``--operators`` signed-in sessions reading the console's pages.

Every ``--sample-seconds`` the resident memory (RSS, from /proc) of every process is sampled:
the gunicorn master and workers, the worker processes, and this generator (reported, not judged).
**Verdict**: for each product process, and for their total, the median RSS over the last sixth
of the run is compared with the median over the second sixth (minutes 5–10 of a 30-minute run:
after imports, caches and connection pools have warmed up). Flat means growth ≤ 10 %.
A process that was replaced (a gunicorn worker restarted) is reported as such.

Progress to stderr; a table of RSS by minute and the verdict to stdout; ``--json PATH`` writes
the samples and the verdict.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load import (  # noqa: E402
    OpenLoopSubmitter,
    cluster_pids,
    prepare,
    run_operators,
    start_cluster,
)
from benchmarks.procstats import rss_mib  # noqa: E402
from benchmarks.report import load_average, log, run_info  # noqa: E402

GROWTH_LIMIT = 0.10


class RssSampler:
    """Every ``interval`` s, the RSS (MiB) of each process, labelled by role (``web-1``,
    ``worker-1``, ``gunicorn-master``, ``generator``); the pids behind each role are kept so a
    replaced process shows."""

    def __init__(self, cluster, interval: float):
        self.cluster = cluster
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.pids: dict[str, set[int]] = {}
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def roles(self) -> dict[str, int]:
        groups = cluster_pids(self.cluster)
        roles = {"gunicorn-master": groups["gunicorn_master"][0]} \
            if groups["gunicorn_master"] else {}
        for n, pid in enumerate(sorted(groups["gunicorn_workers"]), 1):
            roles[f"web-{n}"] = pid
        for n, pid in enumerate(sorted(groups["worker_processes"]), 1):
            roles[f"worker-{n}"] = pid
        roles["generator"] = groups["load_generator"][0]
        return roles

    def sample(self) -> None:
        row: dict[str, Any] = {"t": round(time.monotonic() - self.t0, 1)}
        for role, pid in self.roles().items():
            rss = rss_mib(pid)
            if rss is not None:
                row[role] = round(rss, 1)
                self.pids.setdefault(role, set()).add(pid)
        self.samples.append(row)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:   # one lost sample is not worth ending a 30-minute run
                log(f"RSS sample failed: {exc!r}")

    def start(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()


def verdict(samples: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Median RSS in the second sixth of the run against the last sixth, per role and for the
    product's total (every role but the generator)."""
    baseline = (seconds / 6, seconds / 3)
    final = (seconds * 5 / 6, seconds + 60)
    roles = sorted({k for s in samples for k in s if k != "t"})
    for s in samples:
        s["product_total"] = round(sum(v for k, v in s.items()
                                       if k not in ("t", "generator", "product_total")), 1)
    out: dict[str, Any] = {"baseline_window_s": [round(x) for x in baseline],
                           "final_window_s": [round(seconds * 5 / 6), round(seconds)],
                           "limit": GROWTH_LIMIT, "processes": {}}
    for role in roles + ["product_total"]:
        before = [s[role] for s in samples if role in s and baseline[0] <= s["t"] < baseline[1]]
        after = [s[role] for s in samples if role in s and final[0] <= s["t"] <= final[1]]
        if not before or not after:
            out["processes"][role] = {"flat": None, "why": "no samples in a window"}
            continue
        b, a = statistics.median(before), statistics.median(after)
        growth = (a - b) / b if b else 0.0
        out["processes"][role] = {"baseline_mib": round(b, 1), "final_mib": round(a, 1),
                                  "growth": round(growth, 4),
                                  "flat": growth <= GROWTH_LIMIT,
                                  "judged": role != "generator"}
    judged = [v["flat"] for k, v in out["processes"].items() if k != "generator"]
    out["flat"] = bool(judged) and all(v is True for v in judged)
    return out


def run(args) -> dict[str, Any]:
    started, load_before = time.monotonic(), load_average()
    seconds = args.minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="console-soak-"))
    setup = prepare(args.database_url, workdir, args.tenants, args.history)
    cluster = start_cluster(setup, args.web_workers, args.workers, None, workdir / "logs")
    log(f"soak on {setup.kind} for {args.minutes:g} min: {args.rate:g} submissions/s, "
        f"{args.operators} operators; RSS every {args.sample_seconds:g} s; logs in {workdir}")
    sampler = RssSampler(cluster, args.sample_seconds).start()
    recent: deque = deque(maxlen=200)
    minutes: list[dict[str, Any]] = []
    pages: dict[str, Any] = {}
    operator_errors: list[str] = []
    try:
        if args.operators:
            def operators():
                table, errors = run_operators(cluster.base_url, setup, args.operators,
                                              args.think, seconds, recent)
                pages.update(table)
                operator_errors.extend(errors)
            readers = threading.Thread(target=operators, name="operators", daemon=True)
            readers.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline - 1:
            chunk = min(60.0, deadline - time.monotonic())
            submitter = OpenLoopSubmitter(cluster.base_url, setup.tokens, args.rate, chunk,
                                          args.senders, recent).start(delay=0.05)
            submitter.join()
            summary = submitter.summary()
            minutes.append({"minute": len(minutes) + 1, "requests": summary["requests"],
                            "errors": summary["error_count"],
                            "p99_ms": summary["latency_ms"]["p99"],
                            "rss": dict(sampler.samples[-1]) if sampler.samples else {}})
            log(f"minute {len(minutes)}: {summary['requests']} submissions, "
                f"{summary['error_count']} errors, p99 {summary['latency_ms']['p99']} ms; RSS "
                + ", ".join(f"{k} {v:.0f}" for k, v in sampler.samples[-1].items() if k != "t"))
        if args.operators:
            readers.join(timeout=120)
    finally:
        sampler.stop()
        cluster.stop()
    result = {"database": setup.kind, "minutes": args.minutes, "rate": args.rate,
              "operators": args.operators, "web_workers": args.web_workers,
              "workers": args.workers, "sample_seconds": args.sample_seconds,
              "verdict": verdict(sampler.samples, seconds),
              "replaced_processes": {role: sorted(pids) for role, pids in sampler.pids.items()
                                     if len(pids) > 1},
              "submissions": {"requests": sum(m["requests"] for m in minutes),
                              "errors": sum(m["errors"] for m in minutes),
                              "p99_ms_by_minute": [m["p99_ms"] for m in minutes]},
              "pages_ms": {k: {"n": v["n"], "p95": v["p95"]} for k, v in pages.items()},
              "operator_errors": operator_errors,
              "samples": sampler.samples}
    result.update(run_info(setup.url if setup.kind == "postgresql" else None, load_before,
                           started))
    return result


def text_table(result: dict[str, Any]) -> str:
    samples = result["samples"]
    roles = [k for k in samples[-1] if k not in ("t",)] if samples else []
    lines = [f"soak on {result['database']}: {result['minutes']:g} min, "
             f"{result['rate']:g} submissions/s, {result['operators']} operators, "
             f"{result['submissions']['requests']} submissions, "
             f"{result['submissions']['errors']} errors",
             "RSS in MiB, one row a minute:",
             "  " + f"{'min':>5s} " + " ".join(f"{r:>15s}" for r in roles)]
    step = max(1, int(round(60 / result["sample_seconds"])))
    for s in samples[::step]:
        lines.append("  " + f"{s['t'] / 60:5.1f} " + " ".join(
            f"{s.get(r, float('nan')):15.1f}" for r in roles))
    v = result["verdict"]
    lines.append(f"verdict (median RSS, {v['baseline_window_s'][0]}–{v['baseline_window_s'][1]} s "
                 f"against {v['final_window_s'][0]}–{v['final_window_s'][1]} s, limit "
                 f"{v['limit']:.0%}):")
    for role, p in v["processes"].items():
        if p.get("flat") is None:
            lines.append(f"  {role:15s} {p.get('why')}")
            continue
        mark = "flat" if p["flat"] else "GROWING"
        note = "" if p["judged"] else " (the load generator: not judged)"
        lines.append(f"  {role:15s} {p['baseline_mib']:8.1f} → {p['final_mib']:8.1f} MiB "
                     f"({p['growth']:+.1%}) {mark}{note}")
    lines.append("memory flat within 10 %: " + ("yes" if v["flat"] else "NO"))
    if result["replaced_processes"]:
        lines.append(f"replaced processes: {result['replaced_processes']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="postgresql+psycopg://… (every table is dropped); default: SQLite")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0, help="submissions per second")
    parser.add_argument("--operators", type=int, default=5)
    parser.add_argument("--think", type=float, default=2.0)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--history", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write samples and verdict as JSON here")
    args = parser.parse_args(argv)
    if args.minutes < 1:
        parser.error("--minutes: at least 1 (the verdict compares sixths of the run)")

    import logging
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(text_table(result))
    return 0 if result["verdict"]["flat"] and not result["submissions"]["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
