"""Every API error as RFC 9457 problem details (``application/problem+json``).

A body always has ``type``, ``title``, ``status`` and a ``detail`` that says what was wrong and
how to fix it; validation problems add ``errors: [{field, message}]``, limit refusals add
``limit_type``, ``current_usage`` and ``limit``. The handlers are registered on the API's
blueprints, so the console keeps its HTML error pages. No input should reach the 500 handler;
it exists so that a bug still answers in the API's format (and is logged).
"""
from __future__ import annotations

import json as json_module
import math
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, current_app, json, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import RequestRedirect

from ..jobs import get_job_service
from ..jobs.availability import as_unavailable
from ..jobs.types import (
    DatabaseUnavailableError,
    JobNotFoundError,
    JobStateError,
    JobValidationError,
    TenantLimitException,
)
from .field_errors import api_field, webargs_errors

UTC = timezone.utc
PROBLEM_MEDIA_TYPE = "application/problem+json"
API_PATH_PREFIX = "/api/v1/"
PROBLEM_TYPE_PREFIX = API_PATH_PREFIX + "problems/"

# slug → (title, what it means and what to do); served at /api/v1/problems/<slug>.
PROBLEM_TYPES: dict[str, tuple[str, str]] = {
    "malformed-request": ("Malformed request", "The body is not valid JSON, or the request "
                          "cannot be read. Send a JSON object with Content-Type: "
                          "application/json."),
    "unsupported-media-type": ("Unsupported media type", "Request bodies are JSON: send "
                               "Content-Type: application/json."),
    "validation": ("Invalid request", "A field is missing or has a value the API cannot use; "
                   "`errors` names each field with what to change."),
    "unauthorized": ("Authentication required", "Send a valid, unrevoked API token as "
                     "`Authorization: Bearer <token>`. Admins create tokens with "
                     "`flask --app console create-token` or on the console's API tokens page."),
    "forbidden": ("Not allowed for this token", "The token's scope does not cover this request "
                  "(all-tenant or admin tokens only)."),
    "not-found": ("Not found", "No such resource is visible to this token."),
    "method-not-allowed": ("Method not allowed", "The path exists but not with this method; "
                           "the Allow header lists the methods it takes."),
    "job-state": ("Job state does not allow this", "Only failed or cancelled jobs can be "
                  "retried; only pending or queued jobs cancelled; a finished job cannot be "
                  "paused; run now starts a pending job that is not paused (a recurring job: "
                  "one that is not finished). `detail` says what the job's state is."),
    "tenant-limit": ("Tenant limit reached", "A limit of the tenant refused the work and nothing "
                     "was stored. `limit_type`, `current_usage` and `limit` say which; for "
                     "max_daily_jobs, Retry-After gives the seconds until the count resets at "
                     "midnight UTC."),
    "rate-limit": ("Token rate limit reached", "The token has sent its requests per minute "
                   "(`limit`, over a sliding `period_seconds`); the request was refused before "
                   "anything was done. Retry after the Retry-After seconds, or ask an admin "
                   "for a higher rate on the token."),
    "payload-too-large": ("Request too large", "The request body is larger than the server "
                          "accepts (MAX_CONTENT_LENGTH); send fewer jobs per batch."),
    "database-unavailable": ("Database unavailable", "The database cannot be reached right "
                             "now (or, on SQLite, stayed locked by other writers), so the "
                             "request was not carried out. Retry after the Retry-After seconds; "
                             "send an idempotency_key when queueing so that a retry can never "
                             "queue a job twice."),
    "server-error": ("Internal server error", "Something failed on the server; it has been "
                     "logged. Retrying later may help."),
}
_SLUG_BY_STATUS = {400: "malformed-request", 401: "unauthorized", 403: "forbidden",
                   404: "not-found", 405: "method-not-allowed", 409: "job-state",
                   413: "payload-too-large", 415: "unsupported-media-type", 422: "validation",
                   429: "tenant-limit"}


class ApiProblem(Exception):
    """Raise from a view to answer with a problem document (``status``, ``detail``, extras)."""

    def __init__(self, status: int, detail: str, *, slug: str | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _SLUG_BY_STATUS.get(status, "server-error")
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(status: int, detail: str, *, slug: str | None = None,
                     headers: dict[str, str] | None = None, **extensions: Any):
    slug = slug or _SLUG_BY_STATUS.get(status, "server-error")
    title = PROBLEM_TYPES.get(slug, PROBLEM_TYPES["server-error"])[0]
    body = {"type": PROBLEM_TYPE_PREFIX + slug, "title": title, "status": status,
            "detail": detail, "instance": request.path, **extensions}
    response = current_app.response_class(json.dumps(body), status=status,
                                          mimetype=PROBLEM_MEDIA_TYPE)
    response.headers.update(headers or {})
    return response


def database_unavailable_problem(error: DatabaseUnavailableError):
    """503 with Retry-After: nothing was done; the client retries later."""
    current_app.logger.warning("API request %s %s: %s", request.method, request.path,
                               error.message)
    return problem_response(503, error.message[0].upper() + error.message[1:] + ".",
                            slug="database-unavailable",
                            headers={"Retry-After": str(error.retry_after)})


def unauthorized(detail: str, error: str | None = None) -> ApiProblem:
    """401 with the challenge RFC 6750 asks for (``error="invalid_token"`` for a bad one)."""
    challenge = 'Bearer realm="api"' + (f', error="{error}"' if error else "")
    return ApiProblem(401, detail, headers={"WWW-Authenticate": challenge})


def seconds_until_utc_midnight(now: datetime | None = None) -> int:
    """When a ``max_daily_jobs`` count resets (it counts per UTC day)."""
    now = now or datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return max(1, math.ceil((midnight - now).total_seconds()))


def validation_problem(errors: list[dict[str, str]], status: int = 422) -> ApiProblem:
    first = errors[0]
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in `errors`)" \
        if len(errors) > 1 else ""
    return ApiProblem(status, f"{first['field']}: {first['message']}{more}", errors=errors)


def _why(error: HTTPException) -> str:
    """`` (Expecting ',' delimiter at character 17)``: what the JSON parser said."""
    exc = getattr(error, "exc", None)
    if isinstance(exc, json_module.JSONDecodeError):
        where = f" at character {exc.pos}" if exc.doc != "body" else ""
        return f" ({exc.msg}{where})"
    return ""


def _from_http_exception(error: HTTPException):
    status = error.code or 500
    if status >= 500:
        current_app.logger.error("API error %s on %s", status, request.path, exc_info=error)
        return problem_response(status, "The server failed to answer; the error was logged.",
                                slug="server-error")
    errors = webargs_errors(error)
    headers = dict((getattr(error, "data", None) or {}).get("headers") or {})
    if status == 400 and errors:
        return problem_response(400, f"The request body is not valid JSON{_why(error)}: send a "
                                     "JSON object with Content-Type: application/json.",
                                headers=headers)
    if errors:
        problem = validation_problem(errors, status)
        return problem_response(status, problem.detail, headers=headers, errors=errors)
    detail = error.description if error.description != type(error).description else \
        PROBLEM_TYPES.get(_SLUG_BY_STATUS.get(status, ""), ("", error.description or ""))[1]
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    return problem_response(status, detail or error.name, headers=headers)


def answer_routing_errors_as_problems():
    """App-level ``before_request``: a path under /api/v1 that does not exist (404), or not
    with this method (405), gets problem details, not the console's HTML error page. (Routing
    failed, so no blueprint's handlers apply.)"""
    error = request.routing_exception
    if error is None or not request.path.startswith(API_PATH_PREFIX) or isinstance(
            error, RequestRedirect):
        return None
    if isinstance(error, NotFound):
        return problem_response(404, f"There is no {request.path}; the API's paths are listed "
                                     f"in {API_PATH_PREFIX}openapi.json.")
    return _from_http_exception(error)


def _location(field: str) -> str:
    """Where the field at fault was sent: the path (``/handlers/{handler}/pause``), else the
    query (GET) or the body."""
    if field in (request.view_args or {}):
        return "path"
    return "query" if request.method == "GET" else "json"


def register_problem_handlers(bp: Blueprint) -> None:
    """Answer every error raised under ``bp`` as problem details."""

    @bp.errorhandler(ApiProblem)
    def api_problem(problem: ApiProblem):
        return problem_response(problem.status, problem.detail, slug=problem.slug,
                                headers=problem.headers, **problem.extensions)

    @bp.errorhandler(JobValidationError)
    def job_validation(error: JobValidationError):
        field = api_field(error.field)
        message = error.message.split(": ", 1)[1] if ": " in error.message else error.message
        errors = [{"field": field, "in": _location(field), "message": message}]
        return problem_response(422, f"{field}: {message}", errors=errors)

    @bp.errorhandler(TenantLimitException)
    def tenant_limit(error: TenantLimitException):
        headers = {}
        if error.limit_type == "max_daily_jobs":
            # The daily window turns with the engine's clock (the database's on PostgreSQL).
            headers["Retry-After"] = str(seconds_until_utc_midnight(
                get_job_service().clock.now()))
        return problem_response(429, error.message, headers=headers,
                                limit_type=error.limit_type, current_usage=error.current_usage,
                                limit=error.limit, tenant_id=error.tenant_id)

    @bp.errorhandler(JobStateError)
    def job_state(error: JobStateError):
        return problem_response(409, str(error))

    @bp.errorhandler(JobNotFoundError)
    def job_not_found(error: JobNotFoundError):
        return problem_response(404, f"{error}; list jobs with GET /api/v1/jobs")

    @bp.errorhandler(HTTPException)
    def http_exception(error: HTTPException):
        return _from_http_exception(error)

    @bp.errorhandler(Exception)
    def unexpected(error: Exception):
        unavailable = as_unavailable(error)   # the database is down or busy: not a bug
        if unavailable is not None:
            return database_unavailable_problem(unavailable)
        current_app.logger.exception("API request %s %s failed", request.method, request.path)
        return problem_response(500, "The server failed to answer; the error was logged.",
                                slug="server-error")
