"""API test helpers: two tenants (acme, globex), a token of every kind, bearer headers."""
from __future__ import annotations

import pytest

from console.tokens import create_token, revoke_token
from tests.web.conftest import users  # noqa: F401  (console users, for session tests)


def bearer(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def make_tokens(engine) -> dict[str, str]:
    """A secret of every kind: acme's, globex's, all-tenant, admin, and a revoked one."""
    secrets = {
        "acme": create_token(engine, "acme app", "acme")[1],
        "globex": create_token(engine, "globex app", "globex")[1],
        "all": create_token(engine, "ops reader", None)[1],
        "admin": create_token(engine, "ops admin", None, is_admin=True)[1],
    }
    revoked, secrets["revoked"] = create_token(engine, "old", None, is_admin=True)
    revoke_token(engine, revoked.id)
    return secrets


@pytest.fixture
def tenants(make_tenant):
    make_tenant("acme", "tier2", "Acme")
    make_tenant("globex", "tier2", "Globex")


@pytest.fixture
def tokens(service, tenants) -> dict[str, str]:
    return make_tokens(service.engine)


@pytest.fixture
def api(app, tokens):
    """``api("post", "/jobs", token="acme", json=…)``: a call with that kind of token."""
    client = app.test_client()

    def call(method: str, path: str, token: str | None = "admin", **kwargs):
        headers = {**bearer(tokens.get(token, token)), **kwargs.pop("headers", {})}
        return client.open("/api/v1" + path, method=method.upper(), headers=headers, **kwargs)
    return call


def queue(api, tenant="acme", token="admin", **fields):
    """Queue an immediate noop job through the API; returns its JSON."""
    body = {"type": "immediate", "handler": "noop", "tenant_id": tenant, **fields}
    response = api("post", "/jobs", token=token, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()
