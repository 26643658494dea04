"""Operator control, shared by the screens that pause and resume: this request's pauses (read
once, however many rows and badges ask), the paused badges' words, the maintenance banner's
context, and how a pause, resume or run now answers — a flash and the page again, or a 4xx
message that says why nothing was done.

The verbs are ``JobService``'s (console/jobs/control.py); who may call them is each view's
decorators (``role_required``, ``tenant_scoped``) and, for the system-wide ones (a handler for
every tenant, everything), ``require_staff_admin``.
"""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask, abort, flash, g, redirect, render_template, request
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from ..jobs import get_job_service
from ..jobs.pauses import MAX_REASON_LENGTH, Pause, PauseSet
from ..jobs.types import (
    DatabaseUnavailableError,
    JobNotFoundError,
    JobStateError,
    JobStatus,
    JobValidationError,
    SystemJob,
    TenantLimitException,
)
from .jobs.actions import local_path
from .rendering import is_htmx, timestamp
from .scope import is_staff

STAFF_ADMINS_ONLY = ("Pausing a handler for every tenant, or everything, is system-wide: it needs "
                     "an admin bound to no tenant.")


def current_pauses() -> PauseSet:
    """Every pause in force, read once per request (rows, badges and the banner share it)."""
    if "pauses" not in g:
        g.pauses = get_job_service().pauses()
    return g.pauses


def maintenance() -> Pause | None:
    """The pause of everything, for the banner; None when there is none, when nobody is signed
    in, or when the database cannot say (an error page must still render)."""
    if not current_user.is_authenticated:
        return None
    try:
        return current_pauses().everything
    except (DatabaseUnavailableError, SQLAlchemyError):
        return None


def job_pauses(job: SystemJob) -> list[Pause]:
    """The pauses that hold ``job``: a waiting job's (everything, its tenant, its handler, the
    job itself); a running job's own pause only (its next run or retry waits)."""
    if job.is_finished:
        return []
    pauses = current_pauses()
    if not pauses:
        return []
    if job.status is JobStatus.PROCESSING:
        own = pauses.of("job", job_id=job.id)
        return [own] if own else []
    return pauses.holding(job.tenant_id, job.handler, job.id)


def paused_note(pause: Pause) -> str:
    """"tenant acme, paused by ada at 2026-01-02 10:00:00 UTC: deploying" (a badge's title)."""
    note = f"{pause.describe()}, paused by {pause.paused_by or 'unknown'} at " \
           f"{timestamp(pause.paused_at)}"
    return note + (f": {pause.reason}" if pause.reason else "")


def may_control() -> bool:
    """Pause, resume and run now of one tenant's things: the role retry and cancel need."""
    return current_user.is_authenticated and current_user.may("operator")


def may_control_system() -> bool:
    """Pause a handler for every tenant, or everything: staff admins only."""
    return current_user.is_authenticated and current_user.may("admin") and is_staff()


def require_staff_admin() -> None:
    if not may_control_system():
        abort(403, STAFF_ADMINS_ONLY)


def form_reason() -> str | None:
    """The form's optional reason, as typed (the engine trims it and checks its length).

    :raise JobValidationError: a NUL character, which PostgreSQL cannot store (the doors keep
        it out, as the API's schemas and the alert forms do).
    """
    reason = request.form.get("reason")
    if reason and "\x00" in reason:
        raise JobValidationError("reason", "the reason must not contain the NUL character "
                                           "(\\u0000)")
    return reason


def back_to(default: str) -> str:
    """Where to go after the action: the form's ``next`` when it is a path here."""
    return local_path(request.form.get("next")) or default


def refused(status: int, message: str, back: str):
    """Nothing was done: the reason, with a link back (htmx: into the page's message area)."""
    if is_htmx():
        body = render_template("errors/_message.html", title="Not done", message=message)
        return body, status, {"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"}
    return render_template("errors/error.html", status=status, title="Not done",
                           message=message, back=back), status


def act(change: Callable[[], str], back: str):
    """Run ``change`` (a verb that returns what to tell the operator); then the page again with
    that message, or the engine's refusal as a 4xx message (nothing stored)."""
    try:
        said = change()
    except JobValidationError as error:
        field, _, message = error.message.partition(": ")
        return refused(422, f"Nothing was changed: {message or field}.", back)
    except JobNotFoundError:
        return refused(404, "Nothing was changed: there is no such job (it may have been "
                            "pruned).", back)
    except JobStateError as error:
        return refused(409, f"Nothing was changed: {error}.", back)
    except TenantLimitException as error:
        return refused(429, f"Nothing was changed: {error.message}", back)
    flash(said, "success")
    return redirect(back, 303)


def init_control(app: Flask) -> None:
    @app.context_processor
    def operator_control():
        # Callables: nothing is read unless a template asks, then once per request.
        return {"maintenance": maintenance, "job_pauses": job_pauses,
                "current_pauses": current_pauses, "paused_note": paused_note,
                "may_control": may_control, "may_control_system": may_control_system,
                "max_reason_length": MAX_REASON_LENGTH}
