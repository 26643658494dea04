"""Queue calls that wait together are written together (one transaction: on SQLite each call in
its own savepoint, on PostgreSQL each in its own sub-transaction of ``queue_calls``), and each
caller still gets exactly its own answer: its job, or its own refusal with nothing of it stored.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text

from console.jobs import JobValidationError, TenantLimitException, db
from console.jobs.models import daily_usage_table, rejections_table, rollups_table
from console.jobs.queue_sql import QueueWriter
from tests.conftest import ON_POSTGRES
from tests.support import wait_until

GATE = "gate"   # PostgreSQL: the tenant whose call leads while the others gather


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


@contextmanager
def writer_held(service):
    """Every queue call started inside waits until the end. SQLite: this thread holds the
    writer's turn. PostgreSQL: a call of the ``GATE`` tenant leads, its transaction waiting for
    the tenant's row, which this thread holds locked. Yields the threads to join afterwards
    (the gate's call leads on through the batches that gathered behind it)."""
    if not ON_POSTGRES:
        with db.process_write_lock(service.engine):
            yield []
        return
    leader = threading.Thread(target=service.queue_job,
                              args=("immediate", "sleeps", {"gate": True}, GATE))
    with service.engine.connect() as conn:
        conn.execute(text("SELECT 1 FROM tenants WHERE id = :id FOR UPDATE"), {"id": GATE})
        leader.start()
        time.sleep(0.3)   # the gate's call now leads, waiting for the row
        yield [leader]
        conn.rollback()


def queue_while_the_writer_is_held(service, calls: list[tuple[str, dict]]) -> list[object]:
    """Start every call while the writer is held, so that they all wait; then let go. Returns
    each call's job or exception, in call order. A call's options may give its ``payload``."""
    outcomes: list[object] = [None] * len(calls)

    def call(index: int, tenant_id: str, options: dict) -> None:
        options = dict(options)
        payload = options.pop("payload", {"n": index})
        try:
            outcomes[index] = service.queue_job("immediate", "sleeps", payload, tenant_id,
                                                **options)
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=call, args=(i, tenant_id, options))
               for i, (tenant_id, options) in enumerate(calls)]
    with writer_held(service) as held:
        for thread in threads:
            thread.start()
        time.sleep(0.3)   # every caller is now waiting for the writer
    for thread in [*threads, *held]:
        thread.join(timeout=30)
    return outcomes


def stored_counts(service) -> tuple[dict[str, int], dict[str, int]]:
    """Per tenant but the gate: jobs created by the rollups, and jobs accepted for the day."""
    with service.engine.connect() as conn:
        created = dict(conn.execute(select(rollups_table.c.tenant_id,
                                           func.sum(rollups_table.c.jobs_created))
                                    .group_by(rollups_table.c.tenant_id)).all())
        accepted = dict(conn.execute(select(daily_usage_table.c.tenant_id,
                                            daily_usage_table.c.jobs_accepted)).all())
    created.pop(GATE, None)
    accepted.pop(GATE, None)
    return created, accepted


def test_waiting_calls_share_one_transaction_and_keep_their_own_answers(
        service, make_tenant, batch_sizes):
    make_tenant(GATE, "tier4")
    make_tenant("small", "tier4", maxQueuedJobs=3, maxDailyJobs=None)
    make_tenant("big", "tier4")
    calls = ([("small", {}) for _ in range(5)] + [("big", {}) for _ in range(10)]
             + [("nobody", {})] + [("big", {"idempotency_key": "once"}) for _ in range(3)])

    outcomes = queue_while_the_writer_is_held(service, calls)

    assert max(batch_sizes) > 1, batch_sizes   # written together, not one by one
    assert len(batch_sizes) < len(calls), batch_sizes   # fewer transactions than calls
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
    created, accepted = stored_counts(service)   # the counters agree with what was stored
    assert created == {"small": 3, "big": 11}
    assert accepted == {"small": 3, "big": 11}


def test_every_refusal_in_a_shared_transaction_is_its_callers_alone(
        service, make_tenant, batch_sizes):
    make_tenant(GATE, "tier4")
    make_tenant("daily", "tier4", maxDailyJobs=2)
    make_tenant("picky", "tier1", maxQueuedJobs=None)    # notifications only
    make_tenant("tiny", "tier4", maxJobPayloadSize=100)
    make_tenant("fine", "tier4")
    calls = ([("daily", {}) for _ in range(4)] + [("picky", {})]
             + [("tiny", {"payload": {"blob": "x" * 200}}), ("tiny", {})]
             + [("fine", {}) for _ in range(3)])

    outcomes = queue_while_the_writer_is_held(service, calls)

    assert max(batch_sizes) > 1, batch_sizes
    daily = outcomes[:4]
    assert sum(not isinstance(o, Exception) for o in daily) == 2
    refused = [o for o in daily if isinstance(o, Exception)]
    assert [o.limit_type for o in refused] == ["max_daily_jobs"] * 2
    assert all(o.to_dict() == {
        "message": f"tenant 'daily' has used 2 of its 2 jobs for {o.message.split(' for ')[1]}",
        "limit_type": "max_daily_jobs", "current_usage": 2, "limit": 2, "tenant_id": "daily"}
        for o in refused), [o.to_dict() for o in refused]
    picky = outcomes[4]
    assert isinstance(picky, TenantLimitException) and picky.limit_type == "allowed_job_types"
    assert picky.current_usage == "immediate" and picky.limit == ["notification"]
    too_big, small_enough = outcomes[5:7]
    assert isinstance(too_big, TenantLimitException)
    assert (too_big.limit_type, too_big.limit) == ("max_job_payload_size", 100)
    assert not isinstance(small_enough, Exception)
    assert not any(isinstance(o, Exception) for o in outcomes[7:])

    assert {t: service.count_jobs(t) for t in ("daily", "picky", "tiny", "fine")} == {
        "daily": 2, "picky": 0, "tiny": 1, "fine": 3}
    created, accepted = stored_counts(service)
    assert created == {"daily": 2, "tiny": 1, "fine": 3}
    assert accepted == {"daily": 2, "tiny": 1, "fine": 3}   # a refusal's count rolled back
    with service.engine.connect() as conn:   # each refusal counted once, by its own caller
        counted = {(row.tenant_id, row.limit_type): row.count for row in conn.execute(
            select(rejections_table.c.tenant_id, rejections_table.c.limit_type,
                   rejections_table.c.count))}
    assert counted == {("daily", "max_daily_jobs"): 2, ("picky", "allowed_job_types"): 1,
                       ("tiny", "max_job_payload_size"): 1}


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's deadlock detector")
def test_a_batch_chosen_as_a_deadlocks_victim_is_written_again(service, make_tenant, batch_sizes):
    """Another transaction holds tenant b's row and then asks for a's, while a batch of calls
    for a and b holds a's and waits for b's: the server cancels the batch's statement to break
    the cycle, and the writer runs it again, so that neither caller sees the deadlock."""
    for tenant_id in (GATE, "a", "b"):
        make_tenant(tenant_id, "tier4")
    outcomes: dict[str, object] = {}

    def queue(tenant_id: str) -> None:
        try:
            outcomes[tenant_id] = service.queue_job("immediate", "sleeps", {}, tenant_id)
        except Exception as exc:
            outcomes[tenant_id] = exc

    callers = [threading.Thread(target=queue, args=(t,)) for t in ("a", "b")]
    with service.engine.connect() as other:
        # Its own detector waits longer than the batch's: the batch is the victim.
        other.execute(text("SET deadlock_timeout = '20s'"))
        with writer_held(service) as held:
            for caller in callers:
                caller.start()
            time.sleep(0.3)   # both calls wait for the writer, to be written together
            other.execute(text("SELECT 1 FROM tenants WHERE id = 'b' FOR UPDATE"))
        with service.engine.connect() as observer:
            wait_until(lambda: observer.execute(text(
                "SELECT pg_stat_clear_snapshot(), count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%queue_calls%'")).one()[1],
                10, "the batch to wait for b's row", interval=0.02)
        other.execute(text("SELECT 1 FROM tenants WHERE id = 'a' FOR UPDATE"))   # the cycle
        other.rollback()
    for thread in [*callers, *held]:
        thread.join(timeout=30)

    assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert service.count_jobs("a") == service.count_jobs("b") == 1
    assert 2 in batch_sizes, batch_sizes
