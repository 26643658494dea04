#!/usr/bin/env python
"""HTTP load on the product as users run it: API submissions at a constant rate, then operators.

    python benchmarks/load.py                          # SQLite, 300/s for 60 s, then 20 operators
    python benchmarks/load.py --database-url postgresql+psycopg://user@host:port/db
    python benchmarks/load.py --rate 50 --seconds 5 --operators 3 --history 0   # a quick look
    python benchmarks/load.py --json load.json         # also write the figures as JSON

The product runs through ``benchmarks/cluster.py``: ``gunicorn wsgi:app -c gunicorn.conf.py``
with ``--web-workers`` workers (each serving HTTP and running its own job runner) plus
``--workers`` ``flask --app console worker`` processes, on a fresh database (a new SQLite file,
or PostgreSQL with every table dropped). Before it starts: ``--tenants`` tier-4 tenants with their
tier's limits, one API token each (the token store, as ``flask create-token`` does), a signed-in
operator account, and ``--history`` generated jobs (benchmarks/analytics.py's history) so that
the failures, handlers and tenant pages have something to show.

**Phase 1, the API.** ``POST /api/v1/jobs`` (a ``noop`` job, the tenants in turn) at ``--rate``
per second for ``--seconds``: open loop, so request *i* is due at ``t0 + i/rate`` whatever the
server does, and its latency is measured from that due time, not from when a sender got round
to it (no coordinated omission: a stalled server shows as latency, not as fewer requests).
``--senders`` threads, each with its own keep-alive connection (httpx), take the due slots in
order. The generator's own lag is reported apart: how late a sender that was idle and waiting
woke for its slot (timer and GIL), how many slots found every sender busy, and its CPU use.
Meanwhile the queue is sampled every second (queued, processing, completed of the load tenants):
the backlog over time, the rate the runners executed at, and how long the backlog took to drain
after the last submission. When the p99 misses its target, the rate search steps the rate
down by a fifth (``--search-seconds`` each) to the highest one that holds it, with where the
CPU went at each step.

**Phase 2, operators.** ``--operators`` signed-in sessions cycle through the main pages
(dashboard, jobs table, a job page, tenants, a tenant page, failures, handlers), each page
followed by the fragments a browser loads with it (``hx-trigger="load"``: tenant health cells,
charts, handler rows), then a think time of 0.5–1.5 × ``--think`` seconds, while the API takes
``--operator-rate`` submissions a second (default 50: a steady production load; the two targets
are separate ones, and the 300/s phase alone can keep a small machine's cores busy — the CPU
lines say how busy — so ``--operator-rate 300`` shows the pages of a machine that is full).
Per page and fragment: p50/p95/max in ms (round trip on the loopback: server time plus the
loopback's own round trip), target ≤ 200 ms at p95.
``--operators 0`` skips the phase. The sessions do not hold the live event stream (``/events``) a
browser keeps open on every page: each open stream holds one gunicorn thread, and at most half
of a worker's threads hold streams (pages past that poll); benchmarks/streams.py times pages and
the API with 100 streams open. These figures are for the page requests.

Progress goes to stderr, the figures as a table to stdout, and with ``--json PATH`` as JSON to a
file (``run_all.py`` reads it).
Timings on a small shared machine are noisy: the machine's own CPU use (everyone's processes)
is reported for each phase.
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.report import latency_summary, load_average, log, nearest_rank, run_info  # noqa: E402

API_P99_TARGET_MS = 100.0
PAGE_P95_TARGET_MS = 200.0
OPERATOR_PASSWORD = "load benchmark password"
MIN_SEARCH_RATE = 20   # submissions/s: the rate search stops below this
PAGES = ["dashboard", "jobs table", "job page", "tenants", "tenant page", "failures",
         "handlers"]


# -- the database and the product -----------------------------------------------------------

@dataclass
class Setup:
    url: str
    kind: str
    tenants: list[str]
    tokens: dict[str, str]          # tenant → bearer token
    operator: str
    history: dict[str, Any] = field(default_factory=dict)


def prepare(database_url: str | None, workdir: Path, tenants: int, history: int,
            seed: int = 42) -> Setup:
    """A fresh, migrated database with the load tenants, their tokens, an operator account and
    (optionally) a generated history."""
    from benchmarks.engine import Target
    from console import create_app
    from console.jobs import TenantConfig
    from console.tokens import create_token
    from console.web.auth.views import set_user

    target = Target(database_url, workdir)
    url = target.fresh("load")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "JOBS_RUN_SCHEDULER": False,
                      "SECRET_KEY": "load"})
    service = app.extensions["jobs"]
    generated: dict[str, Any] = {}
    if history:
        from benchmarks.analytics import History

        generated = History(service.engine, service.tenants, history, 7, 10_000,
                            seed).generate()
    names = [f"load-{n}" for n in range(1, tenants + 1)]
    tokens = {}
    for tenant_id in names:
        service.tenants.set_tenant_config(
            TenantConfig.for_tier(tenant_id, f"Load {tenant_id[5:]}", "tier4"))
        _, secret = create_token(service.engine, f"load {tenant_id}", tenant_id, False)
        tokens[tenant_id] = secret
    with app.app_context():
        set_user("load-operator", "operator", OPERATOR_PASSWORD)
    service.engine.dispose()
    return Setup(url, target.kind, names, tokens, "load-operator",
                 {k: generated[k] for k in ("jobs_written", "seconds") if k in generated})


def start_cluster(setup: Setup, web_workers: int, workers: int, web_threads: int | None,
                  log_dir: Path, settings: dict[str, Any] | None = None):
    from benchmarks.cluster import Cluster

    cluster = Cluster(setup.url, web_workers=web_workers, workers=workers, handlers=[],
                      web_threads=web_threads, log_dir=log_dir, settings=settings or {},
                      start_timeout=120)
    return cluster.start()


def cluster_pids(cluster, database_url: str | None = None) -> dict[str, list[int]]:
    """The product's processes by kind (and this one), for CPU and memory figures; with a
    PostgreSQL server on this machine, its processes too."""
    from benchmarks.procstats import parent_of

    web = cluster.web_worker_pids()
    master = parent_of(web[0]) if web else None
    workers = [pid for pid, (kind, _) in cluster.expected_pids().items() if kind == "worker"]
    groups = {"gunicorn_master": [master] if master else [], "gunicorn_workers": web,
              "worker_processes": workers, "load_generator": [os.getpid()]}
    server = local_postgres_pids(database_url)
    if server:
        groups["postgresql_server"] = server
    return groups


def local_postgres_pids(url: str | None) -> list[int]:
    """The processes of the PostgreSQL server at ``url`` when it runs on this machine (the
    postmaster, its backends and helpers), else []."""
    from sqlalchemy.engine import make_url

    from benchmarks.procstats import children, parent_of

    if not url or not url.startswith("postgresql") or make_url(url).host not in (
            "127.0.0.1", "localhost", "::1"):
        return []
    import psycopg

    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)) as connection:
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
    postmaster = parent_of(backend)
    return [postmaster, *children(postmaster)] if postmaster else []


# -- the queue, sampled ---------------------------------------------------------------------

class BacklogSampler:
    """Every ``interval`` s: queued, processing and completed jobs of the load tenants."""

    def __init__(self, url: str, tenants: list[str], interval: float = 1.0):
        from sqlalchemy import create_engine

        self.engine = create_engine(url)
        self.tenants = tenants
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backlog", daemon=True)
        self.t0 = time.monotonic()

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func, select

        from console.jobs.models import jobs_table as j

        query = (select(j.c.status, func.count()).where(j.c.tenant_id.in_(self.tenants))
                 .group_by(j.c.status))
        with self.engine.connect() as conn:
            found = dict(conn.execute(query).all())
        return {s: int(found.get(s, 0)) for s in ("queued", "processing", "completed",
                                                 "failed", "pending")}

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                counts = self.counts()
            except Exception as exc:   # a sample lost is not worth stopping the benchmark
                log(f"backlog sample failed: {exc!r}")
            else:
                self.samples.append({"t": round(started - self.t0, 2), **counts})
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> BacklogSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.engine.dispose()

    def wait_drained(self, timeout: float) -> float | None:
        """Seconds until nothing of the load tenants is queued or processing; None on timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            counts = self.counts()
            if counts["queued"] == 0 and counts["processing"] == 0:
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    def between(self, start: float, end: float) -> list[dict[str, float]]:
        return [s for s in self.samples if start <= s["t"] <= end]


# -- the API load: open loop ----------------------------------------------------------------

@dataclass
class Submission:
    intended: float     # when it was due (perf_counter)
    started: float
    ended: float
    status: int | str   # HTTP status, or the exception's class name
    waited: bool        # the sender was idle and slept until the due time


class OpenLoopSubmitter:
    """``rate`` POST /api/v1/jobs a second for ``seconds``, each due at ``t0 + i/rate``."""

    def __init__(self, base_url: str, tokens: dict[str, str], rate: float, seconds: float,
                 senders: int, recent_ids: deque | None = None):
        self.base_url = base_url
        self.auth = [{"Authorization": f"Bearer {token}"} for token in tokens.values()]
        self.rate, self.seconds, self.senders = rate, seconds, senders
        self.total = int(round(rate * seconds))
        self.recent_ids = recent_ids if recent_ids is not None else deque(maxlen=200)
        self.records: list[list[Submission]] = [[] for _ in range(senders)]
        self._slots = itertools.count()
        self.t0 = 0.0
        self._threads: list[threading.Thread] = []

    def start(self, delay: float = 0.2) -> OpenLoopSubmitter:
        # Clients first (each builds an SSL context: tens of ms of CPU), then the clock starts.
        clients = [httpx.Client(base_url=self.base_url, timeout=30.0,
                                limits=httpx.Limits(max_connections=1))
                   for _ in range(self.senders)]
        self.t0 = time.perf_counter() + delay
        self._threads = [threading.Thread(target=self._send, args=(n, clients[n]),
                                          name=f"sender-{n}", daemon=True)
                         for n in range(self.senders)]
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _send(self, n: int, client: httpx.Client) -> None:
        records = self.records[n]
        with client:
            while True:
                i = next(self._slots)
                if i >= self.total:
                    return
                intended = self.t0 + i / self.rate
                delay = intended - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                started = time.perf_counter()
                try:
                    response = client.post("/api/v1/jobs", headers=self.auth[i % len(self.auth)],
                                           json={"type": "immediate", "handler": "noop",
                                                 "payload": {"i": i, "source": "load"}})
                    status: int | str = response.status_code
                    if status == 201 and i % 25 == 0:
                        self.recent_ids.append(response.json()["id"])
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                records.append(Submission(intended, started, time.perf_counter(), status,
                                          delay > 0))

    def summary(self) -> dict[str, Any]:
        records = sorted((r for rs in self.records for r in rs), key=lambda r: r.intended)
        if not records:
            return {"requests": 0}
        statuses = Counter(r.status for r in records)
        errors = {str(k): v for k, v in statuses.items() if k != 201}
        latency = [(r.ended - r.intended) * 1000 for r in records]
        service = [(r.ended - r.started) * 1000 for r in records]
        timer_lag = [(r.started - r.intended) * 1000 for r in records if r.waited]
        span = max(r.started for r in records) - self.t0
        per_second = Counter(int(r.ended - self.t0) for r in records if r.status == 201)
        by_second: dict[int, list[float]] = {}
        for r, ms in zip(records, latency, strict=True):
            by_second.setdefault(int(r.intended - self.t0), []).append(ms)
        return {
            "requests": len(records),
            "ok": statuses.get(201, 0),
            "errors": errors,
            "error_count": sum(errors.values()),
            "target_rate_per_s": self.rate,
            "achieved_rate_per_s": round(len(records) / span, 1) if span > 0 else None,
            "latency_ms": latency_summary(latency),
            "service_ms": latency_summary(service),
            "generator": {
                "timer_lag_ms": latency_summary(timer_lag),
                "slots_with_every_sender_busy": sum(1 for r in records if not r.waited),
                "senders": self.senders},
            "accepted_per_second": [per_second.get(s, 0) for s in range(int(self.seconds) + 1)],
            "latency_p99_ms_per_second": [round(nearest_rank(by_second.get(s, [0.0]), 99), 1)
                                          for s in range(int(self.seconds))],
        }


# -- operators ------------------------------------------------------------------------------

class _LoadFragments(HTMLParser):
    """The ``hx-get`` URLs a browser requests as soon as the page is in (``hx-trigger`` load)."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        trigger = values.get("hx-trigger") or ""
        if values.get("hx-get") and any(part.strip().split(" ")[0] == "load"
                                        for part in trigger.split(",")):
            self.urls.append(values["hx-get"])


def load_fragments(html: str) -> list[str]:
    parser = _LoadFragments()
    parser.feed(html)
    return parser.urls


_FRAGMENT_LABELS = [(re.compile(r"^/tenants/[^/]+/"), "/tenants/<id>/"),
                    (re.compile(r"^/handlers/[^/]+/"), "/handlers/<name>/"),
                    (re.compile(r"^/jobs/[^/]+/"), "/jobs/<id>/")]


def fragment_label(url: str) -> str:
    path = url.split("?", 1)[0]
    for pattern, replacement in _FRAGMENT_LABELS:
        path = pattern.sub(replacement, path)
    return "fragment " + path


class Operator(threading.Thread):
    """One signed-in session cycling through the main pages with a think time."""

    def __init__(self, n: int, base_url: str, username: str, think: float,
                 stop: threading.Event, pick: Callable[[str], str], seed: int):
        super().__init__(name=f"operator-{n}", daemon=True)
        self.base_url, self.username, self.think = base_url, username, think
        self.stop_event, self.pick = stop, pick
        self.rng = random.Random(seed)
        self.timings: dict[str, list[float]] = {}
        self.statuses: dict[str, Counter] = {}
        self.error: str | None = None

    def _get(self, client: httpx.Client, label: str, url: str, htmx: bool = False) -> str:
        started = time.perf_counter()
        response = client.get(url, headers={"HX-Request": "true"} if htmx else None)
        elapsed = (time.perf_counter() - started) * 1000
        self.timings.setdefault(label, []).append(elapsed)
        self.statuses.setdefault(label, Counter())[response.status_code] += 1
        return response.text if response.status_code == 200 else ""

    def sign_in(self, client: httpx.Client) -> None:
        page = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = client.post("/login", data={"username": self.username,
                                               "password": OPERATOR_PASSWORD,
                                               "csrf_token": token})
        if response.status_code != 302:
            raise RuntimeError(f"sign-in answered {response.status_code}")

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
                self.sign_in(client)
                # Start at different pages, so the 20 sessions do not move in step.
                pages = itertools.islice(itertools.cycle(PAGES), self.rng.randrange(len(PAGES)),
                                         None)
                for page in pages:
                    if self.stop_event.is_set():
                        return
                    html = self._get(client, page, self.pick(page))
                    for url in load_fragments(html):
                        self._get(client, fragment_label(url), url, htmx=True)
                    self.stop_event.wait(self.think * self.rng.uniform(0.5, 1.5))
        except Exception as exc:   # reported: an operator that could not go on is a finding
            self.error = f"{type(exc).__name__}: {exc}"


def operator_pages(recent_ids: deque, tenants: list[str], rng: random.Random):
    """``page → URL``: a recent job's page, a random tenant's page."""
    fixed = {"dashboard": "/", "jobs table": "/jobs", "tenants": "/tenants",
             "failures": "/failures", "handlers": "/handlers"}

    def pick(page: str) -> str:
        if page == "job page":
            return f"/jobs/{rng.choice(list(recent_ids))}" if recent_ids else "/jobs"
        if page == "tenant page":
            return f"/tenants/{rng.choice(tenants)}"
        return fixed[page]
    return pick


def run_operators(base_url: str, setup: Setup, count: int, think: float, seconds: float,
                  recent_ids: deque) -> tuple[dict[str, Any], list[str]]:
    stop = threading.Event()
    pick = operator_pages(recent_ids, setup.tenants + (["acme", "globex"] if setup.history
                                                       else []), random.Random(7))
    operators = [Operator(n, base_url, setup.operator, think, stop, pick, seed=n)
                 for n in range(count)]
    for operator in operators:
        operator.start()
        time.sleep(min(0.1, think / max(1, count)))   # sign-ins spread a little
    stop.wait(seconds)
    stop.set()
    for operator in operators:
        operator.join(timeout=60)
    merged: dict[str, list[float]] = {}
    statuses: dict[str, Counter] = {}
    for operator in operators:
        for label, values in operator.timings.items():
            merged.setdefault(label, []).extend(values)
        for label, counter in operator.statuses.items():
            statuses.setdefault(label, Counter()).update(counter)
    table = {}
    for label in PAGES + sorted(k for k in merged if k not in PAGES):
        if label not in merged:
            continue
        summary = latency_summary(merged[label], points=(50, 95, 99))
        bad = {str(code): n for code, n in statuses[label].items() if code != 200}
        table[label] = {**summary, "errors": bad}
    errors = [f"{o.name}: {o.error}" for o in operators if o.error]
    return table, errors


# -- phases ---------------------------------------------------------------------------------

def submit_phase(cluster, setup: Setup, sampler: BacklogSampler, args, recent_ids: deque,
                 seconds: float, rate: float,
                 during: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Submissions at ``rate`` for ``seconds`` (``during`` runs meanwhile), then the drain."""
    from benchmarks.procstats import CpuMeter

    meter = CpuMeter(cluster_pids(cluster, setup.url)).start()
    before = sampler.counts()
    t_start = time.monotonic() - sampler.t0
    submitter = OpenLoopSubmitter(cluster.base_url, setup.tokens, rate, seconds,
                                  args.senders, recent_ids).start()
    side = during() if during else None
    submitter.join()
    t_end = time.monotonic() - sampler.t0
    cpu = meter.stop()
    after_submit = sampler.counts()
    drain = sampler.wait_drained(timeout=max(60.0, seconds))
    after = sampler.counts()
    executed_during = after_submit["completed"] - before["completed"]
    executed_total = after["completed"] - before["completed"]
    window = t_end - t_start
    result = submitter.summary()
    samples = sampler.between(t_start, t_end + (drain or 0) + 1)
    result.update({
        "executed_rate_per_s": round(executed_during / window, 1) if window > 0 else None,
        "executed_total": executed_total,
        "failed_jobs": after["failed"] - before["failed"],
        "backlog": {"queued_max": max((s["queued"] for s in samples), default=0),
                    "queued_at_end": after_submit["queued"],
                    "processing_at_end": after_submit["processing"],
                    "drain_seconds": round(drain, 2) if drain is not None else None,
                    "series": [{k: s[k] for k in ("t", "queued", "processing", "completed")}
                               for s in samples]},
        "cpu_percent_of_one_core": cpu,
    })
    result["meets_target"] = (result.get("error_count", 1) == 0
                              and (result["latency_ms"]["p99"] or 1e9) <= API_P99_TARGET_MS)
    if side is not None:
        result["_side"] = side
    return result


def warm_up(cluster, setup: Setup, args, sampler: BacklogSampler) -> None:
    """A few seconds at a quarter of the rate: connections, imports, caches and runners warm."""
    submitter = OpenLoopSubmitter(cluster.base_url, setup.tokens, max(5.0, args.rate / 4),
                                  min(3.0, args.seconds), args.senders).start(delay=0)
    submitter.join()
    bad = submitter.summary().get("errors")
    if bad:
        log(f"warm-up errors: {bad}")
    sampler.wait_drained(timeout=60)
    # The generator's own garbage collector must not show as server latency: a full
    # collection walks every object this process holds (tens of ms, every thread stopped).
    gc.collect()
    gc.freeze()


def run(args) -> dict[str, Any]:
    started, load_before = time.monotonic(), load_average()
    workdir = Path(tempfile.mkdtemp(prefix="console-load-"))
    setup = prepare(args.database_url, workdir, args.tenants, args.history)
    log(f"database ready ({setup.kind}): tenants {', '.join(setup.tenants)}"
        + (f"; history {setup.history}" if setup.history else ""))
    cluster = start_cluster(setup, args.web_workers, args.workers, args.web_threads,
                            workdir / "logs")
    report: dict[str, Any] = {
        "database": setup.kind, "rate": args.rate, "seconds": args.seconds,
        "web_workers": args.web_workers, "workers": args.workers,
        "web_threads": args.web_threads or 8, "tenants": len(setup.tenants),
        "history_jobs": args.history, "senders": args.senders,
        "targets": {"api_p99_ms": API_P99_TARGET_MS, "page_p95_ms": PAGE_P95_TARGET_MS}}
    sampler = BacklogSampler(setup.url, setup.tenants).start()
    recent_ids: deque = deque(maxlen=200)
    try:
        log(f"cluster up at {cluster.base_url}: {args.web_workers} gunicorn workers + "
            f"{args.workers} worker processes; warming up")
        warm_up(cluster, setup, args, sampler)
        log(f"API: {args.rate:g} submissions/s for {args.seconds:g} s, open loop")
        report["api"] = submit_phase(cluster, setup, sampler, args, recent_ids, args.seconds,
                                     args.rate)
        _log_api(report["api"])
        if not report["api"]["meets_target"] and args.search_seconds:
            report["rate_search"] = search_rate(cluster, setup, sampler, args, recent_ids)
        if args.operators:
            seconds = args.operator_seconds or args.seconds
            log(f"operators: {args.operators} sessions for {seconds:g} s (think "
                f"{args.think:g} s) while the API takes {args.operator_rate:g}/s")
            api = submit_phase(
                cluster, setup, sampler, args, recent_ids, seconds, args.operator_rate,
                during=lambda: _operators_thread(cluster.base_url, setup, args, seconds,
                                                 recent_ids))
            pages, errors = api.pop("_side").result()
            report["operators"] = {
                "sessions": args.operators, "think_s": args.think, "seconds": seconds,
                "api_rate": args.operator_rate,
                "pages_ms": pages, "errors": errors,
                "over_target": {k: v["p95"] for k, v in pages.items()
                                if v["p95"] is not None and v["p95"] > PAGE_P95_TARGET_MS},
                "api_meanwhile": api}
            _log_pages(report["operators"])
    finally:
        sampler.stop()
        cluster.stop()
    report.update(run_info(setup.url if setup.kind == "postgresql" else None, load_before,
                           started))
    return report


def search_rate(cluster, setup, sampler, args, recent_ids) -> dict[str, Any]:
    """When ``--rate`` missed the p99 target: the highest rate that holds it, stepping down
    by a fifth for ``--search-seconds`` each (down to ``MIN_SEARCH_RATE``), with where the CPU
    went at each step."""
    steps = []
    rate = args.rate
    while (rate := round(rate * 0.8)) >= MIN_SEARCH_RATE:
        log(f"rate search: {rate}/s for {args.search_seconds:g} s")
        api = submit_phase(cluster, setup, sampler, args, recent_ids, args.search_seconds, rate)
        _log_api(api)
        steps.append({"rate": rate, "achieved_rate_per_s": api["achieved_rate_per_s"],
                      "latency_p99_ms": api["latency_ms"]["p99"],
                      "meets_target": api["meets_target"],
                      "cpu_percent_of_one_core": api["cpu_percent_of_one_core"]})
        if api["meets_target"]:
            break
    holding = next((step for step in steps if step["meets_target"]), None)
    return {"seconds_per_step": args.search_seconds, "steps": steps,
            "highest_holding_rate": holding["rate"] if holding else None,
            "cpu_percent_of_one_core_there": holding["cpu_percent_of_one_core"]
            if holding else None}


class _Future:
    def __init__(self):
        self._done = threading.Event()
        self._value: Any = None

    def set(self, value) -> None:
        self._value = value
        self._done.set()

    def result(self):
        self._done.wait()
        return self._value


def _operators_thread(base_url, setup, args, seconds, recent_ids) -> _Future:
    future = _Future()
    threading.Thread(target=lambda: future.set(run_operators(
        base_url, setup, args.operators, args.think, seconds, recent_ids)),
        name="operators", daemon=True).start()
    return future


# -- output ---------------------------------------------------------------------------------

def _log_api(api: dict[str, Any]) -> None:
    lat, gen = api["latency_ms"], api["generator"]
    log(f"  {api['requests']} requests, {api['error_count']} errors, achieved "
        f"{api['achieved_rate_per_s']}/s; latency p50 {lat['p50']} p95 {lat['p95']} "
        f"p99 {lat['p99']} max {lat['max']} ms; executed {api['executed_rate_per_s']}/s, "
        f"queued max {api['backlog']['queued_max']}, drained in "
        f"{api['backlog']['drain_seconds']} s; generator timer lag p99 "
        f"{gen['timer_lag_ms']['p99']} ms, busy slots {gen['slots_with_every_sender_busy']}; "
        f"CPU {api['cpu_percent_of_one_core']}")


def _log_pages(operators: dict[str, Any]) -> None:
    for label, t in operators["pages_ms"].items():
        log(f"  {label:38s} n {t['n']:5d}  p50 {t['p50']:7.1f}  p95 {t['p95']:7.1f}  "
            f"max {t['max']:7.1f} ms  {t['errors'] or ''}")
    if operators["errors"]:
        log(f"  operator errors: {operators['errors']}")


def text_table(report: dict[str, Any]) -> str:
    """The figures as people read them (stdout without --json)."""
    lines = [f"load on {report['database']}: {report['web_workers']} gunicorn workers × "
             f"{report['web_threads']} threads + {report['workers']} worker processes, "
             f"{report['tenants']} tenants"]

    def api_lines(title: str, api: dict[str, Any]) -> None:
        lat = api["latency_ms"]
        lines.append(f"{title}: {api['requests']} requests at {api['achieved_rate_per_s']}/s "
                     f"(target {api['target_rate_per_s']:g}/s), errors {api['error_count']}")
        lines.append(f"  latency from the due time: p50 {lat['p50']} ms, p95 {lat['p95']} ms, "
                     f"p99 {lat['p99']} ms, max {lat['max']} ms (target p99 ≤ "
                     f"{API_P99_TARGET_MS:g} ms: {'met' if api['meets_target'] else 'NOT met'})")
        lines.append(f"  executed {api['executed_rate_per_s']}/s; queued max "
                     f"{api['backlog']['queued_max']}, "
                     f"at the end {api['backlog']['queued_at_end']},"
                     f" drained in {api['backlog']['drain_seconds']} s")
        gen = api["generator"]
        lines.append(f"  generator: timer lag p99 {gen['timer_lag_ms']['p99']} ms, slots with "
                     f"every sender busy {gen['slots_with_every_sender_busy']}; CPU % of a core "
                     f"{api['cpu_percent_of_one_core']}")

    api_lines("API", report["api"])
    search = report.get("rate_search")
    if search:
        lines.append(f"rate search ({search['seconds_per_step']:g} s a step): "
                     + ", ".join(f"{step['rate']}/s p99 {step['latency_p99_ms']} ms"
                                 for step in search["steps"])
                     + f"; highest rate holding p99 ≤ {API_P99_TARGET_MS:g} ms: "
                     + (f"{search['highest_holding_rate']}/s, CPU % of a core "
                        f"{search['cpu_percent_of_one_core_there']}"
                        if search["highest_holding_rate"] else "none"))
    operators = report.get("operators")
    if operators:
        lines.append(f"operators: {operators['sessions']} sessions, think {operators['think_s']}"
                     f" s, {operators['seconds']:g} s, while the API takes "
                     f"{operators['api_rate']:g}/s")
        lines.append(f"  {'page':38s} {'n':>5s} {'p50':>8s} {'p95':>8s} {'max':>8s}")
        for label, t in operators["pages_ms"].items():
            flag = "  over" if t["p95"] > PAGE_P95_TARGET_MS else ""
            lines.append(f"  {label:38s} {t['n']:5d} {t['p50']:8.1f} {t['p95']:8.1f} "
                         f"{t['max']:8.1f}{flag}")
        api_lines("API meanwhile", operators["api_meanwhile"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="postgresql+psycopg://… (every table is dropped); default: a new "
                             "SQLite file")
    parser.add_argument("--rate", type=float, default=300.0, help="submissions per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the API phase")
    parser.add_argument("--operators", type=int, default=20,
                        help="signed-in sessions in phase 2 (0: no phase 2)")
    parser.add_argument("--operator-seconds", type=float, default=None,
                        help="length of phase 2 (default: --seconds)")
    parser.add_argument("--operator-rate", type=float, default=50.0,
                        help="API submissions per second during phase 2 (a steady production "
                             "load; --rate to put the operators beside the full API phase)")
    parser.add_argument("--think", type=float, default=2.0,
                        help="mean think time between an operator's pages, seconds")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--web-threads", type=int, default=None,
                        help="threads per gunicorn worker (default: gunicorn.conf.py's 8)")
    parser.add_argument("--workers", type=int, default=1,
                        help="`flask --app console worker` processes")
    parser.add_argument("--tenants", type=int, default=6, help="tier-4 tenants submitting")
    parser.add_argument("--history", type=int, default=20_000,
                        help="jobs of generated history for the pages (0: none)")
    parser.add_argument("--senders", type=int, default=32,
                        help="sender threads of the load generator")
    parser.add_argument("--search-seconds", type=float, default=20.0,
                        help="when --rate misses the p99 target, look for the highest rate "
                             "that holds it, this long a step (0: no search)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.operator_rate <= 0:
        parser.error("--rate, --seconds and --operator-rate must be positive")

    import logging
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(text_table(report))
    failed = report["api"]["error_count"] or (report.get("operators") or {}).get("errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
