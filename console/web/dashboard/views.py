"""The dashboard: the whole system at a glance, live.

One read model per part, each rendered by the page and by the fragment that refreshes it:
the summary (statistics, queue, warnings) polls every few seconds, tenant tiles load lazily and
poll, the 24 h charts load lazily, and the event feed arrives over the SSE stream. A user
bound to tenants sees every part for its tenants only (console/web/scope.py).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, current_app, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from ...alerts.queries import firing_alerts
from ...analytics.charts import failure_chart, figure_json, throughput_chart
from ...extensions import db
from ...jobs import get_job_service
from ...jobs.models import jobs_table
from ...jobs.records import job_from_row
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..control import act, back_to, form_reason, require_staff_admin
from ..production import production_warnings
from ..rendering import render_view
from ..scope import current_scope, tenant_scoped, visible_tenants
from ..tenants.usage import tenants_usage

bp = Blueprint("dashboard", __name__)
UTC = timezone.utc
FEED_LENGTH = 20


def system_summary() -> dict:
    """System statistics of the last 24 h, the queue now, the system health check's warnings,
    the alerts firing now, and for admins the settings unsafe in production."""
    service = get_job_service()
    scope = current_scope()
    return {"stats": service.get_system_job_statistics(tenant_ids=scope),
            "queue": service.get_job_queue_status(tenant_ids=scope),
            "firing": firing_alerts(service.engine, tenant_ids=scope),
            "setting_warnings": (production_warnings(current_app.config)
                                 if scope is None and current_user.may("admin") else [])}


def tenant_tiles() -> list[dict]:
    """Per tenant: health (score, status, first recommendation) and usage against its limits."""
    service = get_job_service()
    configs = visible_tenants()
    health = service.get_tenants_job_health()
    with db.engine.connect() as conn:
        usage = tenants_usage(conn, configs, datetime.now(UTC).date())
    return [{"config": config, "bars": usage[config.tenant_id],
             "health": health[config.tenant_id]} for config in configs]


def day_charts() -> dict:
    trends = get_job_service().get_job_trends(start_date=datetime.now(UTC) - timedelta(hours=24),
                                              tenant_ids=current_scope())
    return {"throughput": figure_json(throughput_chart(trends, "Jobs, last 24 h")),
            "failures": figure_json(failure_chart(trends, "Failures, last 24 h"))}


def latest_changes() -> list:
    query = select(jobs_table).order_by(jobs_table.c.updated_at.desc()).limit(FEED_LENGTH)
    scope = current_scope()
    if scope is not None:
        query = query.where(jobs_table.c.tenant_id.in_(sorted(scope)))
    with db.engine.connect() as conn:
        return [job_from_row(row) for row in conn.execute(query)]


@bp.get("/")
@tenant_scoped
def index():
    return render_template("dashboard/index.html", live=True, events=latest_changes(),
                           **system_summary())


@bp.get("/dashboard/summary")
@tenant_scoped
def summary():
    return render_view("dashboard/index.html", "dashboard/_summary.html", live=True,
                       events=latest_changes(), **system_summary())


@bp.get("/dashboard/tenants")
@tenant_scoped
def tenants():
    return render_template("dashboard/_tenants.html", tiles=tenant_tiles())


@bp.get("/dashboard/charts")
@tenant_scoped
def charts():
    return render_template("dashboard/_charts.html", **day_charts())


# -- maintenance: pause everything (staff admins; not tenant-scoped, so bound users get 403) ----

@bp.post("/maintenance/pause")
@role_required("admin")
def pause_all():
    """Maintenance: every runner finishes what runs and claims nothing until resumed."""
    require_staff_admin()
    back = back_to(url_for(".index"))

    def change():
        pause = get_job_service().pause_all(form_reason(), by=console_actor())
        return (f"Everything is paused (by {pause.paused_by or 'unknown'}): runners finish what "
                "runs and start nothing until resumed. Jobs still queue.")
    return act(change, back)


@bp.post("/maintenance/resume")
@role_required("admin")
def resume_all():
    require_staff_admin()
    back = back_to(url_for(".index"))

    def change():
        lifted = get_job_service().resume_all(by=console_actor())
        if lifted is None:
            return "Nothing was paused: nothing changed."
        return "Everything resumed: runners start jobs again."
    return act(change, back)
