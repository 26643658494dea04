"""Retry delays: exponential backoff with jitter, capped."""
from __future__ import annotations

import random
from typing import Any


def backoff_seconds(attempt: int, base: float, maximum: float,
                    metadata: dict[str, Any] | None = None,
                    rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1 = first retry): base · 2^(attempt-1), capped.

    "Equal jitter": half the delay is fixed and half random, so retries of jobs that failed
    together spread out without ever retrying much sooner than the backoff intends.
    ``metadata["max_delay"]`` (milliseconds, like the durations in ``jobLimits``) lowers the
    cap for one job.
    """
    cap = maximum
    if metadata and metadata.get("max_delay") is not None:
        try:
            cap = min(cap, max(0.0, float(metadata["max_delay"]) / 1000.0))
        except (TypeError, ValueError):
            pass
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    rng = rng or random
    return delay / 2 + rng.uniform(0, delay / 2)
