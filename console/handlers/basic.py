"""Small general-purpose handlers: health probes, capacity tests, benchmarks."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from ..jobs import JobExecutionContext, JobExecutionResult, JobHandler, JobType

ALL_TYPES = {t.value for t in JobType}


class NoopHandler(JobHandler):
    """Does nothing and succeeds: measures the engine's own overhead, probes a runner end to end."""

    handler_name = "noop"
    supported_job_types = ALL_TYPES
    description = "Succeeds at once; for probes and benchmarks."

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        now = datetime.now(timezone.utc)
        return JobExecutionResult(success=True, executed_at=now, execution_time=timedelta(0))


class WaitHandler(JobHandler):
    """Waits ``seconds`` (stopping early if the runner abandons it): exercises slots and
    timeouts."""

    handler_name = "wait"
    supported_job_types = ALL_TYPES
    description = "Waits payload['seconds'], reporting progress."
    payload_schema = {
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 86400}},
        "required": ["seconds"],
    }

    def estimate_execution_time(self, payload):
        return timedelta(seconds=float(payload.get("seconds", 0)))

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        start = time.monotonic()
        seconds = float(context.job.payload["seconds"])
        while (elapsed := time.monotonic() - start) < seconds:
            context.check_cancelled()
            context.report_progress(elapsed / seconds if seconds else 1.0)
            time.sleep(min(0.05, seconds - elapsed))
        return JobExecutionResult(success=True, executed_at=context.actual_start_time,
                                  execution_time=timedelta(seconds=time.monotonic() - start),
                                  result={"waited_seconds": round(time.monotonic() - start, 3)})
