"""flask-smorest wiring: the ``Api`` extension, the blueprints' shared set-up, and the problem
responses every operation documents.

Why flask-smorest: it is an extension of a plain ``Flask`` app (``Api(app)``), which is what
``create_app`` builds. APIFlask and flask-openapi3 generate their documents from their own
``Flask`` subclasses (``APIFlask``, ``OpenAPI``), so the console's app class would have to
change. Its marshmallow schemas validate requests *and* generate the OpenAPI 3.1 document
(apispec), so the document describes what the code does.
"""
from __future__ import annotations

import threading

from flask_smorest import Api, Blueprint
from werkzeug.routing import BaseConverter

from ..jobs.listing import JOB_ID_PATTERN
from .bodies import StrictJsonParser, require_json_body
from .errors import PROBLEM_MEDIA_TYPE, register_problem_handlers
from .tenant_schemas import ProblemSchema

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"

_PROBLEMS = {
    400: ("The body is not valid JSON.", {}),
    401: ("No token, a malformed one, or a revoked one.", {
        "WWW-Authenticate": {"schema": {"type": "string"},
                             "description": 'Bearer realm="api" (error="invalid_token" for a '
                                            "bad token)."}}),
    403: ("The token's scope does not allow this (all-tenant or admin tokens only).", {}),
    404: ("No such resource visible to this token (another tenant's resources are not found "
          "either).", {}),
    409: ("The job's state does not allow this.", {}),
    415: ("The body is not JSON (Content-Type must be application/json).", {}),
    422: ("A field is missing or invalid; `errors` names each one.", {}),
    429: ("A tenant limit refused the work; nothing was stored.", {
        "Retry-After": {"schema": {"type": "integer"},
                        "description": "For max_daily_jobs: seconds until midnight UTC, when "
                                       "the count resets."}}),
}


class ConsoleApi(Api):
    """``Api`` that answers errors as problem details on the API's blueprints only, and writes
    its blueprints into the document when the document is first read.

    flask-smorest documents every view as its blueprint is registered, which costs more than
    the rest of ``create_app`` together; an app that never serves its document (a worker
    process, each test's app) skips it, and the first read of ``spec`` does it once.
    """

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = "Problem"

    def __init__(self, app=None, *, spec_kwargs=None):
        self._undocumented: list[tuple] = []
        self._documenting = threading.Lock()
        self._documenter: int | None = None   # the thread writing them in
        super().__init__(app, spec_kwargs=spec_kwargs)

    @property
    def spec(self):
        spec = self.__dict__.get("_spec")
        if (spec is None or not self._undocumented
                or self._documenter == threading.get_ident()):   # flask-smorest, while it writes
            return spec
        with self._documenting:   # other readers wait for the whole document
            if self._undocumented:
                self._documenter = threading.get_ident()
                try:
                    for blp, name, parameters in self._undocumented:
                        blp.register_views_in_doc(self, self._app, spec, name=name,
                                                  parameters=parameters)
                        spec.tag({"name": name, "description": blp.description})
                    self._undocumented = []
                finally:
                    self._documenter = None
        return spec

    @spec.setter
    def spec(self, value):
        self.__dict__["_spec"] = value

    def register_blueprint(self, blp, *, parameters=None, **options):
        """Route the blueprint now (as ``Api.register_blueprint``); document it later."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def _register_error_handlers(self):
        """flask-smorest would answer every HTTP error of the whole app in JSON; the console's
        pages keep their HTML errors, and the API's blueprints register their own."""

    def _register_responses(self):
        content = {PROBLEM_MEDIA_TYPE: {"schema": "Problem"}}
        self.spec.components.schema("Problem", schema=ProblemSchema)
        for status, (description, headers) in _PROBLEMS.items():
            response = {"description": description, "content": content}
            if headers:
                response["headers"] = headers
            self.spec.components.response(f"Problem{status}", response)
        self.spec.components.response("Problem", {
            "description": "Any other error, as problem details.", "content": content})


class JobIdConverter(BaseConverter):
    """``<job_id:…>``: only what can be a job id (a lower-case UUID) routes to a job, so
    ``/jobs/batch`` is not also "the job named batch", and garbage ids are 404 without a query."""

    regex = JOB_ID_PATTERN.pattern


def _job_id_parameter(converter) -> dict:
    return {"type": "string", "pattern": f"^{JOB_ID_PATTERN.pattern}$",
            "description": "A job id (UUIDv7)."}


class BatchIdConverter(JobIdConverter):
    """``<batch_id:…>``: batch ids are UUIDv7 too."""


def _batch_id_parameter(converter) -> dict:
    return {**_job_id_parameter(converter), "description": "A batch id (UUIDv7)."}


def create_api(app) -> ConsoleApi:
    app.url_map.converters["job_id"] = JobIdConverter
    app.url_map.converters["batch_id"] = BatchIdConverter
    api = _create_api(app)
    api.register_converter(JobIdConverter, _job_id_parameter)
    api.register_converter(BatchIdConverter, _batch_id_parameter)
    return api


def _create_api(app) -> ConsoleApi:
    return ConsoleApi(app, spec_kwargs={
        "title": "Job console API",
        "version": API_VERSION,
        "openapi_version": "3.1.0",
        "info": {"description": (
            "Queue and inspect jobs of a multi-tenant job system. Authenticate with "
            "`Authorization: Bearer <token>`. A tenant token reaches its own tenant only "
            "(another tenant's jobs and tenants are 404); all-tenant tokens also read the "
            "queue and statistics; admin tokens also change limits. Errors are RFC 9457 "
            "problem details.")},
        "security": [{"bearerAuth": []}],
        "components": {"securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "An API token (`cjt_…`) from `flask --app console create-token` or "
                           "the console's API tokens page."}}},
    })


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = StrictJsonParser()


def api_blueprint(name: str, description: str) -> Blueprint:
    """A blueprint under /api/v1 that authenticates every request by bearer token and answers
    errors as problem details."""
    from .auth import authenticate_request

    bp = ApiBlueprint(name, __name__, url_prefix=API_PREFIX, description=description)
    bp.before_request(authenticate_request)
    bp.before_request(require_json_body)
    register_problem_handlers(bp)
    return bp


# Only its documentation decorators are used (they do not depend on the blueprint).
_DOCS = Blueprint("api_docs_only", __name__)


def problems(*statuses: int):
    """Document the problem responses an operation can give (besides the default one)."""
    def decorate(view):
        for status in statuses:
            view = _DOCS.alt_response(status, f"Problem{status}")(view)
        return view
    return decorate
