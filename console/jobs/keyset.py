"""Keyset pagination on ``(created_at, id)``, newest first, for small lists that are not jobs
(reports, outbox): no OFFSET, no COUNT, every page one range scan of a ``(…, created_at, id)``
index however long the list grows.

A cursor is ``<created_at as microseconds since the epoch>.<id>``: opaque in URLs, exact, and
free of characters that need escaping. ``?before=`` pages older, ``?after=`` newer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Select, and_, or_

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadCursor(ValueError):
    """A ``before``/``after`` value that this console did not write."""


def encode_cursor(created_at: datetime, row_id: str) -> str:
    delta = created_at.astimezone(UTC) - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}.{row_id}"


def decode_cursor(value: str) -> tuple[datetime, str]:
    micros, dot, row_id = value.partition(".")
    if not dot or not row_id or len(value) > 100 or not micros.lstrip("-").isdigit():
        raise BadCursor(value)
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), row_id
    except OverflowError:
        raise BadCursor(value) from None


@dataclass
class Page:
    rows: list[Any] = field(default_factory=list)
    older: str | None = None    # cursor for ?before=
    newer: str | None = None    # cursor for ?after=
    first: bool = True          # this is the newest page


def keyset_page(conn, query: Select, created, row_id, *, before: str | None = None,
                after: str | None = None, size: int = 50) -> Page:
    """Run ``query`` (already filtered) for one page, newest first.

    :raise BadCursor: ``before`` or ``after`` is not a cursor this module wrote.
    """
    if after:
        moment, key = decode_cursor(after)
        rows = conn.execute(query.where(or_(created > moment, and_(created == moment,
                                                                   row_id > key)))
                            .order_by(created.asc(), row_id.asc()).limit(size + 1)).all()
        more_newer = len(rows) > size
        rows = list(reversed(rows[:size]))
        page = Page(rows=rows, first=not more_newer)
        page.newer = _cursor(rows[0]) if more_newer and rows else None
        page.older = _cursor(rows[-1]) if rows else None
        return page
    if before:
        moment, key = decode_cursor(before)
        query = query.where(or_(created < moment, and_(created == moment, row_id < key)))
    rows = conn.execute(query.order_by(created.desc(), row_id.desc()).limit(size + 1)).all()
    page = Page(rows=rows[:size], first=not before)
    if len(rows) > size:
        page.older = _cursor(page.rows[-1])
    if before and page.rows:
        page.newer = _cursor(page.rows[0])
    return page


def _cursor(row) -> str:
    return encode_cursor(row.created_at, row.id)
