"""Bringing the database schema to the newest migration, safely from many processes at once."""
from __future__ import annotations

import fcntl
import logging
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from sqlalchemy import inspect, text

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 7_301_733_000


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade_to_head(app: Flask) -> None:
    """Apply pending migrations (call inside an app context); a no-op when already current."""
    from flask_migrate import upgrade

    from .extensions import db

    head = head_revision()
    if current_revision(db.engine) == head:
        return
    with _migration_lock(db.engine, app):
        if current_revision(db.engine) != head:  # another process may have just done it
            log.info("migrating the database to %s", head)
            upgrade(directory=str(MIGRATIONS))


@contextmanager
def _migration_lock(engine, app: Flask):
    if engine.dialect.name == "sqlite":
        lock_path = Path(engine.url.database or app.instance_path).with_suffix(".migrate.lock")
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
