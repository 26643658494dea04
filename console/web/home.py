"""The landing page: a summary of tenants and their jobs (the full console comes later)."""
from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from ..extensions import db
from ..jobs import get_job_service
from ..jobs.models import jobs_table, rollups_table

bp = Blueprint("home", __name__)


def build_summary() -> dict:
    """Per tenant: jobs waiting and running now (indexed live counts) and finished outcomes
    (the rollups), so the page stays fast however many jobs the table holds."""
    service = get_job_service()
    j, r = jobs_table.c, rollups_table.c
    counts: dict[tuple[str, str], int] = {}
    with db.engine.connect() as conn:
        for tenant_id, status, count in conn.execute(
                select(j.tenant_id, j.status, func.count())
                .where(j.status.in_(["pending", "queued", "processing"]))
                .group_by(j.tenant_id, j.status)):
            counts[(tenant_id, status)] = count
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
    return render_template("home/index.html", **build_summary())
