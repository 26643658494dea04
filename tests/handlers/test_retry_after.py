"""``next_state``: a failure's ``retry_after`` (seconds) delays the retry beyond the backoff."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from console.jobs import JobExecutionResult
from console.jobs.runner import Runner


@pytest.fixture
def runner(service):
    runner = Runner(service)
    yield runner
    runner._connection.close()


def _failure(**metadata):
    now = datetime.now(timezone.utc)
    return JobExecutionResult(success=False, executed_at=now, execution_time=timedelta(0),
                              error_type="WebhookTemporaryError", metadata=metadata or None)


@pytest.mark.parametrize("retry_after, low, high", [
    (None, 0.0, 0.05),      # the backoff (base 0.05 s in tests)
    (0.5, 0.5, 0.5),        # the receiver's wait, longer than the backoff
    (0.001, 0.0, 0.05),     # shorter than the backoff: the backoff wins
    (30, 1.0, 1.0),         # capped by JOBS_RETRY_MAX_SECONDS (1.0 in tests)
])
def test_retry_after_sets_the_least_delay_capped_by_the_maximum(service, make_tenant, runner,
                                                               retry_after, low, high):
    make_tenant("acme")
    job = service.queue_job("immediate", "noop", {}, "acme")
    now = datetime.now(timezone.utc)
    metadata = {"retry_after": retry_after} if retry_after is not None else {}
    changes = runner.next_state(job, _failure(**metadata), now)
    assert changes["status"] == "pending" and changes["current_retries"] == 1
    delay = (changes["scheduled_for"] - now).total_seconds()
    assert low - 1e-6 <= delay <= high + 1e-6
