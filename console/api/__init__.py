"""The HTTP API under ``/api/v1``: bearer tokens, problem details, an OpenAPI 3.1 document.

Modules: ``auth`` (bearer authentication and scope rules), ``errors`` (RFC 9457 problem
details), ``openapi`` (flask-smorest wiring), ``schemas`` / ``tenant_schemas`` /
``control_schemas`` (marshmallow: validation and the document), and one module of views per
resource family: ``jobs``, ``audit``, ``tenants``, ``system``, ``control`` (pauses, run now,
explanations, runners; the pauses a request sees are read once, in ``pausing``), ``rates``
(handlers' rate limits) and ``webhooks`` (tenants' event webhooks). Tokens (the
table, creating and checking them) live beneath the API and the console, in
``console/tokens.py``; job listing in ``console/jobs/listing.py``; limit bounds in
``console/jobs/limits.py``. Like the console, it changes jobs only through ``JobService`` and
never imports the console's modules.
"""
from __future__ import annotations

from flask import Flask

from .openapi import API_PREFIX

__all__ = ["API_PREFIX", "init_api"]


def init_api(app: Flask) -> None:
    """Register the API's blueprints and document them. Exempt from the console's CSRF
    protection: the API takes no cookies, only bearer tokens."""
    from ..extensions import csrf
    from . import audit, control, jobs, rates, system, tenants, webhooks
    from .errors import answer_routing_errors_as_problems
    from .openapi import create_api

    api = create_api(app)
    app.extensions["console_api"] = api
    for module in (jobs, tenants, control, rates, system, audit, webhooks):
        api.register_blueprint(module.bp)
        csrf.exempt(module.bp)
    app.register_blueprint(system.public)
    csrf.exempt(system.public)
    app.before_request(answer_routing_errors_as_problems)
