"""Handlers used by the tests, each named for what it does."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from console.jobs import JobExecutionResult, JobHandler, JobType

ALL_TYPES = {t.value for t in JobType} | {"custom_processing"}


def _ok(context, result=None):
    return JobExecutionResult(success=True, executed_at=context.actual_start_time,
                              execution_time=datetime.now(timezone.utc) - context.actual_start_time,
                              result=result)


class RecordingHandler(JobHandler):
    """Appends ``<job id> <pid>`` to the file ``payload["log"]`` (O_APPEND: safe across
    processes), after sleeping ``payload["sleep_ms"]``: independent evidence of every execution.
    With ``payload["start_log"]``, the same line goes there when the attempt starts on its
    thread (a claimed job may still wait for a free thread)."""

    handler_name = "record"
    supported_job_types = ALL_TYPES

    def execute(self, context):
        if context.job.payload.get("start_log"):
            _append(context.job.payload["start_log"], f"{context.job.id} {os.getpid()}\n")
        # A wait, not time.sleep: under libfaketime (test_clock_skew.py) time.sleep fails.
        threading.Event().wait(context.job.payload.get("sleep_ms", 0) / 1000.0)
        _append(context.job.payload["log"], f"{context.job.id} {os.getpid()}\n")
        return _ok(context)


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class FailsNTimesHandler(JobHandler):
    """Raises ``ConnectionError`` on its first ``payload["failures"]`` attempts, then succeeds."""

    handler_name = "fails_n_times"
    supported_job_types = ALL_TYPES

    def execute(self, context):
        if context.attempt <= context.job.payload["failures"]:
            raise ConnectionError(f"attempt {context.attempt} failed on purpose")
        return _ok(context, {"succeeded_on_attempt": context.attempt})


class AlwaysFailsHandler(JobHandler):
    handler_name = "always_fails"
    supported_job_types = ALL_TYPES

    def execute(self, context):
        raise RuntimeError(f"boom on attempt {context.attempt}")


class FailsPermanentlyHandler(JobHandler):
    """Returns a failure marked ``retryable: False``."""

    handler_name = "fails_permanently"
    supported_job_types = ALL_TYPES

    def execute(self, context):
        return JobExecutionResult(success=False, executed_at=context.actual_start_time,
                                  execution_time=timedelta(0), error_message="bad address",
                                  metadata={"retryable": False, "error_type": "InvalidRecipient"})


class HangsHandler(JobHandler):
    """Never returns (ignores cancellation): only the runner's timeout can end its attempt."""

    handler_name = "hangs"
    supported_job_types = ALL_TYPES
    forever = threading.Event()

    def execute(self, context):
        self.forever.wait(3600)
        return _ok(context)


class SleepsHandler(JobHandler):
    """Sleeps ``payload["ms"]`` and succeeds."""

    handler_name = "sleeps"
    supported_job_types = ALL_TYPES

    def execute(self, context):
        time.sleep(context.job.payload.get("ms", 10) / 1000.0)
        return _ok(context)


class ConcurrencyProbeHandler(JobHandler):
    """Sleeps ``payload["ms"]`` while counting how many of a tenant's jobs run at once."""

    handler_name = "probe_concurrency"
    supported_job_types = ALL_TYPES

    def __init__(self):
        self.lock = threading.Lock()
        self.running = defaultdict(int)
        self.peak = defaultdict(int)

    def execute(self, context):
        with self.lock:
            self.running[context.tenant_id] += 1
            self.peak[context.tenant_id] = max(self.peak[context.tenant_id],
                                               self.running[context.tenant_id])
        try:
            time.sleep(context.job.payload.get("ms", 20) / 1000.0)
        finally:
            with self.lock:
                self.running[context.tenant_id] -= 1
        return _ok(context)


class OrderRecorderHandler(JobHandler):
    """Records ``payload["label"]`` and the time, in start order."""

    handler_name = "record_order"
    supported_job_types = ALL_TYPES

    def __init__(self):
        self.lock = threading.Lock()
        self.started: list[tuple[str, float]] = []

    def execute(self, context):
        with self.lock:
            self.started.append((context.job.payload.get("label"), time.monotonic()))
        time.sleep(context.job.payload.get("ms", 0) / 1000.0)
        return _ok(context)

    @property
    def labels(self):
        return [label for label, _ in self.started]


class PickyHandler(JobHandler):
    """Runs only ``immediate`` jobs whose payload has ``"ok": true``."""

    handler_name = "picky"
    supported_job_types = {"immediate"}

    def validate_payload(self, payload):
        return payload.get("ok") is True

    def execute(self, context):
        return _ok(context)


class LogsLinesHandler(JobHandler):
    """Logs ``payload["lines"]`` numbered lines through ``context.logger`` ("line 1 of N" …),
    ``payload["interval_ms"]`` apart; with ``payload["plain"]``, also a warning through plain
    ``logging`` (another logger, as a library would); with ``payload["fail"]``, then raises
    ``ValueError``."""

    handler_name = "logs_lines"
    supported_job_types = ALL_TYPES

    def execute(self, context):
        count = context.job.payload.get("lines", 3)
        for number in range(1, count + 1):
            context.logger.info("line %d of %d", number, count)
            threading.Event().wait(context.job.payload.get("interval_ms", 0) / 1000.0)
        if context.job.payload.get("plain"):
            logging.getLogger("some.library").warning("a library's warning")
        if context.job.payload.get("fail"):
            raise ValueError("gave up after logging")
        return _ok(context)
