"""Reading the duration histogram over a range at the cost of what the range shows.

The histogram is kept twice (console/jobs/rollups.py): by hour and by UTC day. A range of whole
hours reads its whole days from the daily rows and only the hours before its first midnight and
after its last from the hourly ones, so a month is ~30 days and at most 46 hours of rows rather
than 720 hours of them; the counts are the same as from the hourly rows alone.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, select

from ..jobs.models import daily_duration_rollups_table, duration_rollups_table
from ..jobs.rollups import day_of

DAY = timedelta(days=1)


def histogram_spans(start: datetime | None, end: datetime | None
                    ) -> list[tuple[Table, object, datetime | None, datetime | None]]:
    """(table, its time column, from, to) covering [start, end) (whole hours; None: open)
    exactly once: whole days from the daily histogram, the hours at either end from the
    hourly one."""
    hourly, daily = duration_rollups_table, daily_duration_rollups_table
    first_day = start if start is None or start == day_of(start) else day_of(start) + DAY
    last_day = end if end is None else day_of(end)
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [(hourly, hourly.c.hour, start, end)]   # no whole day inside
    spans = []
    if start is not None and start < first_day:
        spans.append((hourly, hourly.c.hour, start, first_day))
    spans.append((daily, daily.c.day, first_day, last_day))
    if end is not None and last_day < end:
        spans.append((hourly, hourly.c.hour, last_day, end))
    return spans


def hourly_span(start: datetime | None, end: datetime | None
                ) -> list[tuple[Table, object, datetime | None, datetime | None]]:
    """The hourly histogram alone (for figures by hour)."""
    return [(duration_rollups_table, duration_rollups_table.c.hour, start, end)]


def summed_histogram(conn, start: datetime | None, end: datetime | None,
                     where: Callable[[Any], list],
                     group_by: Callable[[Any, Any], list] = lambda columns, at: [],
                     spans: Callable = histogram_spans) -> dict[tuple, list]:
    """``{(*group_by values, bucket): [attempts, attempts_succeeded, duration_ms_sum]}`` over
    [start, end), summed across ``spans`` (default: whole days by day, the ends by hour).

    :param where: the conditions, given a histogram table's columns.
    :param group_by: more to group by, given the table's columns and its time column.
    """
    merged: dict[tuple, list] = {}
    for table, at, since, until in spans(start, end):
        d = table.c
        keys = group_by(d, at)
        in_range = [at >= since] if since is not None else []
        if until is not None:
            in_range.append(at < until)
        query = (select(*keys, d.duration_bucket, func.sum(d.attempts),
                        func.sum(d.attempts_succeeded), func.sum(d.duration_ms_sum))
                 .where(*where(d), *in_range).group_by(*keys, d.duration_bucket))
        for *key, bucket, count, succeeded, duration in conn.execute(query):
            sums = merged.setdefault((*key, int(bucket)), [0, 0, 0.0])
            sums[0] += int(count or 0)
            sums[1] += int(succeeded or 0)
            sums[2] += float(duration or 0.0)
    return merged
