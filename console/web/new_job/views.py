"""New job: a form per kind (tabs), a batch upload, and the fragments the forms ask for as the
operator types (cron preview, payload check, the tenant's usage). Operators and admins only.

Views translate HTTP into ``JobService`` verbs (the forms in ``job_forms.py`` pick the verb);
bad input and limits come back as the form with its messages (422), nothing stored.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import Blueprint, abort, flash, redirect, request, url_for

from ...jobs import JobValidationError, TenantLimitException, get_job_service
from ...jobs.service import NOTIFICATION_CHANNELS
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..rendering import is_htmx, render_view
from ..scope import tenant_scoped, visible_tenant, visible_tenants
from .batch import (
    MAX_BATCH_ROWS,
    BatchFileError,
    describe_spec_error,
    read_batch_file,
    row_of_limit,
)
from .fields import choice_values, notification_extras_error, webhook_body_error
from .forms import FORMS, KINDS, BatchForm, JobForm, NotificationForm
from .previews import check_payload, cron_preview, json_object_error, timezone_names
from .quota import explain_limit, tenant_quota

bp = Blueprint("new_job", __name__)
UTC = timezone.utc
PAGE = "new_job/index.html"


@bp.before_request
@role_required("operator")
def operators_only():
    """Every route here creates jobs or helps to: viewers are refused (403)."""
    return None


def _tenants():
    """The tenants the form offers: those the user may see (a tenant-bound operator queues
    only for its tenants; any other is refused as not among the choices)."""
    return visible_tenants()


def _tenant(tenants, tenant_id):
    return next((t for t in tenants if t.tenant_id == tenant_id), None)


def _form(kind: str, tenants, formdata=None) -> JobForm:
    if kind not in FORMS:
        abort(404, f"There is no {kind!r} kind of job; choose one of "
                   f"{', '.join(KINDS)}, or the batch upload.")
    chosen = request.values.get("tenant_id") or (tenants[0].tenant_id if tenants else None)
    return FORMS[kind](formdata=formdata, tenants=tenants,
                       registry=get_job_service().handlers, tenant_id=chosen)


def _context(kind: str, form, tenants, limit: str | None = None) -> dict:
    """One context for the page, the panel (tab switch) and the form (re-render after errors)."""
    service = get_job_service()
    tenant = _tenant(tenants, form.tenant_id.data)
    preview = None
    if "cron_schedule" in form._fields and (form.cron_schedule.data or "").strip():
        preview = cron_preview(form.cron_schedule.data, form.timezone.data)
    return {"kind": kind, "kinds": KINDS, "form": form, "tenants": tenants, "limit": limit,
            "quota": tenant_quota(service.engine, tenant) if tenant else None,
            "preview": preview, "timezones": timezone_names(), "max_rows": MAX_BATCH_ROWS,
            "handler_info": _handler_info(form)}


def _handler_info(form):
    """The chosen handler (or the first listed), whose expectations the payload hint shows."""
    registry = get_job_service().handlers
    if isinstance(form, NotificationForm):
        return registry.get(form.handler_name)
    if "handler" not in form._fields:
        return None
    name = form.handler.data or (form.handler.choices[0].value if form.handler.choices else None)
    return registry.get(name) if name else None


@bp.get("/jobs/new", defaults={"kind": None})
@bp.get("/jobs/new/<kind>")
@tenant_scoped
def index(kind):
    kind = kind or request.args.get("kind") or "immediate"
    if kind == "batch":
        return batch()
    tenants = _tenants()
    # A re-render that keeps what was typed (the channel switch sends the form's fields).
    prefill = request.args if set(request.args) - {"kind", "tenant_id"} else None
    form = _form(kind, tenants, prefill)
    return render_view(PAGE, "new_job/_panel.html", **_context(kind, form, tenants))


@bp.post("/jobs/new/<kind>")
@tenant_scoped
def create(kind):
    tenants = _tenants()
    form = _form(kind, tenants, request.form)
    limit = None
    if form.validate():
        service = get_job_service()
        started = datetime.now(UTC)
        try:
            job = form.queue(service, started)
        except JobValidationError as exc:
            form.add_error(exc.field, exc.message)
        except TenantLimitException as exc:
            limit = explain_limit(exc, _tenant(tenants, form.tenant_id.data))
            if exc.limit_type == "max_job_payload_size":
                form.payload.errors = [*form.payload.errors, f"payload: {limit}"]
        else:
            if job.created_at < started:    # the idempotency key matched an earlier job
                flash(f"Nothing new queued: job {job.id} already has the idempotency key "
                      f"{job.idempotency_key!r}.", "warning")
            else:
                flash(f"Queued job {job.id} ({job.type}, {job.handler}) for {job.tenant_id}.")
            return _see_other(url_for("jobs.show", job_id=job.id))
    return render_view(PAGE, "new_job/_form.html", 422, refresh_usage=bool(limit) and is_htmx(),
                       **_context(kind, form, tenants, limit))


def _see_other(location: str):
    """Post/redirect/get; htmx follows HX-Redirect with a full page load."""
    if is_htmx():
        return "", 204, {"HX-Redirect": location}
    return redirect(location, 303)


@bp.get("/jobs/new/cron-preview")
@tenant_scoped
def cron_preview_fragment():
    preview = cron_preview(request.args.get("cron_schedule", ""),
                           request.args.get("timezone", "UTC"))
    return render_view("new_job/_cron_preview.html", "new_job/_cron_preview.html",
                       preview=preview)


@bp.post("/jobs/new/validate/<field_name>")
@tenant_scoped
def validate_field(field_name):
    """The inline check of one JSON field as it is typed (payload, metadata, a webhook body).
    htmx posts the whole form, so the check knows the handler, channel and tenant."""
    text, kind = request.form.get(field_name, ""), request.args.get("kind", "immediate")
    message, size, handler = None, None, None
    if field_name == "payload":
        message, size, handler = _check_payload_field(text, kind)
    elif field_name == "metadata":
        message = json_object_error(text, "metadata") if text.strip() else None
    elif field_name == "body":
        message = webhook_body_error(text) if request.form.get("channel") == "webhook" else None
    else:
        abort(404, f"No inline check for {field_name!r}.")
    return render_view("new_job/_field_feedback.html", "new_job/_field_feedback.html",
                       message=message, size=size, handler_info=handler)


def _check_payload_field(text: str, kind: str):
    """(message, size in bytes, the handler whose expectations to show)."""
    service = get_job_service()
    tenant = visible_tenant(request.form.get("tenant_id"))
    limit = tenant.job_limit.max_job_payload_size if tenant else None
    label = f"{tenant.name} ({tenant.tier.value})" if tenant else "the tenant"
    if kind == "notification":
        # The channel's handler sees recipient and body from their own fields; here only the
        # extra fields are typed, so only their shape and size are checked.
        handler = service.handlers.get(NOTIFICATION_CHANNELS.get(request.form.get("channel")
                                                                 or "", ""))
        message, size = check_payload(service.handlers, text or "{}", None, kind, limit, label)
        return message or notification_extras_error(text), size, handler
    handler_name = request.form.get("handler") or ""
    message, size = check_payload(service.handlers, text or "{}", handler_name,
                                  request.form.get("type") or kind, limit, label)
    return message, size, service.handlers.get(handler_name)


@bp.get("/jobs/new/tenant-usage")
@tenant_scoped
def tenant_usage():
    """The chosen tenant's usage; with ``kind``, also the handler choices open to that tenant
    (system handlers are offered to the operations tenant only), the chosen one kept."""
    service = get_job_service()
    tenant = visible_tenant(request.args.get("tenant_id"))
    status = 200 if tenant else 404
    handler_field = None
    kind = request.args.get("kind")
    if tenant and kind in FORMS and hasattr(FORMS[kind], "handler"):
        form = _form(kind, _tenants())
        if request.args.get("handler") in choice_values(form.handler):
            form.handler.data = request.args["handler"]
        handler_field = form.handler
    return render_view("new_job/_tenant_changed.html", "new_job/_tenant_changed.html", status,
                       quota=tenant_quota(service.engine, tenant) if tenant else None,
                       tenant_id=request.args.get("tenant_id"), handler_field=handler_field)


@bp.route("/jobs/new/batch", methods=["GET", "POST"])
@tenant_scoped
def batch():
    tenants = _tenants()
    chosen = request.values.get("tenant_id") or (tenants[0].tenant_id if tenants else None)
    form = BatchForm(tenants=tenants, tenant_id=chosen)
    limit, queued, status = None, None, 200
    if request.method == "POST":
        status = 422
        if form.validate():
            limit, queued = _queue_batch(form, tenants)
            if queued is not None:
                flash(f"Queued {len(queued):,} jobs for {form.tenant_id.data}.")
                return _see_other(url_for("new_job.batch", tenant_id=form.tenant_id.data,
                                          queued=len(queued), first=queued[0].id,
                                          last=queued[-1].id,
                                          batch=max(job.batch_id or "" for job in queued)))
    context = {"kind": "batch", "kinds": KINDS, "form": form, "tenants": tenants,
               "limit": limit, "max_rows": MAX_BATCH_ROWS, "done": _batch_done(),
               "refresh_usage": bool(limit) and is_htmx(),
               "quota": (tenant_quota(get_job_service().engine, tenant)
                         if (tenant := _tenant(tenants, form.tenant_id.data)) else None)}
    partial = "new_job/_batch_form.html" if request.method == "POST" else "new_job/_panel.html"
    return render_view(PAGE, partial, status, **context)


def _queue_batch(form: BatchForm, tenants):
    """(limit message, queued jobs): one of them None; form errors added for bad rows."""
    upload = form.file.data
    try:
        parsed = read_batch_file(upload.filename, upload.read())
    except BatchFileError as exc:
        form.file.errors = [*form.file.errors, str(exc)]
        return None, None
    try:
        jobs = get_job_service().queue_batch_jobs(parsed.specs, form.tenant_id.data,
                                                  priority=form.priority.data or None,
                                                  actor=console_actor(),
                                                  **(parsed.callbacks or {}))
    except JobValidationError as exc:
        form.file.errors = [*form.file.errors, describe_spec_error(exc, parsed)]
        return None, None
    except TenantLimitException as exc:
        message = explain_limit(exc, _tenant(tenants, form.tenant_id.data),
                                adding=len(parsed.specs))
        row = row_of_limit(exc, parsed.specs)
        return (f"row {row}: {message}" if row else message), None
    return None, jobs


_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _batch_done() -> dict | None:
    """What the redirect after a successful upload says, with links to the batch's page and to
    the jobs table filtered to the batch: its tenant and the creation times of its first and
    last ids (UUIDv7 carry their millisecond), which the table turns into an id range."""
    count, first, last = (request.args.get(k, "") for k in ("queued", "first", "last"))
    if not count.isdigit():
        return None
    batch = request.args.get("batch", "")
    done = {"count": int(count), "tenant_id": request.args.get("tenant_id", ""),
            "first": first if _JOB_ID.fullmatch(first) else None, "jobs_url": None,
            "batch": batch if _JOB_ID.fullmatch(batch) else None}
    if done["first"] and _JOB_ID.fullmatch(last):
        def moment(job_id: str, extra_ms: int = 0) -> str:
            ms = int(job_id.replace("-", "")[:12], 16) + extra_ms
            return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
        done["jobs_url"] = url_for("jobs.index", tenant=done["tenant_id"],
                                   created_from=moment(first), created_before=moment(last, 1))
    return done
