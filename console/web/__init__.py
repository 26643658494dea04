"""The console: blueprints that translate HTTP into ``JobService`` verbs and render pages.

One subpackage per screen family (``jobs/``, ``new_job/``, ``tenants/`` …), its blueprint in
``views.py``, templates mirrored under ``templates/<family>/``; partials (htmx swaps) are named
with a leading underscore. Modules at this level serve every family: rendering, errors, security
headers, keyset pages, the users table, live event streams, static assets, probes.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from flask import Flask, current_app
from flask_login import current_user

from .scope import is_staff


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str
    role: str = "viewer"   # the least role that sees the link

    @property
    def blueprint(self) -> str:
        return self.endpoint.partition(".")[0]


NAVIGATION = (
    NavItem("dashboard.index", "Dashboard"),
    NavItem("jobs.index", "Jobs"),
    NavItem("batches.index", "Batches"),
    NavItem("new_job.index", "New job", "operator"),
    NavItem("failures.index", "Failures"),
    NavItem("alerts.index", "Alerts"),
    NavItem("tenants.index", "Tenants"),
    NavItem("handlers.index", "Handlers"),
    NavItem("runners.index", "Runners"),
    NavItem("reports.index", "Reports"),
    NavItem("outbox.index", "Outbox"),
    NavItem("users.index", "Users", "admin"),
    NavItem("tokens.index", "API tokens", "admin"),
    NavItem("audit.index", "Audit", "admin"),
)

# Blueprints, in the order their routes are registered: the shared ones, then screen families.
SHARED_BLUEPRINTS = ("assets", "monitoring", "stream")
SCREEN_FAMILIES = ("auth", "dashboard", "jobs", "new_job", "failures", "tenants", "handlers",
                   "runners", "users", "tokens", "reports", "outbox", "alerts", "audit",
                   "batches")
BLUEPRINT_MODULES = ("auth.views", *SHARED_BLUEPRINTS,
                     *(f"{family}.views" for family in SCREEN_FAMILIES if family != "auth"))


def register_blueprints(app: Flask) -> None:
    from ..extensions import csrf
    from .control import init_control
    from .errors import init_errors
    from .rendering import init_rendering
    from .security import init_security_headers

    for name in BLUEPRINT_MODULES:
        module = import_module(f"{__name__}.{name}")
        app.register_blueprint(module.bp)
    csrf.exempt(import_module(f"{__name__}.monitoring").bp)   # GET-only probes
    init_rendering(app)
    init_errors(app)
    init_control(app)
    init_security_headers(app)

    @app.context_processor
    def navigation():
        def nav_items():
            # A user bound to tenants sees no link to a screen that is staff-only for it.
            return [item for item in NAVIGATION
                    if item.endpoint in current_app.view_functions
                    and current_user.is_authenticated and current_user.may(item.role)
                    and (is_staff() or getattr(current_app.view_functions[item.endpoint],
                                               "tenant_scoped", False))]
        return {"nav_items": nav_items}
