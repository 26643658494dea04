"""Built-in handlers stop by themselves by their job's deadline, so a timeout frees the work and
the thread, not only the slot: email against an SMTP server that answers a line at a time, a
webhook to a receiver that never answers, a report that stops reading once given up."""
from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from console.handlers.models import reports_table
from console.jobs import JobCancelled, JobExecutionContext, JobStatus
from console.jobs.runner import Runner
from tests.support import wait_until

DEADLINE_MS = 1000


class SlowServer:
    """Accepts one connection and then sends ``line`` every 0.2 s (nothing, when None) until
    the client closes it; records when it accepted and when the client closed."""

    def __init__(self, line: bytes | None):
        self.line = line
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted_at: float | None = None
        self.closed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        self.accepted_at = time.monotonic()
        with conn:
            while not self._stop.is_set():
                try:
                    if self.line:
                        conn.sendall(self.line)
                except OSError:
                    break
                conn.settimeout(0.2)
                try:
                    if conn.recv(1024) == b"":
                        break           # the client closed its side
                except TimeoutError:
                    continue
                except OSError:
                    break
        self.closed_at = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def slow_smtp():
    """An SMTP server whose greeting never ends: a continuation line every 0.2 s keeps any
    per-read timeout from firing."""
    server = SlowServer(b"220-still thinking\r\n")
    yield server
    server.stop()


@pytest.fixture
def silent_http():
    """An HTTP receiver that accepts and never answers."""
    server = SlowServer(None)
    yield server
    server.stop()


@pytest.fixture
def app_config(app_config, slow_smtp):
    # The handlers' own timeouts are far longer than the jobs' deadlines.
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": slow_smtp.port,
            "MAIL_DEFAULT_SENDER": "console@example.test", "MAIL_TIMEOUT_SECONDS": 30,
            "WEBHOOK_TIMEOUT_SECONDS": 30, "WEBHOOK_SIGNING_SECRET": "s3cret"}


def handler_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-worker-")]


def test_an_email_to_a_trickling_server_stops_at_its_deadline_and_frees_its_thread(
        service, make_tenant, slow_smtp):
    make_tenant("acme", "tier4", maxJobDuration=DEADLINE_MS)
    runner = Runner(service, threads=1, name="deadline").start()
    try:
        email = service.queue_notification("email", "jane@example.test", "acme", subject="s",
                                           body="b", max_retries=0, priority="critical")
        wait_until(lambda: slow_smtp.accepted_at, 10, "the email job to connect")
        after = service.queue_job("immediate", "sleeps", {"ms": 1}, "acme", priority="low")

        wait_until(lambda: slow_smtp.closed_at, 5, "the handler to close the connection")
        assert slow_smtp.closed_at - slow_smtp.accepted_at < DEADLINE_MS / 1000 + 0.5
        failed = wait_until(lambda: service.get_job_by_id(email.id).status is JobStatus.FAILED
                            and service.get_job_by_id(email.id), 5, "the email job to fail")
        assert failed.last_result.error_type in ("JobTimeoutError", "SMTPTimeout")
        wait_until(lambda: service.get_job_by_id(after.id).status is JobStatus.COMPLETED, 3,
                   "the next job to run on the one thread")
        # The timed-out attempt's thread returned; only the pool's one thread is left.
        wait_until(lambda: len(handler_threads("deadline")) == 1, 2,
                   lambda: f"one handler thread, not {handler_threads('deadline')}")
    finally:
        runner.stop(grace=1)


def test_a_webhook_to_a_silent_receiver_stops_at_the_jobs_deadline(service, make_tenant,
                                                                     silent_http):
    make_tenant("acme", "tier4", maxJobDuration=DEADLINE_MS)
    runner = Runner(service, threads=1, name="deadline").start()
    try:
        hook = service.queue_notification("webhook", f"http://127.0.0.1:{silent_http.port}/h",
                                          "acme", body={"n": 1}, max_retries=0)
        wait_until(lambda: silent_http.accepted_at, 10, "the webhook job to connect")
        wait_until(lambda: silent_http.closed_at, 5, "the handler to close the connection")
        assert silent_http.closed_at - silent_http.accepted_at < DEADLINE_MS / 1000 + 0.5
        wait_until(lambda: service.get_job_by_id(hook.id).status is JobStatus.FAILED, 5,
                   "the webhook job to fail")
        wait_until(lambda: len(handler_threads("deadline")) == 1, 2,
                   lambda: f"one handler thread, not {handler_threads('deadline')}")
    finally:
        runner.stop(grace=1)


def test_a_report_given_up_by_the_runner_stops_reading_and_stores_nothing(
        service, make_tenant, monkeypatch):
    make_tenant("acme", "tier4")
    for handler in ("sleeps", "noop", "always_fails"):
        service.queue_job("immediate", handler, {}, "acme", max_retries=0)
    service.run_until_idle(settle=0.3)
    today = datetime.now(timezone.utc).date().isoformat()
    job = service.queue_job("immediate", "report_generator",
                            {"start_date": today, "end_date": today}, "acme")
    context = JobExecutionContext(job=job, tenant_context={"tenant": None},
                                  actual_start_time=datetime.now(timezone.utc), deadline=None,
                                  progress_reporter=lambda fraction, message: None)
    read = []
    trends = service.get_job_trends

    def trends_then_time_out(**query):
        read.append(query["handler"])
        context.cancel()           # what the runner does at the deadline
        return trends(**query)

    monkeypatch.setattr(service, "get_job_trends", trends_then_time_out)
    with pytest.raises(JobCancelled):
        service.handlers.get("report_generator").execute(context)
    assert len(read) == 1          # of three handlers' figures
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reports_table)).scalar() == 0
