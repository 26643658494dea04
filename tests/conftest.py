"""Shared fixtures: a fresh database per test (SQLite file, or PostgreSQL when
``TEST_DATABASE_URL`` is set), the app, its job service, and tenant/job factories."""
from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, text

from console import create_app
from console.jobs import TenantConfig

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
ON_POSTGRES = bool(TEST_DATABASE_URL)

TEST_HANDLERS = [f"tests.jobs.handlers:{name}" for name in (
    "RecordingHandler", "FailsNTimesHandler", "AlwaysFailsHandler", "FailsPermanentlyHandler",
    "HangsHandler", "ConcurrencyProbeHandler", "OrderRecorderHandler", "PickyHandler",
    "SleepsHandler", "LogsLinesHandler")]

BASE_CONFIG = {
    "JOBS_RUN_SCHEDULER": False,
    "JOBS_RETRY_BASE_SECONDS": 0.05,
    "JOBS_RETRY_MAX_SECONDS": 1.0,
    "JOBS_LEASE_SECONDS": 5.0,
    "JOBS_POLL_INTERVAL": 0.5,
    "JOBS_SHUTDOWN_GRACE_SECONDS": 5.0,
    "JOBS_WORKER_THREADS": 8,
    "JOBS_HANDLERS": TEST_HANDLERS,
    "SECRET_KEY": "test-secret",
    "TESTING": True,
    # No alert evaluation job or operations tenant unless a test asks (tests/alerts/).
    "ALERTS_ENABLED": False,
    # The console's own handlers and the test ones above, no plug-in: one installed in the
    # environment (or being installed by another test run) must not change what tests see.
    # The plug-in tests turn discovery on (tests/handlers/test_plugins.py).
    "JOBS_LOAD_PLUGINS": False,
    # Webhooks go to public addresses only; the tests' receivers listen on 127.0.0.1.
    # tests/handlers/test_outbound.py turns this off to see private addresses refused.
    "WEBHOOK_ALLOW_PRIVATE": True,
    # The webhook catch-all (off by default) receives the tests' end-to-end webhooks.
    "WEBHOOK_CATCH_ALL": True,
}


@pytest.fixture(scope="session", autouse=True)
def no_console_environment():
    """A developer's CONSOLE_* settings would change every app the tests build (create_app
    reads them over its defaults) and the processes they start: none are seen. Session-wide,
    so the migrated template is built without them too; a test may still set its own."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in [name for name in os.environ if name.startswith("CONSOLE_")]:
            monkeypatch.delenv(name)
        yield


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """Migrate once per session: a template SQLite file, or the PostgreSQL schema."""
    if ON_POSTGRES:
        app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL})
        with app.app_context():
            app.extensions["jobs"].engine.dispose()
        return TEST_DATABASE_URL
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    app.extensions["jobs"].engine.dispose()
    return str(path)


def fresh_database(database_template: str, folder: Path) -> str:
    """A database with the migrated schema and no rows: the PostgreSQL tables emptied, or a copy
    of the template SQLite file in ``folder``."""
    if ON_POSTGRES:
        engine, emptying = _emptying(database_template)
        with engine.begin() as conn:
            conn.execute(text(emptying))
        return database_template
    target = folder / "console.sqlite3"
    shutil.copyfile(database_template, target)
    return f"sqlite:///{target}"


@functools.cache
def _emptying(url: str):
    """An engine on the test database, and the SQL that empties it: every table deleted from,
    children before parents, and the id sequences restarted. A tenth of TRUNCATE's time on
    the small tables tests leave (TRUNCATE makes every table's files anew)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    schema = MetaData()
    schema.reflect(engine)
    tables = [t.name for t in reversed(schema.sorted_tables) if t.name != "alembic_version"]
    with engine.connect() as conn:
        sequences = conn.execute(text("SELECT sequence_name FROM information_schema.sequences "
                                      "WHERE sequence_schema = current_schema()")).scalars().all()
    return engine, "; ".join([f'DELETE FROM "{t}"' for t in tables]
                             + [f'ALTER SEQUENCE "{s}" RESTART' for s in sequences])


@pytest.fixture
def database_url(database_template, tmp_path) -> str:
    return fresh_database(database_template, tmp_path)


@pytest.fixture
def app_config(database_url) -> dict:
    """Override in a test module to change settings for its app."""
    return {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url}


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    runner = app.extensions.get("jobs_runner")
    if runner is not None:
        runner.stop(grace=1)
    app.extensions["jobs"].engine.dispose()


@pytest.fixture
def service(app):
    return app.extensions["jobs"]


@pytest.fixture
def make_tenant(service):
    """``make_tenant("acme", "tier2", maxQueuedJobs=3)``: a tenant with camelCase overrides."""
    def make(tenant_id: str = "acme", tier: str = "tier4", name: str | None = None,
             **job_limits):
        config = TenantConfig.for_tier(tenant_id, name or tenant_id.title(), tier,
                                       {"jobLimits": job_limits} if job_limits else None)
        return service.tenants.set_tenant_config(config)
    return make


@pytest.fixture
def handler(service):
    """The registered instance of a test handler, to read what it recorded."""
    return service.handlers.get


def env_for_subprocess(database_url: str, **extra: str) -> dict[str, str]:
    """Environment for ``flask --app console worker`` processes sharing the test database."""
    import json

    env = {**os.environ, "DATABASE_URL": database_url,
           "CONSOLE_JOBS_HANDLERS": json.dumps(TEST_HANDLERS),
           "CONSOLE_JOBS_RETRY_BASE_SECONDS": "0.05", "CONSOLE_JOBS_POLL_INTERVAL": "0.5",
           "CONSOLE_SECRET_KEY": "test-secret", "CONSOLE_ALERTS_ENABLED": "false",
           "CONSOLE_JOBS_LOAD_PLUGINS": "false", "CONSOLE_WEBHOOK_ALLOW_PRIVATE": "true",
           "CONSOLE_WEBHOOK_CATCH_ALL": "true",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.update(extra)
    return env
