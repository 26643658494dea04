"""The app factory: configuration precedence, the database it sets up, the runner it starts."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from console import create_app
from console.jobs import JobStatus, TenantConfig
from tests.conftest import ON_POSTGRES, TEST_DATABASE_URL
from tests.support import wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_precedence(monkeypatch, database_url):
    monkeypatch.setenv("CONSOLE_JOBS_WORKER_THREADS", "3")
    monkeypatch.setenv("CONSOLE_JOBS_POLL_INTERVAL", "7.5")
    monkeypatch.setenv("DATABASE_URL", database_url)
    app = create_app({"JOBS_RUN_SCHEDULER": False, "JOBS_POLL_INTERVAL": 2.0})
    assert app.config["JOBS_WORKER_THREADS"] == 3            # env over defaults
    assert app.config["JOBS_POLL_INTERVAL"] == 2.0           # the mapping over env
    assert app.config["SQLALCHEMY_DATABASE_URI"] == database_url
    assert app.config["JOBS_LEASE_SECONDS"] == 30.0          # the documented default
    service = app.extensions["jobs"]
    assert service.worker_threads == 3 and service.poll_interval == 2.0
    service.engine.dispose()


@pytest.mark.skipif(ON_POSTGRES, reason="the embedded default is SQLite")
def test_fresh_sqlite_file_is_migrated_on_first_start_in_wal_mode(tmp_path):
    path = tmp_path / "fresh.sqlite3"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "JOBS_RUN_SCHEDULER": False,
                      "SECRET_KEY": "x"})
    engine = app.extensions["jobs"].engine
    tables = set(inspect(engine).get_table_names())
    assert {"jobs", "job_attempts", "tenants", "tenant_daily_usage", "limit_rejections",
            "runners", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("jobs")}
    assert {"ix_jobs_claim", "ix_jobs_status_scheduled", "ix_jobs_tenant_id"} <= indexes
    engine.dispose()
    # A second start finds the schema current and changes nothing.
    again = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
                        "JOBS_RUN_SCHEDULER": False, "SECRET_KEY": "x"})
    again.extensions["jobs"].engine.dispose()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
def test_flask_db_upgrade_creates_the_schema_on_postgres():
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS console_upgrade_check"))
        conn.execute(text("CREATE DATABASE console_upgrade_check"))
    url = TEST_DATABASE_URL.rsplit("/", 1)[0] + "/console_upgrade_check"
    try:
        env = {**os.environ, "DATABASE_URL": url, "CONSOLE_AUTO_MIGRATE": "false",
               "CONSOLE_JOBS_RUN_SCHEDULER": "false", "CONSOLE_SECRET_KEY": "x"}
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "console", "db", "upgrade"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        engine = create_engine(url)
        assert {"jobs", "job_attempts", "tenants"} <= set(inspect(engine).get_table_names())
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS console_upgrade_check WITH (FORCE)"))
        admin.dispose()


def test_create_app_starts_the_runner_when_asked(app_config):
    app = create_app({**app_config, "JOBS_RUN_SCHEDULER": True})
    try:
        service = app.extensions["jobs"]
        assert "jobs_runner" in app.extensions
        service.tenants.set_tenant_config(TenantConfig.for_tier("acme", "Acme", "tier4"))
        job = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
        wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 5,
                   "the app's runner to run the job", interval=0.02)
    finally:
        app.extensions["jobs_runner"].stop(grace=1)
        app.extensions["jobs"].engine.dispose()


def test_runner_is_not_started_for_other_commands(app_config):
    app = create_app({**app_config, "JOBS_RUN_SCHEDULER": False})
    assert "jobs_runner" not in app.extensions
    app.extensions["jobs"].engine.dispose()


def test_engine_package_knows_nothing_of_http():
    """console/jobs must not import the web layer, flask.request, templates or forms."""
    forbidden = {"flask.request", "flask.render_template", "flask_wtf", "wtforms", "console.web",
                 "jinja2"}
    for path in (ROOT / "console" / "jobs").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if node.level:
                    names = [f"console.{node.module}" if node.level == 2 else node.module]
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in forbidden), (
                    f"{path.name} imports {name}")


def test_wsgi_module_exposes_the_app():
    tree = ast.parse((ROOT / "wsgi.py").read_text())
    assert any(isinstance(n, ast.Assign) and n.targets[0].id == "app" for n in tree.body)
