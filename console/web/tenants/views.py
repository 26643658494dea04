"""Tenants: the list with usage against limits, a tenant's analytics and health, its limits form
(admins), its event webhooks and their delivery log (operators change them), and adding a
tenant (admins). Views translate HTTP into ``service.tenants`` calls and render one context as
the page or, for htmx, the partial it swaps."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user

from ...jobs import JobService, get_job_service
from ...jobs.audit import ACTIONS, recent_entries
from ...jobs.limits import TenantConfig
from ...jobs.types import JobValidationError
from ...jobs.webhooks import EVENTS, SubscriptionNotFound
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..control import act, back_to, form_reason, may_control, refused
from ..keyset import BadCursor
from ..rendering import render_view
from ..scope import is_staff, tenant_or_404, tenant_scoped, visible_tenants
from .forms import MAX_RANGE_DAYS, TIERS, DateRangeForm, TenantForm
from .limits_form import LimitsForm, describe_changes, limits_form_data
from .read_model import tenant_charts, tenant_page, tenant_rows
from .webhooks_form import EVENT_HINTS, WebhookForm

bp = Blueprint("tenants", __name__)
UTC = timezone.utc
DELIVERIES_PAGE = 20


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


def _limits_form(config: TenantConfig) -> LimitsForm | None:
    if current_user.may("admin") and is_staff():   # a bound admin reads its limits only
        return LimitsForm(config, formdata=None, data=limits_form_data(config))
    return None


def _show_context(service: JobService, config: TenantConfig, limits_form: LimitsForm | None,
                  webhook_form: WebhookForm | None = None):
    range_form, (start, end), range_note = _range(request.args)
    context = tenant_page(service, config, start, end)
    context.update(range_form=range_form, range_note=range_note, start=start, end=end,
                   limits_form=limits_form, max_range_days=MAX_RANGE_DAYS,
                   handler_names=sorted(service.handlers.names()))
    context.update(_webhooks_context(service, config))
    if may_control():
        context.update(webhook_form=webhook_form or WebhookForm(formdata=None),
                       event_hints=EVENT_HINTS)
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
    context, status = _show_context(service, config, _limits_form(config))
    return render_view("tenants/show.html", "tenants/_analytics.html", status, **context)


# -- event webhooks ------------------------------------------------------------------------------

def _webhooks_context(service: JobService, config: TenantConfig) -> dict:
    """The webhooks section's subscriptions and the delivery log's page the query asks for
    (``deliveries_before`` / ``deliveries_after``). A cursor this console did not write shows
    the newest page with a note rather than failing the whole tenant page."""
    subscriptions = service.webhook_subscriptions(config.tenant_id)
    note = None
    try:
        deliveries = service.webhook_deliveries(
            config.tenant_id, before=request.args.get("deliveries_before"),
            after=request.args.get("deliveries_after"), size=DELIVERIES_PAGE)
    except BadCursor:
        deliveries = service.webhook_deliveries(config.tenant_id, size=DELIVERIES_PAGE)
        note = "That page link is not one this console made: showing the newest deliveries."
    # Nothing can arrive in a log with no subscription and no delivery left to follow, so
    # such a page does not poll; subscribing renders the page again, polling.
    return {"config": config, "subscriptions": subscriptions, "deliveries": deliveries,
            "deliveries_note": note, "deliveries_live": bool(subscriptions or deliveries.rows),
            "webhook_events": EVENTS}


@bp.get("/tenants/<tenant_id>/webhook-deliveries")
@tenant_scoped
def webhook_deliveries(tenant_id: str):
    """The delivery log's table, refetched by the tenant page while it is open (statuses,
    attempts and new deliveries appear without a reload); the page renders it too."""
    service = get_job_service()
    config = tenant_or_404(tenant_id)
    return render_view("tenants/_deliveries.html", "tenants/_deliveries.html",
                       **_webhooks_context(service, config))


@bp.post("/tenants/<tenant_id>/webhooks")
@tenant_scoped
@role_required("operator")
def subscribe_webhook(tenant_id: str):
    """Subscribe a URL to the tenant's events. The answer is the tenant page itself, with the
    signing secret shown this once: not a flash message and a redirect, because the session
    cookie that carries flashes is signed, not encrypted, and the secret must not travel in it.
    Nor is the answer cached: a later visit reads the page anew, without the secret."""
    service = get_job_service()
    config = tenant_or_404(tenant_id)
    form = WebhookForm()
    if form.validate():
        try:
            subscription, secret = service.subscribe_webhook(
                config.tenant_id, form.url.data, form.events.data, actor=console_actor())
        except JobValidationError as error:   # the URL or events the engine refuses
            form.engine_refused(error)
        else:
            context, _ = _show_context(service, config, _limits_form(config))
            context.update(new_secret=secret, new_subscription=subscription)
            body, _ = render_view("tenants/show.html", None, **context)
            return body, 200, {"Cache-Control": "no-store"}
    context, _ = _show_context(service, config, _limits_form(config), form)
    return render_view("tenants/show.html", None, 422, **context)


@bp.post("/tenants/<tenant_id>/webhooks/<subscription_id>/remove")
@tenant_scoped
@role_required("operator")
def unsubscribe_webhook(tenant_id: str, subscription_id: str):
    """Stop sending the tenant's events to a URL; deliveries already stored still go out."""
    config = tenant_or_404(tenant_id)
    back = back_to(url_for(".show", tenant_id=config.tenant_id, _anchor="webhooks"))
    try:
        removed = get_job_service().unsubscribe_webhook(config.tenant_id, subscription_id[:100],
                                                        actor=console_actor())
    except SubscriptionNotFound:
        return refused(404, "Nothing was changed: this tenant has no such event webhook (it "
                            "may have been removed already).", back)
    flash(f"Event webhook to {removed.url} removed: no new event goes to it; deliveries "
          "already under way still do.", "success")
    return redirect(back, 303)


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
