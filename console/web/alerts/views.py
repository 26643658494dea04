"""Alerts: what fires and what fired (newest first, filtered, each with its notification jobs),
and the rules behind them — admins create, edit, enable, disable and mute rules and set a
tenant's alert contacts; operators and viewers read. Views translate HTTP into the verbs of
``console/alerts/store.py`` and render one context as the page or, for htmx, its partial."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import partial

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_login import current_user

from ...alerts import store
from ...alerts.delivery import recipients_for
from ...alerts.models import alerts_table
from ...alerts.operations import alert_setting, operations_tenant_id
from ...alerts.queries import SYSTEM, alerts_query, firing_counts_by_rule, get_alert
from ...alerts.rules import KINDS
from ...alerts.scheduling import evaluation_job
from ...jobs import get_job_service
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..keyset import BadCursor, keyset_page
from ..rendering import render_view
from ..scope import (
    current_scope,
    is_staff,
    record_or_404,
    tenant_or_404,
    tenant_scoped,
    visible,
    visible_tenants,
)
from .forms import ContactsForm, MuteForm, RuleForm

bp = Blueprint("alerts", __name__)
UTC = timezone.utc
PAGE_SIZE = 50
STATES = ("firing", "resolved")


@bp.app_template_filter("alert_figure")
def alert_figure(value: float, kind: str) -> str:
    """A rule's figure in its kind's unit: ``1,204 queued jobs``, ``62.5 %``, ``5 min 3 s``."""
    spec = KINDS.get(kind)
    return spec.format(value) if spec else f"{value:g}"


def _storable(text: str, longest: int) -> bool:
    """Whether ``text`` could be stored at all (PostgreSQL refuses even to compare a NUL): a
    value that could not is answered at once, not passed to a query."""
    return len(text) <= longest and "\x00" not in text


def _tenants():
    return sorted(get_job_service().tenants.list_tenant_configs(), key=lambda c: c.name.lower())


def _rule_or_404(rule_id: int):
    rule = store.get_rule(get_job_service().engine, rule_id) if rule_id < 2**31 else None
    if rule is None:
        abort(404, "There is no such rule; the Rules page lists them all.")
    return rule


def _rule_form(formdata=True, rule=None) -> RuleForm:
    options = {"tenants": _tenants(), "handlers": get_job_service().handlers.names()}
    if rule is not None and formdata is None:
        return RuleForm.for_rule(rule, **options)
    return RuleForm(**options) if formdata is True else RuleForm(formdata=None, **options)


# -- alerts ----------------------------------------------------------------------------------

@bp.get("/alerts")
@tenant_scoped
def index():
    state = request.args.get("state", "")
    tenant = request.args.get("tenant", "").strip()
    rule_arg = request.args.get("rule", "").strip()
    if state and state not in STATES:
        abort(400, "The state filter is firing or resolved (or empty for both).")
    if rule_arg and not (rule_arg.isascii() and rule_arg.isdigit() and len(rule_arg) <= 9):
        abort(400, "The rule filter is a rule's number; choose one from the list.")
    if not _storable(tenant, 64):
        abort(400, "The tenant filter is a tenant's ID; choose one from the list.")
    rule_id = int(rule_arg) if rule_arg else None
    service = get_job_service()
    try:
        with service.engine.connect() as conn:
            page = keyset_page(conn, alerts_query(state or None, tenant or None, rule_id,
                                                  tenant_ids=current_scope()),
                               alerts_table.c.fired_at, alerts_table.c.id,
                               before=request.args.get("before"),
                               after=request.args.get("after"), size=PAGE_SIZE)
    except BadCursor:
        abort(400, "That page link is not one this console made; start from the newest alerts.")
    return render_view("alerts/index.html", "alerts/_table.html", listing=page, state=state,
                       tenant=tenant, rule_id=rule_id, tenants=visible_tenants(),
                       rules=visible(store.list_rules(service.engine), lambda r: r.tenant_id),
                       system=SYSTEM if is_staff() else None,
                       now=datetime.now(UTC))


@bp.get("/alerts/<alert_id>")
@tenant_scoped
def show(alert_id: str):
    service = get_job_service()
    alert, notifications = (get_alert(service.engine, alert_id) if _storable(alert_id, 36)
                            else (None, []))
    record_or_404(alert, message="There is no such alert; the Alerts page lists them all.")
    rule = store.get_rule(service.engine, alert.rule_id)
    tenant = service.tenants.get_tenant_config(alert.tenant_id) if alert.tenant_id else None
    waiting_for_channel = alert.notice_due == "fired" and not alert.held_until and not (
        recipients_for(rule, alert.tenant_id, current_app.config,
                       tenant.custom_settings if tenant else None))
    return render_view("alerts/show.html", None, alert=alert, rule=rule,
                       notifications=notifications, waiting_for_channel=waiting_for_channel,
                       now=datetime.now(UTC))


# -- rules -----------------------------------------------------------------------------------

def _render_rules(form: RuleForm | None, status: int = 200):
    service = get_job_service()
    config = current_app.config
    channels = {"email": alert_setting(config, "ALERTS_EMAIL_TO"),
                "webhook": alert_setting(config, "ALERTS_WEBHOOK_URL")}
    return render_view("alerts/rules.html", None, status, rules=store.list_rules(service.engine),
                       firing=firing_counts_by_rule(service.engine), kinds=KINDS, form=form,
                       evaluation=evaluation_job(service, config), channels=channels,
                       enabled=alert_setting(config, "ALERTS_ENABLED"),
                       cron=alert_setting(config, "ALERTS_EVALUATION_CRON"),
                       operations_tenant=operations_tenant_id(config), tenants=_tenants(),
                       now=datetime.now(UTC))


@bp.get("/alerts/rules")
def rules():
    return _render_rules(_rule_form(None) if current_user.may("admin") else None)


@bp.post("/alerts/rules")
@role_required("admin")
def create_rule():
    form = _rule_form()
    if not form.validate():
        return _render_rules(form, 422)
    rule = store.create_rule(get_job_service().engine, form.checked, by=current_user.username,
                             actor=console_actor())
    flash(f"Rule {rule.name} created: {rule.condition_text()}, for {rule.scope_text()}. It is "
          "evaluated from the next run on.")
    return redirect(url_for(".rule", rule_id=rule.id), 303)


def _render_rule(rule, form: RuleForm | None, mute_form: MuteForm | None, status: int = 200):
    service = get_job_service()
    with service.engine.connect() as conn:
        recent = keyset_page(conn, alerts_query(rule_id=rule.id), alerts_table.c.fired_at,
                             alerts_table.c.id, size=10)
    return render_view("alerts/rule.html", None, status, rule=rule, form=form,
                       mute_form=mute_form, recent=recent, now=datetime.now(UTC))


@bp.get("/alerts/rules/<int:rule_id>")
def rule(rule_id: int):
    found = _rule_or_404(rule_id)
    admin = current_user.may("admin")
    return _render_rule(found, _rule_form(None, found) if admin else None,
                        MuteForm.suggested() if admin else None)


@bp.post("/alerts/rules/<int:rule_id>")
@role_required("admin")
def update_rule(rule_id: int):
    found = _rule_or_404(rule_id)
    form = _rule_form()
    if not form.validate():
        return _render_rule(found, form, MuteForm.suggested(), 422)
    store.update_rule(get_job_service().engine, rule_id, form.checked, by=current_user.username,
                      actor=console_actor())
    flash(f"Rule {form.checked.name} saved; the next evaluation uses it.")
    return redirect(url_for(".rule", rule_id=rule_id), 303)


def _switch(rule_id: int, change, said: str):
    """Apply ``change(engine, rule_id, by=…)`` to an existing rule, say ``said``, go back."""
    found = _rule_or_404(rule_id)
    change(get_job_service().engine, rule_id, by=current_user.username, actor=console_actor())
    flash(said.format(name=found.name))
    return redirect(url_for(".rule", rule_id=rule_id), 303)


@bp.post("/alerts/rules/<int:rule_id>/enable")
@role_required("admin")
def enable_rule(rule_id: int):
    return _switch(rule_id, partial(store.set_enabled, enabled=True),
                   "Rule {name} enabled: the next evaluation checks it.")


@bp.post("/alerts/rules/<int:rule_id>/disable")
@role_required("admin")
def disable_rule(rule_id: int):
    return _switch(rule_id, partial(store.set_enabled, enabled=False),
                   "Rule {name} disabled: its firing alerts resolve at the next evaluation.")


@bp.post("/alerts/rules/<int:rule_id>/unmute")
@role_required("admin")
def unmute_rule(rule_id: int):
    return _switch(rule_id, partial(store.mute_rule, until=None),
                   "Rule {name} unmuted: notices it holds go out at the next evaluation.")


@bp.post("/alerts/rules/<int:rule_id>/mute")
@role_required("admin")
def mute_rule(rule_id: int):
    found = _rule_or_404(rule_id)
    form = MuteForm()
    if form.validate():
        try:
            store.mute_rule(get_job_service().engine, rule_id, form.until_utc,
                            by=current_user.username, actor=console_actor())
        except store.RuleError as error:
            form.until.errors = [error.message]
        else:
            flash(f"Rule {found.name} muted until {form.until_utc:%Y-%m-%d %H:%M} UTC: it is "
                  "still evaluated and shown, but sends nothing until then.")
            return redirect(url_for(".rule", rule_id=rule_id), 303)
    return _render_rule(found, _rule_form(None, found), form, 422)


# -- a tenant's alert contacts ----------------------------------------------------------------

def _tenant_or_404(tenant_id: str):
    return tenant_or_404(tenant_id if _storable(tenant_id, 64) else None)


@bp.get("/alerts/contacts/<tenant_id>")
@tenant_scoped
def contacts(tenant_id: str):
    config = _tenant_or_404(tenant_id)
    form = ContactsForm.for_tenant(config) if current_user.may("admin") else None
    return render_view("alerts/contacts.html", None, config=config, form=form)


@bp.post("/alerts/contacts/<tenant_id>")
@tenant_scoped
@role_required("admin")
def update_contacts(tenant_id: str):
    config = _tenant_or_404(tenant_id)
    form = ContactsForm()
    if not form.validate():
        return render_view("alerts/contacts.html", None, 422, config=config, form=form)
    service = get_job_service()
    service.tenants.set_tenant_config(config.copy_with(custom_settings=form.settings_for(config)),
                                      actor=console_actor(), audit_action="alert_contacts_changed")
    flash(f"Alert contacts of {config.name} saved.")
    return redirect(url_for("tenants.show", tenant_id=tenant_id, _anchor="alerts"), 303)
