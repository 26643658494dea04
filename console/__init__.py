"""The operations console: a Flask app over the job engine in ``console.jobs``."""
from __future__ import annotations

import atexit
import importlib
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import defaults

PROJECT_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: configuration, database (migrated), job service, runner, blueprints.

    :param config: overrides every other source of configuration.
    """
    app = Flask(__name__, instance_relative_config=True,
                template_folder=str(PROJECT_ROOT / "templates"),
                static_folder=str(PROJECT_ROOT / "static"))
    from .web.rendering import COMPILED_TEMPLATES
    app.jinja_options = {**app.jinja_options, "bytecode_cache": COMPILED_TEMPLATES}
    _configure(app, config)

    from . import tokens  # noqa: F401  (the api_tokens table, likewise)
    from .extensions import csrf, db, migrate
    from .jobs.models import Base  # noqa: F401  (tables registered on db.metadata)
    from .web import models as web_models  # noqa: F401  (the users table, likewise)
    from .web.auth.views import login_manager

    db.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"))

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            from .jobs.db import set_sqlite_busy_timeout
            set_sqlite_busy_timeout(db.engine, float(app.config["SQLITE_BUSY_TIMEOUT"]))
        if app.config["AUTO_MIGRATE"]:
            from .migrating import upgrade_to_head
            upgrade_to_head(app)
        service = _build_job_service(app, db.engine)
    app.extensions["jobs"] = service

    trusted_proxies = int(app.config["PROXY_FIX"] or 0)
    if trusted_proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies)

    # Two doors onto one engine, side by side: the console (signed-in people) and the HTTP
    # API (bearer tokens). Neither imports the other; what both need lives beneath them.
    from .api import init_api
    from .web import register_blueprints
    register_blueprints(app)
    init_api(app)
    from .cli import register_commands
    register_commands(app)

    if runner_should_start(app):
        start_runner(app)
    # After the runner's own SIGTERM handling, so that open live-update streams end first and
    # a graceful stop is not held up by connected pages.
    from .web.stream import close_streams_on_sigterm
    close_streams_on_sigterm()
    return app


def _configure(app: Flask, config: Mapping[str, Any] | None) -> None:
    app.config.from_object(defaults)
    app.config.from_prefixed_env("CONSOLE")
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if config:
        app.config.update(config)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = (
            f"sqlite:///{os.path.join(app.instance_path, 'console.sqlite3')}")
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgres://") or uri.startswith("postgresql://"):
        # Plain URLs (as hosting platforms hand them out) use psycopg 3, the driver we ship.
        app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + uri.split("://", 1)[1]
    threads = int(app.config["JOBS_WORKER_THREADS"])
    engine_options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    # Handler threads, the dispatcher, housekeeping and web threads may all hold a connection.
    engine_options.setdefault("pool_size", threads + 4)
    engine_options.setdefault("max_overflow", 20)
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A server can restart under us; a file cannot. The ping costs a round trip per checkout.
        engine_options.setdefault("pool_pre_ping", True)
        _set_connect_timeout(engine_options, app.config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret_key(app)


def _set_connect_timeout(engine_options: dict, config) -> None:
    """Give up connecting after DATABASE_CONNECT_TIMEOUT seconds (unless the URL says
    otherwise): a server that does not answer fails a request in seconds, with a 503, instead
    of after the operating system's TCP timeout (minutes)."""
    from sqlalchemy.engine import make_url

    timeout = config.get("DATABASE_CONNECT_TIMEOUT")
    if not timeout or "connect_timeout" in make_url(config["SQLALCHEMY_DATABASE_URI"]).query:
        return
    connect_args = dict(engine_options.get("connect_args") or {})
    connect_args.setdefault("connect_timeout", max(1, round(float(timeout))))
    engine_options["connect_args"] = connect_args


def _instance_secret_key(app: Flask) -> str:
    """A key created once per instance folder, so every worker process signs alike."""
    path = Path(app.instance_path) / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        key = secrets.token_hex(32)
        handle.write(key)
    return key


def _build_job_service(app: Flask, engine):
    from .alerts import alert_handlers
    from .alerts.operations import operations_tenant_id
    from .analytics.reader import AnalyticsReader
    from .handlers import builtin_handlers
    from .jobs import JobService
    from .jobs.attempt_logs import LogLimits
    from .jobs.clock import Clock

    cfg = app.config
    clock = Clock(engine)   # the engine's time, which analytics compares leases with too
    service = JobService(
        engine,
        clock=clock,
        analytics=AnalyticsReader(engine, now=clock.now),
        retry_base_seconds=float(cfg["JOBS_RETRY_BASE_SECONDS"]),
        retry_max_seconds=float(cfg["JOBS_RETRY_MAX_SECONDS"]),
        lease_seconds=float(cfg["JOBS_LEASE_SECONDS"]),
        worker_threads=int(cfg["JOBS_WORKER_THREADS"]),
        poll_interval=float(cfg["JOBS_POLL_INTERVAL"]),
        shutdown_grace_seconds=float(cfg["JOBS_SHUTDOWN_GRACE_SECONDS"]),
        metrics_interval=float(cfg["JOBS_METRICS_INTERVAL"]),
        priority_aging_seconds=float(cfg["JOBS_PRIORITY_AGING_SECONDS"] or 0) or None,
        attempt_log_limits=LogLimits(lines=int(cfg["JOBS_ATTEMPT_LOG_LINES"]),
                                     line_chars=int(cfg["JOBS_ATTEMPT_LOG_LINE_CHARS"])),
        # The one tenant that may queue system handlers (JobHandler.system): the operations
        # tenant alerting runs as. The engine is told; it never imports console/alerts.
        system_tenant_id=operations_tenant_id(cfg),
    )
    for handler in builtin_handlers(cfg, engine, service) + alert_handlers(cfg, engine, service):
        service.register_handler(handler)
    for spec in cfg.get("JOBS_HANDLERS") or []:
        service.register_handler(load_object(spec))
    if cfg.get("JOBS_LOAD_PLUGINS", True):
        from .handlers.plugins import register_plugin_handlers
        register_plugin_handlers(service)
    return service


def load_object(spec: str) -> Any:
    """``"package.module:Name"`` → the object (a class is instantiated with no arguments)."""
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"handler spec {spec!r} must look like 'package.module:ClassName'")
    obj = getattr(importlib.import_module(module_name), attribute)
    return obj() if isinstance(obj, type) else obj


def runner_should_start(app: Flask) -> bool:
    """Start the in-process runner only where it belongs: gunicorn, wsgi, ``flask run``'s serving
    process — not ``flask db upgrade``, ``flask shell``, or the reloader's parent."""
    import click
    import werkzeug.serving
    from flask.helpers import get_debug_flag

    if not app.config.get("JOBS_RUN_SCHEDULER", True):
        return False
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return True
    if ctx.info_name != "run":
        return False
    reload = ctx.params.get("reload")
    if reload is None:
        reload = get_debug_flag()
    return (not reload) or werkzeug.serving.is_running_from_reloader()


def start_runner(app: Flask):
    """Start this process's runner; it stops (releasing its jobs) when the process exits."""
    from .jobs.runner import Runner

    runner = Runner(app.extensions["jobs"]).start()
    app.extensions["jobs_runner"] = runner
    from .alerts import ensure_alerting
    ensure_alerting(app.extensions["jobs"], app.config)
    atexit.register(runner.stop)
    _exit_cleanly_on_sigterm()
    return runner


def _exit_cleanly_on_sigterm() -> None:
    """Python's default SIGTERM kills the process without running ``atexit``; turn it into a
    normal exit so the runner hands back its jobs. Servers with their own handler (gunicorn)
    keep it."""
    import signal
    import sys
    import threading

    if threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
