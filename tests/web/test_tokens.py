"""The API tokens screen (admins only): list, create (secret shown once), revoke."""
from __future__ import annotations

import re

import pytest

from tests.api.conftest import bearer


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
