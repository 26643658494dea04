"""Exactly one live owner, as users deploy it: gunicorn workers (each with its runner) and
``flask worker`` processes drain one queue; no job runs twice and none is lost.

CI-sized run of ``benchmarks/exactly_once.py`` (same code: the cluster, the workload and the
checks); the full sizes (10,000 jobs on SQLite, 50,000 on PostgreSQL) run from the script.
"""
from __future__ import annotations

import pytest

from benchmarks import exactly_once
from tests.conftest import ON_POSTGRES

# PostgreSQL: the shape (gunicorn 4 + 2 workers) scaled down to gunicorn 2 + 2.
WEB_WORKERS, WORKERS = (2, 2) if ON_POSTGRES else (2, 1)


@pytest.mark.slow
def test_gunicorn_and_worker_processes_run_each_job_exactly_once(database_url, tmp_path):
    result = exactly_once.run(database_url, jobs=3000, web_workers=WEB_WORKERS,
                              workers=WORKERS, tenants=3, workdir=tmp_path, timeout=120)
    exactly_once.print_figures(result)   # shown when the test fails

    assert result["problems"] == []
    assert result["statuses"] == {"completed": 3000}
    assert result["executions"] == 3000
    # Both kinds of process took part: the web workers' runners and the worker processes.
    kinds = {share["kind"] for share in result["executions_per_process"]}
    assert kinds == {"web", "worker"}, result["executions_per_process"]
