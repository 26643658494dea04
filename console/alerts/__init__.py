"""Alerts: the periodic health check (a backlog over 1,000 queued jobs, a success rate under
90 %, a tenant's health score under 70, and any rule an admin adds) as rules stored in the
database, evaluated by a recurring job of the engine, delivered as the product's own
notification jobs.

No HTTP here (the console's screens are ``console/web/alerts.py``); see README.md in this folder.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jobs import JobHandler
from .evaluation import EvaluationOutcome, evaluate_alert_rules
from .rules import KINDS, Rule
from .scheduling import ensure_alerting
from .store import RuleError, RuleValues

__all__ = ["alert_handlers", "evaluate_alert_rules", "EvaluationOutcome", "ensure_alerting",
           "KINDS", "Rule", "RuleError", "RuleValues"]


def alert_handlers(config: Mapping[str, Any], engine, service) -> list[JobHandler]:
    """The handlers alerting runs on (evaluation, webhook delivery), which ``create_app``
    registers beside the built-in ones."""
    from .delivery import AlertWebhookHandler
    from .scheduling import EvaluateAlertRulesHandler

    return [EvaluateAlertRulesHandler(service, config), AlertWebhookHandler(engine, config)]
