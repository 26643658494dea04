"""Migration 0007 creates exactly what console/alerts/models.py describes, and the alerts
package stays on the engine's side of the line: no HTTP, templates or forms."""
from __future__ import annotations

import ast
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from console.jobs.models import Base

OURS = {"alert_rules", "alerts", "alert_notifications"}
PACKAGE = Path(__file__).resolve().parents[2] / "console" / "alerts"
FORBIDDEN = ("flask", "flask_wtf", "wtforms", "jinja2", "console.web")


def _ours(obj, name, kind, reflected, compare_to):
    table = obj if kind == "table" else getattr(obj, "table", None)
    return table is not None and table.name in OURS


def test_migration_0007_matches_the_models(service):
    with service.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": _ours})
        assert compare_metadata(context, Base.metadata) == []


def test_the_alerts_package_knows_nothing_of_http():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"console.{node.module}" if node.level == 2 else node.module]
            else:
                continue
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (
                    f"{path.name} imports {name}")
