"""Handlers: every handler's executions, success rate, average and p95 duration and errors over
a window; a handler's page with its errors and charts, its pauses and its rate limits. The
figures come from the rollups (``console.analytics.handlers``).

Windows end now and are whole hours. They stop at 7 days: a handler's duration histogram is
kept per tenant (by hour, and by day for the whole days of a range), so a week of every
handler is many thousands of rows. The list reads every handler at once up to 24 hours; for 7
days each row is its own lazily loaded fragment, so no one request reads a week of every
handler's histogram.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, abort, request, url_for

from ...analytics import charts as plots
from ...analytics.handlers import (
    HandlerPerformance,
    handler_has_history,
    handler_performance,
    latest_error_messages,
)
from ...jobs import JobService, RateLimit, get_job_service
from ...jobs.types import JobValidationError
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..control import act, back_to, form_reason, require_staff_admin
from ..rendering import render_view
from ..scope import is_staff, tenant_or_404, tenant_scoped, visible_tenants

UTC = timezone.utc


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    span: timedelta
    per_row: bool = False   # the list loads each row as its own fragment

    def bounds(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        now = now or datetime.now(UTC)
        return now - self.span, now


WINDOWS = {w.key: w for w in (
    Window("1h", "last hour", timedelta(hours=1)),
    Window("6h", "last 6 hours", timedelta(hours=6)),
    Window("24h", "last 24 hours", timedelta(hours=24)),
    Window("7d", "last 7 days", timedelta(days=7), per_row=True),
)}
DEFAULT_WINDOW = "24h"


def parse_window(value: str | None) -> tuple[Window, str | None]:
    """The window named in the query string, or the default and a message saying why."""
    if not value:
        return WINDOWS[DEFAULT_WINDOW], None
    if value in WINDOWS:
        return WINDOWS[value], None
    return WINDOWS[DEFAULT_WINDOW], (f"There is no window {value!r}: choose one of "
                                     f"{', '.join(WINDOWS)}. Showing the last 24 hours.")


def known_handler(service: JobService, name: str) -> bool:
    """Registered now, or seen in the history (a handler since removed still has figures)."""
    return name in service.handlers or handler_has_history(service.engine, name)


def handler_rows(service: JobService, window: Window) -> list[dict[str, Any]]:
    """One row per handler: registered ones (with or without runs in the window) and any other
    that ran in it. With ``window.per_row`` the figures are left to each row's fragment."""
    registered = set(service.handlers.names())
    figures: dict[str, HandlerPerformance] = {}
    if not window.per_row:
        start, end = window.bounds()
        figures = {p.handler: p for p in handler_performance(service.engine, start, end)}
    names = sorted(registered | set(figures))
    return [{"name": name, "registered": name in registered,
             "performance": figures.get(name), "lazy": window.per_row} for name in names]


def handler_row(service: JobService, name: str, window: Window) -> dict[str, Any]:
    start, end = window.bounds()
    found = handler_performance(service.engine, start, end, handler=name)
    return {"name": name, "registered": name in service.handlers,
            "performance": found[0] if found else None, "lazy": False}


def handler_page(service: JobService, name: str, window: Window) -> dict[str, Any]:
    """The figures (exact p95) and the errors with their latest message."""
    start, end = window.bounds()
    found = handler_performance(service.engine, start, end, handler=name, exact_p95=True)
    handler = service.handlers.get(name)
    errors = latest_error_messages(service.engine, name, start, end)
    errors_chart = None
    if errors:
        errors_chart = plots.figure_json(plots.breakdown_chart(
            {error_type: e["count"] for error_type, e in errors.items()}, "Errors by type"))
    return {"name": name, "handler": handler, "registered": handler is not None,
            "supported_job_types": sorted(getattr(handler, "supported_job_types", None) or []),
            "performance": found[0] if found else None, "errors": errors,
            "errors_chart": errors_chart, "rate_limits": rate_limit_rows(service, name)}


def rate_limit_rows(service: JobService, name: str) -> list[dict[str, Any]]:
    """The handler's rate limits the user may see (for every tenant; for each of the user's
    tenants), each with its starts in the current period and its next allowed start."""
    visible = {config.tenant_id for config in visible_tenants()}
    rows = []
    for limit in service.handler_rate_limits(name):
        if limit.tenant_id is not None and limit.tenant_id not in visible:
            continue
        state = next(s for s in service.rate_limit_states(limit.tenant_id, name)
                     if s.key == limit.key)
        rows.append({"limit": limit, "state": state})
    return rows


def handler_charts(service: JobService, name: str, window: Window) -> list[dict[str, str]]:
    """Throughput, duration (average and p95) and success rate (errors by type are drawn on
    the page, from the errors it already read)."""
    start, end = window.bounds()
    trends = service.get_job_trends(handler=name, start_date=start, end_date=end)
    by = "hour" if trends["granularity"] == "hour" else "day"
    return [
        {"name": "throughput", "label": f"{name}: jobs completed, failed and cancelled per {by}",
         "json": plots.figure_json(plots.throughput_chart(trends, f"Jobs per {by}"))},
        {"name": "duration", "label": f"{name}: average and p95 run time per {by}",
         "json": plots.figure_json(plots.duration_chart(trends))},
        {"name": "success-rate", "label": f"{name}: share of runs that succeeded per {by}",
         "json": plots.figure_json(plots.success_rate_chart(trends))},
    ]


bp = Blueprint("handlers", __name__)


def _known_or_404(service: JobService, name: str) -> None:
    if not known_handler(service, name):
        abort(404, f"There is no handler {name!r}: it is not registered and never ran a job. "
                   "The Handlers page lists them all.")


@bp.get("/handlers")
def index():
    service = get_job_service()
    window, note = parse_window(request.args.get("window"))
    return render_view("handlers/index.html", "handlers/_table.html", 422 if note else 200,
                       rows=handler_rows(service, window), window=window, windows=WINDOWS,
                       window_note=note)


@bp.get("/handlers/<name>/row")
def row(name: str):
    """One handler's row of the list, for windows the list loads row by row."""
    service = get_job_service()
    _known_or_404(service, name)
    window, _ = parse_window(request.args.get("window"))
    return render_view("handlers/_row.html", "handlers/_row.html",
                       row=handler_row(service, name, window), window=window)


@bp.get("/handlers/<name>")
def show(name: str):
    service = get_job_service()
    _known_or_404(service, name)
    window, note = parse_window(request.args.get("window"))
    return render_view("handlers/show.html", "handlers/_details.html", 422 if note else 200,
                       window=window, windows=WINDOWS, window_note=note,
                       tenants=visible_tenants(), **handler_page(service, name, window))


@bp.get("/handlers/<name>/charts")
def charts(name: str):
    """The handler's charts, loaded after its page."""
    service = get_job_service()
    _known_or_404(service, name)
    window, _ = parse_window(request.args.get("window"))
    return render_view("handlers/_charts.html", "handlers/_charts.html",
                       charts=handler_charts(service, name, window))


# -- pause and resume ------------------------------------------------------------------------
# One pair of routes for both scopes, the handler and the tenant in the form: the handler's page
# pauses it for one tenant (chosen there) or every tenant, a tenant's page one of its handlers.
# For one tenant: the role retry and cancel need, and the tenant must be the user's (else
# 404); for every tenant: staff admins only.

def _handler_scope() -> tuple[str, str | None, str, str]:
    """The form's handler and tenant (None: every tenant, which only staff admins may touch),
    the page to go back to, and whom the change is for, in words."""
    handler = (request.form.get("handler") or "").strip()
    tenant_id = (request.form.get("tenant_id") or "").strip() or None
    if tenant_id is None:
        require_staff_admin()
    else:
        tenant_id = tenant_or_404(tenant_id).tenant_id
    if handler and is_staff():
        default = url_for(".show", name=handler)
    elif tenant_id:
        default = url_for("tenants.show", tenant_id=tenant_id, _anchor="control")
    else:
        default = url_for(".index")
    whom = f"tenant {tenant_id}" if tenant_id else "every tenant"
    return handler, tenant_id, back_to(default), whom


@bp.post("/handlers/pause")
@tenant_scoped
@role_required("operator")
def pause():
    """Hold a handler's jobs, for one tenant or every tenant; running attempts finish."""
    handler, tenant_id, back, whom = _handler_scope()

    def change():
        get_job_service().pause_handler(handler, tenant_id, form_reason(), by=console_actor())
        return (f"Handler {handler} paused for {whom}: its jobs still queue, none starts until "
                "it is resumed; running ones finish.")
    return act(change, back)


@bp.post("/handlers/rate-limit")
@tenant_scoped
@role_required("operator")
def set_rate_limit():
    """Limit how many of a handler's jobs start per period, for one tenant or every tenant."""
    handler, tenant_id, back, whom = _handler_scope()

    def change():
        limit = get_job_service().set_handler_rate_limit(handler, typed_rate_limit(),
                                                         tenant_id, by=console_actor())
        return (f"Handler {handler} limited to {limit} for {whom}: its jobs past the limit "
                "wait in the queue, from every runner's next claim.")
    return act(change, back)


@bp.post("/handlers/rate-limit/remove")
@tenant_scoped
@role_required("operator")
def remove_rate_limit():
    handler, tenant_id, back, whom = _handler_scope()

    def change():
        get_job_service().set_handler_rate_limit(handler, None, tenant_id, by=console_actor())
        return f"Rate limit of handler {handler} for {whom} removed."
    return act(change, back)


def typed_rate_limit() -> RateLimit:
    """The form's ``count``, ``period_seconds`` and ``burst`` (blank: all of them) as typed.

    :raise JobValidationError: (``rate_limit``) saying what to type instead.
    """
    def number(name: str, kind):
        text = (request.form.get(name) or "").strip().replace(",", "")
        try:
            return kind(text) if text else None
        except ValueError:
            raise JobValidationError("rate_limit", f"type a number for {name}, not "
                                                   f"{text[:20]!r}") from None
    burst = number("burst", int)
    return RateLimit.parse({"count": number("count", int),
                            "period_seconds": number("period_seconds", float),
                            "burst": burst}, "rate_limit")


@bp.post("/handlers/resume")
@tenant_scoped
@role_required("operator")
def resume():
    handler, tenant_id, back, whom = _handler_scope()

    def change():
        lifted = get_job_service().resume_handler(handler, tenant_id, by=console_actor())
        if lifted is None:
            return f"Handler {handler} was not paused for {whom}: nothing changed."
        return f"Handler {handler} resumed for {whom}: its jobs start again."
    return act(change, back)
