"""The hand-written migrations 0002 and 0005 create exactly what console/handlers/models.py
describes."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from console.jobs.models import Base

OURS = {"sent_messages", "outbox_messages", "reports"}


def _ours(obj, name, kind, reflected, compare_to):
    table = obj if kind == "table" else getattr(obj, "table", None)
    return table is not None and table.name in OURS


def test_migration_matches_the_models(service):
    with service.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_object": _ours})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
