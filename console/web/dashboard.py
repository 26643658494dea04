"""The landing page: a summary of tenants and their jobs (the full console comes later)."""
from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from ..extensions import db
from ..jobs import get_job_service
from ..jobs.models import rollups_table
from ..jobs.usage import live_job_counts

bp = Blueprint("dashboard", __name__)


def build_summary() -> dict:
    """Per tenant: jobs waiting and running now (indexed live counts) and finished outcomes
    (the rollups), so the page stays fast however many jobs the table holds."""
    service = get_job_service()
    r = rollups_table.c
    with db.engine.connect() as conn:
        counts = live_job_counts(conn)
        for tenant_id, completed, failed, cancelled in conn.execute(
                select(r.tenant_id, func.sum(r.jobs_completed), func.sum(r.jobs_failed),
                       func.sum(r.jobs_cancelled)).group_by(r.tenant_id)):
            counts.update({(tenant_id, "completed"): int(completed or 0),
                           (tenant_id, "failed"): int(failed or 0),
                           (tenant_id, "cancelled"): int(cancelled or 0)})
    statuses = ["pending", "queued", "processing", "completed", "failed", "cancelled"]
    tenants = [{"config": config,
                "counts": [counts.get((config.tenant_id, s), 0) for s in statuses]}
               for config in service.tenants.list_tenant_configs()]
    return {"tenants": tenants, "statuses": statuses, "handlers": service.handlers.names()}


@bp.get("/")
def index():
    return render_template("dashboard/index.html", **build_summary())
