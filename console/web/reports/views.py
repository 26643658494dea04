"""Reports: what ``report_generator`` wrote, newest first (all tenants or one), each downloadable
as CSV; operators generate one for a tenant and a date range, which queues a
``report_generator`` job through ``JobService`` and opens that job's page. The list reads
reports newest first without reading their content.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import DateField, SelectField, ValidationError
from wtforms.validators import InputRequired

from ...handlers.models import reports_table
from ...handlers.reports import MAX_DAYS
from ...jobs import JobValidationError, TenantLimitException, get_job_service
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..keyset import BadCursor, Page, keyset_page
from ..rendering import render_view
from ..scope import current_scope, record_or_404, tenant_scoped, visible_tenants

DEFAULT_DAYS = 7
PAGE_SIZE = 50
_LIST_COLUMNS = [reports_table.c[name] for name in (
    "id", "tenant_id", "job_id", "name", "report_type", "range_start", "range_end",
    "created_at", "row_count", "size_bytes")]


class GenerateReportForm(FlaskForm):
    """Both days included; the last 7 days (today too) by default."""

    tenant = SelectField("Tenant", validators=[InputRequired("Choose the tenant to report on.")],
                         validate_choice=False)
    start_date = DateField("From (UTC)", validators=[
        InputRequired("Give the first day, as YYYY-MM-DD.")],
        invalid_value_message="Type the first day as YYYY-MM-DD.")
    end_date = DateField("To (UTC, included)", validators=[
        InputRequired("Give the last day, as YYYY-MM-DD.")],
        invalid_value_message="Type the last day as YYYY-MM-DD.")

    def __init__(self, *args, tenants: list[tuple[str, str]], today: date, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today
        self.tenant.choices = [("", "choose a tenant…"), *tenants]
        self._tenant_ids = {tenant_id for tenant_id, _ in tenants}
        if kwargs.get("formdata", True) is None:
            self.start_date.data = today - timedelta(days=DEFAULT_DAYS - 1)
            self.end_date.data = today

    def validate_tenant(self, field):
        if field.data not in self._tenant_ids:
            raise ValidationError("There is no such tenant; choose one from the list.")

    def validate_end_date(self, field):
        if field.data and field.data > self.today:
            raise ValidationError(f"The last day is in the future; choose "
                                  f"{self.today.isoformat()} or earlier.")
        start = self.start_date.data
        if start and field.data:
            if field.data < start:
                raise ValidationError(f"The last day is before the first; choose "
                                      f"{start.isoformat()} or later.")
            days = (field.data - start).days + 1
            if days > MAX_DAYS:
                raise ValidationError(f"That is {days} days; a report covers at most "
                                      f"{MAX_DAYS}.")


def list_reports(conn, tenant_id: str | None, before: str | None, after: str | None,
                 tenant_ids: frozenset[str] | None = None) -> Page:
    """One page of reports (without their content), newest first, of one tenant or all (of
    ``tenant_ids`` only when given: a tenant-bound user's)."""
    t = reports_table.c
    query = select(*_LIST_COLUMNS)
    if tenant_id:
        query = query.where(t.tenant_id == tenant_id)
    if tenant_ids is not None:
        query = query.where(t.tenant_id.in_(sorted(tenant_ids)))
    return keyset_page(conn, query, t.created_at, t.id, before=before, after=after,
                       size=PAGE_SIZE)


def get_report(conn, report_id: str):
    return conn.execute(select(reports_table).where(reports_table.c.id == report_id)).first()


def download_name(report) -> str:
    """``usage-acme-2026-01-01-2026-01-07.csv``: safe in any file system and header."""
    tenant = re.sub(r"[^A-Za-z0-9_-]+", "-", report.tenant_id).strip("-") or "tenant"
    last = (report.range_end - timedelta(days=1)).date()
    return (f"{report.report_type}-{tenant}-{report.range_start.date().isoformat()}-"
            f"{last.isoformat()}.csv")


bp = Blueprint("reports", __name__)
UTC = timezone.utc


def _tenants() -> list[tuple[str, str]]:
    return [(config.tenant_id, f"{config.name} ({config.tenant_id})")
            for config in sorted(visible_tenants(), key=lambda c: c.name.lower())]


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
                                request.args.get("after"), tenant_ids=current_scope())
    except BadCursor:
        abort(400, "That page link is not one this console made; start from the newest "
                   "reports.")
    return render_view("reports/index.html", "reports/_table.html", status, listing=page,
                       form=form, tenants=tenants, tenant_id=tenant_id or "",
                       one_day=timedelta(days=1))


@bp.get("/reports")
@tenant_scoped
def index():
    return _render(None)


@bp.post("/reports")
@tenant_scoped
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
                                form.tenant.data, max_retries=2, actor=console_actor(),
                                audit_action="report_generated")
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
@tenant_scoped
def download(report_id: str):
    with get_job_service().engine.connect() as conn:
        report = get_report(conn, report_id)
    record_or_404(report, message="There is no such report; it may have been cleaned up. The "
                                  "Reports page lists those that are kept.")
    return Response(report.content, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{download_name(report)}"',
        "Cache-Control": "private, no-store"})
