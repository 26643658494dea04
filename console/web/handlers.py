"""Handlers: every handler's executions, success rate, average and p95 duration and errors over
a window; a handler's page with its errors and charts. Read-only, for every role."""
from __future__ import annotations

from flask import Blueprint, abort, request

from ..jobs import JobService, get_job_service
from .handler_views import (WINDOWS, handler_charts, handler_page, handler_row, handler_rows,
                            known_handler, parse_window)
from .rendering import render_view

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
                       **handler_page(service, name, window))


@bp.get("/handlers/<name>/charts")
def charts(name: str):
    """The handler's charts, loaded after its page."""
    service = get_job_service()
    _known_or_404(service, name)
    window, _ = parse_window(request.args.get("window"))
    return render_view("handlers/_charts.html", "handlers/_charts.html",
                       charts=handler_charts(service, name, window))
