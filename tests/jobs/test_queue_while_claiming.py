"""Queueing while a runner promotes and claims the same tenant's jobs never deadlocks.

On PostgreSQL a runner's cycle records results (rollup rows), promotes due jobs and claims them
in one transaction; claiming a row that transaction just updated makes PostgreSQL check the
job's tenant key (FOR KEY SHARE). The queue path locks the tenant row for its limit checks, then
writes the same rollup rows: with ``FOR UPDATE`` on the tenant the two waited on each other and
the queue call failed with "deadlock detected" (every run of the engine benchmark's delayed
phase). The queue path now takes ``FOR NO KEY UPDATE``, which key checks pass.
"""
from __future__ import annotations

import time
from datetime import timedelta

from console.jobs.runner import Runner
from tests.support import wait_until


def test_delayed_jobs_queued_while_the_runner_claims_all_run(service, make_tenant):
    make_tenant("acme", "tier4")
    runner = Runner(service).start()
    try:
        queued = []
        for i in range(60):   # due one after another while earlier ones are being claimed
            queued.append(service.queue_delayed_job("noop", {"i": i},
                                                    timedelta(milliseconds=300), "acme").id)
            time.sleep(0.01)
        wait_until(lambda: service.count_jobs(tenant_id="acme", statuses=["completed"])
                   == len(queued), 30, "the delayed jobs to run")
    finally:
        runner.stop(grace=1)
    assert {service.get_job_by_id(job_id).status.value for job_id in queued} == {"completed"}
