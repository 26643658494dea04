"""``custom_data_processor``, the worked example of a custom handler: validation, a time
estimate, progress reports."""
from __future__ import annotations

import hashlib
import time
from datetime import timedelta

from ..jobs import JobExecutionContext, JobExecutionResult, JobHandler, PermanentJobError

_STEPS = {"quick": 5, "standard": 20, "deep": 50}


class DataProcessingError(PermanentJobError):
    """The data itself is bad: retrying cannot help."""


class DataProcessorHandler(JobHandler):
    """Processes a data set in steps; ``processing_type`` quick, standard or deep.

    ``step_ms`` sets the work per step (default 10 ms). A ``data_id`` starting with ``corrupt``
    fails permanently (bad input); one starting with ``flaky`` fails its first attempt (a transient
    error that a retry cures). The result is a digest of the processed steps.
    """

    handler_name = "data_processor"
    supported_job_types = {"immediate", "delayed", "scheduled", "recurring", "data_sync",
                           "file_processing"}
    description = "Processes payload['data_id'] in steps (quick/standard/deep)."
    payload_hint = "needs 'data_id' and 'processing_type' (quick, standard or deep)"

    def validate_payload(self, payload):
        return (isinstance(payload.get("data_id"), str)
                and payload.get("processing_type") in _STEPS)

    def estimate_execution_time(self, payload):
        steps = _STEPS.get(payload.get("processing_type"), 20)
        return timedelta(milliseconds=steps * float(payload.get("step_ms", 10)))

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        payload = context.job.payload
        data_id = payload["data_id"]
        if data_id.startswith("corrupt"):
            raise DataProcessingError(f"data set {data_id} failed its checksum")
        if data_id.startswith("flaky") and context.attempt == 1:
            raise ConnectionError(f"storage for {data_id} did not answer")
        steps = _STEPS[payload["processing_type"]]
        step_seconds = float(payload.get("step_ms", 10)) / 1000.0
        digest = hashlib.sha256(data_id.encode())
        start = time.monotonic()
        for step in range(steps):
            context.check_cancelled()
            digest.update(step.to_bytes(4, "big"))
            time.sleep(step_seconds)
            context.report_progress((step + 1) / steps, f"step {step + 1} of {steps}")
        return JobExecutionResult(
            success=True, executed_at=context.actual_start_time,
            execution_time=timedelta(seconds=time.monotonic() - start),
            result={"processed_records": steps * 100, "digest": digest.hexdigest()[:16]},
            metadata={"tenant_id": context.tenant_id,
                      "processing_type": payload["processing_type"]})
