"""Users screen (admins): add users, change roles, reset passwords, disable and enable; never
leave the console without an active admin."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from console.extensions import db
from console.web.auth.views import set_user
from console.web.models import User

from .conftest import PASSWORDS, sign_in


def user(app, username: str) -> User | None:
    with app.app_context():
        found = db.session.scalar(select(User).where(User.username == username))
        if found is not None:
            db.session.expunge(found)
        return found


def user_id(app, username: str) -> int:
    return user(app, username).id


def error_on(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}-error"[^>]*>([^<]+)<', page)
    return match.group(1) if match else ""


def test_every_user_route_needs_sign_in(app, users):
    client = app.test_client()
    response = client.get("/users")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_manage_users(app, client_as, role):
    client = client_as(role)
    assert client.get("/users").status_code == 403
    vic = user_id(app, "vic")
    for url, data in (("/users", {"username": "eve", "role": "admin", "password": "x" * 12}),
                      (f"/users/{vic}/role", {"role": "admin"}),
                      (f"/users/{vic}/password", {"password": "y" * 12}),
                      (f"/users/{vic}/active", {"active": "0"})):
        assert client.post(url, data={"csrf_token": client.csrf, **data}).status_code == 403, url
    assert user(app, "eve") is None
    assert user(app, "vic").role == "viewer" and user(app, "vic").active
    assert sign_in(app.test_client(), "vic", PASSWORDS["vic"]).status_code == 302


def test_posts_without_csrf_token_are_refused(app, client_as):
    admin = client_as("admin")
    vic = user_id(app, "vic")
    for url, data in (("/users", {"username": "eve", "role": "admin", "password": "x" * 12}),
                      (f"/users/{vic}/role", {"role": "admin"}),
                      (f"/users/{vic}/password", {"password": "y" * 12}),
                      (f"/users/{vic}/active", {"active": "0"})):
        assert admin.post(url, data=data).status_code == 400, url
    assert user(app, "eve") is None and user(app, "vic").role == "viewer"


def test_list_shows_users_without_passwords(app, client_as):
    admin = client_as("admin")
    text = admin.get("/users").get_data(as_text=True)
    for username in ("ada", "olga", "vic"):
        assert f'<th scope="row">{username}' in text
    assert "ada <small>(you)</small>" in text
    assert "never" in text                            # vic has not signed in
    assert "scrypt:" not in text
    for password in PASSWORDS.values():
        assert password not in text


def test_unknown_user_is_404(client_as):
    admin = client_as("admin")
    assert admin.post("/users/999/role", data={"csrf_token": admin.csrf,
                                               "role": "viewer"}).status_code == 404


def test_admin_adds_a_user_who_can_sign_in(app, client_as):
    admin = client_as("admin")
    response = admin.post("/users", data={"csrf_token": admin.csrf, "username": "eve",
                                          "role": "operator", "password": "long enough words"})
    assert response.status_code == 303
    assert "User eve added as operator" in admin.get("/users").get_data(as_text=True)
    assert user(app, "eve").role == "operator"
    assert sign_in(app.test_client(), "eve", "long enough words").status_code == 302


@pytest.mark.parametrize("data, field, message", [
    ({"username": "vic"}, "username", "already exists"),
    ({"username": ""}, "username", "Give the user a name"),
    ({"username": "two words"}, "username", "no spaces"),
    ({"password": "short"}, "password", "Use at least 12 characters (this one has 5)"),
    ({"password": ""}, "password", "at least 12 characters"),
    ({"password": "password1234"}, "password", "too easy to guess"),
    ({"password": "eve-eve-eve-eve"}, "password", "It contains the username"),
    ({"role": "owner"}, "role", "Not a valid choice"),
])
def test_bad_new_users_get_a_message_on_the_field(app, client_as, data, field, message):
    admin = client_as("admin")
    form = {"csrf_token": admin.csrf, "username": "eve", "role": "viewer",
            "password": "long enough words", **data}
    response = admin.post("/users", data=form)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert message in error_on(text, field)
    assert 'value="long enough words"' not in text           # a password is never sent back
    assert user(app, "eve") is None
    assert user(app, "vic").role == "viewer"                  # an existing user is not touched


def test_change_role(app, client_as):
    admin = client_as("admin")
    vic = user_id(app, "vic")
    response = admin.post(f"/users/{vic}/role", data={"csrf_token": admin.csrf,
                                                      "role": "operator"})
    assert response.status_code == 303
    assert user(app, "vic").role == "operator"
    assert "vic is now operator (was viewer)" in admin.get("/users").get_data(as_text=True)


def test_password_reset_lets_the_user_sign_in_with_the_new_one(app, client_as):
    admin = client_as("admin")
    vic = user_id(app, "vic")
    response = admin.post(f"/users/{vic}/password", data={"csrf_token": admin.csrf,
                                                          "password": "a brand new one"})
    assert response.status_code == 303
    assert sign_in(app.test_client(), "vic", PASSWORDS["vic"]).status_code == 401
    assert sign_in(app.test_client(), "vic", "a brand new one").status_code == 302
    assert "a brand new one" not in admin.get("/users").get_data(as_text=True)


@pytest.mark.parametrize("password, message", [
    ("short", "Use at least 12 characters"),
    ("qwertyuiop123", "too easy to guess"),
    ("vicvicvicvicvic", "It contains the username"),
])
def test_a_weak_reset_password_is_refused_on_its_row_saying_why(app, client_as, password,
                                                                 message):
    admin = client_as("admin")
    vic = user_id(app, "vic")
    response = admin.post(f"/users/{vic}/password", data={"csrf_token": admin.csrf,
                                                          "password": password})
    assert response.status_code == 422
    assert message in error_on(response.get_data(as_text=True), f"password-{vic}")
    assert sign_in(app.test_client(), "vic", PASSWORDS["vic"]).status_code == 302


def test_disable_and_enable(app, client_as):
    admin = client_as("admin")
    vic = user_id(app, "vic")
    admin.post(f"/users/{vic}/active", data={"csrf_token": admin.csrf, "active": "0"})
    assert not user(app, "vic").active
    assert sign_in(app.test_client(), "vic", PASSWORDS["vic"]).status_code == 401
    assert "vic disabled" in admin.get("/users").get_data(as_text=True)
    admin.post(f"/users/{vic}/active", data={"csrf_token": admin.csrf, "active": "1"})
    assert user(app, "vic").active
    assert sign_in(app.test_client(), "vic", PASSWORDS["vic"]).status_code == 302


def test_the_last_active_admin_cannot_demote_or_disable_themselves(app, client_as):
    admin = client_as("admin")
    ada = user_id(app, "ada")
    for url, data, element in ((f"/users/{ada}/role", {"role": "operator"}, f"role-{ada}"),
                               (f"/users/{ada}/active", {"active": "0"}, f"active-{ada}")):
        response = admin.post(url, data={"csrf_token": admin.csrf, **data})
        assert response.status_code == 422, url
        assert "no active admin would be left" in error_on(response.get_data(as_text=True),
                                                           element)
    assert user(app, "ada").role == "admin" and user(app, "ada").active
    assert admin.get("/users").status_code == 200


def test_with_another_active_admin_an_admin_may_step_down(app, client_as):
    admin = client_as("admin")
    with app.app_context():
        set_user("root", "admin", "another admin")
        root = db.session.scalar(select(User).where(User.username == "root"))
        root.active = False                         # a disabled admin does not count
        db.session.commit()
    ada = user_id(app, "ada")
    refused = admin.post(f"/users/{ada}/role", data={"csrf_token": admin.csrf, "role": "viewer"})
    assert refused.status_code == 422
    admin.post(f"/users/{user_id(app, 'root')}/active",
               data={"csrf_token": admin.csrf, "active": "1"})
    stepped_down = admin.post(f"/users/{ada}/role",
                              data={"csrf_token": admin.csrf, "role": "viewer"})
    assert stepped_down.status_code == 303 and user(app, "ada").role == "viewer"
    assert admin.get("/users").status_code == 403          # no longer an admin


def test_usernames_are_escaped(app, client_as):
    with app.app_context():
        set_user("<script>alert(1)</script>", "viewer", "long enough words")
    text = client_as("admin").get("/users").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
