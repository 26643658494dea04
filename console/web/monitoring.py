"""Probes and scrapers: ``/healthz`` and ``/metrics``, the only pages that need no sign-in.

``/metrics`` lists every tenant with its volumes, so it answers only a scraper holding
``METRICS_TOKEN`` or a signed-in admin (``METRICS_PUBLIC = True`` opens it to anyone).
``/healthz`` tells anyone ok / degraded with counts only — what a load balancer needs, and how far
off the database's a process's clock is when it is — and the runners' ids (host names and
process ids) only to the same callers as ``/metrics``.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request
from flask_login import current_user
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..jobs import get_job_service
from ..jobs.clock import SKEW_TOLERANCE_SECONDS
from ..jobs.runners import live_runners

bp = Blueprint("monitoring", __name__)


def _refusal() -> Response | None:
    """None when the caller may read operators' figures; else the 401/403 that says why."""
    config = current_app.config
    token = config.get("METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    if current_user.is_authenticated and current_user.may("admin"):
        return None
    if given:
        reason = ("the bearer token is not METRICS_TOKEN" if token else
                  "no METRICS_TOKEN is set, so no bearer token is accepted")
        return _plain(f"metrics: {reason}; send `Authorization: Bearer <METRICS_TOKEN>`, or sign "
                      "in as an admin\n", 401)
    if current_user.is_authenticated:
        return _plain(f"metrics need the admin role (you are {current_user.role}), or a "
                      "scraper's `Authorization: Bearer <METRICS_TOKEN>`\n", 403)
    return _plain("metrics need `Authorization: Bearer <METRICS_TOKEN>` (set METRICS_TOKEN for "
                  "your scraper) or a signed-in admin; METRICS_PUBLIC = True opens them to "
                  "anyone\n", 401)


def _plain(message: str, status: int) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if status == 401 else {}
    return Response(message, status=status, headers=headers, mimetype="text/plain")


@bp.get("/healthz")
def healthz():
    """200 ok or degraded (jobs queued and no runner alive: the web side still answers);
    503 when the database is unreachable, so a load balancer takes the process out."""
    service = get_job_service()
    now = service.clock.now()   # the time heartbeats are stamped in
    try:
        with service.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            live = live_runners(conn, now, service.lease_seconds)
        queue = service.get_job_queue_status()
    except SQLAlchemyError as exc:
        current_app.logger.warning("health check: database unreachable: %s", exc)
        return jsonify(status="unavailable", database={"ok": False}), 503
    warnings, shown = [], {}
    if queue["queued_jobs"] and not live:
        warnings.append("jobs are queued but no runner is alive")
    skew = max([service.clock.skew_seconds] + [r.clock_skew_seconds for r in live], key=abs)
    if abs(skew) > SKEW_TOLERANCE_SECONDS:   # this process's or a live runner's
        shown["clock_skew_seconds"] = round(skew, 1)
        warnings.append(f"a process's clock is {skew:+.1f} s off the database's: the engine "
                        "keeps the database's time, but set that machine's clock right (NTP)")
    runners_shown: dict = {"live": len(live)}
    if _refusal() is None:    # runner ids name hosts and processes: operators only
        runners_shown["details"] = [
            {"id": runner.id,
             "heartbeat_age_seconds": round((now - runner.heartbeat_at).total_seconds(), 1),
             "clock_skew_seconds": runner.clock_skew_seconds}
            for runner in live]
    return jsonify(status="ok" if not warnings else "degraded", database={"ok": True},
                   runners=runners_shown, backlog=queue, warnings=warnings, **shown)


@bp.get("/metrics")
def metrics():
    """Prometheus text format, for METRICS_TOKEN's bearer or an admin (see the module)."""
    if not current_app.config["METRICS_PUBLIC"]:
        refused = _refusal()
        if refused is not None:
            return refused
    from ..analytics.prometheus import render_metrics

    try:
        body = render_metrics(get_job_service().engine)
    except SQLAlchemyError:
        return Response("database unreachable\n", status=503, mimetype="text/plain")
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")
