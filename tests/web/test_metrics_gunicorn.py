"""/metrics served by several gunicorn processes answers the same figures from each."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import env_for_subprocess

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    port = free_port()
    env = env_for_subprocess(database_url, CONSOLE_JOBS_RUN_SCHEDULER="false")
    log = open(tmp_path / "gunicorn.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "3", "-k", "gthread", "--threads", "2",
         "-b", f"127.0.0.1:{port}", "--no-control-socket", "wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        bodies = []
        deadline = time.monotonic() + 30
        while len(bodies) < 12:
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            try:
                # A new connection each time, so the master hands scrapes to different workers.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    bodies.append(r.read().decode())
            except OSError:
                time.sleep(0.2)
        first = totals(bodies[0])
        assert first[("console_job_attempts_total",
                      (("handler", "sleeps"), ("type", "immediate")))] == 4
        assert first[("console_jobs", (("status", "queued"), ("tenant", "acme")))] == 2
        assert all(totals(body) == first for body in bodies)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
