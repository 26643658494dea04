"""The failures screen: failed jobs grouped by handler and error type, with counts and the
latest message; retry one job, a group, or every failed job.

Retrying a group or everything goes through the jobs screen's "all matching" step (a filter of
status, handler and error type, counted and confirmed), so there is one bulk path; one job
goes through its own retry action. Both come back here.
"""
from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from ..jobs import get_job_service
from .failure_groups import failure_overview
from .rendering import render_view

bp = Blueprint("failures", __name__)


@bp.get("/failures")
def index():
    with get_job_service().engine.connect() as conn:
        overview = failure_overview(conn)
    return render_view("failures/index.html", "failures/_groups.html", live=True,
                       may_act=current_user.may("operator"), **overview)
