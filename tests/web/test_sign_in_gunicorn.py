"""Brute force spread across two gunicorn worker processes on one database is throttled: the
count lives in the database, so no process can be asked again after another refused."""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import env_for_subprocess
from tests.support import gunicorn_server, wait_until

from .conftest import PASSWORDS

FREE = 4
ATTACKER, OTHER = "203.0.113.66", "198.51.100.9"


@pytest.fixture
def server(users, database_url, tmp_path):
    """gunicorn, 2 worker processes, behind one (pretend) proxy: X-Forwarded-For is the client."""
    env = env_for_subprocess(database_url, CONSOLE_JOBS_RUN_SCHEDULER="false",
                             CONSOLE_SIGN_IN_FREE_TRIES=str(FREE),
                             CONSOLE_SIGN_IN_FIRST_DELAY_SECONDS="300", CONSOLE_PROXY_FIX="1")
    with gunicorn_server(env, tmp_path, access_format="%(p)s %(m)s %(U)s %(s)s") as gunicorn:
        yield gunicorn.url, gunicorn.access


def try_sign_in(base: str, client_address: str, username: str, password: str) -> httpx.Response:
    """One try in a new browser over a new connection, so the workers take turns accepting."""
    headers = {"X-Forwarded-For": client_address, "Connection": "close"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as browser:
        page = browser.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return browser.post("/login", data={"username": username, "password": password,
                                            "csrf_token": token})


def answered_by(access: Path, status: int) -> set[int]:
    """The worker processes that answered a sign-in POST with ``status``."""
    lines = access.read_text().splitlines() if access.exists() else []
    return {int(m.group(1)) for m in map(re.compile(r"<(\d+)> POST /login (\d+)").fullmatch,
                                         lines) if m and int(m.group(2)) == status}


@pytest.mark.slow
def test_brute_force_across_two_worker_processes_is_throttled(server):
    base, access = server
    codes = [try_sign_in(base, ATTACKER, "ada", f"guess {n}").status_code for n in range(FREE)]
    assert codes == [401] * FREE
    right_password_refusals = []

    def both_workers_refused():
        response = try_sign_in(base, ATTACKER, "ada", PASSWORDS["ada"])
        right_password_refusals.append(response)
        assert response.status_code == 429, response.text      # the right password, too
        assert 290 <= int(response.headers["Retry-After"]) <= 300
        return len(answered_by(access, 429)) == 2

    # Every refusal is read from the database: each worker refuses, whichever saw the failures.
    wait_until(both_workers_refused, 60, "a 429 from each of the two workers", interval=0)
    assert "Try again in 5 minutes" in right_password_refusals[-1].text
    # Another user from another address signs in, on either worker.
    for _ in range(2):
        assert try_sign_in(base, OTHER, "vic", PASSWORDS["vic"]).status_code == 302
