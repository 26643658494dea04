#!/usr/bin/env python
"""Console pages at scale: every page and fragment's server time over a generated history.

    python benchmarks/console_pages.py                                # 1,000,000 jobs, SQLite
    python benchmarks/console_pages.py --jobs 20000 --repeat 5        # a quick run
    python benchmarks/console_pages.py --reuse /tmp/history.sqlite3   # a file from
                                      # `benchmarks/analytics.py --keep …` (no generation)
    python benchmarks/console_pages.py --database-url postgresql+psycopg://… [--keep-data]

The history is benchmarks/analytics.py's (20 tenants, 8 handlers, 30 days, ~5 % failed, a few
thousand live jobs). A signed-in admin requests each URL through Flask's test client — server
time: routing, queries, templates, no network — once untimed, then ``--repeat`` times, and the
p50/p95 (ms, nearest rank) are printed as a table on stderr and ONE JSON object on stdout.

The URLs are every GET route of the app (its route table, so a new screen is measured without
editing this file) with real ids filled in, plus the variants that do different work: filters,
text search, the next page, htmx fragments (``HX-Request``). The event stream is left out: it
is a connection, not a page. The target is ≤ 200 ms at p95 for every URL.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.analytics import (  # noqa: E402
    BUSY_HANDLER,
    BUSY_TENANT,
    TARGET_MS,
    History,
    _generated_now,
    row_counts,
)
from benchmarks.report import load_average, log, nearest_rank, run_info  # noqa: E402

NOT_PAGES = {"static", "assets.plotly_js", "stream.events", "monitoring.healthz",
             "monitoring.metrics", "auth.login"}
HTMX = {"HX-Request": "true"}


def sample_values(engine) -> dict[str, str]:
    """Real ids for the routes' arguments: the newest failed job, the busiest tenant…"""
    from sqlalchemy import select

    from console.jobs.models import jobs_table
    j = jobs_table.c
    with engine.connect() as conn:
        failed = conn.execute(select(j.id).where(j.status == "failed")
                              .order_by(j.id.desc()).limit(1)).scalar()
        recurring = conn.execute(select(j.id).where(j.cron_schedule.is_not(None))
                                 .order_by(j.id.desc()).limit(1)).scalar()
    return {"job_id": failed, "recurring_job_id": recurring, "tenant_id": BUSY_TENANT,
            "name": BUSY_HANDLER, "handler": BUSY_HANDLER, "kind": "recurring", "user_id": "1"}


def urls_to_time(app, values: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """(label, url, headers) for every GET page and fragment, and the variants that matter."""
    urls = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if ("GET" not in rule.methods or rule.endpoint in NOT_PAGES
                or rule.rule.startswith("/api/")):   # the JSON API: not pages, token-only
            continue
        if any(name not in values for name in rule.arguments):
            log(f"  skipped {rule.rule}: no sample value for {sorted(rule.arguments)}")
            continue
        url = rule.build({name: values[name] for name in rule.arguments})[1]
        urls.append((f"GET {rule.rule}", url, {}))
    tenant, handler = values["tenant_id"], values["handler"]
    urls += [
        ("jobs: failed", "/jobs?status=failed", HTMX),
        ("jobs: one tenant", f"/jobs?tenant={tenant}", HTMX),
        ("jobs: tenant + handler + priority", f"/jobs?tenant={tenant}&handler={handler}"
                                              "&priority=high", HTMX),
        ("jobs: created in the last day", "/jobs?created_from=" + _day_ago(), HTMX),
        ("jobs: text in payload", "/jobs?q=no-such-text-anywhere", HTMX),
        ("jobs: text in payload, tenant", f"/jobs?q=example&tenant={tenant}", HTMX),
        ("tenant page: 31 days (the longest range)", f"/tenants/{tenant}?start="
         + _day_ago(30), {}),
        ("tenant charts: 31 days", f"/tenants/{tenant}/charts?start=" + _day_ago(30), HTMX),
        ("handlers: 7 days (rows load one by one)", "/handlers?window=7d", {}),
        ("handler row: 7 days", f"/handlers/{handler}/row?window=7d", HTMX),
        ("handler page: 7 days", f"/handlers/{handler}?window=7d", {}),
        ("handler charts: 7 days", f"/handlers/{handler}/charts?window=7d", HTMX),
        ("new job: notification form", "/jobs/new/notification", HTMX),
        ("new job: cron preview", "/jobs/new/cron-preview?cron_schedule=0+9+*+*+1-5"
                                  "&timezone=America/New_York", HTMX),
        ("new job: tenant usage", f"/jobs/new/tenant-usage?tenant_id={tenant}", HTMX),
    ]
    if values["recurring_job_id"]:
        urls.append(("recurring job page", f"/jobs/{values['recurring_job_id']}", {}))
    return urls


def _day_ago(days: int = 1) -> str:
    from datetime import datetime, timezone
    return (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%d")


def add_next_pages(client, urls):
    """The second page of the jobs table: the cursor its first page links to."""
    page = client.get("/jobs").get_data(as_text=True)
    cursor = re.search(r'href="(/jobs\?[^"]*(?:cursor|before|after)=[^"]+)"', page)
    if cursor:
        urls.append(("jobs: next page", cursor.group(1).replace("&amp;", "&"), HTMX))
    return urls


def sign_in(app):
    from console.web.auth.views import set_user
    with app.app_context():
        set_user("bench", "admin", "benchmark password")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "bench", "password": "benchmark password",
                                           "csrf_token": token})
    assert response.status_code == 302, "benchmark user could not sign in"
    return client


def time_urls(client, urls, repeat: int) -> dict[str, Any]:
    timings = {}
    for label, url, headers in urls:
        t = time.perf_counter()
        response = client.get(url, headers=headers)
        first = (time.perf_counter() - t) * 1000
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise SystemExit(f"{label}: {url} answered {response.status_code}")
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.get(url, headers=headers)
            samples.append((time.perf_counter() - t) * 1000)
        timings[label] = {"url": url, "htmx": bool(headers), "status": response.status_code,
                          "bytes": len(response.data),
                          "p50": round(nearest_rank(samples, 50), 2),
                          "p95": round(nearest_rank(samples, 95), 2),
                          "max": round(max(samples), 2), "first_ms": round(first, 2)}
        log(f"  {label:45s} {response.status_code}  p50 {timings[label]['p50']:8.2f} ms  "
            f"p95 {timings[label]['p95']:8.2f} ms  (first {first:.1f} ms)")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="postgresql+psycopg://… (every table is dropped and a history "
                             "generated, unless --keep-data); default: an SQLite file")
    parser.add_argument("--keep-data", action="store_true",
                        help="with --database-url: time the history already there (from "
                             "benchmarks/analytics.py) instead of generating one")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reuse", metavar="PATH", default=None,
                        help="an SQLite file from benchmarks/analytics.py --keep (not modified "
                             "but for the benchmark's user)")
    args = parser.parse_args(argv)
    if args.database_url and args.reuse:
        parser.error("--reuse is for SQLite files; with --database-url use --keep-data")
    if args.keep_data and not args.database_url:
        parser.error("--keep-data needs --database-url (for an SQLite file use --reuse)")
    started, load_before = time.monotonic(), load_average()

    from benchmarks.analytics import drop_tables
    from console import create_app
    workdir = Path(tempfile.mkdtemp(prefix="console-pages-bench-"))
    try:
        reuse = bool(args.reuse or args.keep_data)
        if args.database_url:
            url, kind = args.database_url, "postgresql"
            if not args.keep_data:
                drop_tables(url)
        else:
            path = Path(args.reuse).resolve() if args.reuse else workdir / "history.sqlite3"
            if args.reuse and not path.exists():
                parser.error(f"--reuse: {path} does not exist")
            url, kind = f"sqlite:///{path}", "sqlite"
        app = create_app({"SQLALCHEMY_DATABASE_URI": url,
                          "JOBS_RUN_SCHEDULER": False, "SECRET_KEY": "bench"})
        service = app.extensions["jobs"]
        generation_seconds = None
        if reuse:
            generated = _generated_now(service.engine)
            log(f"reusing the history in {url.rsplit('@', 1)[-1]} (generated around "
                f"{generated:%Y-%m-%d %H:%M} UTC: 24-hour figures cover what has happened since)")
        else:
            generation_seconds = History(service.engine, service.tenants, args.jobs, args.days,
                                         10_000, args.seed).generate()["seconds"]
            service.engine.dispose()
        if kind == "sqlite":
            with service.engine.connect() as conn:
                conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = row_counts(service.engine)
        client = sign_in(app)
        urls = add_next_pages(client, urls_to_time(app, sample_values(service.engine)))
        log(f"timing {len(urls)} pages and fragments {args.repeat} times each")
        timings = time_urls(client, urls, args.repeat)
        service.engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    over = {label: t["p95"] for label, t in timings.items() if t["p95"] > TARGET_MS}
    print(json.dumps({
        "database": kind, "rows": counts, "repeat": args.repeat, "target_ms": TARGET_MS,
        "generation_seconds": generation_seconds,   # None: the history was reused
        "pages_ms": timings, "over_target": over,
        **run_info(args.database_url, load_before, started),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
