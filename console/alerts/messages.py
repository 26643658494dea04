"""What an alert says: its message (the figure and the threshold), its recommendation (the
kind's first advice, then the health report's own recommendations for the tenants concerned),
what its resolution says, and the email and webhook bodies that carry them."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from .rules import Measurement, Rule

MAX_HEALTH_ADVICE = 3   # health recommendations quoted per tenant


def subject_text(tenant_id: str | None) -> str:
    return "system" if tenant_id is None else f"tenant {tenant_id}"


def fire_message(rule: Rule, measured: Measurement) -> str:
    """``tenant acme: success rate is 62.5 % (16 runs) over the last 24 h, below the threshold
    of 90 %``."""
    spec = rule.spec
    detail = f" ({measured.detail})" if measured.detail else ""
    return (f"{subject_text(measured.tenant_id).capitalize()}: {spec.figure_of(rule)} is "
            f"{spec.format(measured.value)}{detail}{spec.window_of(rule)}, {spec.direction} "
            f"the threshold of {spec.format(rule.threshold)}")


def recommendation(rule: Rule, measured: Measurement,
                   health: dict[str, dict[str, Any]]) -> str:
    """The kind's advice, the tenants that weigh most in a system figure, and what the health
    report recommends for the subject tenant (or those tenants)."""
    spec = rule.spec
    parts = [spec.advice[0].upper() + spec.advice[1:] + "."]
    tenants = [measured.tenant_id] if measured.tenant_id else list(measured.contributors)
    if measured.tenant_id is None and measured.contributors:
        parts.append(f"Most from: {', '.join(measured.contributors)}.")
    for tenant_id in tenants:
        advice = (health.get(tenant_id) or {}).get("recommendations") or []
        if advice:
            quoted = "; ".join(advice[:MAX_HEALTH_ADVICE])
            parts.append(f"Health report of {tenant_id}: {quoted}.")
    return " ".join(parts)


def resolution_text(rule: Rule, measured: Measurement | None, reason: str | None = None) -> str:
    """Why the alert ended: the figure back on the right side, or ``reason``."""
    if reason:
        return reason
    spec = rule.spec
    if measured is None:
        return (f"no figure to judge any more (fewer than 10 runs{spec.window_of(rule)}, or "
                "no longer in the rule's scope)")
    detail = f" ({measured.detail})" if measured.detail else ""
    side = "at or below" if spec.direction == "above" else "at or above"
    return (f"{spec.figure_of(rule)} is back to {spec.format(measured.value)}{detail}, "
            f"{side} the threshold of {spec.format(rule.threshold)}")


def email_content(transition: str, rule: Rule, alert: Any) -> tuple[str, str]:
    """(subject, plain-text body) of an alert email. The email channel renders subject and
    body as templates, so these go in as variables, never as template text."""
    state = "FIRING" if transition == "fired" else "RESOLVED"
    subject = f"[{state}] {rule.name} ({subject_text(alert.tenant_id)})"
    lines = [f"{state}: {rule.name}", "", alert.message]
    if transition == "resolved":
        lines += [f"Resolved: {alert.resolution}" if alert.resolution else "Resolved."]
    if alert.recommendation:
        lines += ["", f"Recommendation: {alert.recommendation}"]
    rule_line = (f"Rule: {rule.condition_text()}, for {rule.scope_text()}; cool-down "
                 f"{rule.cooldown_seconds // 60} min.")
    lines += ["", rule_line, f"Fired at: {_when(alert.fired_at)}"]
    if alert.resolved_at is not None:
        lines.append(f"Resolved at: {_when(alert.resolved_at)}")
    lines.append(f"Alert id: {alert.id} (the console's Alerts screen)")
    return subject, "\n".join(lines) + "\n"


def webhook_body(transition: str, rule: Rule, alert: Any) -> dict[str, Any]:
    """The JSON a webhook receiver gets (inside the signed envelope's ``data``)."""
    return {"event": f"alert.{transition}", "alert_id": alert.id,
            "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind,
                     "condition": rule.condition_text(), "scope": rule.scope},
            "tenant_id": alert.tenant_id, "state": alert.state,
            "value": alert.value, "last_value": alert.last_value,
            "threshold": alert.threshold, "message": alert.message,
            "recommendation": alert.recommendation, "resolution": alert.resolution,
            "fired_at": _iso(alert.fired_at), "resolved_at": _iso(alert.resolved_at)}


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
