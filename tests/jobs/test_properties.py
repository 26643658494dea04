"""Property tests (hypothesis) of the pure parts: fair choice, backoff, cron."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.jobs.claiming import FairShare
from console.jobs.cron import next_fire_time
from console.jobs.retry import backoff_seconds

UTC = timezone.utc
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def rows_for(tenant, priorities):
    ordered = sorted(priorities, reverse=True)   # the claim query returns best first
    return [SimpleNamespace(id=f"{tenant}-{i}", tenant_id=tenant, priority=p,
                            scheduled_for=BASE + timedelta(seconds=i))
            for i, p in enumerate(ordered)]


tenant_backlogs = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=12),
    min_size=1)


# CI runs the SQLite and PostgreSQL suites at once on two cores: generation may be slow.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant_backlogs, st.dictionaries(st.sampled_from("abcde"), st.integers(1, 4)),
       st.integers(min_value=1, max_value=30))
def test_fair_choice_respects_capacity_and_each_tenants_order(backlogs, tiers, capacity):
    candidates = {t: rows_for(t, p) for t, p in backlogs.items()}
    weights = {t: tiers.get(t, 2) for t in candidates}
    chosen = FairShare().choose(candidates, weights, capacity)
    total = sum(len(r) for r in candidates.values())
    assert len(chosen) == min(capacity, total)
    assert len({row.id for row in chosen}) == len(chosen)
    for tenant, rows in candidates.items():
        picked = [row for row in chosen if row.tenant_id == tenant]
        assert picked == rows[:len(picked)]          # a tenant's best jobs, in order


@settings(deadline=None)
@given(st.integers(min_value=2, max_value=6), st.integers(min_value=1, max_value=4))
def test_equal_tenants_share_capacity_evenly_over_many_claims(tenants, capacity):
    fair = FairShare()
    names = [f"t{i}" for i in range(tenants)]
    served = Counter()
    for _ in range(60):
        candidates = {t: rows_for(t, [1] * capacity) for t in names}  # everyone always busy
        for row in fair.choose(candidates, {t: 2 for t in names}, capacity):
            served[row.tenant_id] += 1
    assert max(served.values()) - min(served.values()) <= 1


@given(st.integers(1, 12), st.floats(0.01, 10), st.floats(1, 1000),
       st.one_of(st.none(), st.integers(0, 100_000)))
def test_backoff_grows_and_never_passes_its_cap(attempt, base, maximum, max_delay_ms):
    metadata = {"max_delay": max_delay_ms} if max_delay_ms is not None else None
    delay = backoff_seconds(attempt, base, maximum, metadata, random.Random(attempt))
    cap = maximum if max_delay_ms is None else min(maximum, max_delay_ms / 1000)
    nominal = min(cap, base * 2 ** (attempt - 1))
    assert nominal / 2 <= delay <= nominal + 1e-9


@settings(deadline=None)
@given(st.sampled_from(["*/7 * * * *", "0 9 * * 1-5", "15 3 1 * *", "0 */4 * * *",
                        "30 2 * * *"]),
       st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
       st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1),
                    timezones=st.just(UTC)))
def test_next_fire_time_is_later_and_matches_the_expression(expression, zone, after):
    from zoneinfo import ZoneInfo

    fire = next_fire_time(expression, zone, after)
    assert fire > after and fire.tzinfo is not None
    assert fire - after <= timedelta(days=32)
    local = fire.astimezone(ZoneInfo(zone))
    # Either the local wall time matches the expression, or it is the first instant after a
    # wall time that a spring-forward gap skipped.
    if not croniter.match(expression, local.replace(tzinfo=None)):
        assert local.minute == 0 and local.utcoffset() != (local - timedelta(hours=1)).utcoffset()
