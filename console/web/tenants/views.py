"""Tenants: the list with usage against limits, a tenant's analytics and health, its limits form
(admins), and adding a tenant (admins). Views translate HTTP into ``service.tenants`` calls and
render one context as the page or, for htmx, the partial it swaps."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user

from ...jobs import JobService, get_job_service
from ...jobs.audit import ACTIONS, recent_entries
from ...jobs.limits import TenantConfig
from ...jobs.types import JobValidationError
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..control import act, back_to, form_reason
from ..rendering import render_view
from ..scope import is_staff, tenant_or_404, tenant_scoped, visible_tenants
from .forms import MAX_RANGE_DAYS, TIERS, DateRangeForm, TenantForm
from .limits_form import LimitsForm, describe_changes, limits_form_data
from .read_model import tenant_charts, tenant_page, tenant_rows

bp = Blueprint("tenants", __name__)
UTC = timezone.utc


def _tenant_or_404(service: JobService, tenant_id: str) -> TenantConfig:
    return tenant_or_404(tenant_id)


def _render_index(form: TenantForm | None, status: int = 200):
    return render_view("tenants/index.html", "tenants/_table.html", status,
                       rows=tenant_rows(get_job_service(), visible_tenants()), form=form)


@bp.get("/tenants")
@tenant_scoped
def index():
    may_add = current_user.may("admin") and is_staff()   # adding a tenant is system-wide
    return _render_index(TenantForm(formdata=None) if may_add else None)


@bp.post("/tenants")
@role_required("admin")
def create():
    form = TenantForm()
    if not form.validate():
        return _render_index(form, 422)
    config = TenantConfig.for_tier(form.tenant_id.data, form.name.data, form.tier.data)
    try:
        get_job_service().tenants.add_tenant_config(config, actor=console_actor())
    except JobValidationError:   # added by someone else since the form was checked
        form.tenant_id.errors = [f"A tenant with the ID {config.tenant_id!r} was just added by "
                                 "someone else; choose another ID."]
        return _render_index(form, 422)
    flash(f"Tenant {config.name} ({config.tenant_id}) added with {config.tier.value}'s limits.")
    return redirect(url_for(".show", tenant_id=config.tenant_id), 303)


@bp.post("/tenants/<tenant_id>/pause")
@tenant_scoped
@role_required("operator")
def pause(tenant_id: str):
    """Hold every job of the tenant: they still queue, none starts; running ones finish."""
    config = tenant_or_404(tenant_id)
    back = back_to(url_for(".show", tenant_id=config.tenant_id))

    def change():
        pause = get_job_service().pause_tenant(config.tenant_id, form_reason(),
                                               by=console_actor())
        return (f"Tenant {config.name} paused (by {pause.paused_by or 'unknown'}): its jobs "
                "still queue, none starts until it is resumed; running ones finish.")
    return act(change, back)


@bp.post("/tenants/<tenant_id>/resume")
@tenant_scoped
@role_required("operator")
def resume(tenant_id: str):
    config = tenant_or_404(tenant_id)
    back = back_to(url_for(".show", tenant_id=config.tenant_id))

    def change():
        lifted = get_job_service().resume_tenant(config.tenant_id, by=console_actor())
        if lifted is None:
            return f"Tenant {config.name} was not paused: nothing changed."
        return f"Tenant {config.name} resumed: its jobs start again."
    return act(change, back)


@bp.get("/tenants/<tenant_id>/health")
@tenant_scoped
def health(tenant_id: str):
    """A tenant's health score and status: lazily loaded into the list's rows."""
    service = get_job_service()
    config = _tenant_or_404(service, tenant_id)
    return render_view("tenants/_health.html", "tenants/_health.html", config=config,
                       health=service.get_tenant_job_health(tenant_id))


def _range(args) -> tuple[DateRangeForm, tuple, str | None]:
    """The analytics range from the query string; the default range and a note when it is bad."""
    form = DateRangeForm(args, datetime.now(UTC).date())
    if form.validate():
        return form, (form.start.data, form.end.data), None
    start, end = form.default_range()
    return form, (start, end), (f"Showing {start.isoformat()} to {end.isoformat()} instead "
                                "(the last 7 days).")


def _show_context(service: JobService, config: TenantConfig, limits_form: LimitsForm | None):
    range_form, (start, end), range_note = _range(request.args)
    context = tenant_page(service, config, start, end)
    context.update(range_form=range_form, range_note=range_note, start=start, end=end,
                   limits_form=limits_form, max_range_days=MAX_RANGE_DAYS,
                   handler_names=sorted(service.handlers.names()))
    if current_user.may("admin"):   # the trail names users and addresses, as /audit does
        with service.engine.connect() as conn:
            context.update(recent_changes=recent_entries(conn, config.tenant_id),
                           audit_actions=ACTIONS)
    return context, (422 if range_note else 200)


@bp.get("/tenants/<tenant_id>")
@tenant_scoped
def show(tenant_id: str):
    service = get_job_service()
    config = _tenant_or_404(service, tenant_id)
    form = None
    if current_user.may("admin") and is_staff():   # a bound admin reads its limits only
        form = LimitsForm(config, formdata=None, data=limits_form_data(config))
    context, status = _show_context(service, config, form)
    return render_view("tenants/show.html", "tenants/_analytics.html", status, **context)


@bp.get("/tenants/<tenant_id>/charts")
@tenant_scoped
def charts(tenant_id: str):
    """The trend charts of the page's range, loaded after the page (the slowest read)."""
    service = get_job_service()
    config = _tenant_or_404(service, tenant_id)
    _, (start, end), _ = _range(request.args)
    return render_view("tenants/_charts.html", "tenants/_charts.html", config=config,
                       charts=tenant_charts(service, tenant_id, start, end))


@bp.get("/tenants/<tenant_id>/limits")
@role_required("admin")
def limit_fields(tenant_id: str):
    """The limit fields filled with a tier's preset, swapped in when the tier select changes;
    without scripts, the tenant page."""
    service = get_job_service()
    config = _tenant_or_404(service, tenant_id)
    if request.headers.get("HX-Request") != "true":
        return redirect(url_for(".show", tenant_id=tenant_id, _anchor="limits"))
    tier = request.args.get("tier")
    chosen = tier if tier in TIERS and tier != config.tier.value else None
    form = LimitsForm(config, formdata=None, data=limits_form_data(config, chosen))
    return render_view("tenants/_limit_fields.html", "tenants/_limit_fields.html",
                       config=config, limits_form=form)


@bp.post("/tenants/<tenant_id>/limits")
@role_required("admin")
def update_limits(tenant_id: str):
    """Save a tenant's tier and overrides; in effect for the next queue call and claim."""
    service = get_job_service()
    config = _tenant_or_404(service, tenant_id)
    form = LimitsForm(config)
    new = None
    if form.validate():
        try:
            new = form.new_config()
        except JobValidationError as error:   # a combination the engine refuses
            form.tier.errors.append(f"{error}")
    if new is None:
        context, _ = _show_context(service, config, form)
        return render_view("tenants/show.html", None, 422, **context)
    service.tenants.set_tenant_config(new, actor=console_actor())
    changes = describe_changes(config, new)
    flash(f"Limits of {config.name} saved, in effect now: {'; '.join(changes)}." if changes
          else f"Nothing changed: the limits of {config.name} are as they were.")
    return redirect(url_for(".show", tenant_id=tenant_id, _anchor="limits"), 303)
