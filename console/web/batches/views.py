"""Batches: the batches of the user's tenants, newest first (keyset pages), and a batch's page
whose progress — n of m ended, the counts, the failures, the callbacks and their states —
refreshes every second until the batch and its callbacks have finished (its jobs' changes come
in hundreds a second: one read a second shows them all, where an event per job would not).
"""
from __future__ import annotations

from flask import Blueprint, abort, request

from ...jobs import get_job_service
from ...jobs.batches import list_batches
from ...jobs.listing import JOB_ID_PATTERN
from ..keyset import BadCursor
from ..rendering import render_view
from ..scope import current_scope, record_or_404, tenant_scoped, visible_tenants
from .progress import batch_progress, segments

bp = Blueprint("batches", __name__)
PAGE_SIZE = 50
NO_BATCH = "There is no batch with that id: the link may be wrong."


@bp.get("/batches")
@tenant_scoped
def index():
    tenants = visible_tenants()
    tenant_id = request.args.get("tenant", "").strip() or None
    if tenant_id and tenant_id not in {t.tenant_id for t in tenants}:
        abort(404, "There is no such tenant; choose one from the list.")
    try:
        with get_job_service().engine.connect() as conn:
            page = list_batches(conn, tenant_id=tenant_id, tenant_ids=current_scope(),
                                before=request.args.get("before"),
                                after=request.args.get("after"), size=PAGE_SIZE)
    except BadCursor:
        abort(400, "That page link is not one this console made; start from the newest "
                   "batches.")
    return render_view("batches/index.html", "batches/_table.html", listing=page,
                       tenants=tenants, tenant_id=tenant_id or "", segments=segments)


@bp.get("/batches/<batch_id>")
@tenant_scoped
def show(batch_id: str):
    return render_view("batches/show.html", None, progress=_progress(batch_id))


@bp.get("/batches/<batch_id>/progress")
@tenant_scoped
def progress(batch_id: str):
    """The part of a batch's page that changes: fetched every second while it is live."""
    return render_view("batches/_progress.html", "batches/_progress.html",
                       progress=_progress(batch_id))


def _progress(batch_id: str):
    service = get_job_service()
    batch = service.get_batch(batch_id) if JOB_ID_PATTERN.fullmatch(batch_id) else None
    record_or_404(batch, message=NO_BATCH)   # another tenant's reads exactly as a missing one
    with service.engine.connect() as conn:
        return batch_progress(conn, batch)
