"""The claim never reads through finished history on PostgreSQL, even when the planner's
statistics are stale (found by benchmarks/exactly_once.py: with statistics taken while 50,000
jobs were queued, the probe for a tenant's first due job became a sequential scan past every
finished job, slower with every job that finished, every other runner waiting behind it)."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from console.jobs.claiming import _TENANTS_WITH_DUE_WORK
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL query plans")


def test_finding_tenants_with_due_work_uses_the_claim_index_with_stale_statistics(
        service, make_tenant):
    make_tenant("acme")
    with service.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO jobs (id, tenant_id, type, handler, payload, priority, status, "
            "scheduled_for, timezone, max_retries, current_retries, total_attempts, created_at, "
            "updated_at) SELECT lpad(n::text, 36, '0'), 'acme', 'immediate', 'record', '{}', 2, "
            "'queued', now(), 'UTC', 3, 0, 0, now(), now() FROM generate_series(1, 20000) n"))
        conn.execute(text("ANALYZE jobs"))
        # Most of them run and finish before the statistics are taken again: the planner still
        # believes 20,000 jobs are queued, and the few queued ones are at the end of the table.
        conn.execute(text("UPDATE jobs SET status = 'completed' "
                          "WHERE id <= lpad('19990', 36, '0')"))
    sql = str(_TENANTS_WITH_DUE_WORK.compile(dialect=postgresql.dialect(),
                                             compile_kwargs={"literal_binds": True}))
    with service.engine.connect() as conn:
        plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + sql)))
        due = conn.execute(text(sql)).all()
    assert [row.id for row in due] == ["acme"]
    assert "Seq Scan on jobs" not in plan, plan
