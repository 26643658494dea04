"""Sign-in: every page but the public ones needs it; CSRF on forms; roles; the CLI and demo."""
from __future__ import annotations

import re

from console.web.auth.views import set_user

from .conftest import csrf_token, sign_in


def test_signed_out_requests_go_to_sign_in_but_probes_stay_public(app):
    client = app.test_client()
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401   # answered, but only to its scraper
    assert client.get("/static/css/console.css").status_code == 200
    assert client.get("/login").status_code == 200


def test_sign_in_and_out(app, users):
    client = app.test_client()
    response = sign_in(client, "ada", "correct horse")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "ada (admin)" in page and "Sign out" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_unknown_user_and_disabled_user_are_refused(app, users):
    from console.extensions import db
    from console.web.models import User

    client = app.test_client()
    for username, password in (("ada", "wrong password"), ("nobody", "correct horse")):
        response = sign_in(client, username, password)
        assert response.status_code == 401
        assert "Wrong username or password" in response.get_data(as_text=True)
    with app.app_context():
        user = db.session.query(User).filter_by(username="ada").one()
        user.active = False
        db.session.commit()
    assert sign_in(client, "ada", "correct horse").status_code == 401


def test_a_post_without_csrf_token_is_refused(app, users):
    client = app.test_client()
    response = client.post("/login", data={"username": "ada", "password": "correct horse"})
    assert response.status_code == 400
    assert client.get("/").status_code == 302          # not signed in


def test_sign_in_never_redirects_off_site(app, users):
    client = app.test_client()
    response = client.post("/login?next=//evil.example/x",
                           data={"username": "ada", "password": "correct horse",
                                 "csrf_token": csrf_token(client)})
    assert response.headers["Location"] == "/"


def test_usernames_are_escaped(app):
    with app.app_context():
        set_user("<script>x</script>", "viewer", "long enough words")
    client = app.test_client()
    sign_in(client, "<script>x</script>", "long enough words")
    page = client.get("/").get_data(as_text=True)
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_create_user_command(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "ops", "--role", "operator",
                                 "--password", "tulip radar cobalt"])
    assert result.exit_code == 0, result.output
    assert sign_in(app.test_client(), "ops", "tulip radar cobalt").status_code == 302
    short = runner.invoke(args=["create-user", "ops2", "--role", "viewer", "--password", "x"])
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    assert "--password" in short.output
    guessable = runner.invoke(args=["create-user", "ops2", "--role", "viewer",
                                    "--password", "password"])
    assert guessable.exit_code != 0 and "at least 12 characters" in guessable.output
    common = runner.invoke(args=["create-user", "ops2", "--role", "viewer",
                                 "--password", "Password1234"])
    assert common.exit_code != 0 and "too easy to guess" in common.output
    assert "commonly used password" in common.output          # zxcvbn's own feedback
    assert sign_in(app.test_client(), "ops2", "Password1234").status_code == 401
    bad_role = runner.invoke(args=["create-user", "ops3", "--role", "king", "--password",
                                   "long enough words"])
    assert bad_role.exit_code != 0


def test_demo_prints_an_admin_password_that_works(app, monkeypatch):
    monkeypatch.delenv("CONSOLE_ADMIN_PASSWORD", raising=False)
    result = app.test_cli_runner().invoke(args=["demo", "--days", "1", "--jobs-per-day", "5"])
    assert result.exit_code == 0, result.output
    password = re.search(r"Sign in as admin with password: (\S+)", result.output).group(1)
    assert sign_in(app.test_client(), "admin", password).status_code == 302


def test_demo_refuses_a_guessable_admin_password_before_storing_anything(app, service,
                                                                        monkeypatch):
    monkeypatch.setenv("CONSOLE_ADMIN_PASSWORD", "admin123")
    result = app.test_cli_runner().invoke(args=["demo", "--days", "1", "--jobs-per-day", "5"])
    assert result.exit_code != 0
    assert "CONSOLE_ADMIN_PASSWORD refused: Use at least 12 characters" in result.output
    assert service.tenants.list_tenant_configs() == []         # no demo data half-loaded


def test_sign_in_succeeds_while_another_process_commits_meanwhile(app, service, users,
                                                                 monkeypatch):
    """A runner's heartbeat committing between reading the user and recording the sign-in
    used to make SQLite refuse the write ("database is locked") with a 500."""
    import console.web.auth.views as auth
    from console.jobs import TenantConfig

    real_check = auth.check_password_hash

    def check_while_someone_else_commits(*args):
        service.tenants.set_tenant_config(TenantConfig.for_tier("acme", "Acme", "tier1"))
        return real_check(*args)

    monkeypatch.setattr(auth, "check_password_hash", check_while_someone_else_commits)
    response = sign_in(app.test_client(), "ada", "correct horse")
    assert response.status_code == 302 and response.headers["Location"] == "/"
