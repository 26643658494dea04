"""Analytics reads; it never changes a job or a rollup."""
from __future__ import annotations

import re
from pathlib import Path

ANALYTICS = Path(__file__).resolve().parent.parent.parent / "console" / "analytics"
WRITES = re.compile(r"\.(insert|update)\(|\bdelete\(|upsert|\.commit\(|write_transaction")


def test_no_analytics_module_writes():
    for path in ANALYTICS.glob("*.py"):
        found = WRITES.findall(path.read_text())
        assert not found, f"{path.name} writes: {found}"
