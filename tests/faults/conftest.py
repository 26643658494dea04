"""Fixtures for database faults: a PostgreSQL server of the tests' own to stop and restart, a
fresh migrated database on it per test, and signed-in clients for the console and the API.

The PostgreSQL tests run in the suite's PostgreSQL pass only (``TEST_DATABASE_URL`` set; CI's
SQLite pass skips them, so CI pays for them once), on a server they start themselves: stopping
the shared one would break every other test running against it.
"""
from __future__ import annotations

import itertools
import os

import pytest

from console import create_app
from console.tokens import create_token
from tests.conftest import BASE_CONFIG, ON_POSTGRES
from tests.faults.postgres_server import PostgresServer, postgres_binaries
from tests.web.conftest import (
    PASSWORDS,
    csrf_token,
    sign_in,
    users,  # noqa: F401  (console users, for the form tests)
)

_databases = itertools.count(1)
TEMPLATE = "faults_template"


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server with a migrated template database; removed at the end."""
    if not ON_POSTGRES:
        pytest.skip("stops and restarts a PostgreSQL server of its own: runs in the "
                    "PostgreSQL pass (set TEST_DATABASE_URL)")
    bin_dir = postgres_binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) here: set PG_BIN or "
                    "install Debian's postgresql package")
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        template_url = server.create_database(TEMPLATE)
        app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": template_url})
        app.extensions["jobs"].engine.dispose()   # a template must have no connections
        yield server
    finally:
        server.destroy()


@pytest.fixture
def throwaway_database_url(postgres_server) -> str:
    """A fresh database on the throwaway server (a copy of the migrated template), which is
    running when the test starts and again when it ends, whatever the test did to it. A module
    whose tests take the database away overrides ``database_url`` with it."""
    name = f"faults_{os.getpid()}_{next(_databases)}"
    if not postgres_server.is_running():
        postgres_server.start()
    url = postgres_server.create_database(name, template=TEMPLATE)
    yield url
    if not postgres_server.is_running():
        postgres_server.start()


@pytest.fixture
def operator(app, users):  # noqa: F811  (the fixture imported above)
    """A console test client signed in as an operator; ``.csrf`` is its CSRF token."""
    client = app.test_client()
    assert sign_in(client, "olga", PASSWORDS["olga"]).status_code == 302
    client.csrf = csrf_token(client, "/")
    return client


@pytest.fixture
def api_token(service) -> str:
    """An all-tenant admin API token's secret."""
    return create_token(service.engine, "faults", None, is_admin=True)[1]
