"""Probes and scrapers: ``/healthz`` and ``/metrics``, the only endpoints that need no sign-in."""
from __future__ import annotations

import hmac
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from ..jobs import get_job_service
from ..jobs.models import runners_table

bp = Blueprint("monitoring", __name__)
UTC = timezone.utc


@bp.get("/healthz")
def healthz():
    """200 with the database reachable; 503 when it is not. Runners and backlog for context."""
    service = get_job_service()
    now = datetime.now(UTC)
    try:
        with service.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            runners = conn.execute(select(runners_table.c.id, runners_table.c.heartbeat_at)).all()
        queue = service.get_job_queue_status()
    except SQLAlchemyError as exc:
        current_app.logger.warning("health check: database unreachable: %s", exc)
        return jsonify(status="unavailable", database={"ok": False,
                                                       "error": type(exc).__name__}), 503
    stale_after = timedelta(seconds=service.lease_seconds)
    live = [{"id": rid, "heartbeat_age_seconds": round((now - beat).total_seconds(), 1)}
            for rid, beat in runners if now - beat <= stale_after]
    warnings = []
    if queue["queued_jobs"] and not live:
        warnings.append("jobs are queued but no runner is alive")
    return jsonify(status="ok" if not warnings else "degraded", database={"ok": True},
                   runners={"live": len(live), "details": live}, backlog=queue,
                   warnings=warnings)


@bp.get("/metrics")
def metrics():
    """Prometheus text format; with METRICS_TOKEN set, the scraper must send it as a bearer."""
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("metrics need the bearer token set in METRICS_TOKEN\n", status=401,
                            headers={"WWW-Authenticate": "Bearer"}, mimetype="text/plain")
    from ..analytics.prometheus import render_metrics

    try:
        body = render_metrics(get_job_service().engine)
    except SQLAlchemyError:
        return Response("database unreachable\n", status=503, mimetype="text/plain")
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")
