"""Cron: validation and the next fire time, in the job's own time zone, DST-correct."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from .types import JobValidationError

UTC = timezone.utc
# How far ahead croniter looks for a matching date before it gives up (CroniterBadDateError).
# Every expression that fires at all fires within 50 years (the longest real gap: a leap-day
# rule like '0 0 * 2 5#5', the fifth Friday of February, can wait 40 years around 2100), and
# the bounded search keeps refusing an impossible date cheap.
CRON_SEARCH_YEARS = 50


class CronNeverFiresError(JobValidationError):
    """A cron expression no date matches (31 February): it would never run."""

    def __init__(self, expression: str, field_name: str = "cron_schedule"):
        super().__init__(field_name, never_fires_message(expression))


def never_fires_message(expression: str) -> str:
    return (f"{expression!r} never fires (no date matches it within {CRON_SEARCH_YEARS} years: "
            "a day-of-month its month never has, such as 30 or 31 February); use a day that "
            "exists in the month(s) given")


@lru_cache(maxsize=512)
def parse_timezone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name, or a ``JobValidationError`` naming the field."""
    if not isinstance(name, str) or not name.strip():
        raise JobValidationError("timezone", "must be an IANA time zone name such as 'UTC'")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise JobValidationError(
            "timezone", f"unknown time zone {name!r}; use an IANA name such as "
                        "'Europe/Paris' or 'America/New_York'") from None


def validate_cron(expression: str, field_name: str = "cron_schedule") -> str:
    """Return the expression stripped, or raise ``JobValidationError`` saying what is wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise JobValidationError(field_name, "must be a cron expression such as '0 9 * * *'")
    expression = " ".join(expression.split())
    if len(expression.split()) not in (5, 6):
        raise JobValidationError(
            field_name, f"{expression!r} has {len(expression.split())} fields; a cron expression "
                        "has 5 (minute hour day-of-month month day-of-week), e.g. '*/15 * * * *'")
    if not croniter.is_valid(expression):
        raise JobValidationError(
            field_name, f"{expression!r} is not a valid cron expression; fields are minute "
                        "(0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-6)")
    # Valid fields can still name no real date ('0 0 31 2 *'): look for one, boundedly.
    try:
        croniter(expression, datetime.now(UTC),
                 max_years_between_matches=CRON_SEARCH_YEARS).get_next(datetime)
    except (CroniterBadDateError, OverflowError):
        raise CronNeverFiresError(expression, field_name) from None
    except CroniterError as exc:
        raise JobValidationError(field_name, f"{expression!r} is not a valid cron expression: "
                                             f"{exc}") from None
    return expression


def next_fire_time(expression: str, tz_name: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which ``expression`` fires, in UTC.

    The expression is read in ``tz_name``'s wall-clock time. Across a DST change a fixed-time job
    (an hour field that is not a wildcard) runs once: a wall time skipped in spring fires at the
    first valid instant after it, and a wall time that occurs twice in autumn fires only on its
    first occurrence — the rule cron daemons follow. Jobs with a wildcard hour fire every real hour.

    Never raises a croniter exception, whatever was stored: an expression that never fires
    (within ``CRON_SEARCH_YEARS``) raises ``CronNeverFiresError``, one croniter cannot read a
    ``JobValidationError`` (both name ``cron_schedule``).
    """
    tz = parse_timezone(tz_name)
    local_after = after.astimezone(tz)
    try:
        iterator = croniter(expression, local_after,
                            max_years_between_matches=CRON_SEARCH_YEARS)
        hour_field = expression.split()[1]
        fixed_hour = "*" not in hour_field
        for _ in range(1000):
            candidate: datetime = iterator.get_next(datetime)
            if fixed_hour and candidate.fold == 1 and _is_repeated_wall_time(candidate, tz):
                continue
            candidate_utc = candidate.astimezone(UTC)
            if candidate_utc > after:
                return candidate_utc
    except (CroniterBadDateError, OverflowError):
        raise CronNeverFiresError(expression) from None
    except (CroniterError, IndexError, AttributeError) as exc:
        raise JobValidationError("cron_schedule", f"{expression!r} is not a valid cron "
                                                  f"expression: {exc}") from None
    raise CronNeverFiresError(expression)  # pragma: no cover


def next_fire_times(expression: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times (the console's live preview)."""
    times, moment = [], after
    for _ in range(count):
        moment = next_fire_time(expression, tz_name, moment)
        times.append(moment)
    return times


def _is_repeated_wall_time(moment: datetime, tz: ZoneInfo) -> bool:
    """True when the same wall time also exists, earlier, with ``fold=0`` (autumn's repeat)."""
    first = moment.replace(fold=0)
    return first.utcoffset() != moment.utcoffset()
