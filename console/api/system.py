"""``/api/v1/queue`` and ``/api/v1/stats`` (all-tenant tokens), and the public part of the
API: its OpenAPI document and the problem types' descriptions."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request

from ..jobs import get_job_service
from .auth import require_all_tenants
from .errors import PROBLEM_TYPES, ApiProblem, register_problem_handlers
from .openapi import API_PREFIX, api_blueprint, problems
from .tenant_schemas import QueueStatusSchema, StatsSchema

bp = api_blueprint("api_system", "Queue status and system statistics (all-tenant tokens).")
public = Blueprint("api", __name__, url_prefix=API_PREFIX)
register_problem_handlers(public)


@bp.get("/queue")
@bp.response(200, QueueStatusSchema)
@problems(401, 403)
def queue_status():
    """Jobs waiting and running across all tenants"""
    require_all_tenants("The queue status")
    return get_job_service().get_job_queue_status()


@bp.get("/stats")
@bp.response(200, StatsSchema)
@problems(401, 403)
def statistics():
    """System statistics of the last 24 hours, with warnings"""
    require_all_tenants("System statistics")
    return asdict(get_job_service().get_system_job_statistics())


@public.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description. Public: it is documentation, and holds no data."""
    return jsonify(current_app.extensions["console_api"].spec.to_dict())


@public.get("/problems/<slug>")
def problem_type(slug: str):
    """What a problem ``type`` means (the URIs in error bodies resolve here)."""
    if slug not in PROBLEM_TYPES:
        raise ApiProblem(404, f"There is no problem type {slug!r}; known: "
                              f"{', '.join(PROBLEM_TYPES)}.")
    title, description = PROBLEM_TYPES[slug]
    return jsonify(type=request.path, title=title, description=description)
