"""Flask extensions, created unbound and initialised in ``create_app``."""
from collections.abc import Iterator
from contextlib import contextmanager

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from .jobs.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()   # every form and htmx request carries the token (X-CSRFToken header)


@contextmanager
def session_write() -> Iterator[Session]:
    """Changes through ``db.session`` (the console's own rows: users) as one write transaction.

    The request has usually read already (Flask-Login loads the signed-in user), and on SQLite a
    read transaction that later writes is refused outright if another process committed in
    between (SQLITE_BUSY_SNAPSHOT; the busy timeout does not help). So the read ends first and
    the write transaction takes the database's write lock at BEGIN, as the engine's writes do.
    Objects read before are expired and reload inside. Commits at the end; rolls back on error.
    """
    from .jobs.db import IMMEDIATE_OPTION, process_write_lock

    db.session.rollback()
    with process_write_lock(db.engine):
        db.session.connection(execution_options={IMMEDIATE_OPTION: True})
        try:
            yield db.session
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
