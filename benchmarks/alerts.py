#!/usr/bin/env python
"""Alert evaluation at scale: how long one evaluation of every rule takes, as ONE JSON object.

    python benchmarks/alerts.py                                  # 200 tenants, SQLite
    python benchmarks/alerts.py --tenants 1000 --repeat 10
    python benchmarks/alerts.py --database-url postgresql+psycopg://user@host:port/db
    python benchmarks/alerts.py --reuse /work/bench/history-1m.sqlite3   # a copy of it

Progress goes to stderr, the JSON to stdout.

**The data.** ``--tenants`` tenants in all four tiers, each with ``--runs`` finished runs (one in
five failed, through the test handlers) and a few delayed and queued jobs; or, with ``--reuse``,
a copy of the analytics benchmark's history (1,000,000 jobs, 20 tenants: never written to).

**The rules.** The three default rules and one rule of every other kind, each for
every tenant (``each_tenant``) where the kind allows it: 10 rules, so one evaluation measures
every figure for every tenant. Thresholds are set so that some tenants fire.

**The timings.** The first evaluation opens the alerts (``first_ms``); then ``--repeat``
evaluations in a steady state (alerts refreshed, none opened): p50/p95 in ms (nearest rank).
An evaluation runs once a minute, on one runner at a time.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``console`` and ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.report import log, nearest_rank, run_info  # noqa: E402

TIERS = ("tier1", "tier2", "tier3", "tier4")
RULES = (  # name, kind, scope, threshold, extra
    ("Busy queue", "queue_backlog", "each_tenant", 2, {}),
    ("Old queue", "oldest_queued_job", "each_tenant", 60, {}),
    ("Tenant success rate", "success_rate", "each_tenant", 85, {"window_hours": 24}),
    ("Stuck jobs", "stuck_jobs", "each_tenant", 0, {}),
    ("Queue limit", "limit_usage", "each_tenant", 80, {"limit_name": "max_queued_jobs"}),
    ("Daily limit", "limit_usage", "each_tenant", 80, {"limit_name": "max_daily_jobs"}),
    ("always_fails failing", "handler_failure_rate", "each_tenant", 50,
     {"window_hours": 24, "handler": "always_fails"}),
)


def build_app(database_url: str | None, folder: Path, reuse: str | None):
    from benchmarks.cluster import TEST_HANDLERS
    from console import create_app

    if reuse:
        target = folder / "history.sqlite3"
        log(f"copying {reuse} …")
        shutil.copyfile(reuse, target)
        database_url = f"sqlite:///{target}"
    elif database_url is None:
        database_url = f"sqlite:///{folder / 'alerts.sqlite3'}"
    elif not reuse:
        from sqlalchemy import create_engine, text
        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    config = {"JOBS_RUN_SCHEDULER": False, "JOBS_HANDLERS": TEST_HANDLERS, "SECRET_KEY": "bench",
              "ALERTS_ENABLED": False, "SQLALCHEMY_DATABASE_URI": database_url}
    return create_app(config), database_url


def make_history(service, tenants: int, runs: int) -> None:
    from console.jobs import TenantConfig

    for n in range(tenants):
        tier = TIERS[n % 4]
        tenant_id = f"t{n:04d}"
        room = {"jobLimits": {"maxQueuedJobs": 2 * runs + 10}}   # the history fits at once
        service.tenants.set_tenant_config(TenantConfig.for_tier(tenant_id, f"Tenant {n}", tier,
                                                                room))
        kind = "notification" if tier == "tier1" else "immediate"
        failing = runs // 5 + (runs if n % 10 == 0 else 0)     # a tenth of tenants fail a lot
        specs = ([{"type": kind, "handler": "sleeps", "payload": {"ms": 0}, "max_retries": 0}]
                 * (runs - runs // 5)
                 + [{"type": kind, "handler": "always_fails", "max_retries": 0}] * failing)
        service.queue_batch_jobs(specs, tenant_id)
    log(f"{tenants} tenants queued their runs; running them …")
    service.run_until_idle(timeout=600, settle=0.5, threads=8)
    for n in range(tenants):     # then a backlog: a few queued and delayed jobs each
        kind = "notification" if n % 4 == 0 else "immediate"
        service.queue_batch_jobs(
            [{"type": kind, "handler": "sleeps", "payload": {}}] * (n % 4)
            + [{"type": kind, "handler": "sleeps", "payload": {},
                "delay": timedelta(hours=1)}] * 2, f"t{n:04d}")


def add_rules(service) -> int:
    from console.alerts.store import (
        RuleValues,
        check_rule,
        create_rule,
        ensure_default_rules,
    )

    ensure_default_rules(service.engine)
    tenants = [t.tenant_id for t in service.tenants.list_tenant_configs()]
    for name, kind, scope, threshold, extra in RULES:
        values = RuleValues(name=name, kind=kind, scope=scope, threshold=float(threshold),
                            **extra)
        create_rule(service.engine, check_rule(values, tenants, service.handlers.names()))
    return 3 + len(RULES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL to use (its public schema is dropped first)")
    parser.add_argument("--reuse", metavar="PATH", default=None,
                        help="a copy of this SQLite history instead of generated data")
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20, help="finished runs per tenant")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    started = time.monotonic()

    from console.alerts import evaluate_alert_rules

    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as folder:
        app, database_url = build_app(args.database_url, Path(folder), args.reuse)
        service = app.extensions["jobs"]
        if not args.reuse:
            make_history(service, args.tenants, args.runs)
        tenants = len(service.tenants.list_tenant_configs())
        rules = add_rules(service)
        log(f"{rules} rules over {tenants} tenants; evaluating …")
        first = time.perf_counter()
        opened = evaluate_alert_rules(service, app.config)
        first_ms = (time.perf_counter() - first) * 1000
        timings = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            outcome = evaluate_alert_rules(service, app.config)
            timings.append((time.perf_counter() - began) * 1000)
        service.engine.dispose()
    result = {"benchmark": "alerts", "database": "postgresql" if args.database_url else "sqlite",
              "data": f"copy of {args.reuse}" if args.reuse else
              f"{args.tenants} tenants, {args.runs} runs each",
              "tenants": tenants, "rules": rules, "alerts_opened": len(opened.fired),
              "firing": outcome.firing, "first_ms": round(first_ms, 1),
              "p50_ms": round(nearest_rank(timings, 50), 1),
              "p95_ms": round(nearest_rank(timings, 95), 1), "repeat": args.repeat,
              **run_info(database_url, started=started)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
