"""/metrics served by several gunicorn processes answers the same figures from each."""
from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import env_for_subprocess
from tests.support import gunicorn_server, wait_until


def totals(body: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name in ("console_job_attempts_total", "console_jobs_created_total",
                          "console_jobs"):
                found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


@pytest.mark.slow
def test_every_gunicorn_worker_reports_the_database_figures(service, make_tenant, database_url,
                                                            tmp_path):
    make_tenant()
    for _ in range(4):
        service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
    service.run_until_idle(settle=0.2)
    for _ in range(2):
        service.queue_job("immediate", "sleeps", {}, "acme")
    env = env_for_subprocess(database_url, CONSOLE_JOBS_RUN_SCHEDULER="false",
                             CONSOLE_METRICS_TOKEN="scraper-s3cret")
    # The access log names the worker process (%(p)s) that answered each scrape (%(U)s%(q)s).
    with gunicorn_server(env, tmp_path, workers=3,
                         access_format="%(p)s %(U)s?%(q)s %(s)s") as gunicorn:
        log, access = gunicorn.log, gunicorn.access
        bodies: dict[str, str] = {}

        def scrape_until_two_workers_answered():
            # A new connection each time, so the master's workers take turns accepting. The
            # first ones wait in the socket's backlog while the workers build their apps.
            tag = f"scrape={len(bodies)}"
            scrape = urllib.request.Request(f"{gunicorn.url}/metrics?{tag}",
                                            headers={"Authorization": "Bearer scraper-s3cret"})
            with urllib.request.urlopen(scrape, timeout=30) as r:
                bodies[tag] = r.read().decode()
            return len(bodies) >= 12 and len(set(answered_by().values())) > 1

        def answered_by() -> dict[str, int]:
            lines = access.read_text().splitlines() if access.exists() else []
            return {m.group(2): int(m.group(1)) for m in
                    map(re.compile(r"<(\d+)> /metrics\?(scrape=\d+) 200").fullmatch, lines) if m}

        wait_until(scrape_until_two_workers_answered, 60, "scrapes answered by two workers",
                   interval=0)
        workers = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)",
                                                  log.read_text())}
        assert len(workers) == 3, log.read_text()
        # Each scrape was answered by one of the workers of the gunicorn started here (a worker
        # logs a request once it has sent the answer, so the last line may come a bit later).
        wait_until(lambda: set(answered_by()) == set(bodies), 5, "every scrape in the access log")
        assert set(answered_by().values()) <= workers

        first = totals(next(iter(bodies.values())))
        assert first[("console_job_attempts_total",
                      (("handler", "sleeps"), ("type", "immediate")))] == 4
        assert first[("console_jobs", (("status", "queued"), ("tenant", "acme")))] == 2
        assert all(totals(body) == first for body in bodies.values())
