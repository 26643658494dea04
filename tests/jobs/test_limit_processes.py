"""Tenant limits hold exactly when two processes queue for the same tenant at once, each with
several threads whose calls its queue writer commits together: no more jobs stored than the
limit allows, and every call refused beyond it told so."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from sqlalchemy import select

from console.jobs.models import daily_usage_table
from tests.conftest import env_for_subprocess

# One process: THREADS threads, CALLS calls each for the tenant argv[1], all starting at the
# time argv[2]; prints how many calls were stored and how many refused, by limit type.
QUEUER = textwrap.dedent("""
    import json, sys, threading, time
    from console import create_app
    from console.jobs import TenantLimitException

    THREADS, CALLS = 4, 10
    tenant, start_at = sys.argv[1], float(sys.argv[2])
    app = create_app({"JOBS_RUN_SCHEDULER": False})
    service = app.extensions["jobs"]
    outcomes, guard = {"stored": 0}, threading.Lock()

    def queue():
        for i in range(CALLS):
            try:
                service.queue_job("immediate", "sleeps", {"i": i}, tenant)
                outcome = "stored"
            except TenantLimitException as refusal:
                outcome = refusal.limit_type
            with guard:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

    threads = [threading.Thread(target=queue) for _ in range(THREADS)]
    time.sleep(max(0.0, start_at - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(outcomes))
""")
PER_PROCESS = 4 * 10


def queue_from_two_processes(database_url: str, tenant_id: str) -> list[dict[str, int]]:
    start_at = time.time() + 4   # both processes built their apps by then
    processes = [subprocess.Popen([sys.executable, "-c", QUEUER, tenant_id, str(start_at)],
                                  env=env_for_subprocess(database_url), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_max_queued_jobs_is_exact_across_processes(service, make_tenant, database_url):
    make_tenant("race", "tier4", maxQueuedJobs=50, maxDailyJobs=None)

    results = queue_from_two_processes(database_url, "race")

    assert sum(r["stored"] for r in results) == 50, results
    assert sum(r.get("max_queued_jobs", 0) for r in results) == 2 * PER_PROCESS - 50, results
    assert service.count_jobs("race") == 50


def test_max_daily_jobs_is_exact_across_processes(service, make_tenant, database_url):
    make_tenant("race", "tier4", maxQueuedJobs=None, maxDailyJobs=50)

    results = queue_from_two_processes(database_url, "race")

    assert sum(r["stored"] for r in results) == 50, results
    assert sum(r.get("max_daily_jobs", 0) for r in results) == 2 * PER_PROCESS - 50, results
    assert service.count_jobs("race") == 50
    with service.engine.connect() as conn:   # refused calls' increments rolled back
        assert conn.execute(select(daily_usage_table.c.jobs_accepted)).scalar_one() == 50
