"""Migration 0012 creates exactly what the models describe for pauses and runners."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from console.jobs.models import Base

OURS = {"pauses", "runners"}


def _ours(obj, name, kind, reflected, compare_to):
    table = obj if kind == "table" else getattr(obj, "table", None)
    return table is not None and table.name in OURS


def test_migration_0012_matches_the_models(service):
    with service.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": _ours})
        assert compare_metadata(context, Base.metadata) == []
