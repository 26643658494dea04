#!/usr/bin/env python
"""Exactly one live owner: many processes drain one queue and no job runs twice or is lost.

    # SQLite: gunicorn 2 + 1 worker, 10,000 jobs
    python benchmarks/exactly_once.py
    # PostgreSQL: gunicorn 4 + 2 workers, 50,000 jobs
    python benchmarks/exactly_once.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/scale
    python benchmarks/exactly_once.py --jobs 2000 --web-workers 2 --workers 1 --json out.json

The product runs as users run it (``benchmarks/cluster.py``: ``gunicorn wsgi:app -c
gunicorn.conf.py`` with ``--web-workers`` workers, each with its runner, plus ``--workers``
``flask --app console worker`` processes). The script queues ``--jobs`` RecordingHandler jobs
across ``--tenants`` tier4 tenants in batches while the runners drain them, waits until all
have ended, then checks three independent records (``benchmarks/workload.py``): every job
completed; the handler's O_APPEND log has exactly one line per job (no job executed twice, none
never executed); the attempts table has exactly one successful attempt per job and nothing else.

Figures: wall time (first job created → last attempt finished, database clocks), jobs per
second, the queue wait before each job's attempt (p50/p95/p99/max), and each process's share of
the executions. Readable lines go to stdout, progress to stderr; ``--json PATH`` writes the
figures and checks as JSON (``run_all.py`` reads it). Exit status 1 when a check fails.

A PostgreSQL database given with ``--database-url`` is emptied first: give it one of its own.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``console`` and ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import workload  # noqa: E402
from benchmarks.cluster import Cluster  # noqa: E402
from benchmarks.report import load_average, log, run_info  # noqa: E402

DEFAULTS = {"postgresql": {"jobs": 50_000, "web_workers": 4, "workers": 2},
            "sqlite": {"jobs": 10_000, "web_workers": 2, "workers": 1}}


def verify_exactly_once(evidence: workload.Evidence, job_ids: list[str]) -> list[str]:
    """Every problem found, in words (an empty list: each job ran exactly once, none lost)."""
    problems = []
    wanted = set(job_ids)
    missing = wanted - set(evidence.jobs)
    if missing:
        problems.append(f"{len(missing)} queued jobs are not in the jobs table, e.g. "
                        f"{sorted(missing)[:3]}")
    statuses = Counter(evidence.jobs[i].status for i in wanted if i in evidence.jobs)
    if statuses != Counter({"completed": len(wanted)}):
        problems.append(f"not every job completed: {dict(statuses)}")
    held = [i for i in wanted if i in evidence.jobs and evidence.jobs[i].lease_owner]
    if held:
        problems.append(f"{len(held)} jobs still carry a lease owner, e.g. {held[:3]}")

    executions = Counter(job_id for job_id, _ in evidence.executions)
    twice = {i: n for i, n in executions.items() if n > 1}
    if twice:
        problems.append(f"{len(twice)} jobs executed more than once (handler log), e.g. "
                        f"{dict(list(twice.items())[:3])}")
    never = wanted - set(executions)
    if never:
        problems.append(f"{len(never)} jobs never executed (handler log), e.g. "
                        f"{sorted(never)[:3]}")
    strangers = set(executions) - wanted
    if strangers:
        problems.append(f"{len(strangers)} executions of jobs nobody queued here")

    attempts = evidence.attempts_by_job()
    wrong = {i: [(a.success, a.error_type) for a in attempts.get(i, [])] for i in wanted
             if [a.success for a in attempts.get(i, [])] != [True]}
    if wrong:
        problems.append(f"{len(wrong)} jobs without exactly one successful attempt, e.g. "
                        f"{dict(list(wrong.items())[:3])}")
    return problems


def run(database_url: str | None, *, jobs: int, web_workers: int, workers: int,
        tenants: int = 4, threads: int | None = None, batch: int = 1000,
        workdir: Path, settle: float = 1.0, timeout: float | None = None) -> dict[str, Any]:
    """Queue and drain ``jobs`` recording jobs on a fresh cluster; returns figures and checks."""
    url = workload.empty_database(database_url, workdir)
    app = workload.build_app(url)
    service = app.extensions["jobs"]
    tenant_ids = workload.make_tenants(service, tenants)
    executions_log = workdir / "executions.log"
    executions_log.unlink(missing_ok=True)
    timeout = timeout or max(120.0, jobs / 20.0)
    log(f"{jobs} jobs on {workload.is_postgres(url) and 'PostgreSQL' or 'SQLite'}: gunicorn "
        f"{web_workers} workers + {workers} worker processes")
    try:
        with Cluster(url, web_workers=web_workers, workers=workers, log_dir=workdir / "logs",
                     settings={"JOBS_WORKER_THREADS": threads} if threads else None) as cluster:
            processes = cluster.runners()
            kinds = {p.pid: p.kind for p in processes}
            began = time.monotonic()
            job_ids = workload.queue_in_batches(service, tenant_ids, jobs,
                                                workload.recording_spec(executions_log),
                                                batch=batch)
            queued_s = time.monotonic() - began
            log(f"queued {len(job_ids)} jobs in {queued_s:.1f} s")
            counts = workload.wait_until_terminal(service.engine, len(job_ids), timeout,
                                                  tenant_ids)
            observed_s = time.monotonic() - began
            # The runners keep going: give a late duplicate the chance to show itself.
            time.sleep(settle)
        evidence = workload.read_evidence(service.engine, executions_log)
    finally:
        service.engine.dispose()
    problems = verify_exactly_once(evidence, job_ids)
    figures = workload.throughput(evidence, job_ids)
    return {
        "database": "postgresql" if workload.is_postgres(url) else "sqlite",
        "jobs": jobs, "web_workers": web_workers, "workers": workers, "tenants": tenants,
        "threads_per_process": threads or 8,
        "processes": [{"kind": p.kind, "pid": p.pid, "runner": p.runner_id} for p in processes],
        "queue_s": round(queued_s, 2), "observed_wall_s": round(observed_s, 2), **figures,
        "statuses": dict(counts), "executions": len(evidence.executions),
        "executions_per_process": workload.executions_per_process(evidence, kinds, job_ids),
        "ok": not problems, "problems": problems,
    }


def print_figures(result: dict[str, Any]) -> None:
    wait = result["queue_wait_s"]
    print(f"exactly once on {result['database']}: {result['jobs']} jobs, gunicorn "
          f"{result['web_workers']} workers + {result['workers']} worker processes")
    print(f"  wall {result['wall_s']} s, {result['jobs_per_s']} jobs/s "
          f"(queueing took {result['queue_s']} s)")
    print(f"  queue wait p50 {wait['p50']} s, p99 {wait['p99']} s, max {wait['max']} s")
    for share in result["executions_per_process"]:
        print(f"  {share['kind']:>6} pid {share['pid']}: {share['executions']} executions "
              f"({share['share']:.0%})")
    print("  OK: every job completed, executed exactly once" if result["ok"]
          else "  FAILED:\n    " + "\n    ".join(result["problems"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (emptied first) or sqlite:///… "
                                               "(default: a new SQLite file)")
    parser.add_argument("--jobs", type=int, help="jobs to run (default 50,000 on PostgreSQL, "
                                                 "10,000 on SQLite)")
    parser.add_argument("--web-workers", type=int, help="gunicorn workers (default 4 / 2)")
    parser.add_argument("--workers", type=int, help="flask worker processes (default 2 / 1)")
    parser.add_argument("--threads", type=int, help="JOBS_WORKER_THREADS per process (8)")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000, help="jobs per queue_batch_jobs call")
    parser.add_argument("--workdir", type=Path, help="where the SQLite file, the handler log "
                                                     "and the process logs go (default: temp)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)

    sizes = workload.sizes_from(args, DEFAULTS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="exactly-once-"))
    load_before, started = load_average(), time.monotonic()
    result = run(args.database_url, threads=args.threads, tenants=args.tenants,
                 batch=args.batch, workdir=workdir, **sizes)
    result.update(run_info(args.database_url, load_before, started), workdir=str(workdir))
    print_figures(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
