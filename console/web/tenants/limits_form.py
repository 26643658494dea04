"""A tenant's limits form: a tier preset plus overrides, each bad value answered on its field.

Limits are edited as overrides of the chosen tier: a blank field takes the tier's value (shown
as its placeholder), so changing the tier moves every limit that was not overridden. What is
saved is ``TenantConfig.for_tier(id, name, tier, {"jobLimits": overrides})``, the shape every
tenant's ``custom_settings`` has, so the API and the engine read the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    SelectField,
    SelectMultipleField,
    StringField,
    ValidationError,
    widgets,
)
from wtforms.fields.choices import SelectChoice

from ...jobs.limits import (
    JOB_TYPE_NAME,
    MAX_DURATION_SECONDS,
    MAX_INT,
    MIN_RATE_PERIOD_SECONDS,
    JobLimitConfig,
    RateLimit,
    TenantConfig,
)
from ...jobs.types import JobPriority, JobType
from ..rendering import duration as format_duration
from .forms import TIERS, tier_label

UNLIMITED_WORDS = {"unlimited", "none", "∞"}


@dataclass(frozen=True)
class LimitSpec:
    """One numeric limit on the form: its JobLimitConfig name, its camelCase ``jobLimits`` key,
    how it is typed (whole numbers, or seconds for durations) and its smallest value."""

    name: str
    key: str
    label: str
    hint: str
    minimum: int
    seconds: bool = False

    def shown(self, value: Any) -> str:
        """A limit's value as typed on the form."""
        if value is None:
            return "unlimited"
        if self.seconds:
            seconds = Decimal(int(value.total_seconds() * 1000)) / 1000
            return f"{seconds.normalize():f}"
        return str(value)

    def parse(self, text: str) -> Any:
        """The typed text as a limit: a number, ``None`` for unlimited.

        :raise ValidationError: with a message that says what to type instead.
        """
        if text.lower() in UNLIMITED_WORDS:
            return None
        try:
            number = Decimal(text.replace(",", "").replace("_", ""))
        except InvalidOperation:
            raise ValidationError(f"Type a whole number{' of seconds' if self.seconds else ''}, "
                                  "'unlimited', or leave it blank for the tier's value.") from None
        if not number.is_finite():
            raise ValidationError("Type a number, or 'unlimited'.")
        if self.seconds:
            if number <= 0 or number.as_tuple().exponent < -3:
                raise ValidationError("Type seconds greater than 0 (up to 3 decimals): a job "
                                      "needs some time to run.")
            if number > MAX_DURATION_SECONDS:
                raise ValidationError(f"At most {MAX_DURATION_SECONDS:,} seconds (30 days); "
                                      "type 'unlimited' for no timeout.")
            return timedelta(milliseconds=int(number * 1000))
        if number != number.to_integral_value():
            raise ValidationError("Type a whole number (no decimals).")
        if number < 0:
            raise ValidationError("Type 0 or more: a limit cannot be negative.")
        if number < self.minimum:
            raise ValidationError(f"Type {self.minimum} or more: {self.why_minimum}")
        if number > MAX_INT:
            raise ValidationError(f"At most {MAX_INT:,}; type 'unlimited' for no limit.")
        return int(number)

    @property
    def why_minimum(self) -> str:
        if self.name == "max_concurrent_jobs":
            return ("with 0 no job would ever run (to stop new work, set max_queued_jobs or "
                    "max_daily_jobs to 0).")
        if self.name == "max_job_payload_size":
            return "even an empty payload ({}) is 2 bytes of JSON."
        return "a limit cannot be negative."


LIMITS = (
    LimitSpec("max_queued_jobs", "maxQueuedJobs", "Max queued jobs",
              "Jobs waiting at once (pending and queued). 0 stops new work.", 0),
    LimitSpec("max_concurrent_jobs", "maxConcurrentJobs", "Max concurrent jobs",
              "Jobs running at once; more wait their turn.", 1),
    LimitSpec("max_daily_jobs", "maxDailyJobs", "Max daily jobs",
              "Jobs accepted per UTC day, recurring runs included. 0 stops new work.", 0),
    LimitSpec("max_job_payload_size", "maxJobPayloadSize", "Max payload size (bytes)",
              "The payload's JSON size, in bytes.", 2),
    LimitSpec("max_job_duration", "maxJobDuration", "Max job duration (seconds)",
              "An attempt running longer fails as a timeout.", 0, seconds=True),
)
LIMITS_BY_NAME = {spec.name: spec for spec in LIMITS}


def _number(text: str) -> Decimal:
    """A typed number (thousands separators allowed).

    :raise ValidationError: not a finite number.
    """
    try:
        number = Decimal(text.replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise ValidationError("Type a number.") from None
    if not number.is_finite():
        raise ValidationError("Type a number.")
    return number


def _whole(text: str, most: int, what: str) -> int:
    number = _number(text)
    if number != number.to_integral_value() or not 1 <= number <= most:
        raise ValidationError(f"Type a whole number from 1 to {most:,}{what}.")
    return int(number)


class RateFields:
    """The rate limit's three fields read together: starts (blank: the tier's; 'unlimited':
    none), per seconds (needed with a number of starts), burst (blank: all of them)."""

    def __init__(self, form: LimitsForm):
        self.count = (form.rate_limit_count.data or "").strip()
        self.period = (form.rate_limit_period.data or "").strip()
        self.burst = (form.rate_limit_burst.data or "").strip()

    @property
    def blank(self) -> bool:
        return not self.count

    @property
    def unlimited(self) -> bool:
        return self.count.lower() in UNLIMITED_WORDS

    def check_count(self) -> None:
        if self.blank and (self.period or self.burst):
            raise ValidationError("Type the number of starts too, or clear the period and "
                                  "burst to keep the tier's rate limit.")
        if not self.blank and not self.unlimited:
            _whole(self.count, MAX_INT, " (to stop work, pause the tenant)")

    def check_period(self) -> None:
        if self.blank or self.unlimited:
            return
        if not self.period:
            raise ValidationError("Type the period in seconds: starts per how long?")
        number = _number(self.period)
        if number < Decimal(str(MIN_RATE_PERIOD_SECONDS)) or number > MAX_DURATION_SECONDS \
                or number.as_tuple().exponent < -3:
            raise ValidationError(f"Type seconds from {MIN_RATE_PERIOD_SECONDS} to "
                                  f"{MAX_DURATION_SECONDS:,} (30 days), up to 3 decimals.")

    def check_burst(self) -> None:
        if self.blank or self.unlimited or not self.burst:
            return
        count = _whole(self.count, MAX_INT, "")
        _whole(self.burst, count, " (at most the number of starts)")

    def limit(self) -> RateLimit | None:
        """The typed rate limit (after validation; not for a blank one)."""
        if self.unlimited:
            return None
        return RateLimit(int(_number(self.count)), float(_number(self.period)),
                         int(_number(self.burst)) if self.burst else None)


class LimitField(StringField):
    """A limit typed as text: blank (the tier's value), a number, or 'unlimited'. After
    validation ``.limit`` holds the parsed value and ``.blank`` says whether it was left empty."""

    def __init__(self, spec: LimitSpec, **kwargs):
        super().__init__(spec.label, description=spec.hint, **kwargs)
        self.spec = spec
        self.limit: Any = None
        self.blank = True

    def pre_validate(self, form):
        text = (self.data or "").strip()
        self.blank = not text
        if not self.blank:
            self.limit = self.spec.parse(text)


class CheckboxesField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class LimitsForm(FlaskForm):
    tier = SelectField("Tier", choices=[SelectChoice(t, tier_label(t)) for t in TIERS])
    max_queued_jobs = LimitField(LIMITS_BY_NAME["max_queued_jobs"])
    max_concurrent_jobs = LimitField(LIMITS_BY_NAME["max_concurrent_jobs"])
    max_daily_jobs = LimitField(LIMITS_BY_NAME["max_daily_jobs"])
    max_job_payload_size = LimitField(LIMITS_BY_NAME["max_job_payload_size"])
    max_job_duration = LimitField(LIMITS_BY_NAME["max_job_duration"])
    default_job_priority = SelectField("Default priority", choices=[])
    any_job_type = BooleanField("Any job type, custom ones included")
    allowed_job_types = CheckboxesField("Allowed job types", choices=[], validate_choice=False)
    other_job_types = StringField("Other job types", description=(
        "Custom types this tenant may queue, separated by commas (e.g. custom_processing)."))
    rate_limit_count = StringField("Starts", description=(
        "At most this many of its jobs start per period; more wait in the queue. Blank: the "
        "tier's; 'unlimited': no rate limit."))
    rate_limit_period = StringField("Per (seconds)", description="The period, in seconds.")
    rate_limit_burst = StringField("Burst", description=(
        "At most this many back to back, the rest spread over the period. Blank: all of them."))

    def __init__(self, config: TenantConfig, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config = config
        known = [t.value for t in JobType]
        current = sorted((config.job_limit.allowed_job_types or set()) - set(known))
        self.allowed_job_types.choices = [SelectChoice(t) for t in known + current]
        self.default_job_priority.choices = [SelectChoice("", "the tier's")] + [
            SelectChoice(p.value) for p in JobPriority]

    @property
    def limit_fields(self) -> list[LimitField]:
        return [getattr(self, spec.name) for spec in LIMITS]

    def preset(self) -> JobLimitConfig:
        tier = self.tier.data if self.tier.data in TIERS else self.config.tier.value
        return JobLimitConfig.for_tier(tier)

    def placeholder(self, field: LimitField) -> str:
        return f"{field.spec.shown(getattr(self.preset(), field.spec.name))} (tier)"

    def validate_tier(self, field):
        if field.data not in TIERS:
            raise ValidationError(f"Choose one of {', '.join(TIERS)}.")

    def validate_default_job_priority(self, field):
        if field.data and field.data not in {p.value for p in JobPriority}:
            raise ValidationError("Choose a priority from the list.")

    def validate_other_job_types(self, field):
        bad = [name for name in self.other_types() if not JOB_TYPE_NAME.match(name)]
        if bad:
            raise ValidationError(f"{', '.join(bad)}: a job type is lower-case letters, digits "
                                  "and _, starting with a letter.")

    def validate_rate_limit_count(self, field):
        RateFields(self).check_count()

    def validate_rate_limit_period(self, field):
        RateFields(self).check_period()

    def validate_rate_limit_burst(self, field):
        RateFields(self).check_burst()

    def rate_placeholders(self) -> dict[str, str]:
        """The tier's rate limit, as the blank fields' placeholders."""
        rate = self.preset().rate_limit
        if rate is None:
            return {"count": "unlimited (tier)", "period": "", "burst": ""}
        return {"count": f"{rate.count} (tier)", "period": f"{rate.period_text} (tier)",
                "burst": f"{rate.burst} (tier)" if rate.burst else "all (tier)"}

    def validate_allowed_job_types(self, field):
        if not self.any_job_type.data and not field.data and not self.other_types():
            raise ValidationError("Choose at least one job type, or allow any job type: with "
                                  "none the tenant could queue nothing.")

    def other_types(self) -> list[str]:
        return [name.strip() for name in (self.other_job_types.data or "").split(",")
                if name.strip()]

    def overrides(self) -> dict[str, Any]:
        """The ``jobLimits`` overrides (camelCase keys): only what differs from the chosen
        tier's preset.

        Types left exactly as the tenant's previous tier had them follow the new tier, so a
        tier change works without scripts (the checkboxes still show the old tier's set)."""
        preset, tier = self.preset(), self.tier.data
        overrides: dict[str, Any] = {}
        for field in self.limit_fields:
            if not field.blank and field.limit != getattr(preset, field.spec.name):
                value = field.limit
                overrides[field.spec.key] = (int(value.total_seconds() * 1000)
                                             if isinstance(value, timedelta) else value)
        if self.default_job_priority.data and (self.default_job_priority.data
                                               != preset.default_job_priority.value):
            overrides["defaultJobPriority"] = self.default_job_priority.data
        rate = RateFields(self)
        if not rate.blank and rate.limit() != preset.rate_limit:
            overrides["rateLimit"] = rate.limit().to_camel() if rate.limit() else None
        if self.any_job_type.data:
            overrides["allowedJobTypes"] = None
        else:
            chosen = frozenset(self.allowed_job_types.data or []) | frozenset(self.other_types())
            previous = JobLimitConfig.for_tier(self.config.tier).allowed_job_types
            follows_tier = tier != self.config.tier.value and chosen == previous
            if chosen != preset.allowed_job_types and not follows_tier:
                overrides["allowedJobTypes"] = sorted(chosen)
        return overrides

    def new_config(self) -> TenantConfig:
        """The tenant with the form's tier and overrides; its other settings kept."""
        settings = {k: v for k, v in self.config.custom_settings.items() if k != "jobLimits"}
        overrides = self.overrides()
        if overrides:
            settings["jobLimits"] = overrides
        return TenantConfig.for_tier(self.config.tenant_id, self.config.name, self.tier.data,
                                     settings)


def limits_form_data(config: TenantConfig, tier: str | None = None) -> dict[str, Any]:
    """What the limits form shows for ``config``: blank where a limit is the tier's (the
    placeholder shows it), the value where it was overridden. With another ``tier`` (the tier
    select changed), that tier's preset: every field blank, its job types checked."""
    limits = config.job_limit if tier is None else JobLimitConfig.for_tier(tier)
    tier = tier or config.tier.value
    preset = JobLimitConfig.for_tier(tier)
    data: dict[str, Any] = {"tier": tier}
    for spec in LIMITS:
        value = getattr(limits, spec.name)
        data[spec.name] = "" if value == getattr(preset, spec.name) else spec.shown(value)
    data["default_job_priority"] = ("" if limits.default_job_priority == preset.default_job_priority
                                    else limits.default_job_priority.value)
    data["any_job_type"] = limits.allowed_job_types is None
    data["allowed_job_types"] = sorted(limits.allowed_job_types or [])
    data.update(_rate_data(limits.rate_limit, preset.rate_limit))
    return data


def _rate_data(rate: RateLimit | None, preset: RateLimit | None) -> dict[str, str]:
    """The rate limit's fields: blank when it is the tier's."""
    if rate == preset:
        count = period = burst = ""
    elif rate is None:
        count, period, burst = "unlimited", "", ""
    else:
        count, period = str(rate.count), rate.period_text
        burst = str(rate.burst) if rate.burst is not None else ""
    return {"rate_limit_count": count, "rate_limit_period": period, "rate_limit_burst": burst}


def describe_changes(old: TenantConfig, new: TenantConfig) -> list[str]:
    """What a save changed, as an operator reads it: "max_queued_jobs 50 → 3"."""
    changes = []
    if old.tier != new.tier:
        changes.append(f"tier {old.tier.value} → {new.tier.value}")
    before, after = old.job_limit.as_dict(), new.job_limit.as_dict()
    for name in before:
        if before[name] == after[name]:
            continue
        if name == "allowed_job_types":
            if before[name] is None or after[name] is None:
                changes.append(f"allowed_job_types {_types(before[name])} → "
                               f"{_types(after[name])}")
            else:
                added = sorted(set(after[name]) - set(before[name]))
                removed = sorted(set(before[name]) - set(after[name]))
                changes.append("allowed_job_types " + ", ".join(
                    [f"+{t}" for t in added] + [f"−{t}" for t in removed]))
        else:
            changes.append(f"{name} {_shown(before[name])} → {_shown(after[name])}")
    return changes


def _types(value) -> str:
    return "any" if value is None else ", ".join(value)


def _shown(value) -> str:
    if value is None:
        return "unlimited"
    if isinstance(value, timedelta):
        return format_duration(value)
    return f"{value:,}" if isinstance(value, int) else str(value)
