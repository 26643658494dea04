"""Reports: what ``report_generator`` wrote, newest first (all tenants or one), each downloadable
as CSV; operators generate one for a tenant and a date range, which queues a
``report_generator`` job through ``JobService`` and opens that job's page."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask_login import current_user

from ..jobs import JobValidationError, TenantLimitException, get_job_service
from .auth import role_required
from .keyset import BadCursor
from .rendering import render_view
from .report_forms import GenerateReportForm, download_name, get_report, list_reports

bp = Blueprint("reports", __name__)
UTC = timezone.utc


def _tenants() -> list[tuple[str, str]]:
    return [(config.tenant_id, f"{config.name} ({config.tenant_id})")
            for config in sorted(get_job_service().tenants.list_tenant_configs(),
                                 key=lambda c: c.name.lower())]


def _render(form: GenerateReportForm | None, status: int = 200):
    tenant_id = request.args.get("tenant", "").strip() or None
    tenants = _tenants()
    if tenant_id and tenant_id not in {t for t, _ in tenants}:
        abort(404, f"There is no tenant {tenant_id!r}; choose one from the list.")
    if form is None and current_user.may("operator"):
        form = GenerateReportForm(formdata=None, tenants=tenants,
                                  today=datetime.now(UTC).date())
        form.tenant.data = tenant_id or ""
    try:
        with get_job_service().engine.connect() as conn:
            page = list_reports(conn, tenant_id, request.args.get("before"),
                                request.args.get("after"))
    except BadCursor:
        abort(400, "That page link is not one this console made; start from the newest "
                   "reports.")
    return render_view("reports/index.html", "reports/_table.html", status, listing=page,
                       form=form, tenants=tenants, tenant_id=tenant_id or "",
                       one_day=timedelta(days=1))


@bp.get("/reports")
def index():
    return _render(None)


@bp.post("/reports")
@role_required("operator")
def generate():
    service = get_job_service()
    form = GenerateReportForm(tenants=_tenants(), today=datetime.now(UTC).date())
    if not form.validate():
        return _render(form, 422)
    start, end = form.start_date.data, form.end_date.data
    try:
        job = service.queue_job("immediate", "report_generator",
                                {"report_type": "usage", "start_date": start.isoformat(),
                                 "end_date": end.isoformat(),
                                 "requested_by": current_user.username},
                                form.tenant.data, max_retries=2)
    except TenantLimitException as refused:
        form.tenant.errors = [f"{refused} (a report is an 'immediate' job of the tenant)"
                              if refused.limit_type == "allowed_job_types" else str(refused)]
        return _render(form, 422)
    except JobValidationError as refused:
        form.end_date.errors = [str(refused)]
        return _render(form, 422)
    flash(f"Report for {form.tenant.data}, {start.isoformat()} to {end.isoformat()}, queued; "
          "it appears on the Reports page when this job completes.")
    return redirect(url_for("jobs.show", job_id=job.id), 303)


@bp.get("/reports/<report_id>/download")
def download(report_id: str):
    with get_job_service().engine.connect() as conn:
        report = get_report(conn, report_id)
    if report is None:
        abort(404, "There is no such report; it may have been cleaned up. The Reports page "
                   "lists those that are kept.")
    return Response(report.content, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{download_name(report)}"',
        "Cache-Control": "private, no-store"})
