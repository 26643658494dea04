"""The landing page: a summary of tenants and their jobs (the full console comes later)."""
from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from ..extensions import db
from ..jobs import get_job_service
from ..jobs.models import jobs_table

bp = Blueprint("home", __name__)


def build_summary() -> dict:
    service = get_job_service()
    counts: dict[tuple[str, str], int] = {}
    with db.engine.connect() as conn:
        for tenant_id, status, count in conn.execute(
                select(jobs_table.c.tenant_id, jobs_table.c.status, func.count())
                .group_by(jobs_table.c.tenant_id, jobs_table.c.status)):
            counts[(tenant_id, status)] = count
    statuses = ["pending", "queued", "processing", "completed", "failed", "cancelled"]
    tenants = [{"config": config,
                "counts": [counts.get((config.tenant_id, s), 0) for s in statuses]}
               for config in service.tenants.list_tenant_configs()]
    return {"tenants": tenants, "statuses": statuses, "handlers": service.handlers.names()}


@bp.get("/")
def index():
    return render_template("home/index.html", **build_summary())
