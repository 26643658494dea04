"""The handler interface that plug-ins implement, and what a handler receives when it runs."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from .attempt_logs import handler_logger
from .types import JobExecutionResult, JobValidationError, SystemJob


class JobHandler:
    """Subclass this, set ``handler_name`` and ``supported_job_types``, register an instance.

    ``payload_schema`` (a JSON Schema dict) is checked at queue time before ``validate_payload``.

    ``system = True`` declares a *system handler*: one whose work reaches beyond the data of the
    tenant that queues it (system-wide figures, other tenants' secrets or rows). Only the
    operations tenant (``HandlerRegistry.system_tenant_id``, which ``create_app`` sets from
    ``ALERTS_TENANT_ID``) may queue or retry one; for any other tenant every ``queue_*`` verb
    raises ``JobValidationError`` naming ``handler``, the console does not offer it, and a
    runner fails such a job stored earlier without running it. The default, ``False``, is a
    handler that touches only its job's tenant's own data.
    """

    handler_name: str = ""
    supported_job_types: set[str] = set()
    payload_schema: dict[str, Any] | None = None
    description: str = ""
    system: bool = False

    def validate_payload(self, payload: dict[str, Any]) -> bool:
        return True

    def estimate_execution_time(self, payload: dict[str, Any]) -> timedelta | None:
        return None

    def execute(self, context: JobExecutionContext) -> JobExecutionResult:
        raise NotImplementedError


class JobCancelled(Exception):
    """Raised by ``context.check_cancelled()`` once the runner has given up on the attempt."""


class LazyTenantContext(Mapping):
    """``context.tenant_context``: usage and limits, read from the database only if a handler
    asks."""

    def __init__(self, loaders: Mapping[str, Callable[[], Any]]):
        self._loaders = loaders
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            self._values[key] = self._loaders[key]()
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


class JobExecutionContext:
    """What a handler gets: the job, its tenant, progress reporting, a cancellation signal, and
    ``logger``: a ``logging.Logger`` whose lines are kept with the attempt (the job's page and
    ``GET /api/v1/jobs/{id}/attempts`` show them). Log what an operator needs to follow the
    attempt; never passwords, tokens or whole payloads (the tenant reads these lines)."""

    def __init__(self, job: SystemJob, tenant_context: Mapping[str, Any],
                 actual_start_time: datetime, deadline: datetime | None,
                 progress_reporter: Callable[[float, str | None], None],
                 logger: logging.Logger | None = None):
        self.job = job
        self.logger = logger or handler_logger(job.handler)
        self.tenant_id = job.tenant_id
        self.tenant_context = tenant_context
        self.actual_start_time = actual_start_time
        self.deadline = deadline
        self._progress_reporter = progress_reporter
        self._cancelled = threading.Event()

    @property
    def attempt(self) -> int:
        """This attempt's number over the job's whole life: 1 for the first, 2 for the next …"""
        return max(1, self.job.total_attempts)

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Tell operators how far the job got (0.0–1.0); cheap to call often."""
        fraction = min(1.0, max(0.0, float(fraction)))
        self._progress_reporter(fraction, message)

    @property
    def cancelled(self) -> bool:
        """True once the attempt timed out or the runner is shutting down: stop and return."""
        return self._cancelled.is_set()

    def seconds_left(self) -> float | None:
        """Seconds until the attempt's deadline (0.0 once it passed), None without one: the most
        any blocking call (a connection, a reply, a lock) should be given."""
        if self.deadline is None:
            return None
        left = (self.deadline - datetime.now(self.deadline.tzinfo)).total_seconds()
        return max(0.0, left)

    def check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise JobCancelled(f"job {self.job.id} attempt was abandoned by the runner")

    def cancel(self) -> None:
        self._cancelled.set()


def is_system_handler(handler: JobHandler | None) -> bool:
    return handler is not None and getattr(handler, "system", False) is True


class HandlerRegistry:
    """Handlers by name. Registration is per process; every process registers the same set.

    ``system_tenant_id`` is the one tenant that may queue system handlers (``JobHandler.system``);
    None (a registry nobody told) lets no tenant queue them.
    """

    def __init__(self, system_tenant_id: str | None = None):
        self._handlers: dict[str, JobHandler] = {}
        self._lock = threading.Lock()
        self.system_tenant_id = system_tenant_id

    def allows(self, handler: JobHandler | None, tenant_id: Any) -> bool:
        """May ``tenant_id`` queue (or retry, or run) a job of ``handler``?"""
        return not is_system_handler(handler) or (
            self.system_tenant_id is not None and tenant_id == self.system_tenant_id)

    def check_allowed(self, handler: JobHandler, tenant_id: Any,
                      field_name: str = "handler") -> None:
        """``JobValidationError`` naming ``field_name`` when ``tenant_id`` may not queue
        ``handler`` (a system handler, and not the operations tenant)."""
        if not self.allows(handler, tenant_id):
            raise JobValidationError(field_name, system_handler_message(handler.handler_name))

    def available_to(self, tenant_id: Any) -> list[JobHandler]:
        """The handlers ``tenant_id`` may queue, by name (what the console offers it)."""
        return [h for h in self.all() if self.allows(h, tenant_id)]

    def register(self, handler: JobHandler) -> JobHandler:
        if isinstance(handler, type) and issubclass(handler, JobHandler):
            handler = handler()
        if not isinstance(handler, JobHandler):
            raise TypeError(f"{handler!r} is not a JobHandler instance")
        name = getattr(handler, "handler_name", "")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{type(handler).__name__} has no handler_name")
        if not handler.supported_job_types:
            raise ValueError(f"handler {name!r} declares no supported_job_types")
        with self._lock:
            if name in self._handlers:
                raise ValueError(f"a handler named {name!r} is already registered")
            self._handlers[name] = handler
        return handler

    def get(self, name: str) -> JobHandler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def all(self) -> list[JobHandler]:
        return [self._handlers[n] for n in sorted(self._handlers)]

    def __contains__(self, name: object) -> bool:
        return name in self._handlers


def system_handler_message(name: str) -> str:
    return f"handler {name!r} is a system handler: only the operations tenant queues it"
