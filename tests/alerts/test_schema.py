"""Migration 0007 creates exactly what console/alerts/models.py describes, and the alerts
package stays on the engine's side of the line: no HTTP, templates or forms."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.support import schema_differences

OURS = {"alert_rules", "alerts", "alert_notifications"}
PACKAGE = Path(__file__).resolve().parents[2] / "console" / "alerts"
FORBIDDEN = ("flask", "flask_wtf", "wtforms", "jinja2", "console.web")


def test_migration_0007_matches_the_models(service):
    assert schema_differences(service.engine, OURS) == []


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
