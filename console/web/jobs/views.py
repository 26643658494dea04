"""The jobs screens: the filterable table (active search, keyset pages, live statuses), bulk
retry and cancel, and a job's page with its attempts, result and actions.

Views translate HTTP into ``JobFilter`` reads and ``JobService`` verbs; the SQL lives in
``console.jobs.listing``, the allow-listed verbs and forms in ``actions``, the job page's reads
in ``details``.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, make_response, redirect, request, url_for
from flask_login import current_user

from ...jobs import get_job_service
from ...jobs.listing import FILTER_FIELDS, JOB_ID_PATTERN, JobFilter
from ...jobs.types import (
    JobNotFoundError,
    JobPriority,
    JobStateError,
    JobStatus,
    JobType,
    TenantLimitException,
)
from ..audit.actor import console_actor
from ..auth.views import role_required
from ..control import act, back_to, form_reason
from ..rendering import is_htmx, render_view
from ..scope import current_scope, in_scope, is_staff, tenant_scoped, visible
from .actions import (
    BULK_CAP,
    BULK_VERBS,
    BulkAllForm,
    BulkSelectionForm,
    JobActionForm,
    first_error,
    local_path,
    outcome_message,
)
from .details import explanation_view, job_activity, schedule

bp = Blueprint("jobs", __name__)


def _filter_choices(job_filter: JobFilter) -> dict:
    """Options of the filter form's lists, keeping a current value that is not among them."""
    service = get_job_service()
    choices = {
        "status": [(s.value, s.value) for s in JobStatus],
        "tenant": [(t.tenant_id, f"{t.name} ({t.tenant_id})")
                   for t in sorted(visible(service.tenants.list_tenant_configs(),
                                           lambda t: t.tenant_id),
                                   key=lambda t: t.tenant_id)],
        "type": [(t.value, t.value) for t in JobType],
        "handler": [(name, name) for name in sorted(service.handlers.names())],
        "priority": [(p.value, p.value) for p in JobPriority],
        "waiting": [("dependencies", "dependencies (pending until other jobs complete)")],
    }
    for name, options in choices.items():
        current = job_filter.values[name]
        if current and current not in {value for value, _ in options}:
            options.append((current, current))
    return choices


@bp.get("/jobs")
@tenant_scoped
def index():
    job_filter = JobFilter(request.args, tenant_scope=current_scope())
    def jobs_url(endpoint: str = "jobs.index", **extra: str) -> str:
        """A link that keeps the filters: pages, and the bulk actions on what they match."""
        return url_for(endpoint, **{**job_filter.active, **extra})

    context = {"filter": job_filter, "choices": _filter_choices(job_filter),
               "filter_fields": FILTER_FIELDS, "live": True, "jobs_url": jobs_url,
               "may_act": _may_act(), "listing": None, "here": request.full_path,
               "live_refresh": request.headers.get("X-Live-Refresh") == "1"}
    if not job_filter.valid:
        return render_view("jobs/index.html", "jobs/_results.html", status=400, **context)
    with get_job_service().engine.connect() as conn:
        context["listing"] = job_filter.page(conn)
    cursor = {"after": job_filter.after} if job_filter.after else (
        {"before": job_filter.before} if job_filter.before else {})
    context["here"] = jobs_url(**cursor)
    response = make_response(render_view("jobs/index.html", "jobs/_results.html", **context))
    if is_htmx():
        # The address bar gets the tidy URL (the form also sends its empty fields).
        response.headers["HX-Push-Url"] = context["here"]
    return response


@bp.get("/jobs/<job_id>")
@tenant_scoped
def show(job_id):
    job = _job_or_404(job_id)
    with get_job_service().engine.connect() as conn:
        activity = job_activity(conn, job)
    explanation = explanation_view(get_job_service().explanation(job.id), is_staff())
    return render_view("jobs/show.html", None, schedule=schedule(job), live=True,
                       form=JobActionForm(), explanation=explanation, **activity)


@bp.get("/jobs/<job_id>/explanation")
@tenant_scoped
def explanation(job_id):
    """"Why isn't this job running?": the panel polls this every 2 s while the job waits or
    runs (pauses and other tenants' work change it without changing the job), and stops once
    the job has finished. Also swaps the page's paused badge (out of band)."""
    job = _job_or_404(job_id)
    try:
        found = get_job_service().explanation(job.id)
    except JobNotFoundError:
        abort(404, "There is no job with that id: it may have been pruned.")
    return render_view("jobs/_explanation.html", "jobs/_explanation.html", oob=True,
                       explanation=explanation_view(found, is_staff()))


@bp.get("/jobs/<job_id>/activity")
@tenant_scoped
def activity(job_id):
    """The part of a job's page that changes as it runs: htmx fetches it on each change."""
    job = _job_or_404(job_id)
    with get_job_service().engine.connect() as conn:
        context = job_activity(conn, job)
    return render_view("jobs/_activity.html", "jobs/_activity.html", form=JobActionForm(),
                       schedule=schedule(job), **context)


@bp.post("/jobs/<job_id>/retry")
@tenant_scoped
@role_required("operator")
def retry(job_id):
    return _change_one(job_id, "retry_job", "queued to run again")


@bp.post("/jobs/<job_id>/cancel")
@tenant_scoped
@role_required("operator")
def cancel(job_id):
    return _change_one(job_id, "cancel_job", "cancelled")


@bp.post("/jobs/<job_id>/pause")
@tenant_scoped
@role_required("operator")
def pause(job_id):
    """Hold one job: it waits pending (a recurring one does not fire) until resumed."""
    _job_or_404(job_id)
    back = back_to(url_for("jobs.show", job_id=job_id))

    def change():
        job = get_job_service().pause_job(job_id, form_reason(), by=console_actor())
        return (f"Job {job.id} paused (now {job.status.value}): it does not start until it is "
                "resumed.")
    return act(change, back)


@bp.post("/jobs/<job_id>/resume")
@tenant_scoped
@role_required("operator")
def resume(job_id):
    _job_or_404(job_id)
    back = back_to(url_for("jobs.show", job_id=job_id))

    def change():
        service = get_job_service()
        was_paused = service.pauses().of("job", job_id=job_id) is not None
        job = service.resume_job(job_id, by=console_actor())
        if not was_paused:
            return f"Job {job.id} was not paused: nothing changed."
        return f"Job {job.id} resumed (now {job.status.value})."
    return act(change, back)


@bp.post("/jobs/<job_id>/run-now")
@tenant_scoped
@role_required("operator")
def run_now(job_id):
    """Run a pending job now; for a recurring job, queue a one-off copy and show it."""
    original = _job_or_404(job_id)
    back = back_to(url_for("jobs.show", job_id=job_id))
    outcome = {}

    def change():
        job = get_job_service().run_now(job_id, by=console_actor())
        outcome["job"] = job
        if job.id != original.id:
            return (f"A one-off run of this recurring job was queued as job {job.id} (now "
                    f"{job.status.value}); the schedule of job {original.id} is unchanged.")
        return f"Job {job.id} is due now (now {job.status.value})."
    response = act(change, back)
    if "job" in outcome and outcome["job"].id != original.id:
        return redirect(url_for("jobs.show", job_id=outcome["job"].id), 303)
    return response


def _change_one(job_id: str, verb: str, done: str):
    _job_or_404(job_id)
    form = JobActionForm()
    back = local_path(form.next.data) or url_for("jobs.show", job_id=job_id)
    try:
        job = getattr(get_job_service(), verb)(job_id, actor=console_actor())
    except JobNotFoundError:
        abort(404, "There is no job with that id: it may have been pruned.")
    except (JobStateError, TenantLimitException) as refusal:
        flash(f"Not done: {refusal}", "error")
    else:
        flash(f"Job {job.id} {done} (now {job.status.value}).", "success")
    return redirect(back, 303)


@bp.post("/jobs/bulk")
@tenant_scoped
@role_required("operator")
def bulk_selected():
    """Retry or cancel the ticked rows."""
    form = BulkSelectionForm()
    back = local_path(form.next.data) or url_for("jobs.index")
    if not form.validate():
        flash(f"Nothing was changed. {first_error(form)}", "error")
        return redirect(back, 303)
    verb = BULK_VERBS[form.action.data]
    with get_job_service().engine.connect() as conn:
        job_ids = JobFilter({}, tenant_scope=current_scope()).within_scope(
            conn, form.job_ids.data)
    outcome = verb.apply(get_job_service(), job_ids, "the selected jobs")
    flash(outcome_message(verb, outcome), "success" if outcome.changed else "warning")
    return redirect(back, 303)


@bp.route("/jobs/bulk/all", methods=["GET", "POST"])
@tenant_scoped
@role_required("operator")
def bulk_all():
    """Everything the filter matches: GET counts it and asks, POST (confirmed) does it."""
    source = request.form if request.method == "POST" else request.args
    verb = BULK_VERBS.get(source.get("action", ""))
    if verb is None:
        abort(400, f"Unknown bulk action {source.get('action', '')!r}: use retry or cancel.")
    job_filter = JobFilter(source, tenant_scope=current_scope())
    back = local_path(source.get("next")) or url_for("jobs.index", **job_filter.active)
    if not job_filter.valid:
        return render_view("jobs/confirm.html", "jobs/_confirm.html", status=400, verb=verb,
                           filter=job_filter, back=back, count=0)
    with get_job_service().engine.connect() as conn:
        ids = job_filter.actionable_ids(conn, verb.statuses, BULK_CAP + 1)
    capped = len(ids) > BULK_CAP
    ids = ids[:BULK_CAP]
    if request.method == "GET":
        return render_view("jobs/confirm.html", "jobs/_confirm.html", verb=verb,
                           filter=job_filter, count=len(ids), capped=capped, back=back,
                           cap=BULK_CAP)
    form = BulkAllForm()
    if not form.validate():
        flash(f"Nothing was changed. {first_error(form)}", "error")
        return redirect(back, 303)
    outcome = verb.apply(get_job_service(), ids, f"all matching {job_filter.describe()}")
    message = outcome_message(verb, outcome)
    if capped:
        message += (f" Only the newest {BULK_CAP:,} matching jobs were processed: run it again "
                    "for the rest.")
    flash(message, "success" if outcome.changed else "warning")
    return redirect(back, 303)


def _job_or_404(job_id: str):
    job = get_job_service().get_job_by_id(job_id) if JOB_ID_PATTERN.fullmatch(job_id) else None
    # Another tenant's job reads exactly as a missing one, id not echoed: a bound user learns
    # nothing of it.
    if job is None or not in_scope(job.tenant_id, current_scope()):
        abort(404, "There is no job with that id: it may have been pruned, or the link is wrong.")
    return job


def _may_act() -> bool:
    return current_user.is_authenticated and current_user.may("operator")
