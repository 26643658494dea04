"""Runners: who is working now — each live runner's host and process, threads busy of total,
the handlers it runs, jobs held, claims per minute, the age of its last heartbeat — and the
runners that stopped in the last 24 hours, how each ended and what became of the jobs it held
(``JobService.runners``, console/jobs/runners.py). System-wide, so staff only: the view is
not ``tenant_scoped``, and a user bound to tenants gets 403 as on every such screen. The
tables refresh every 5 s (htmx asks this view for the partial)."""
from __future__ import annotations

from flask import Blueprint

from ...jobs import get_job_service
from ..rendering import render_view

bp = Blueprint("runners", __name__)


@bp.get("/runners")
def index():
    service = get_job_service()
    runners = service.runners()
    # Heartbeats are stamped in the engine's clock (the database's on PostgreSQL).
    return render_view("runners/index.html", "runners/_tables.html", now=service.clock.now(),
                       live_runners=runners["live"], stopped_runners=runners["stopped"])
