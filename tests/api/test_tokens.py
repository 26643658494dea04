"""Tokens: stored only as a hash, shown by prefix, scoped, revocable; use recorded sparingly;
the table as migration 0006 creates it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from console.jobs.models import Base
from console.tokens import (
    TokenError,
    api_tokens_table,
    authenticate,
    create_token,
    hash_token,
    list_tokens,
    looks_like_token,
    revoke_token,
)

UTC = timezone.utc


def _rows(service):
    with service.engine.connect() as conn:
        return [row._mapping for row in conn.execute(select(api_tokens_table))]


def test_only_the_hash_is_stored(service, tenants):
    token, secret = create_token(service.engine, "billing", "acme")
    assert looks_like_token(secret) and len(secret) >= 40
    (row,) = _rows(service)
    assert row["token_hash"] == hash_token(secret) and secret not in row.values()
    assert row["prefix"] == secret[:12] and row["tenant_id"] == "acme"
    assert token.scope == "tenant acme"


def test_each_token_is_different(service, tenants):
    secrets = {create_token(service.engine, "x", None)[1] for _ in range(5)}
    assert len(secrets) == 5


def test_authenticate_returns_the_scope(service, tenants):
    _, tenant_secret = create_token(service.engine, "a", "acme")
    _, admin_secret = create_token(service.engine, "b", None, is_admin=True)
    tenant = authenticate(service.engine, tenant_secret)
    assert (tenant.tenant_id, tenant.is_admin, tenant.all_tenants) == ("acme", False, False)
    assert tenant.sees_tenant("acme") and not tenant.sees_tenant("globex")
    admin = authenticate(service.engine, admin_secret)
    assert admin.all_tenants and admin.is_admin and admin.sees_tenant("globex")
    assert authenticate(service.engine, tenant_secret + "x") is None


def test_revoked_tokens_stop_working(service, tenants):
    token, secret = create_token(service.engine, "a", "acme")
    first = revoke_token(service.engine, token.id)
    assert first.revoked_at is not None and authenticate(service.engine, secret) is None
    again = revoke_token(service.engine, token.id)
    assert again.revoked_at == first.revoked_at                   # the first time is kept
    assert revoke_token(service.engine, 9999) is None


def test_a_revoked_token_is_refused_at_once_here_and_within_the_cache_time_elsewhere(
        service, tenants, database_url, monkeypatch):
    """A process trusts a token it has read for AUTH_CACHE_SECONDS (a busy client costs one
    read per interval): the process that revokes it refuses it at once, another process (its
    own engine on the same database) once the interval is over."""
    import time

    from sqlalchemy import create_engine

    import console.tokens as tokens

    monkeypatch.setattr(tokens, "AUTH_CACHE_SECONDS", 0.5)
    token, secret = create_token(service.engine, "a", "acme")
    elsewhere = create_engine(database_url)
    try:
        assert authenticate(service.engine, secret).id == token.id
        assert authenticate(elsewhere, secret).id == token.id
        revoked_at = time.monotonic()
        revoke_token(service.engine, token.id)
        assert authenticate(service.engine, secret) is None
        while True:
            asked_at = time.monotonic()
            if authenticate(elsewhere, secret) is None:
                break
            # Trusted from what it read before the revocation: for AUTH_CACHE_SECONDS at most.
            assert asked_at - revoked_at < 0.5, "still trusted past AUTH_CACHE_SECONDS"
            time.sleep(0.05)
    finally:
        elsewhere.dispose()


def test_last_use_is_written_at_most_once_a_minute(service, tenants):
    token, secret = create_token(service.engine, "a", "acme")
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    for offset, expected in ((0, 0), (30, 0), (59, 0), (60, 60), (61, 60), (200, 200)):
        authenticate(service.engine, secret, now=start + timedelta(seconds=offset))
        (row,) = _rows(service)
        assert row["last_used_at"] == start + timedelta(seconds=expected), offset


@pytest.mark.parametrize("name,tenant,admin,field", [
    ("", "acme", False, "name"), ("x" * 101, None, False, "name"),
    ("a", "nobody", False, "tenant"), ("a", "acme", True, "admin")])
def test_bad_tokens_are_refused(service, tenants, name, tenant, admin, field):
    with pytest.raises(TokenError) as refused:
        create_token(service.engine, name, tenant, admin)
    assert refused.value.field == field
    assert _rows(service) == []


def test_list_shows_active_tokens_first(service, tenants):
    old, _ = create_token(service.engine, "old", None)
    create_token(service.engine, "new", None)
    revoke_token(service.engine, old.id)
    create_token(service.engine, "newest", "acme")
    assert [t.name for t in list_tokens(service.engine)] == ["newest", "new", "old"]


def test_migration_0006_matches_the_model(service):
    def ours(obj, name, kind, reflected, compare_to):
        table = obj if kind == "table" else getattr(obj, "table", None)
        return table is not None and table.name == "api_tokens"

    with service.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": ours})
        assert compare_metadata(context, Base.metadata) == []
