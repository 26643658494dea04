"""Signed-in test clients, one per role, for the console's screens."""
from __future__ import annotations

import re

import pytest
from werkzeug.security import generate_password_hash

from console.web.auth import views as auth_views
from console.web.auth.views import set_user

PASSWORDS = {"ada": "correct horse", "olga": "night shift lantern", "vic": "battery staple"}
ROLE_USERS = {"admin": "ada", "operator": "olga", "viewer": "vic"}


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a page's forms carry (every page has one in its sign-out form)."""
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, username: str, password: str):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_token(client)})


_HASHES: dict[str, str] = {}


def _hash_once(password: str) -> str:
    """The password's scrypt hash, computed once per test session: the three users are made
    for most tests here, and three hashes cost a third of a second each time. Signing in
    still checks the password against it for real."""
    if password not in _HASHES:
        _HASHES[password] = generate_password_hash(password)
    return _HASHES[password]


@pytest.fixture
def users(app, monkeypatch):
    with app.app_context(), monkeypatch.context() as patched:
        patched.setattr(auth_views, "generate_password_hash", _hash_once)
        set_user("ada", "admin", PASSWORDS["ada"])
        set_user("olga", "operator", PASSWORDS["olga"])
        set_user("vic", "viewer", PASSWORDS["vic"])


@pytest.fixture
def client_as(app, users):
    """``client_as("operator")``: a test client signed in with that role. Its ``.csrf`` is the
    session's CSRF token, for POSTs: ``client.post(url, data={"csrf_token": client.csrf, …})``
    or ``headers={"X-CSRFToken": client.csrf}``."""
    def make(role: str):
        client = app.test_client()
        username = ROLE_USERS[role]
        response = sign_in(client, username, PASSWORDS[username])
        assert response.status_code == 302, "sign-in failed"
        client.csrf = csrf_token(client, "/")
        return client
    return make
