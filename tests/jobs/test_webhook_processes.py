"""Tenants' event webhooks across worker processes, one of them SIGKILLed mid-run: every
event is stored once, delivered, and in order per job; a message sent twice only where a
killed process had sent it without recording it (the receiver dedups on its id)."""
from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from console.jobs import JobStatus
from tests.conftest import BASE_CONFIG
from tests.handlers.conftest import http_receiver  # noqa: F401  (a real HTTP server)
from tests.jobs.test_processes import LEASE_SECONDS
from tests.support import schema_differences, wait_until

THREADS = 4


@pytest.fixture
def app_config(database_url) -> dict:
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url,
            "JOBS_LEASE_SECONDS": float(LEASE_SECONDS)}


def test_migration_0018_matches_the_models(service):
    assert schema_differences(service.engine, {"webhook_subscriptions",
                                               "webhook_deliveries"}) == []


def running_records(service) -> int:
    return sum(1 for job in service.get_jobs_by_status("processing", "acme")
               if job.handler == "record")


def header(headers, name):
    return next(v for k, v in headers.items() if k.lower() == name.lower())


def test_a_killed_worker_loses_no_event_and_repeats_none_it_had_recorded(
        service, make_tenant, workers, http_receiver, tmp_path):  # noqa: F811
    make_tenant("acme", "tier4", maxQueuedJobs=None, maxDailyJobs=None, maxConcurrentJobs=None)
    service.subscribe_webhook("acme", http_receiver.url, ["job.completed", "job.retried"])
    lease = {"CONSOLE_JOBS_LEASE_SECONDS": str(LEASE_SECONDS)}
    doomed = workers.start("doomed", threads=THREADS, **lease)
    jobs = [service.queue_job("immediate", "record",
                              {"log": str(tmp_path / "jobs.log"), "sleep_ms": 300}, "acme",
                              max_retries=3, priority="low") for _ in range(40)]
    # Low: the deliveries (normal) go out as the jobs end, while the next jobs run.
    wait_until(lambda: len(http_receiver.requests) >= 4 and running_records(service) >= 2,
               timeout=20, interval=0.01,
               what="the doomed worker to deliver events and run jobs at once")
    doomed.proc.send_signal(signal.SIGKILL)
    assert doomed.proc.wait(timeout=10) == -signal.SIGKILL
    workers.start("a", threads=THREADS, **lease)
    workers.start("b", threads=THREADS, **lease)

    def all_delivered():
        lines = service.webhook_deliveries("acme", size=500).rows
        done = all(service.get_job_by_id(job.id).status is JobStatus.COMPLETED for job in jobs)
        return lines if done and all(line.status is JobStatus.COMPLETED
                                     for line in lines) else None
    lines = wait_until(all_delivered, timeout=60, interval=0.2,
                       what="every job and every delivery to complete")

    completed = Counter(line.subject_id for line in lines if line.event == "job.completed")
    assert completed == Counter({job.id: 1 for job in jobs})     # each job's end, once
    retried = [line for line in lines if line.event == "job.retried"]
    lost = {job.id for job in jobs
            if any(a["error_type"] == "WorkerLost" for a in service.get_job_attempts(job.id))}
    print(f"jobs retried after the kill: {len(lost)}")
    assert 1 <= len(lost) <= THREADS                              # the attempts it held
    assert sorted(line.subject_id for line in retried) == sorted(lost)

    received = [(header(h, "X-Console-Message-Id"), json.loads(raw))
                for _, h, raw, _ in http_receiver.requests]
    sent = Counter(message_id for message_id, _ in received)
    assert set(sent) == {line.id for line in lines}               # every event arrived
    repeats = sum(count - 1 for count in sent.values())
    assert repeats <= THREADS, sent.most_common(5)                # only what it had in flight
    first_seen = {}
    for position, (message_id, envelope) in enumerate(received):
        first_seen.setdefault(message_id, (position, envelope["data"]))
    for line in retried:                                          # in order per job
        retried_at = first_seen[line.id][0]
        completed_at = next(position for position, data in first_seen.values()
                            if data["event"] == "job.completed"
                            and data["job"]["id"] == line.subject_id)
        assert retried_at < completed_at
        assert first_seen[line.id][1]["job"]["error_type"] == "WorkerLost"
