"""The tenant page's event webhook form: a URL and the events to send to it.

The form checks only what it can see (something typed, at least one event); whether the URL is
one events may go to — http(s), a public address, a tenant's room for one more — is the
engine's to say (``JobService.subscribe_webhook``), and ``engine_refused`` puts its answer on
the field it names, so the console and the API refuse the same URLs with the same words.
"""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from ...jobs.types import JobValidationError
from ...jobs.webhooks import EVENTS, MAX_URL_CHARS
from .limits_form import CheckboxesField

EVENT_HINTS = {
    "job.completed": "a run ended well",
    "job.failed": "a run ended in failure, retries spent",
    "job.retried": "an attempt failed and another follows",
    "batch.completed": "every job of a batch has ended",
}


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class WebhookForm(FlaskForm):
    url = StringField("URL", filters=[_strip], description=(
        "An http(s) URL at a public address: each event is POSTed to it, signed with the "
        "tenant's secret."), validators=[
        DataRequired("Type the URL to send events to."),
        Length(max=MAX_URL_CHARS, message=f"At most {MAX_URL_CHARS} characters.")])
    events = CheckboxesField("Events", choices=[SelectChoice(e, e) for e in EVENTS],
                             validators=[DataRequired("Choose at least one event.")])

    def engine_refused(self, error: JobValidationError) -> None:
        """Show the engine's refusal on its field (events', or else the URL's)."""
        _, _, message = error.message.partition(": ")
        message = (message or error.message).rstrip(".")
        if message.startswith("url "):        # the channel's words: "url '…' must be …"
            message = "URL " + message[4:]
        field = self.events if error.field == "events" else self.url
        field.errors = [*field.errors, f"{message[:1].upper()}{message[1:]}."]
