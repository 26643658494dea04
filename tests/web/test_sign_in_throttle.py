"""Sign-in throttling: per username and per client address, free failed tries, then a 429
with Retry-After that checks no password (not even the right one), doubling delays; a success
forgets the username's failures; X-Forwarded-For counts only with PROXY_FIX."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from console.extensions import db
from console.web.auth.throttle import ThrottlePolicy, record_failure
from console.web.models import SignInThrottle
from tests.conftest import BASE_CONFIG

from .conftest import PASSWORDS, csrf_token

UTC = timezone.utc
FREE, FIRST, MAX = 3, 60.0, 240.0


@pytest.fixture
def app_config(database_url):
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "SIGN_IN_FREE_TRIES": FREE,
            "SIGN_IN_FIRST_DELAY_SECONDS": FIRST, "SIGN_IN_MAX_DELAY_SECONDS": MAX}


def browser(app, address: str = "203.0.113.1", **headers):
    client = app.test_client()
    client.environ_base.update(REMOTE_ADDR=address)
    client.headers = headers
    return client


def try_sign_in(client, username: str, password: str):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_token(client)},
                       headers=client.headers)


def fail(client, username: str = "ada", times: int = 1) -> list[int]:
    return [try_sign_in(client, username, "not the password").status_code
            for _ in range(times)]


def time_passes(app, seconds: float) -> None:
    """Move every throttle row ``seconds`` into the past (as if that long went by)."""
    past = timedelta(seconds=seconds)
    with app.app_context():
        for row in db.session.scalars(select(SignInThrottle)):
            row.last_failure_at -= past
            row.blocked_until = row.blocked_until and row.blocked_until - past
        db.session.commit()


@pytest.fixture
def hashes(monkeypatch):
    """How many passwords the sign-in has checked (scrypt runs)."""
    import console.web.auth.views as auth

    calls = []
    real = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda *a: calls.append(1) or real(*a))
    return calls


def test_free_tries_then_429_with_retry_after_even_for_the_right_password(app, users, hashes):
    client = browser(app)
    assert fail(client, times=FREE) == [401] * FREE
    assert len(hashes) == FREE
    response = try_sign_in(client, "ada", PASSWORDS["ada"])
    assert response.status_code == 429
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    text = response.get_data(as_text=True)
    assert "Too many failed sign-ins" in text and "Try again in" in text and "UTC" in text
    assert len(hashes) == FREE                         # the throttled try computed no hash
    assert client.get("/").status_code == 302          # and did not sign in


def test_the_username_is_throttled_from_any_address_and_the_address_for_any_username(
        app, users):
    fail(browser(app, "203.0.113.1"), "ada", FREE)
    assert try_sign_in(browser(app, "198.51.100.9"), "ada",
                       PASSWORDS["ada"]).status_code == 429
    assert try_sign_in(browser(app, "203.0.113.1"), "vic",
                       PASSWORDS["vic"]).status_code == 429


def test_a_different_user_from_another_address_is_unaffected(app, users):
    fail(browser(app, "203.0.113.1"), "ada", FREE + 2)
    assert try_sign_in(browser(app, "198.51.100.9"), "vic", PASSWORDS["vic"]).status_code == 302


def test_unknown_usernames_are_throttled_like_known_ones(app, users):
    client = browser(app)
    assert fail(client, "nobody", FREE) == [401] * FREE
    assert try_sign_in(browser(app, "198.51.100.9"), "nobody", "x").status_code == 429


def test_the_delay_doubles_after_each_failure_past_the_free_ones_up_to_the_maximum(app, users):
    client = browser(app)
    fail(client, times=FREE)
    waits = []
    for _ in range(4):
        time_passes(app, MAX + 1)                       # the block is over: one more try
        assert fail(client) == [401]
        waits.append(int(try_sign_in(client, "ada", "x").headers["Retry-After"]))
    assert [round(w, -1) for w in waits] == [120, 240, 240, 240]


def test_a_success_forgets_the_usernames_failures_but_not_the_addresss(app, users):
    office = browser(app, "203.0.113.1")
    fail(office, times=FREE - 1)
    assert try_sign_in(office, "ada", PASSWORDS["ada"]).status_code == 302
    # ada starts from zero: FREE - 1 more failures elsewhere do not block her …
    assert fail(browser(app, "198.51.100.9"), times=FREE - 1) == [401] * (FREE - 1)
    assert try_sign_in(browser(app, "192.0.2.4"), "ada", PASSWORDS["ada"]).status_code == 302
    # … while the office's address keeps its count: one more failure there blocks it
    assert fail(browser(app, "203.0.113.1"), "vic") == [401]
    assert try_sign_in(browser(app, "203.0.113.1"), "vic", PASSWORDS["vic"]).status_code == 429


def test_the_block_ends_after_the_delay(app, users):
    client = browser(app)
    fail(client, times=FREE)
    assert try_sign_in(client, "ada", PASSWORDS["ada"]).status_code == 429
    time_passes(app, FIRST + 1)
    assert try_sign_in(client, "ada", PASSWORDS["ada"]).status_code == 302


def test_old_rows_are_pruned_when_the_next_failure_is_recorded(app):
    policy = ThrottlePolicy.from_config(app.config)
    now = datetime.now(UTC)
    with app.app_context():
        record_failure(db.engine, ("user:old", "addr:192.0.2.1"), now - timedelta(hours=2),
                       policy)
        record_failure(db.engine, ("user:new", "addr:192.0.2.2"), now, policy)
        keys = set(db.session.scalars(select(SignInThrottle.key)))
    assert keys == {"user:new", "addr:192.0.2.2"}


def test_delays_follow_the_settings():
    policy = ThrottlePolicy(free_tries=5, first_delay=30, max_delay=900, forget_after=3600)
    assert [policy.delay_after(n) for n in range(1, 13)] == [
        0, 0, 0, 0, 30, 60, 120, 240, 480, 900, 900, 900]


class TestBehindAProxy:
    @pytest.fixture
    def app_config(self, database_url):
        return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url,
                "SIGN_IN_FREE_TRIES": FREE, "SIGN_IN_FIRST_DELAY_SECONDS": FIRST,
                "PROXY_FIX": 1}

    def test_the_client_address_comes_from_x_forwarded_for(self, app, users):
        proxy = "10.0.0.5"
        attacker = browser(app, proxy, **{"X-Forwarded-For": "203.0.113.66"})
        fail(attacker, "nobody", FREE)
        assert try_sign_in(attacker, "vic", PASSWORDS["vic"]).status_code == 429
        # another client behind the same proxy is another address
        neighbour = browser(app, proxy, **{"X-Forwarded-For": "198.51.100.9"})
        assert try_sign_in(neighbour, "vic", PASSWORDS["vic"]).status_code == 302


def test_without_proxy_fix_x_forwarded_for_is_ignored(app, users):
    """A client cannot pose as many addresses by inventing the header."""
    for n in range(FREE):
        fail(browser(app, "203.0.113.66", **{"X-Forwarded-For": f"198.51.100.{n}"}),
             f"guess{n}")
    spoofing = browser(app, "203.0.113.66", **{"X-Forwarded-For": "192.0.2.200"})
    assert try_sign_in(spoofing, "vic", PASSWORDS["vic"]).status_code == 429
