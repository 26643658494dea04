"""The Reports screen's form and read model: generate a usage report (tenant, date range);
list reports newest first without reading their content."""
from __future__ import annotations

import re
from datetime import date, timedelta

from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import DateField, SelectField, ValidationError
from wtforms.validators import InputRequired

from ..handlers.models import reports_table
from ..handlers.reports import MAX_DAYS
from .keyset import Page, keyset_page

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


def list_reports(conn, tenant_id: str | None, before: str | None, after: str | None) -> Page:
    """One page of reports (without their content), newest first, of one tenant or all."""
    t = reports_table.c
    query = select(*_LIST_COLUMNS)
    if tenant_id:
        query = query.where(t.tenant_id == tenant_id)
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
