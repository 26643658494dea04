#!/usr/bin/env python
"""Pages and the API while 100 live-update streams are open.

    python benchmarks/streams.py                      # SQLite, 100 streams
    python benchmarks/streams.py --streams 100 --repeat 40 --json streams.json

gunicorn as the README deploys it (``gunicorn wsgi:app`` with gunicorn.conf.py: 2 workers × 8
threads, each worker with its runner), on a fresh database (benchmarks/load.py's tenants,
token and operator). ``--streams`` pages each open ``/events`` (one signed-in cookie, each
stream its own browser session). The process caps keep at most half of each worker's threads
on streams; the rest are closed, oldest first, with ``stream-closed``, and their pages then
poll the job's activity fragment every 5 s (as console.js does). Meanwhile one operator requests
the dashboard, the jobs table, a job page, and the API lists and queues jobs, ``--repeat`` times
each: p50/p95 per call, against the targets (pages ≤ 200 ms at p95, API ≤ 100 ms).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load import OPERATOR_PASSWORD, prepare, start_cluster  # noqa: E402

POLL_SECONDS = 5.0
PAGE_TARGET_MS, API_TARGET_MS = 200.0, 100.0


class Page(threading.Thread):
    """One open console page: its stream, then polling once the server closed the stream."""

    def __init__(self, base_url: str, cookies: httpx.Cookies, job_id: str,
                 stop: threading.Event):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, cookies=cookies, timeout=30.0)
        self.job_id, self.stop = job_id, stop
        self.connected, self.closed, self.polls = threading.Event(), False, 0

    def run(self) -> None:
        try:
            with self.client.stream("GET", "/events") as stream:
                for chunk in stream.iter_text():
                    self.connected.set()
                    if "stream-closed" in chunk:
                        self.closed = True
                        break
                    if self.stop.is_set():
                        return
            while not self.stop.wait(POLL_SECONDS):
                self.client.get(f"/jobs/{self.job_id}/activity", headers={"HX-Request": "true"})
                self.polls += 1
        except httpx.HTTPError:
            self.connected.set()
        finally:
            self.client.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def sign_in(client: httpx.Client, username: str) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/login", data={"username": username, "password": OPERATOR_PASSWORD,
                                         "csrf_token": token})
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in answered {answer.status_code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=40, help="timed calls of each kind")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="streams-"))
    setup = prepare(args.database_url, workdir, tenants=1, history=0)
    tenant, token = next(iter(setup.tokens.items()))
    api = {"Authorization": f"Bearer {token}"}
    cluster = start_cluster(setup, web_workers=2, workers=0, web_threads=None,
                            log_dir=workdir / "logs")
    stop = threading.Event()
    pages: list[Page] = []
    try:
        base = cluster.base_url
        with httpx.Client(base_url=base, timeout=30.0) as operator:
            sign_in(operator, setup.operator)
            job = httpx.post(f"{base}/api/v1/jobs", headers=api, json={
                "type": "immediate", "handler": "noop"}).json()
            opened_at = time.perf_counter()
            for _ in range(args.streams):
                page = Page(base, operator.cookies, job["id"], stop)
                page.start()
                page.connected.wait(30)
                pages.append(page)
            opening = time.perf_counter() - opened_at
            time.sleep(1.0)   # the last closures reach their pages
            streaming = sum(1 for p in pages if not p.closed and p.is_alive())
            print(f"{args.streams} pages opened in {opening:.1f} s: {streaming} still stream, "
                  f"{sum(p.closed for p in pages)} were closed and poll every {POLL_SECONDS:g} s")

            calls = {
                "page: dashboard": lambda: operator.get("/"),
                "page: jobs table": lambda: operator.get("/jobs"),
                "page: a job": lambda: operator.get(f"/jobs/{job['id']}"),
                "fragment: dashboard summary": lambda: operator.get(
                    "/dashboard/summary", headers={"HX-Request": "true"}),
                "API: GET /jobs": lambda: operator.get("/api/v1/jobs", headers=api),
                "API: POST /jobs": lambda: operator.post("/api/v1/jobs", headers=api, json={
                    "type": "immediate", "handler": "noop"}),
            }
            figures: dict[str, dict[str, float]] = {}
            for _ in range(args.repeat):
                for name, call in calls.items():
                    started = time.perf_counter()
                    status = call().status_code
                    elapsed = (time.perf_counter() - started) * 1000
                    if status >= 400:
                        raise RuntimeError(f"{name} answered {status}")
                    figures.setdefault(name, {"ms": []})["ms"].append(elapsed)
        print(f"{'call':30} {'p50 ms':>8} {'p95 ms':>8}  target")
        report = {"streams": args.streams, "streaming": streaming,
                  "polling": sum(p.closed for p in pages), "calls": {}}
        for name, entry in figures.items():
            p50, p95 = percentile(entry["ms"], 0.5), percentile(entry["ms"], 0.95)
            target = API_TARGET_MS if name.startswith("API") else PAGE_TARGET_MS
            met = "met" if p95 <= target else "NOT met"
            print(f"{name:30} {p50:8.1f} {p95:8.1f}  ≤ {target:g} ms at p95: {met}")
            report["calls"][name] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                                     "target_ms": target, "met": p95 <= target}
        report["polls"] = sum(p.polls for p in pages)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return 0 if all(c["met"] for c in report["calls"].values()) else 1
    finally:
        stop.set()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
