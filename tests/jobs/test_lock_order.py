"""Writers that add to the same rollup rows lock them in one order, so on PostgreSQL two runners
recording attempts at once never deadlock (found by benchmarks/exactly_once.py with 6 runner
processes: each deadlock costs its victim a second of deadlock_timeout plus its cycle, and
they came often enough to all but stop the runners)."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, text

from console.jobs import db
from console.jobs.models import rollups_table
from console.jobs.rollups import RollupBatch
from tests.conftest import ON_POSTGRES
from tests.support import wait_until

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="row locks and deadlocks: PostgreSQL")
UTC = timezone.utc


def attempts_of(tenants: list[str], now: datetime) -> RollupBatch:
    """A runner's batch: one finished attempt per tenant, in the order they finished."""
    batch = RollupBatch()
    for tenant_id in tenants:
        batch.add_attempt(now, tenant_id, "record", "immediate", 5.0, True, None, None,
                          "completed")
    return batch


def waiting_on_locks(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one()


def test_two_runners_recording_opposite_orders_do_not_deadlock(service, make_tenant):
    make_tenant("a")
    make_tenant("b")
    engine = service.engine
    now = datetime.now(UTC)
    with db.write_transaction(engine) as conn:
        attempts_of(["a", "b"], now).write(conn)   # the hour's rows exist from here on

    # A third transaction holds both rows, so the two writers queue behind it and are let go
    # together: without one lock order, each then takes its first row and waits for the
    # other's — a deadlock PostgreSQL breaks by failing one of them.
    holder = engine.connect()
    holding = holder.begin()
    holder.execute(select(rollups_table).where(rollups_table.c.handler == "record")
                   .with_for_update()).all()
    errors: list[Exception] = []

    def record(order: list[str]) -> None:
        try:
            with db.write_transaction(engine) as conn:
                attempts_of(order, now).write(conn)
        except Exception as exc:   # the deadlock victim's error, shown by the assertion
            errors.append(exc)

    writers = [threading.Thread(target=record, args=(order,)) for order in (["a", "b"],
                                                                          ["b", "a"])]
    for writer in writers:
        writer.start()
    wait_until(lambda: waiting_on_locks(engine) >= 2, 10, "the writers to queue behind the holder",
               interval=0.02)
    holding.commit()
    holder.close()
    for writer in writers:
        writer.join(timeout=30)

    assert errors == []
    with engine.connect() as conn:
        counts = dict(conn.execute(select(rollups_table.c.tenant_id, rollups_table.c.attempts)
                                   .where(rollups_table.c.handler == "record")).all())
    assert counts == {"a": 3, "b": 3}
