"""``flask --app console create-token``: prints a token that works, once."""
from __future__ import annotations

import pytest

from tests.api.conftest import bearer


def test_create_token_prints_a_working_tenant_token(app, tenants):
    result = app.test_cli_runner().invoke(
        args=["create-token", "--tenant", "acme", "--name", "billing"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("cjt_") and "\n" not in secret
    assert "shown only now" in result.stderr and "tenant acme" in result.stderr
    client = app.test_client()
    assert client.get("/api/v1/tenants/acme/usage", headers=bearer(secret)).status_code == 200
    assert client.get("/api/v1/tenants/globex/usage", headers=bearer(secret)).status_code == 404


def test_create_an_admin_token(app, tenants):
    result = app.test_cli_runner().invoke(
        args=["create-token", "--all-tenants", "--admin"])
    assert result.exit_code == 0, result.output
    response = app.test_client().put("/api/v1/tenants/acme/limits", json={"tier": "tier3"},
                                     headers=bearer(result.stdout.strip()))
    assert response.status_code == 200


@pytest.mark.parametrize("args,message", [
    ([], "exactly one of"), (["--tenant", "acme", "--all-tenants"], "exactly one of"),
    (["--tenant", "acme", "--admin"], "only all-tenant tokens"),
    (["--tenant", "nobody"], "no tenant 'nobody'")])
def test_bad_options_are_refused(app, tenants, args, message):
    result = app.test_cli_runner().invoke(args=["create-token", *args])
    assert result.exit_code != 0 and message in result.output
