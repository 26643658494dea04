"""Revocable sessions: sign-out, a new password, a new role, disabling and "Sign out
everywhere" end every session of that user; an old cookie, replayed in another browser, is sent
to sign in. Re-enabling a user does not bring its old cookies back."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from console.extensions import db
from console.web.models import User

from .conftest import PASSWORDS, csrf_token, sign_in


def signed_in(app, username: str):
    client = app.test_client()
    assert sign_in(client, username, PASSWORDS[username]).status_code == 302
    client.csrf = csrf_token(client, "/")
    return client


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def with_cookie(app, cookie: str):
    """A new browser holding ``cookie`` (copied, as a thief or a forgotten tab would)."""
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client


def refused(client) -> bool:
    response = client.get("/jobs")
    return response.status_code == 302 and "/login" in response.headers["Location"]


def user_id(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == username))


def admin_posts(admin, url: str, **data) -> None:
    response = admin.post(url, data={"csrf_token": admin.csrf, **data})
    assert response.status_code == 303, response.get_data(as_text=True)


EVENTS = {
    "password reset": lambda admin, vic: admin_posts(admin, f"/users/{vic}/password",
                                                     password="a brand new lantern"),
    "role change": lambda admin, vic: admin_posts(admin, f"/users/{vic}/role", role="operator"),
    "disabling": lambda admin, vic: admin_posts(admin, f"/users/{vic}/active", active="0"),
    "sign out everywhere": lambda admin, vic: admin_posts(admin, f"/users/{vic}/sessions/end"),
}


@pytest.mark.parametrize("event", EVENTS)
def test_an_admins_change_ends_every_session_of_that_user(app, users, event):
    admin = signed_in(app, "ada")
    laptop, phone = signed_in(app, "vic"), signed_in(app, "vic")
    copied = session_cookie(laptop)
    assert not refused(with_cookie(app, copied))          # the copy works until the change
    EVENTS[event](admin, user_id(app, "vic"))
    assert refused(laptop) and refused(phone)
    assert refused(with_cookie(app, copied))
    assert not refused(admin)                             # nobody else is signed out


def test_sign_out_ends_the_users_sessions_in_every_browser(app, users):
    laptop, phone = signed_in(app, "vic"), signed_in(app, "vic")
    copied = session_cookie(laptop)
    response = laptop.post("/logout", data={"csrf_token": laptop.csrf})
    assert response.status_code == 302
    assert refused(laptop) and refused(phone) and refused(with_cookie(app, copied))
    assert "Signed out, in every browser" in laptop.get("/login").get_data(as_text=True)
    assert not refused(signed_in(app, "vic"))             # signing in again works


def test_re_enabling_a_user_does_not_bring_old_cookies_back(app, users):
    admin = signed_in(app, "ada")
    copied = session_cookie(signed_in(app, "vic"))
    vic = user_id(app, "vic")
    admin_posts(admin, f"/users/{vic}/active", active="0")
    admin_posts(admin, f"/users/{vic}/active", active="1")
    assert refused(with_cookie(app, copied))
    assert not refused(signed_in(app, "vic"))


def test_a_new_password_set_with_the_cli_ends_the_old_sessions(app, users):
    copied = session_cookie(signed_in(app, "vic"))
    result = app.test_cli_runner().invoke(args=["create-user", "vic", "--role", "viewer",
                                                "--password", "a brand new lantern"])
    assert result.exit_code == 0, result.output
    assert refused(with_cookie(app, copied))


def test_an_admin_changing_their_own_password_stays_signed_in_here_only(app, users):
    here, elsewhere = signed_in(app, "ada"), signed_in(app, "ada")
    admin_posts(here, f"/users/{user_id(app, 'ada')}/password", password="a brand new lantern")
    assert "Password of ada changed" in here.get("/users").get_data(as_text=True)
    assert not refused(here)
    assert refused(elsewhere)


def test_an_admin_signing_themselves_out_everywhere_is_signed_out_here_too(app, users):
    admin = signed_in(app, "ada")
    admin_posts(admin, f"/users/{user_id(app, 'ada')}/sessions/end")
    assert refused(admin)


def test_the_users_page_offers_sign_out_everywhere_on_each_row(app, users):
    page = signed_in(app, "ada").get("/users").get_data(as_text=True)
    for username in ("ada", "olga", "vic"):
        assert f'action="/users/{user_id(app, username)}/sessions/end"' in page
    assert page.count(">Sign out everywhere</button>") == 3


def test_only_admins_end_other_users_sessions(app, users):
    operator = signed_in(app, "olga")
    victim = signed_in(app, "vic")
    response = operator.post(f"/users/{user_id(app, 'vic')}/sessions/end",
                             data={"csrf_token": operator.csrf})
    assert response.status_code == 403
    assert not refused(victim)


def test_a_session_from_before_session_versions_must_sign_in_again(app, users):
    """Cookies written before migration 0008 hold the bare user id."""
    client = signed_in(app, "vic")
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id(app, "vic"))
    assert refused(client)


def test_migration_0008_matches_the_models(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from console.jobs.models import Base

    def ours(obj, name, kind, reflected, compare_to):
        table = obj if kind == "table" else getattr(obj, "table", None)
        return table is not None and table.name in ("users", "sign_in_throttles")

    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": ours})
        assert compare_metadata(context, Base.metadata) == []
