"""SQLite: queue calls that wait for the writer's turn together are written together (one
transaction, each call in its own savepoint), and each caller still gets exactly its own answer:
its job, or its own refusal with nothing of it stored.
"""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from console.jobs import JobValidationError, TenantLimitException, db
from console.jobs.models import daily_usage_table, rollups_table
from console.jobs.queue_sql import QueueWriter
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="PostgreSQL writes each call on its own")


@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    """The size of every batch written (a spy around the real method)."""
    sizes: list[int] = []
    write_batch = QueueWriter._write_batch

    def spy(self, batch):
        sizes.append(len(batch))
        return write_batch(self, batch)

    monkeypatch.setattr(QueueWriter, "_write_batch", spy)
    return sizes


def queue_while_the_turn_is_held(service, calls: list[tuple[str, dict]]) -> list[object]:
    """Start every call while this thread holds the writer's turn, so that they all wait;
    then let go. Returns each call's job or exception, in call order."""
    outcomes: list[object] = [None] * len(calls)

    def call(index: int, tenant_id: str, options: dict) -> None:
        try:
            outcomes[index] = service.queue_job("immediate", "sleeps", {"n": index}, tenant_id,
                                                **options)
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=call, args=(i, tenant_id, options))
               for i, (tenant_id, options) in enumerate(calls)]
    with db.process_write_lock(service.engine):
        for thread in threads:
            thread.start()
        time.sleep(0.3)   # every caller is now waiting in line for the turn
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_waiting_calls_share_one_transaction_and_keep_their_own_answers(
        service, make_tenant, batch_sizes):
    make_tenant("small", "tier4", maxQueuedJobs=3, maxDailyJobs=None)
    make_tenant("big", "tier4")
    calls = ([("small", {}) for _ in range(5)] + [("big", {}) for _ in range(10)]
             + [("nobody", {})] + [("big", {"idempotency_key": "once"}) for _ in range(3)])

    outcomes = queue_while_the_turn_is_held(service, calls)

    assert max(batch_sizes) > 1, batch_sizes   # written together, not one by one
    small = outcomes[:5]
    assert sum(not isinstance(o, Exception) for o in small) == 3
    refusals = [o for o in small if isinstance(o, Exception)]
    assert len(refusals) == 2
    assert all(isinstance(o, TenantLimitException) and o.limit_type == "max_queued_jobs"
               for o in refusals)
    assert not any(isinstance(o, Exception) for o in outcomes[5:15])
    assert isinstance(outcomes[15], JobValidationError) and outcomes[15].field == "tenant_id"
    once = outcomes[16:]
    assert not any(isinstance(o, Exception) for o in once)
    assert len({job.id for job in once}) == 1   # one job for the key, every caller gets it

    assert service.count_jobs("small") == 3
    assert service.count_jobs("big") == 11
    assert service.count_jobs("nobody") == 0
    with service.engine.connect() as conn:   # the counters agree with what was stored
        created = dict(conn.execute(select(rollups_table.c.tenant_id,
                                           func.sum(rollups_table.c.jobs_created))
                                    .group_by(rollups_table.c.tenant_id)).all())
        accepted = dict(conn.execute(select(daily_usage_table.c.tenant_id,
                                            daily_usage_table.c.jobs_accepted)).all())
    assert created == {"small": 3, "big": 11}
    assert accepted == {"small": 3, "big": 11}

