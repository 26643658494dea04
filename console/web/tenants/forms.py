"""The Tenants screen's forms for adding a tenant and choosing the analytics' date range (the
limits form is in ``tenant_limits``). Each bad value gets a message on its own field."""
from __future__ import annotations

from datetime import date, timedelta

from flask_wtf import FlaskForm
from wtforms import Form, SelectField, StringField, ValidationError
from wtforms.fields import DateField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp

from ...jobs import get_job_service
from ...jobs.limits import JobLimitConfig, TenantLimitTier

TIERS = [tier.value for tier in TenantLimitTier]
# The trend charts read the tenant's hourly rollups, so their time grows with the range: a
# month of the busiest tenant stays within the pages' 200 ms target. Longer ranges would want
# daily rollups.
MAX_RANGE_DAYS = 31
DEFAULT_RANGE_DAYS = 7


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def tier_label(tier: str) -> str:
    limits = JobLimitConfig.for_tier(tier)
    return (f"{tier} — {limits.max_queued_jobs:,} queued, {limits.max_concurrent_jobs:,} "
            f"concurrent, {limits.max_daily_jobs:,} a day")


class TenantForm(FlaskForm):
    """A new tenant: an id that is not taken, a name and a tier."""

    tenant_id = StringField("ID", filters=[_strip], validators=[
        DataRequired("Give the tenant an ID."), Length(max=64, message="At most 64 characters."),
        Regexp(r"^[A-Za-z0-9_-]+$", message="Use letters, digits, - and _ only (no spaces).")])
    name = StringField("Name", filters=[_strip], validators=[
        DataRequired("Give the tenant a name."),
        Length(max=200, message="At most 200 characters.")])
    tier = SelectField("Tier", choices=[SelectChoice(t, tier_label(t)) for t in TIERS],
                       default="tier2")

    def validate_tenant_id(self, field):
        if get_job_service().tenants.get_tenant_config(field.data) is not None:
            raise ValidationError(f"A tenant with the ID {field.data!r} already exists; choose "
                                  "another ID, or open that tenant to change it.")


# -- analytics range ----------------------------------------------------------------------------

class DateRangeForm(Form):
    """?start=YYYY-MM-DD&end=YYYY-MM-DD, both days included; the last 7 days by default."""

    start = DateField("From", invalid_value_message="Type a date as YYYY-MM-DD.")
    end = DateField("To", invalid_value_message="Type a date as YYYY-MM-DD.")

    def __init__(self, args, today: date):
        super().__init__(args)
        self.today = today
        if not self.start.raw_data or not self.start.raw_data[0]:
            self.start.data = today - timedelta(days=DEFAULT_RANGE_DAYS - 1)
            self.start.raw_data = None
        if not self.end.raw_data or not self.end.raw_data[0]:
            self.end.data = today
            self.end.raw_data = None

    def validate_end(self, field):
        if self.start.data and field.data:
            if field.data < self.start.data:
                raise ValidationError("The end is before the start: choose an end on or after "
                                      f"{self.start.data.isoformat()}.")
            days = (field.data - self.start.data).days + 1
            if days > MAX_RANGE_DAYS:
                raise ValidationError(f"That is {days} days; choose at most {MAX_RANGE_DAYS} "
                                      "days.")

    def default_range(self) -> tuple[date, date]:
        return self.today - timedelta(days=DEFAULT_RANGE_DAYS - 1), self.today
