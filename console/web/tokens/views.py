"""API tokens (admins only): list, create (the secret is shown once), revoke.

The new secret is rendered in the answer to the POST itself, not after a redirect: carrying it
to the next page would put it in the session cookie, which is signed but not encrypted. That
answer is marked ``no-store`` so no cache keeps it. Only the hash is stored (console/api/tokens.py).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, abort, current_app, flash, redirect, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ...jobs import get_job_service
from ...tokens import (
    MAX_NAME_LENGTH,
    MAX_RATE_LIMIT,
    TokenError,
    create_token,
    list_tokens,
    revoke_token,
)
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..rendering import render_view

bp = Blueprint("tokens", __name__)
UTC = timezone.utc
ALL_TENANTS = ""
NEVER = ""
LIFETIMES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30),
             "90d": timedelta(days=90), "365d": timedelta(days=365)}


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class NewTokenForm(FlaskForm):
    name = StringField("Name", filters=[_strip], description=(
        "Who or what uses it (e.g. billing service): shown in this list, never secret."),
        validators=[DataRequired("Name the token after who uses it."),
                    Length(max=MAX_NAME_LENGTH, message=f"At most {MAX_NAME_LENGTH} characters.")])
    tenant = SelectField("Scope", description=(
        "A tenant token reaches that tenant only; an all-tenant token every tenant, the queue "
        "and statistics."))
    admin = BooleanField("Admin: may also change tenants' limits (all-tenant tokens only)")
    expires_in = SelectField("Expires", default="90d", choices=[
        SelectChoice(NEVER, "Never (until revoked)"), SelectChoice("1d", "In 1 day"),
        SelectChoice("7d", "In 7 days"), SelectChoice("30d", "In 30 days"),
        SelectChoice("90d", "In 90 days"), SelectChoice("365d", "In 1 year")],
        description="After this the token gets 401 (“expired”); create a new one to go on.")
    rate_limit = IntegerField("Requests a minute", validators=[
        Optional(), NumberRange(1, MAX_RATE_LIMIT, f"A whole number from 1 to "
                                                   f"{MAX_RATE_LIMIT:,}, or empty for the "
                                                   f"default.")])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        default = current_app.config["API_RATE_LIMIT"]
        self.rate_limit.description = (
            f"Empty: the default ({default:,} a minute)." if default else
            "Empty: no limit (API_RATE_LIMIT is off).") + " Past it the API answers 429."
        tenants = get_job_service().tenants.list_tenant_configs()
        self.tenant.choices = [SelectChoice(ALL_TENANTS, "All tenants")] + [
            SelectChoice(t.tenant_id, f"{t.name} ({t.tenant_id})") for t in tenants]

    def validate_admin(self, field):
        if field.data and self.tenant.data != ALL_TENANTS:
            raise ValidationError("Only all-tenant tokens can be admin tokens: a tenant must not "
                                  "change its own limits. Choose “All tenants” or untick this.")


@bp.before_request
@role_required("admin")
def admins_only():
    """Tokens grant API access: only admins see or change them."""
    return None


def _render(form: NewTokenForm | None = None, status: int = 200, secret: str | None = None,
            created=None):
    response = render_view(
        "tokens/index.html", "tokens/_table.html", status,
        tokens=list_tokens(get_job_service().engine), form=form or NewTokenForm(formdata=None),
        secret=secret, created=created, now=datetime.now(UTC))
    return response


@bp.get("/tokens")
def index():
    return _render()


@bp.post("/tokens")
def create():
    form = NewTokenForm()
    if not form.validate():
        return _render(form, 422)
    tenant_id = form.tenant.data or None
    try:
        token, secret = create_token(get_job_service().engine, form.name.data, tenant_id,
                                     form.admin.data, LIFETIMES.get(form.expires_in.data),
                                     form.rate_limit.data, actor=console_actor())
    except TokenError as exc:   # the tenant went away between the form and the insert
        form.tenant.errors = [*form.tenant.errors, str(exc)]
        return _render(form, 422)
    body, status = _render(status=201, secret=secret, created=token)
    return body, status, {"Cache-Control": "no-store"}


@bp.post("/tokens/<int:token_id>/revoke")
def revoke(token_id: int):
    token = revoke_token(get_job_service().engine, token_id, console_actor())
    if token is None:
        abort(404, "There is no such token; the API tokens page lists them.")
    flash(f"Token {token.name} ({token.prefix}…) revoked: requests with it now get 401.")
    return redirect(url_for(".index"), 303)


@bp.app_template_filter("rate")
def rate_label(token) -> str:
    """A token's requests a minute as its row shows them (its own, or the default)."""
    if token.rate_limit:
        return f"{token.rate_limit:,} / min"
    default = current_app.config["API_RATE_LIMIT"]
    return f"{default:,} / min (default)" if default else "no limit (default)"
