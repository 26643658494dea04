"""Many writers on one SQLite file never make a user (or a runner) meet "database is locked".

gunicorn with 2 workers (each with its runner) and 2 ``flask worker`` processes share one file,
started from ``gunicorn.conf.py`` by ``benchmarks/cluster.py``, while threads of this test
write through every door at once: API submissions (single and batches, some with idempotency
keys), API retries and cancels, tenant limit changes (API), and an operator's console forms
(new jobs, retries, cancels, new tenants). Every answer must be a success or a refusal the
caller can act on (404/409/429), none a 5xx; no body and no process log may mention a locked
database or hold a traceback; and every job the API acknowledged exists.

If a lock wait ever did pass the busy timeout, the caller would get a 503 saying the database
is busy (test_sqlite_busy.py), never a 500.
"""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from benchmarks.cluster import Cluster
from tests.conftest import ON_POSTGRES
from tests.support import wait_until
from tests.web.conftest import PASSWORDS

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(ON_POSTGRES, reason="SQLite's write lock: runs in the SQLite "
                                                     "pass")]
LOAD_SECONDS = 8.0
TENANTS = ("acme", "globex", "initech")
FINISHED_OR_WAITING = ("completed", "failed", "cancelled", "pending")
ACCEPTABLE = {200, 201, 204, 302, 303, 404, 409, 429}


class Traffic:
    """Every answer the test's clients got, and the jobs the API said it stored."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.problems: list[str] = []
        self.acknowledged: set[str] = set()
        self.stop = threading.Event()

    def record(self, what: str, response: httpx.Response) -> httpx.Response:
        with self.lock:
            self.statuses[response.status_code] += 1
            body = response.text
            if response.status_code not in ACCEPTABLE or "database is locked" in body:
                self.problems.append(f"{what}: {response.status_code} {body[:300]}")
        return response

    def acknowledge(self, jobs) -> None:
        with self.lock:
            self.acknowledged.update(job["id"] for job in jobs)


def api_client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url + "/api/v1", timeout=60,
                        headers={"Authorization": f"Bearer {token}"})


def submit_jobs(base_url, token, traffic: Traffic, seed: int) -> None:
    """Single jobs, batches, failing jobs (to retry), delayed jobs (to cancel), duplicates."""
    with api_client(base_url, token) as api:
        n = 0
        while not traffic.stop.is_set():
            n += 1
            tenant = TENANTS[(seed + n) % len(TENANTS)]
            job = {"type": "immediate", "handler": "sleeps", "payload": {"ms": 2},
                   "tenant_id": tenant}
            if n % 10 == 0:
                response = traffic.record("batch", api.post("/jobs/batch", json={
                    "tenant_id": tenant, "jobs": [{"type": "immediate", "handler": "sleeps",
                                                   "payload": {"ms": 1}}] * 20}))
                if response.status_code == 201:
                    traffic.acknowledge(response.json()["jobs"])
                continue
            if n % 7 == 0:
                job.update(handler="always_fails", payload={}, max_retries=0)
            elif n % 5 == 0:
                job.update(delay_seconds=3600)
            elif n % 3 == 0:
                job["idempotency_key"] = f"key-{seed}-{n // 6}"   # every other one repeats
            response = traffic.record("queue", api.post("/jobs", json=job))
            if response.status_code == 201:
                traffic.acknowledge([response.json()])


def retry_and_cancel(base_url, token, traffic: Traffic) -> None:
    with api_client(base_url, token) as api:
        while not traffic.stop.is_set():
            for status, verb in (("failed", "retry"), ("pending", "cancel")):
                listing = traffic.record("list", api.get("/jobs", params={"status": status,
                                                                          "limit": 10}))
                for job in listing.json().get("jobs", []) if listing.status_code == 200 else []:
                    traffic.record(verb, api.post(f"/jobs/{job['id']}/{verb}"))
            time.sleep(0.05)


def change_limits(base_url, token, traffic: Traffic) -> None:
    with api_client(base_url, token) as api:
        n = 0
        while not traffic.stop.is_set():
            n += 1
            traffic.record("limits", api.put(f"/tenants/{TENANTS[n % len(TENANTS)]}/limits",
                                             json={"tier": "tier4", "limits": {
                                                 "max_concurrent_jobs": 4 + n % 5,
                                                 "max_queued_jobs": None}}))
            time.sleep(0.05)


def operate_console(base_url, traffic: Traffic) -> None:
    """An operator's forms: sign in, queue jobs, retry and cancel from the lists, add
    tenants."""
    with httpx.Client(base_url=base_url, timeout=60) as console:
        def token(path: str) -> str:
            page = console.get(path).text
            return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

        signed_in = traffic.record("sign-in", console.post("/login", data={
            "username": "ada", "password": PASSWORDS["ada"], "csrf_token": token("/login")}))
        assert signed_in.status_code == 302, signed_in.text[:500]
        csrf = token("/")
        n = 0
        while not traffic.stop.is_set():
            n += 1
            traffic.record("form: new job", console.post("/jobs/new/immediate", data={
                "csrf_token": csrf, "tenant_id": TENANTS[n % len(TENANTS)],
                "type": "immediate", "handler": "sleeps", "priority": "", "max_retries": "3",
                "payload": '{"ms": 2}', "idempotency_key": "", "metadata": ""}))
            for status, verb in (("failed", "retry"), ("pending", "cancel")):
                listing = console.get("/jobs", params={"status": status}).text
                for job_id in re.findall(r'href="/jobs/([0-9a-f-]{36})"', listing)[:3]:
                    traffic.record(f"form: {verb}", console.post(
                        f"/jobs/{job_id}/{verb}", data={"csrf_token": csrf}))
            if n % 10 == 0:
                traffic.record("form: new tenant", console.post("/tenants", data={
                    "csrf_token": csrf, "tenant_id": f"t{n}", "name": f"Tenant {n}",
                    "tier": "tier2"}))


def test_many_writers_on_one_sqlite_file_never_see_a_locked_database(
        service, make_tenant, users, api_token, database_url, tmp_path):
    for tenant in TENANTS:
        make_tenant(tenant, "tier4", maxQueuedJobs=None, maxDailyJobs=None)
    traffic = Traffic()
    settings = {"JOBS_WORKER_THREADS": 4, "JOBS_RETRY_BASE_SECONDS": 0.05,
                "ALERTS_ENABLED": False}
    with Cluster(database_url, web_workers=2, workers=2, settings=settings, web_threads=8,
                 worker_threads=4, log_dir=tmp_path / "logs") as cluster:
        url = cluster.base_url
        clients = [threading.Thread(target=submit_jobs, args=(url, api_token, traffic, seed))
                   for seed in range(4)]
        clients += [threading.Thread(target=retry_and_cancel, args=(url, api_token, traffic)),
                    threading.Thread(target=change_limits, args=(url, api_token, traffic)),
                    threading.Thread(target=operate_console, args=(url, traffic))]
        began = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(LOAD_SECONDS)
        traffic.stop.set()
        for client in clients:
            client.join(timeout=60)
        took = time.monotonic() - began
        wait_until(lambda: not service.count_jobs(statuses=["queued", "processing"]), 60,
                   "the runners to drain the queue", interval=0.2)
        logs = {path.name: path.read_text(errors="replace")
                for path in Path(tmp_path / "logs").glob("*.log")}

    requests = sum(traffic.statuses.values())
    print(f"{requests} requests in {took:.1f} s ({requests / took:.0f}/s), answers "
          f"{dict(traffic.statuses)}; {len(traffic.acknowledged)} jobs acknowledged, "
          f"{service.count_jobs()} stored, by status "
          f"{ {s: service.count_jobs(statuses=[s]) for s in FINISHED_OR_WAITING} }")
    assert all(not client.is_alive() for client in clients)
    assert not traffic.problems, "\n".join(traffic.problems[:20])
    assert requests >= 200, "too little traffic to say anything about contention"
    for name, text in logs.items():
        assert "database is locked" not in text, f"{name}:\n{text[-5000:]}"
        assert "Traceback" not in text, f"{name}:\n{text[-5000:]}"
    stored = {job.id for status in ("completed", "failed", "cancelled", "pending", "queued")
              for job in service.get_jobs_by_status(status, limit=10_000)}
    assert traffic.acknowledged <= stored
