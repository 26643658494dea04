"""``JobFilter``: the job listing both doors read (the console's jobs table and the API's
``GET /jobs``). It owns the query parameters (status, tenant, type, handler, priority, created
between, text in the payload, error type, waiting for dependencies, page cursors), their
validation, the SQL, and keyset pagination; a table, its pager and the bulk actions share it.
Plain Python, no forms: the engine knows nothing of HTTP.

Why the SQL looks the way it does, at millions of jobs:

- Pages are keyset pages on ``id`` (UUIDv7: ordering by id is ordering by creation), newest
  first: ``id < cursor ORDER BY id DESC LIMIT n``. No OFFSET, no total COUNT.
- Only two filters have an index that also yields id order: status ``(status, id)`` and tenant
  ``(tenant_id, id)``; the creation-time range is an id range on any of them. One of these
  *drives* the scan (the smaller set when both are given, from two counts bounded by the window).
- Every other filter (type, handler, priority, the other of status/tenant, payload text, error
  type) can only be checked row by row. A rare value could make that read the whole table, so it
  is checked within a *window*: the next ``SCAN_WINDOW`` jobs of the driving index. A page that
  is not full by then says so ("searched the newest 20,000 jobs…") and offers to continue from
  where the window stopped. Every job still appears exactly once across the pages.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, func, or_, select

from .models import jobs_table
from .records import JOB_ID_PATTERN, job_from_row, job_id_floor
from .types import JobPriority, JobStatus, SystemJob

UTC = timezone.utc
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200         # the most jobs one page may ask for
SCAN_WINDOW = 20_000        # rows of the driving index one page may examine for other filters
STATUSES = [s.value for s in JobStatus]
WAITING_REASONS = ["dependencies"]   # pending with no time: SystemJob.waiting_for_dependencies
PRIORITIES = [p.value for p in JobPriority]
_EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class FilterError(ValueError):
    """A filter parameter's value is not one the listing accepts (the message says why)."""


def parse_moment(text: str) -> datetime:
    """An ISO date-time (or date) typed by an operator; without an offset it is UTC."""
    moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_moment(moment: datetime) -> str:
    """The form's (and links') spelling of a moment: what a datetime-local input shows, UTC."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return moment.strftime("%Y-%m-%dT%H:%M:%S" if moment.second else "%Y-%m-%dT%H:%M")


def _one_of(values: list[str], what: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in values:
            raise FilterError(f"there is no {what} {value!r}; choose one of {', '.join(values)}")
    return check


def _at_most(length: int) -> Callable[[str], None]:
    def check(value: str) -> None:
        if len(value) > length:
            raise FilterError(f"Field cannot be longer than {length} characters.")
    return check


def _moment(value: str) -> None:
    try:
        moment = parse_moment(value)
    except ValueError:
        raise FilterError(f"{value!r} is not a date and time; use YYYY-MM-DD HH:MM "
                          "(UTC)") from None
    if not _EARLIEST <= moment < _LATEST:
        raise FilterError("choose a date between 1970 and 9999")


def _cursor(value: str) -> None:
    if not JOB_ID_PATTERN.fullmatch(value):
        raise FilterError("this page link is not valid (its cursor is not a job id); "
                          "start again from the newest jobs")


@dataclass(frozen=True)
class FilterParameter:
    """One query parameter: the label an operator reads it by, and its rule."""

    label: str
    check: Callable[[str], None]
    strip: bool = True


PARAMETERS: dict[str, FilterParameter] = {
    "status": FilterParameter("Status", _one_of(STATUSES, "status")),
    "tenant": FilterParameter("Tenant", _at_most(64)),
    "type": FilterParameter("Type", _at_most(64)),
    "handler": FilterParameter("Handler", _at_most(100)),
    "priority": FilterParameter("Priority", _one_of(PRIORITIES, "priority")),
    "created_from": FilterParameter("Created from", _moment),
    "created_before": FilterParameter("Created before", _moment),
    "q": FilterParameter("Payload contains", _at_most(200), strip=False),
    "error": FilterParameter("Error type", _at_most(200)),
    "waiting": FilterParameter("Waiting for", _one_of(WAITING_REASONS, "waiting reason")),
    "before": FilterParameter("Older than", _cursor),
    "after": FilterParameter("Newer than", _cursor),
}
LABELS = {name: parameter.label for name, parameter in PARAMETERS.items()}


def _read(args: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The parameters' values (first of each, stripped) and the first error of each field."""
    values, errors = {}, {}
    for name, parameter in PARAMETERS.items():
        raw = args.getlist(name) if hasattr(args, "getlist") else [args.get(name)]
        value = raw[0] if raw and raw[0] is not None else ""
        values[name] = value.strip() if parameter.strip else value
        if values[name]:
            try:
                parameter.check(values[name])
            except FilterError as error:
                errors[name] = str(error)
    if not errors and values["created_from"] and values["created_before"] and (
            parse_moment(values["created_from"]) >= parse_moment(values["created_before"])):
        errors["created_before"] = "must be later than “Created from”"
    if values["before"] and values["after"]:
        errors.setdefault("after", "a page link has either an older or a newer cursor")
    if values["waiting"] and values["status"] not in ("", JobStatus.PENDING.value):
        errors.setdefault("waiting", "jobs waiting for dependencies are pending; choose "
                                     "status pending or any")
    return values, errors


FILTER_FIELDS = ("status", "tenant", "type", "handler", "priority", "created_from",
                 "created_before", "q", "error", "waiting")
# The column each filter reads (the creation-time range reads the id).
_COLUMNS = {"status": "status", "tenant": "tenant_id", "type": "type", "handler": "handler",
            "priority": "priority", "q": "payload", "error": "last_result",
            "waiting": "scheduled_for"}


@dataclass
class JobPage:
    """One page of the table: its jobs (newest first) and the links around it."""

    jobs: list[SystemJob]
    older: str | None = None          # cursor for "Older →"
    newer: str | None = None          # cursor for "← Newer"
    searched: int | None = None       # the window ran out after this many jobs …
    searched_scope: str = "jobs"      # … of this set, before the page was full
    direction: str = "older"
    first: bool = True


class JobFilter:
    """``JobFilter(request.args)``: parse and validate, then ``page(conn)`` or
    ``actionable_ids(conn, statuses, cap)``. Invalid filters have ``errors`` and no SQL."""

    labels = LABELS

    def __init__(self, args: Mapping[str, Any], tenant_scope: frozenset[str] | None = None):
        """``tenant_scope``: the only tenants whose jobs it matches (None: every tenant); the
        console passes a tenant-bound user's tenants, so pages and bulk actions stay in them."""
        self.tenant_scope = tenant_scope
        data, self.errors = _read(args)
        self.valid = not self.errors
        self.values = {name: data[name] for name in FILTER_FIELDS}
        for name in ("created_from", "created_before"):
            if self.values[name] and name not in self.errors:
                self.values[name] = format_moment(parse_moment(self.values[name]))
        if self.values["waiting"] and self.valid:
            # Waiting jobs are pending: the status index drives the scan, the missing time is
            # checked row by row within the window.
            self.values["status"] = JobStatus.PENDING.value
        self.before, self.after = data["before"] or None, data["after"] or None

    # -- describing ------------------------------------------------------------------------

    @property
    def active(self) -> dict[str, str]:
        """The filters in use, by parameter name (what links and hidden fields carry)."""
        return {name: value for name, value in self.values.items() if value}

    def describe(self) -> str:
        """``status=queued, tenant=acme`` (or "all jobs"), as an operator confirms it."""
        return ", ".join(f"{name}={value}" for name, value in self.active.items()) or "all jobs"

    # -- SQL --------------------------------------------------------------------------------

    def _id_range(self, c) -> list:
        conditions = []
        if self.values["created_from"]:
            conditions.append(c.id >= job_id_floor(parse_moment(self.values["created_from"])))
        if self.values["created_before"]:
            conditions.append(c.id < job_id_floor(parse_moment(self.values["created_before"])))
        return conditions

    def _scoped(self, c) -> list:
        """The tenant scope as a condition (none for every tenant)."""
        if self.tenant_scope is None:
            return []
        return [c.tenant_id.in_(sorted(self.tenant_scope))]

    def _conditions(self, c, dialect: str, skip: set[str] = frozenset()) -> list:
        """Each active filter (but ``skip``) as a condition on the columns ``c``: the jobs
        table's, or a window's that holds just the columns those filters read."""
        v, conditions = self.values, []
        active = [name for name in _COLUMNS if v[name] and name not in skip]
        for name in active:
            column = c[_COLUMNS[name]]
            if name == "priority":
                conditions.append(column == JobPriority(v[name]).rank)
            elif name == "q":
                needles = {v["q"], json.dumps(v["q"])[1:-1]}   # as typed, and as stored in JSON
                conditions.append(or_(*(_contains(column, n, dialect) for n in sorted(needles))))
            elif name == "error":
                conditions.append(_contains(column, f'"error_type":{json.dumps(v["error"])}',
                                            dialect))
            elif name == "waiting":
                conditions.append(column.is_(None))
            else:
                conditions.append(column == v[name])
        return conditions

    def _filter_columns(self, c, skip: set[str]) -> list:
        """The columns the active filters (but ``skip``) read."""
        return [c[_COLUMNS[name]] for name in _COLUMNS if self.values[name] and name not in skip]

    def _driver(self, conn: Connection) -> str | None:
        """Which indexed filter drives the scan: status or tenant, the smaller when both."""
        if not (self.values["status"] and self.values["tenant"]):
            return "status" if self.values["status"] else "tenant" if self.values["tenant"] \
                else None
        j = jobs_table.c
        sizes = {}
        for name, condition in (("status", j.status == self.values["status"]),
                                ("tenant", j.tenant_id == self.values["tenant"])):
            bounded = select(j.id).where(condition, *self._id_range(j)).limit(SCAN_WINDOW + 1)
            sizes[name] = conn.execute(select(func.count()).select_from(
                bounded.subquery())).scalar_one()
        return min(sizes, key=lambda name: (sizes[name], name != "status"))

    def _scope(self, driver: str | None) -> str:
        if driver == "status":
            return f"jobs with status {self.values['status']}"
        if driver == "tenant":
            return f"jobs of tenant {self.values['tenant']}"
        return "jobs"

    def page(self, conn: Connection, size: int = PAGE_SIZE) -> JobPage:
        """The page the cursors ask for: ``size`` jobs newest first, with its links."""
        newer = self.after is not None
        cursor = self.after or self.before
        dialect = conn.dialect.name
        j = jobs_table.c
        driver = self._driver(conn)
        indexed = self._id_range(j) + self._scoped(j) + self._conditions(
            j, dialect, skip=set(FILTER_FIELDS) - {driver or ""})
        if cursor:
            indexed.append(j.id > cursor if newer else j.id < cursor)
        order = j.id.asc() if newer else j.id.desc()
        row_skip = {driver} if driver else set()
        row_skip |= {"created_from", "created_before"}
        windowed = bool(self._conditions(j, dialect, skip=row_skip))

        if not windowed:
            rows = conn.execute(select(jobs_table).where(*indexed).order_by(order)
                                .limit(size + 1)).all()
        else:
            # The window carries only the columns its filters read (a third less work than
            # whole rows); the few matches are then read whole by id.
            window = select(j.id, *self._filter_columns(j, row_skip)).where(*indexed) \
                .order_by(order).limit(SCAN_WINDOW).subquery("window")
            matches = select(window.c.id).where(*self._conditions(window.c, dialect,
                                                                  skip=row_skip))
            if dialect != "sqlite":
                # SQLite streams the window (a co-routine) in its order and stops at the LIMIT;
                # an ORDER BY here would make it sort the whole window first.
                matches = matches.order_by(window.c.id.asc() if newer else window.c.id.desc())
            ids = list(conn.execute(matches.limit(size + 1)).scalars())
            rows = conn.execute(select(jobs_table).where(j.id.in_(ids))).all() if ids else []
        jobs = [job_from_row(row) for row in rows]
        jobs.sort(key=lambda job: job.id, reverse=not newer)
        more = len(jobs) > size
        jobs = jobs[:size]

        page = JobPage(jobs=[], direction="newer" if newer else "older", first=cursor is None)
        edge = None
        if not more and windowed:
            edge = self._window_edge(conn, indexed, newer)
            page.searched = SCAN_WINDOW if edge else None
            page.searched_scope = self._scope(driver)
        if newer:
            if not more and edge is None:
                # Reached the newest jobs: show the first page, as "Newest" would.
                self.after = None
                return self.page(conn, size)
            page.jobs = list(reversed(jobs))
            page.newer = jobs[-1].id if more else edge
            page.older = jobs[0].id if jobs else _next_id(cursor)
        else:
            page.jobs = jobs
            page.older = jobs[-1].id if more else edge
            if cursor is not None:
                page.newer = jobs[0].id if jobs else _previous_id(cursor)
        return page

    @staticmethod
    def _window_edge(conn: Connection, indexed: list, newer: bool) -> str | None:
        """Where the window stopped (its oldest id; newest when going newer), or None when it
        held every remaining job of the driving index."""
        j = jobs_table.c
        window = select(j.id).where(*indexed).order_by(j.id.asc() if newer else j.id.desc()) \
            .limit(SCAN_WINDOW).subquery()
        edge, seen = conn.execute(select(func.max(window.c.id) if newer else
                                         func.min(window.c.id), func.count())).one()
        return edge if seen >= SCAN_WINDOW else None

    def within_scope(self, conn: Connection, job_ids: list[str]) -> list[str]:
        """Those of ``job_ids`` whose jobs are in the tenant scope: what a selection may act on
        (the rest are counted as not found, as a job of a tenant out of sight should be)."""
        if self.tenant_scope is None or not job_ids:
            return job_ids
        j = jobs_table.c
        inside = set(conn.execute(select(j.id).where(j.id.in_(job_ids), *self._scoped(j)))
                     .scalars())
        return [job_id for job_id in job_ids if job_id in inside]

    def actionable_ids(self, conn: Connection, statuses: tuple[str, ...], cap: int) -> list[str]:
        """The ids of matching jobs in ``statuses`` (what a bulk verb may change), newest
        first, at most ``cap``: one indexed scan per status (those are the minority of jobs
        a bulk verb can act on), other filters checked row by row."""
        if not self.valid:
            return []
        j = jobs_table.c
        dialect = conn.dialect.name
        ids: list[str] = []
        for status in statuses:
            if self.values["status"] and self.values["status"] != status:
                continue
            query = (select(j.id).where(j.status == status, *self._id_range(j), *self._scoped(j),
                                        *self._conditions(j, dialect, skip={"status"}))
                     .order_by(j.id.desc()).limit(cap))
            ids.extend(conn.execute(query).scalars())
        ids.sort(reverse=True)
        return ids[:cap]


def _contains(column, text: str, dialect: str):
    """``column`` contains ``text``, ignoring case (SQLite's LIKE already does for ASCII)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    if dialect == "postgresql":
        return column.ilike(pattern, escape="\\")
    return column.like(pattern, escape="\\")


def _next_id(job_id: str) -> str:
    """The id just above ``job_id``: ``id < _next_id(x)`` includes x itself."""
    return str(uuid.UUID(int=min(uuid.UUID(job_id).int + 1, (1 << 128) - 1)))


def _previous_id(job_id: str) -> str:
    """The id just below ``job_id``: ``id > _previous_id(x)`` includes x itself."""
    return str(uuid.UUID(int=max(uuid.UUID(job_id).int - 1, 0)))
