"""The Alerts screens' forms: a rule, a mute, a tenant's alert contacts. WTForms reads and types
the fields; the rule's checks live once, in ``console/alerts/store.py``, and their messages are
put on the field at fault."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    FloatField,
    IntegerField,
    SelectField,
    StringField,
    ValidationError,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, Regexp

from ...alerts.rules import KINDS, LIMIT_NAMES, Rule
from ...alerts.store import DEFAULT_COOLDOWN_SECONDS, RuleError, RuleValues, check_rule
from ...handlers.mail import check_address
from ...handlers.outbound import OutboundPolicy, RefusedDestination, http_url
from ...jobs.limits import TenantConfig

UTC = timezone.utc
TENANT_SCOPE = "tenant:"
ALERT_EMAIL, ALERT_WEBHOOK = "alertEmail", "alertWebhookUrl"   # custom_settings keys
_FIELD_OF_ERROR = {"cooldown_seconds": "cooldown_minutes", "tenant_id": "scope"}
_NO_NUL = Regexp(r"^[^\x00]*$", message="Leave out the NUL character (\\u0000).")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def scope_value(rule: Rule | RuleValues) -> str:
    return TENANT_SCOPE + rule.tenant_id if rule.scope == "tenant" else rule.scope


class RuleForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[
        InputRequired("Name the rule after what it watches."),
        Length(max=200, message="At most 200 characters.")])
    kind = SelectField("Watches", choices=[SelectChoice(k.name, k.label) for k in KINDS.values()])
    scope = SelectField("For", validate_choice=False)
    threshold = FloatField("Threshold", validators=[InputRequired("Give the threshold.")],
                           invalid_value_message="Type a number, e.g. 90 or 1000.")
    window_hours = IntegerField("Window (hours)", validators=[Optional()], default=24,
                                invalid_value_message="Type a whole number of hours.")
    handler = SelectField("Handler", validate_choice=False)
    limit_name = SelectField("Limit", choices=[SelectChoice("", "—")] + [
        SelectChoice(name, name) for name in LIMIT_NAMES], validate_choice=False)
    cooldown_minutes = IntegerField(
        "Cool-down (minutes)", default=DEFAULT_COOLDOWN_SECONDS // 60,
        validators=[InputRequired("Give the cool-down in minutes (0 for none).")],
        invalid_value_message="Type a whole number of minutes.")
    notify_operators = BooleanField("Tell the operators (ALERTS_EMAIL_TO, ALERTS_WEBHOOK_URL)",
                                    default=True)
    notify_tenant = BooleanField("Tell the tenant's admin (its alert contacts)", default=True)
    enabled = BooleanField("Enabled", default=True)

    def __init__(self, *args, tenants: list[TenantConfig], handlers: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.scope.choices = [SelectChoice("system", "the whole system"),
                              SelectChoice("each_tenant", "each tenant (an alert per tenant)")] + [
            SelectChoice(TENANT_SCOPE + t.tenant_id, f"tenant {t.name} ({t.tenant_id})")
            for t in tenants]
        self.handler.choices = [SelectChoice("", "—")] + [SelectChoice(h, h) for h in handlers]
        self._tenant_ids = [t.tenant_id for t in tenants]
        self._handlers = handlers
        self.checked: RuleValues | None = None

    @classmethod
    def for_rule(cls, rule: Rule, **kwargs) -> RuleForm:
        form = cls(formdata=None, **kwargs)
        for name in ("name", "kind", "threshold", "handler", "limit_name", "notify_operators",
                     "notify_tenant", "enabled"):
            getattr(form, name).data = getattr(rule, name)
        form.threshold.data = rule.threshold
        form.scope.data = scope_value(rule)
        form.window_hours.data = rule.window_hours or 24
        form.cooldown_minutes.data = rule.cooldown_seconds // 60
        return form

    def validate(self, extra_validators=None) -> bool:
        """WTForms' checks, then the rule's own (``check_rule``), each message on its field."""
        if not super().validate(extra_validators):
            return False
        scope = self.scope.data or ""
        tenant_id = scope[len(TENANT_SCOPE):] if scope.startswith(TENANT_SCOPE) else None
        values = RuleValues(
            name=self.name.data, kind=self.kind.data,
            scope="tenant" if tenant_id is not None else scope, tenant_id=tenant_id,
            threshold=self.threshold.data, window_hours=self.window_hours.data,
            handler=self.handler.data or None, limit_name=self.limit_name.data or None,
            cooldown_seconds=(self.cooldown_minutes.data * 60
                              if isinstance(self.cooldown_minutes.data, int) else None),
            notify_operators=self.notify_operators.data, notify_tenant=self.notify_tenant.data,
            enabled=self.enabled.data)
        try:
            self.checked = check_rule(values, self._tenant_ids, self._handlers)
        except RuleError as error:
            field = getattr(self, _FIELD_OF_ERROR.get(error.field, error.field))
            if field.name == "cooldown_minutes":
                error.message = "Give the cool-down as 0 to 10,080 minutes (7 days)."
            field.errors = [*field.errors, error.message]
            return False
        return True


class MuteForm(FlaskForm):
    until = DateTimeLocalField("Mute until (UTC)", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
                               validators=[InputRequired("Choose until when (UTC).")],
                               invalid_value_message="Type a time as YYYY-MM-DD HH:MM (UTC).")

    @classmethod
    def suggested(cls) -> MuteForm:
        form = cls(formdata=None)
        form.until.data = (datetime.now(UTC) + timedelta(hours=1)).replace(
            second=0, microsecond=0, tzinfo=None)
        return form

    @property
    def until_utc(self) -> datetime:
        return self.until.data.replace(tzinfo=UTC)


class ContactsForm(FlaskForm):
    """Where a tenant's admin hears of its alerts (its ``custom_settings``)."""

    alert_email = StringField("Email", filters=[_strip], validators=[
        Length(max=500, message="At most 500 characters."), _NO_NUL],
        description="Addresses, separated by commas; empty: no email.")
    alert_webhook_url = StringField("Webhook URL", filters=[_strip], validators=[
        Length(max=500, message="At most 500 characters."), _NO_NUL],
        description="An http(s) URL, signed with the tenant's webhookSecret (else "
                    "WEBHOOK_SIGNING_SECRET); empty: no webhook.")

    @classmethod
    def for_tenant(cls, config: TenantConfig) -> ContactsForm:
        form = cls(formdata=None)
        settings = config.custom_settings or {}
        form.alert_email.data = _joined(settings.get(ALERT_EMAIL))
        form.alert_webhook_url.data = settings.get(ALERT_WEBHOOK) or ""
        return form

    def validate_alert_email(self, field):
        for address in (part.strip() for part in (field.data or "").split(",")):
            if not address:
                continue
            try:
                check_address(address, "address")
            except ValueError:
                raise ValidationError(f"“{address}” is not an email address (like "
                                      "ada@example.com).") from None

    def validate_alert_webhook_url(self, field):
        if not field.data:
            return
        url = http_url(field.data)
        if url is None:
            raise ValidationError("Give an http:// or https:// URL.")
        try:
            OutboundPolicy.from_config(current_app.config).check_destination(url.host)
        except RefusedDestination as refused:
            raise ValidationError(f"It points at {refused.kind}; alert webhooks go to public "
                                  "addresses only.") from None

    def settings_for(self, config: TenantConfig) -> dict:
        """The tenant's custom_settings with these contacts (empty ones removed)."""
        settings = dict(config.custom_settings or {})
        email = ", ".join(p.strip() for p in (self.alert_email.data or "").split(",")
                          if p.strip())
        for key, value in ((ALERT_EMAIL, email), (ALERT_WEBHOOK, self.alert_webhook_url.data)):
            if value:
                settings[key] = value
            else:
                settings.pop(key, None)
        return settings


def _joined(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return value or ""
