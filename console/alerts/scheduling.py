"""Evaluation as a recurring job of the engine itself: it runs wherever runners run, once per
interval across every process (one cron job, claimed by one runner at a time), not once per
process.

``ensure_alerting`` (called where a runner starts: the app's in-process runner and
``flask --app console worker``) creates the operations tenant, seeds the default rules and
queues the recurring ``evaluate_alert_rules`` job — each idempotently, so a hundred processes
starting at once make one of each. The job's idempotency key names its cron expression; when
``ALERTS_EVALUATION_CRON`` changes, the next start queues the new schedule and cancels the old.
An operator who cancels the job stops evaluation until they retry it (its key still names it),
as with maintenance jobs; the Rules screen shows its state.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from ..jobs import JobExecutionResult, JobHandler, JobService, JobStateError, SystemJob
from ..jobs.models import jobs_table
from ..jobs.records import job_from_row
from ..jobs.types import WAITING_STATUSES
from .evaluation import evaluate_alert_rules
from .operations import alert_setting, ensure_operations_tenant, operations_tenant_id
from .store import ensure_default_rules

log = logging.getLogger(__name__)
EVALUATE_HANDLER = "evaluate_alert_rules"
KEY_PREFIX = "console-alerts:evaluate:"
JOB_NAME = "Evaluate alert rules"


class EvaluateAlertRulesHandler(JobHandler):
    """Evaluates every alert rule and sends the notices due (``console/alerts``)."""

    handler_name = EVALUATE_HANDLER
    supported_job_types = {"maintenance", "immediate"}
    description = "Evaluates the alert rules: opens and resolves alerts, queues their notices."
    # Reads every tenant's figures and queues notices as the operations tenant.
    system = True

    def __init__(self, service: JobService, config: Mapping[str, Any] | None = None):
        self.service = service
        self.config = dict(config or {})

    def execute(self, context) -> JobExecutionResult:
        started = time.monotonic()
        outcome = evaluate_alert_rules(self.service, self.config)
        return JobExecutionResult(success=True, executed_at=context.actual_start_time,
                                  execution_time=timedelta(seconds=time.monotonic() - started),
                                  result=outcome.as_result())


def evaluation_job_key(config: Mapping[str, Any] | None) -> str:
    return KEY_PREFIX + " ".join(str(alert_setting(config, "ALERTS_EVALUATION_CRON")).split())


def schedule_evaluation(service: JobService, config: Mapping[str, Any] | None) -> SystemJob:
    """The recurring evaluation job (created once; see the module docstring)."""
    tenant_id = ensure_operations_tenant(service, config).tenant_id
    cron = alert_setting(config, "ALERTS_EVALUATION_CRON")
    job = service.queue_job("maintenance", EVALUATE_HANDLER, {"name": JOB_NAME}, tenant_id,
                            cron_schedule=cron, priority="high", max_retries=0,
                            metadata={"name": JOB_NAME, "alerts": True},
                            idempotency_key=evaluation_job_key(config))
    for old in _other_schedules(service, tenant_id, job.idempotency_key):
        try:
            service.cancel_job(old.id)
            log.info("alert evaluation: cancelled the old schedule %r (job %s)",
                     old.cron_schedule, old.id)
        except JobStateError:   # running right now: it re-arms, and the next start retries
            pass
    return job


def _other_schedules(service: JobService, tenant_id: str, key: str) -> list[SystemJob]:
    j = jobs_table.c
    with service.engine.connect() as conn:
        rows = conn.execute(select(jobs_table).where(
            j.tenant_id == tenant_id, j.handler == EVALUATE_HANDLER,
            j.cron_schedule.is_not(None), j.status.in_(WAITING_STATUSES),
            j.idempotency_key.like(KEY_PREFIX + "%"), j.idempotency_key != key)).all()
    return [job_from_row(row) for row in rows]


def evaluation_job(service: JobService, config: Mapping[str, Any] | None) -> SystemJob | None:
    """The recurring job as it stands (None: not created yet), for the console to show."""
    j = jobs_table.c
    with service.engine.connect() as conn:
        row = conn.execute(select(jobs_table).where(
            j.tenant_id == operations_tenant_id(config),
            j.idempotency_key == evaluation_job_key(config))).first()
    return job_from_row(row) if row else None


def ensure_alerting(service: JobService, config: Mapping[str, Any] | None) -> SystemJob | None:
    """Everything alerting needs, idempotently (see the module docstring); None when
    ``ALERTS_ENABLED`` is off. Never raises: alerting must not stop a runner from starting."""
    if not alert_setting(config, "ALERTS_ENABLED"):
        return None
    try:
        ensure_default_rules(service.engine)
        job = schedule_evaluation(service, config)
        # The operations tenant's own history (an evaluation a minute, the alert notices) is
        # pruned like any tenant's, by its standard maintenance jobs (created once).
        service.create_maintenance_jobs(job.tenant_id)
        return job
    except Exception:
        log.exception("alerting could not be set up; runners carry on without it, and the "
                      "next start tries again")
        return None
