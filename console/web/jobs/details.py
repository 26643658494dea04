"""A job's page, read: its attempts (the newest few, however many it has had), its result, what
the operator may do to it now, for a recurring job its schedule, and "why isn't this job
running?" (the engine's explanation, with links and figures for people)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import url_for
from flask_login import current_user
from sqlalchemy import Connection, func, select

from ...jobs import dependencies
from ...jobs.attempt_logs import lines_by_attempt, recent_attempts
from ...jobs.cron import next_fire_time
from ...jobs.explain import JobExplanation
from ...jobs.models import attempts_table
from ...jobs.service import RETRYABLE_STATUSES
from ...jobs.types import WAITING_STATUSES, JobBlocker, JobStatus, JobValidationError, SystemJob
from ..control import current_pauses, may_control
from ..rendering import ago, number, timestamp

UTC = timezone.utc
ATTEMPTS_SHOWN = 50   # a recurring job can have thousands; the page shows the newest
# ... and the lines of the newest few (each up to JOBS_ATTEMPT_LOG_LINES); the API pages
# through all of them.
LOGGED_ATTEMPTS_SHOWN = 10
NEIGHBOURS_SHOWN = 50  # jobs listed upstream and downstream of a job (a fan-in has many)


def job_activity(conn: Connection, job: SystemJob) -> dict[str, Any]:
    """What the activity fragment (actions, result, attempts with their log lines) shows;
    refreshed on each change, a running attempt's new lines included."""
    a = attempts_table.c
    attempts = recent_attempts(conn, job, ATTEMPTS_SHOWN, with_lines=False)
    logged = lines_by_attempt(conn, job.id,
                              (each["attempt"] for each in attempts[:LOGGED_ATTEMPTS_SHOWN]))
    for each in attempts:
        each["lines"] = logged.get(each["attempt"])   # None: an older one, not shown here
    total = len(attempts)
    if total == ATTEMPTS_SHOWN:
        running = sum(1 for each in attempts if each["running"])
        total = running + conn.execute(select(func.count()).select_from(attempts_table)
                                       .where(a.job_id == job.id)).scalar_one()
    may_act = current_user.is_authenticated and current_user.may("operator")
    return {
        "job": job,
        **job_links(conn, job),
        "attempts": attempts,
        "attempts_total": total,
        "logged_attempts_shown": LOGGED_ATTEMPTS_SHOWN,
        "result": job.last_result.to_dict() if job.last_result else None,
        "can_retry": may_act and job.status.value in RETRYABLE_STATUSES,
        "can_cancel": may_act and job.status.value in WAITING_STATUSES,
        **job_controls(job),
    }


def job_links(conn: Connection, job: SystemJob) -> dict[str, Any]:
    """The jobs it depends on (upstream) and those that depend on it (downstream), each with
    its status (the page swaps them live by their ``job-<id>`` events)."""
    downstream, downstream_total = dependencies.downstream(conn, job.id, NEIGHBOURS_SHOWN)
    return {"upstream": dependencies.upstream(conn, job, NEIGHBOURS_SHOWN),
            "upstream_total": len(job.depends_on),
            "downstream": downstream, "downstream_total": downstream_total}


def job_controls(job: SystemJob) -> dict[str, Any]:
    """The job's own pause, and which of pause, resume and run now the operator may use now:
    pause and resume a pending, queued or recurring job; run now a pending one (delayed, or
    waiting out a retry's backoff) or a recurring one (a one-off copy: its schedule stays)."""
    own = current_pauses().of("job", job_id=job.id)
    allowed = may_control() and not job.is_finished
    waiting = job.status.value in WAITING_STATUSES
    return {
        "own_pause": own,
        "can_pause": allowed and own is None and (waiting or bool(job.cron_schedule)),
        "can_resume": allowed and own is not None,
        "can_run_now": allowed and (bool(job.cron_schedule) or (
            job.status is JobStatus.PENDING and own is None
            and not job.waiting_for_dependencies)),
    }


BLOCKER_TITLES = {
    "due_later": "Due later",
    "retry_backoff": "Waiting to retry",
    "paused": "Paused",
    "tenant_concurrency": "Tenant at its concurrency limit",
    "daily_limit": "Daily limit used",
    "rate_limit": "Rate limit",
    "no_live_runner": "No live runner",
    "handler_not_registered": "Handler not registered on any live runner",
    "fair_share": "Waiting for its fair share",
    "dependencies": "Waiting for other jobs",
    "lease": "Held by a runner that stopped",
}


def explanation_view(explanation: JobExplanation, staff: bool) -> dict[str, Any]:
    """What the "Why isn't this job running?" panel shows: each blocker's title, the engine's
    message, its figures and links; for a running job, who holds it. ``staff``: other tenants'
    ids may be named (a bound user gets their count only)."""
    job = explanation.job
    if job.is_finished:
        state = "finished"
    elif job.status is JobStatus.PROCESSING and explanation.holder is not None:
        state = "running"
    else:
        state = "waiting"
    holder = None
    if explanation.holder is not None:
        runner = explanation.holder
        holder = {"runner": runner, "since": job.last_attempt,
                  "progress": job.progress, "progress_message": job.progress_message}
    return {"job": job, "state": state, "holder": holder, "checked_at": explanation.checked_at,
            "blockers": [_blocker_view(blocker, job, staff) for blocker in explanation.blockers]}


def _blocker_view(blocker: JobBlocker, job: SystemJob, staff: bool) -> dict[str, Any]:
    details = blocker.details or {}
    links: list[tuple[str, str]] = []
    figures: list[tuple[str, str]] = []
    code = blocker.code
    if code == "paused":
        scope = details.get("scope")
        if details.get("tenant_id") and scope in ("tenant", "handler"):
            links.append((f"Tenant {details['tenant_id']}",
                          url_for("tenants.show", tenant_id=details["tenant_id"])))
        if scope == "handler" and staff:
            links.append((f"Handler {details['handler']}",
                          url_for("handlers.show", name=details["handler"])))
        if scope == "all":
            links.append(("Dashboard (maintenance)", url_for("dashboard.index")))
    elif code == "tenant_concurrency":
        figures.append(("Running", f"{number(details.get('running'))} of "
                                   f"{number(details.get('max_concurrent_jobs'))}"))
        links += [(f"Running job …{job_id[-12:]}", url_for("jobs.show", job_id=job_id))
                  for job_id in details.get("running_job_ids") or []]
    elif code in ("due_later", "retry_backoff"):
        when = _moment(details.get("due_at") or details.get("retry_at"))
        if when is not None:
            figures.append(("Starts", f"{timestamp(when)} ({ago(when)})"))
    elif code == "daily_limit":
        figures.append(("Daily limit", number(details.get("max_daily_jobs"))))
    elif code == "rate_limit":
        figures, links = _rate_limit_view(details, staff)
    elif code == "fair_share":
        ahead = details.get("ahead_by_priority") or {}
        figures.append(("Ahead of it in its tenant", number(details.get("ahead_in_tenant")) + (
            " (" + ", ".join(f"{name} {number(count)}" for name, count in ahead.items()) + ")"
            if ahead else "")))
        competing = details.get("competing_tenants") or []
        others = details.get("other_tenants_with_due_work", len(competing))
        if staff and competing:
            figures.append(("Other tenants with due work", ", ".join(
                f"{c['tenant_id']} ({number(c['queued'])} queued, top {c['top_priority']})"
                for c in competing) + (f" and {others - len(competing)} more"
                                       if others > len(competing) else "")))
        else:
            figures.append(("Other tenants with due work", number(others)))
        figures.append(("Starts per minute (recent, every tenant)",
                        number(details.get("starts_per_minute"))))
        start = _moment(details.get("estimated_start"))
        figures.append(("Estimated start", f"{timestamp(start)} ({ago(start)})" if start
                        else "no recent throughput to estimate from"))
    elif code == "dependencies":
        figures.append(("Not finished", f"{number(details.get('unfinished_count'))} of "
                                        f"{number(details.get('depends_on_count'))}"))
        figures.append(("If one fails or is cancelled",
                        "this job is cancelled" if details.get("on_dependency_failure") == "cancel"
                        else "this job runs anyway, once all have ended"))
        links += [(f"Job …{d['job_id'][-12:]} ({d['handler']}, {d['status']})",
                   url_for("jobs.show", job_id=d["job_id"]))
                  for d in details.get("unfinished") or []]
    elif code == "lease":
        expires = _moment(details.get("lease_expires_at"))
        if expires is not None:
            figures.append(("Lease expires", f"{timestamp(expires)} ({ago(expires)})"))
    return {"code": code, "title": BLOCKER_TITLES.get(code, code.replace("_", " ")),
            "message": blocker.message, "figures": figures, "links": links}


def _rate_limit_view(details: dict[str, Any], staff: bool
                     ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A rate limit's figures (its period so far, the next start) and where it is set."""
    figures = [("Started in the period", f"{number(details.get('started_in_period'))} of "
                                         f"{number(details.get('count'))}")]
    when = _moment(details.get("next_start_at"))
    if when is not None:
        figures.append(("Next start allowed", f"{timestamp(when)} ({ago(when)})"))
    links = []
    if details.get("tenant_id"):
        links.append((f"Tenant {details['tenant_id']}",
                      url_for("tenants.show", tenant_id=details["tenant_id"])))
    if details.get("handler") and staff:
        links.append((f"Handler {details['handler']}",
                      url_for("handlers.show", name=details["handler"])))
    return figures, links


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def schedule(job: SystemJob, now: datetime | None = None) -> dict[str, Any] | None:
    """A recurring job's cron expression, time zone and next run (None for one-off jobs)."""
    if not job.cron_schedule:
        return None
    now = now or datetime.now(UTC)
    if job.status.value in WAITING_STATUSES and job.scheduled_for:
        next_run = job.scheduled_for
    elif job.status.value == "processing":
        try:
            next_run = next_fire_time(job.cron_schedule, job.timezone, now)
        except JobValidationError:   # stored before it was checked: it never fires
            next_run = None
    else:
        next_run = None   # cancelled or failed: it runs again only if retried
    return {"cron": job.cron_schedule, "timezone": job.timezone, "next_run": next_run}
