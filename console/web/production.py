"""Settings that are unsafe in production, said once: for the server's log (gunicorn.conf.py)
and for admins on the dashboard, while ``PRODUCTION_WARNINGS`` is on."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def production_warnings(config: Mapping[str, Any]) -> list[str]:
    """What an operator should change before serving real users (empty when nothing)."""
    if not config.get("PRODUCTION_WARNINGS"):
        return []
    warnings = []
    if not config.get("SESSION_COOKIE_SECURE"):
        warnings.append("SESSION_COOKIE_SECURE is off: session cookies also travel over plain "
                        "HTTP. Serve the console over HTTPS and set "
                        "CONSOLE_SESSION_COOKIE_SECURE=true.")
    if config.get("WEBHOOK_CATCH_ALL"):
        warnings.append("WEBHOOK_CATCH_ALL is on: POST /outbox/webhooks stores signed webhooks "
                        "(a demo and test aid). Set CONSOLE_WEBHOOK_CATCH_ALL=false.")
    if config.get("METRICS_PUBLIC"):
        warnings.append("METRICS_PUBLIC is on: anyone can read /metrics, every tenant's id and "
                        "volumes. Set CONSOLE_METRICS_PUBLIC=false and give your scraper "
                        "METRICS_TOKEN.")
    return warnings
