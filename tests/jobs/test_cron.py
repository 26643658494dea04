"""Next fire times, table-driven with fixed datetimes, including DST changes."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from console.jobs import JobValidationError
from console.jobs.cron import (
    CRON_SEARCH_YEARS,
    CronNeverFiresError,
    next_fire_time,
    next_fire_times,
    validate_cron,
)

UTC = timezone.utc


def utc(*args):
    return datetime(*args, tzinfo=UTC)


CASES = [
    # expression, zone, after (UTC), expected next (UTC)
    ("*/15 * * * *", "UTC", utc(2026, 1, 1, 10, 7), utc(2026, 1, 1, 10, 15)),
    ("*/15 * * * *", "UTC", utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 10, 30)),   # strictly after
    ("0 9 * * *", "UTC", utc(2026, 1, 1, 9, 0, 1), utc(2026, 1, 2, 9, 0)),
    ("0 2 * * 0", "UTC", utc(2026, 11, 28, 12), utc(2026, 11, 29, 2)),            # Sunday 2 AM
    ("0 3 1 * *", "UTC", utc(2026, 11, 28), utc(2026, 12, 1, 3)),                  # 1st of month
    ("0 9 * * *", "Europe/Paris", utc(2026, 1, 15, 0), utc(2026, 1, 15, 8)),      # CET = UTC+1
    ("0 9 * * *", "Europe/Paris", utc(2026, 7, 15, 0), utc(2026, 7, 15, 7)),      # CEST = UTC+2
    # New York springs forward on 2026-03-08 at 02:00 → 03:00 (EST -5 → EDT -4).
    ("0 9 * * *", "America/New_York", utc(2026, 3, 7, 15), utc(2026, 3, 8, 13)),  # 09:00 EDT
    ("0 9 * * *", "America/New_York", utc(2026, 3, 6, 15), utc(2026, 3, 7, 14)),  # 09:00 EST
    # 02:30 does not exist that day: the run happens once, at the first valid instant.
    ("30 2 * * *", "America/New_York", utc(2026, 3, 8, 5), utc(2026, 3, 8, 7)),   # 03:00 EDT
    ("30 2 * * *", "America/New_York", utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)),
    # New York falls back on 2026-11-01 at 02:00 → 01:00: 01:30 happens twice; run once.
    ("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30)),
    ("30 1 * * *", "America/New_York", utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
    # A wildcard-hour job runs in both of the repeated hours (they are different real hours).
    ("30 * * * *", "America/New_York", utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)),
]


@pytest.mark.parametrize("expression,zone,after,expected", CASES)
def test_next_fire_time(expression, zone, after, expected):
    assert next_fire_time(expression, zone, after) == expected


def test_next_five_times_for_the_preview():
    times = next_fire_times("0 */6 * * *", "UTC", utc(2026, 1, 1, 1), 5)
    assert [t.hour for t in times] == [6, 12, 18, 0, 6]
    assert all(t.tzinfo is not None for t in times)


@pytest.mark.parametrize("expression", ["", "61 * * * *", "* * *", "0 25 * * *", "hello",
                                        "* * * * * * * *", "0 9 * * 8"])
def test_invalid_expressions_are_refused(expression):
    with pytest.raises(JobValidationError) as error:
        validate_cron(expression)
    assert error.value.field == "cron_schedule"


def test_valid_expression_is_normalised():
    assert validate_cron("  0   9 * * 1-5 ") == "0 9 * * 1-5"


NEVER_FIRES = ["0 0 31 2 *", "0 0 30 2 *", "0 0 30,31 2 *", "* * 31 2 *", "0 0 31 4,6,9,11 *",
               "*/5 3 31 11 *", "0 0 31 2 * 0"]


@pytest.mark.parametrize("expression", NEVER_FIRES)
def test_an_expression_that_never_fires_is_refused_quickly(expression):
    started = time.perf_counter()
    with pytest.raises(CronNeverFiresError) as error:
        validate_cron(expression)
    assert time.perf_counter() - started < 1.0      # bounded: a 50-year search takes ~10 ms
    assert error.value.field == "cron_schedule"
    assert error.value.message.startswith(f"cron_schedule: {expression!r} never fires (")
    assert f"within {CRON_SEARCH_YEARS} years" in error.value.message
    assert isinstance(error.value, JobValidationError)


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 * *", "0 0 30 1,2 *",
                                        "0 0 31 2 1"])   # dom OR dow: every Monday of February
def test_rare_but_real_dates_are_accepted(expression):
    assert validate_cron(expression) == expression
    assert next_fire_time(expression, "Europe/Paris", utc(2026, 3, 1)) > utc(2026, 3, 1)


@pytest.mark.parametrize("expression", NEVER_FIRES)
def test_next_fire_time_of_a_stored_never_firing_expression_raises_no_croniter_error(
        expression):
    for zone in ("UTC", "America/New_York"):
        with pytest.raises(CronNeverFiresError) as error:
            next_fire_time(expression, zone, utc(2026, 1, 1))
        assert error.value.field == "cron_schedule"
    with pytest.raises(JobValidationError) as error:       # what validate_cron would refuse
        next_fire_time("61 * * * *", "UTC", utc(2026, 1, 1))
    assert error.value.field == "cron_schedule"
