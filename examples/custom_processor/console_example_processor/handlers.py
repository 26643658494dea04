"""``custom_data_processor``, the worked example of a custom handler: validation, a time
estimate, progress reports."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from datetime import datetime, timedelta, timezone

from console.jobs import JobExecutionContext, JobExecutionResult, JobHandler

ESTIMATES = {"quick": timedelta(seconds=30), "standard": timedelta(minutes=5),
             "deep": timedelta(minutes=30)}
STEPS = {"quick": 5, "standard": 20, "deep": 50}
RECORDS_PER_STEP = 100


class CustomDataProcessor(JobHandler):
    """Processes the data set ``data_id`` in steps; ``processing_type`` quick, standard or deep.

    Optional payload: ``step_ms`` (the work per step, default 10 ms), ``output_dir``.
    """

    handler_name = "custom_data_processor"
    supported_job_types = {"immediate", "scheduled", "custom_processing"}
    description = "Processes payload['data_id'] (quick/standard/deep); an example plug-in."
    payload_hint = "needs 'data_id' and 'processing_type' (quick, standard or deep)"

    def validate_payload(self, payload):
        return (isinstance(payload.get("data_id"), str) and bool(payload["data_id"])
                and payload.get("processing_type") in STEPS)

    def estimate_execution_time(self, payload):
        return ESTIMATES.get(payload.get("processing_type"), timedelta(minutes=10))

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        started = time.monotonic()
        payload = context.job.payload
        data_id, processing_type = payload["data_id"], payload["processing_type"]
        steps = STEPS[processing_type]
        step_seconds = float(payload.get("step_ms", 10)) / 1000.0
        digest = hashlib.sha256(data_id.encode())
        for step in range(steps):
            context.check_cancelled()
            digest.update(step.to_bytes(4, "big"))
            time.sleep(step_seconds)
            context.report_progress((step + 1) / steps, f"step {step + 1} of {steps}")
        output_file = self._write_output(context, data_id, processing_type,
                                         steps * RECORDS_PER_STEP, digest.hexdigest())
        return JobExecutionResult(
            success=True, executed_at=context.actual_start_time,
            execution_time=timedelta(seconds=time.monotonic() - started),
            result={"processed_records": steps * RECORDS_PER_STEP, "output_file": output_file},
            metadata={"tenant_id": context.tenant_id, "processing_type": processing_type})

    @staticmethod
    def _write_output(context, data_id, processing_type, records, digest) -> str:
        directory = os.path.join(context.job.payload.get("output_dir")
                                 or os.path.join(tempfile.gettempdir(), "console-example"),
                                 re.sub(r"[^A-Za-z0-9_.-]", "_", context.tenant_id))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{re.sub(r'[^A-Za-z0-9_.-]', '_', data_id)}-"
                                       f"{context.job.id}.json")
        with open(path, "w") as handle:
            json.dump({"data_id": data_id, "processing_type": processing_type,
                       "processed_records": records, "digest": digest,
                       "finished_at": datetime.now(timezone.utc).isoformat()}, handle)
        return path
