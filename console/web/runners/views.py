"""Runners: who is working now — each live runner's host and process, threads busy of total,
the handlers it runs, jobs held, claims per minute, the age of its last heartbeat — and the
runners that stopped in the last 24 hours, how each ended and what became of the jobs it held
(``JobService.runners``, console/jobs/runners.py). System-wide, so staff only: the view is
not ``tenant_scoped``, and a user bound to tenants gets 403 as on every such screen. The
tables refresh every 5 s (htmx asks this view for the partial)."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint

from ...jobs import get_job_service
from ..rendering import render_view

bp = Blueprint("runners", __name__)
UTC = timezone.utc


@bp.get("/runners")
def index():
    runners = get_job_service().runners()
    return render_view("runners/index.html", "runners/_tables.html", now=datetime.now(UTC),
                       live_runners=runners["live"], stopped_runners=runners["stopped"])
