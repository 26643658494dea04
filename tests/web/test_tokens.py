"""The API tokens screen (admins only): list, create (secret shown once), revoke."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from console.tokens import api_tokens_table
from tests.api.conftest import bearer

UTC = timezone.utc


@pytest.fixture
def tenants(make_tenant):
    make_tenant("acme", "tier2", "Acme")


def _create(client, **fields):
    data = {"csrf_token": client.csrf, "name": "billing", "tenant": "acme", **fields}
    return client.post("/tokens", data=data)


def _secret(page: str) -> str:
    return re.search(r'id="secret" type="text" readonly value="(cjt_[^"]+)"', page).group(1)


def test_signed_out_is_sent_to_sign_in(app):
    response = app.test_client().get("/tokens")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_only_admins_see_or_create_tokens(client_as, tenants, role):
    client = client_as(role)
    assert client.get("/tokens").status_code == 403
    assert _create(client).status_code == 403
    assert "API tokens" not in client.get("/").get_data(as_text=True)


def test_admins_find_it_in_the_navigation(client_as):
    assert 'href="/tokens"' in client_as("admin").get("/").get_data(as_text=True)


def test_the_secret_is_shown_once_and_works(client_as, tenants, app):
    client = client_as("admin")
    response = _create(client)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    secret = _secret(page)
    assert "it will not be shown again" in page
    listing = client.get("/tokens").get_data(as_text=True)
    assert secret not in listing and secret[:12] + "…" in listing
    assert "tenant acme" in listing and "<td>never</td>" in listing
    api = app.test_client()
    assert api.get("/api/v1/jobs", headers=bearer(secret)).status_code == 200
    assert "<td>never</td>" not in client.get("/tokens").get_data(as_text=True)   # last used


def test_an_all_tenant_admin_token(client_as, tenants, app):
    client = client_as("admin")
    secret = _secret(_create(client, tenant="", admin="y").get_data(as_text=True))
    assert "all tenants (admin)" in client.get("/tokens").get_data(as_text=True)
    response = app.test_client().put("/api/v1/tenants/acme/limits", json={"tier": "tier3"},
                                     headers=bearer(secret))
    assert response.status_code == 200


@pytest.mark.parametrize("fields,message", [
    ({"name": ""}, "Name the token"),
    ({"admin": "y"}, "Only all-tenant tokens can be admin tokens"),
    ({"tenant": "nobody"}, "Not a valid choice")])
def test_bad_input_is_answered_on_the_form(client_as, tenants, fields, message):
    client = client_as("admin")
    response = _create(client, **fields)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'aria-invalid="true"' in page and 'id="secret"' not in page


def test_a_post_without_csrf_token_is_refused(client_as, tenants):
    client = client_as("admin")
    response = client.post("/tokens", data={"name": "x", "tenant": "acme"})
    assert response.status_code == 400
    assert "cjt_" not in response.get_data(as_text=True)


def test_names_are_escaped(client_as, tenants):
    client = client_as("admin")
    _create(client, name="<script>alert(1)</script>")
    page = client.get("/tokens").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_revoke(client_as, tenants, app, service):
    client = client_as("admin")
    secret = _secret(_create(client).get_data(as_text=True))
    from console.tokens import list_tokens

    (token,) = list_tokens(service.engine)
    refused = client.post(f"/tokens/{token.id}/revoke", data={})
    assert refused.status_code == 400                                     # no CSRF token
    response = client.post(f"/tokens/{token.id}/revoke", data={"csrf_token": client.csrf})
    assert response.status_code == 303
    page = client.get("/tokens").get_data(as_text=True)
    assert "revoked" in page and "requests with it now get 401" in page
    assert app.test_client().get("/api/v1/jobs", headers=bearer(secret)).status_code == 401
    missing = client.post("/tokens/9999/revoke", data={"csrf_token": client.csrf})
    assert missing.status_code == 404


def row_named(service, name: str):
    with service.engine.connect() as conn:
        return conn.execute(select(api_tokens_table).where(
            api_tokens_table.c.name == name)).one()


def expire_now(service, token_id: int) -> None:
    """Time passes: the token's expiry moves into the past."""
    with service.engine.begin() as conn:
        conn.execute(update(api_tokens_table).where(api_tokens_table.c.id == token_id)
                     .values(expires_at=datetime.now(UTC) - timedelta(minutes=5)))


def test_the_tokens_screen_sets_an_expiry_and_a_rate(client_as, tenants, app, service):
    client = client_as("admin")
    response = client.post("/tokens", data={"csrf_token": client.csrf, "name": "billing",
                                            "tenant": "acme", "expires_in": "7d",
                                            "rate_limit": "120"})
    assert response.status_code == 201
    row = row_named(service, "billing")
    assert row.expires_at - row.created_at == timedelta(days=7) and row.rate_limit == 120
    listing = client.get("/tokens").get_data(as_text=True)
    assert "120 / min" in listing and f"{row.expires_at:%Y-%m-%d}" in listing
    secret = re.search(r'value="(cjt_[^"]+)"', response.get_data(as_text=True)).group(1)
    expire_now(service, row.id)
    assert app.test_client().get("/api/v1/jobs", headers=bearer(secret)).status_code == 401
    assert "expired" in client.get("/tokens").get_data(as_text=True)


@pytest.mark.parametrize("rate,message", [("0", "from 1 to 1,000,000"),
                                          ("many", "Not a valid integer value")])
def test_the_tokens_screen_refuses_a_bad_rate(client_as, tenants, service, rate, message):
    client = client_as("admin")
    response = client.post("/tokens", data={"csrf_token": client.csrf, "name": "billing",
                                            "tenant": "acme", "rate_limit": rate})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'aria-invalid="true"' in page
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(api_tokens_table)).scalar() == 0


def test_never_expiring_is_a_choice(client_as, tenants, service):
    client = client_as("admin")
    response = client.post("/tokens", data={"csrf_token": client.csrf, "name": "forever",
                                            "tenant": "acme", "expires_in": ""})
    assert response.status_code == 201
    assert row_named(service, "forever").expires_at is None
