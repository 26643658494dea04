"""What operators may do to jobs from the console, and how the answers read.

Bulk actions go through an allow-list (``BULK_VERBS``): the form names a verb, never a method.
Each verb is a ``JobService`` bulk method that applies the single-job rules to every job.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectMultipleField, StringField
from wtforms.validators import ValidationError

from ...jobs.limits import queue_full_reason
from ...jobs.listing import JOB_ID_PATTERN, PAGE_SIZE
from ...jobs.service import RETRYABLE_STATUSES, BulkOutcome
from ...jobs.types import WAITING_STATUSES
from ..audit.actor import console_actor

BULK_CAP = 100_000          # jobs one "all matching" action counts and changes, newest first
SELECTED_CAP = 4 * PAGE_SIZE


@dataclass(frozen=True)
class BulkVerb:
    name: str                   # the form's value
    label: str                  # "Retry"
    done: str                   # "Retried"
    method: str                 # the JobService bulk method
    statuses: tuple[str, ...]   # the statuses it can change
    eligible: str               # those statuses, in words

    def apply(self, service, job_ids: list[str], described_as: str) -> BulkOutcome:
        """Run the verb as the signed-in user; ``described_as`` (the selection or filter acted
        on) goes into its audit entries."""
        return getattr(service, self.method)(job_ids, actor=console_actor(),
                                             described_as=described_as)


BULK_VERBS = {
    "retry": BulkVerb("retry", "Retry", "Retried", "retry_jobs", RETRYABLE_STATUSES,
                      "failed or cancelled"),
    "cancel": BulkVerb("cancel", "Cancel", "Cancelled", "cancel_jobs", WAITING_STATUSES,
                       "pending or queued"),
}


def local_path(target: str | None) -> str | None:
    """``target`` if it is a path on this site (where to go back to), else None."""
    if (target and target.startswith("/") and not target.startswith("//")
            and "\\" not in target and not urlsplit(target).netloc):
        return target
    return None


def _allowed_verb(form, field):
    if field.data not in BULK_VERBS:
        raise ValidationError(f"unknown action {field.data!r}; use {' or '.join(BULK_VERBS)}")


def _local(form, field):
    if field.data and local_path(field.data) is None:
        raise ValidationError("must be a path on this site")


class JobActionForm(FlaskForm):
    """Retry or cancel one job (the CSRF token, and where to go back to)."""

    next = HiddenField(validators=[_local])


def _job_ids(form, field):
    if not field.data:
        raise ValidationError("select at least one job (tick its box in the table)")
    if len(field.data) > SELECTED_CAP:
        raise ValidationError(f"select at most {SELECTED_CAP} jobs, or use “all matching”")
    if any(not JOB_ID_PATTERN.fullmatch(job_id) for job_id in field.data):
        raise ValidationError("a selected job id is not valid; reload the table")


class BulkSelectionForm(FlaskForm):
    """Retry or cancel the ticked rows."""

    action = StringField("Action", validators=[_allowed_verb])
    job_ids = SelectMultipleField(validate_choice=False, validators=[_job_ids])
    next = HiddenField(validators=[_local])


class BulkAllForm(FlaskForm):
    """Retry or cancel everything a filter matches (the filter travels in the same form)."""

    action = StringField("Action", validators=[_allowed_verb])
    next = HiddenField(validators=[_local])


def outcome_message(verb: BulkVerb, outcome: BulkOutcome) -> str:
    """“Retried 12 jobs; 3 were not failed or cancelled and were left alone.”"""
    text = f"{verb.done} {_jobs(outcome.changed)}"
    if outcome.left_alone:
        parts = [f"{count:,} {'was' if count == 1 else 'were'} {reason}"
                 for reason, count in _merged_reasons(outcome)]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        were = "was" if outcome.left_alone_count == 1 else "were"
        text += f"; {listed}{',' if len(parts) > 1 else ''} and {were} left alone"
    return text + "."


TENANTS_NAMED = 3


def _merged_reasons(outcome: BulkOutcome) -> list[tuple[str, int]]:
    """The reasons, most frequent first, with one tenant-limit reason for all tenants (naming
    the few that held back most), so that a bulk action over many tenants reads in a line."""
    held = list(outcome.held_back.items())
    if len(held) <= 1:
        return sorted(outcome.left_alone.items(), key=lambda item: -item[1])
    merged = {queue_full_reason(tenant) for tenant, _ in held}
    reasons = {reason: count for reason, count in outcome.left_alone.items()
               if reason not in merged}
    held.sort(key=lambda item: -item[1])
    named = ", ".join(f"{tenant} {count:,}" for tenant, count in held[:TENANTS_NAMED])
    others = len(held) - TENANTS_NAMED
    if others > 0:
        named += f" and {others} other tenant{'s' if others > 1 else ''}"
    reasons[f"held back by their tenants' max_queued_jobs ({named})"] = sum(
        count for _, count in held)
    return sorted(reasons.items(), key=lambda item: -item[1])


def _jobs(count: int) -> str:
    return f"{count:,} job" if count == 1 else f"{count:,} jobs"


def first_error(form: FlaskForm) -> str:
    """The first field message of an invalid form, for a flash."""
    for field in form:
        if field.errors:
            label = field.label.text if field.name not in ("job_ids", "next") else {
                "job_ids": "Selection", "next": "Return address"}[field.name]
            return f"{label}: {field.errors[0]}"
    return "The form was not valid."
