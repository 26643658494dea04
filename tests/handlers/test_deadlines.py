"""Built-in handlers stop by themselves by their job's deadline, so a timeout frees the work and
the thread, not only the slot: email against an SMTP server that answers a line at a time."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from console.jobs import JobStatus
from console.jobs.runner import Runner
from tests.support import wait_until

DEADLINE_MS = 1000


class TricklingSmtpServer:
    """Accepts, then greets with an endless multi-line reply, a line every 0.2 s: every read
    gets a byte well within any per-read timeout, and the greeting never ends."""

    def __init__(self):
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
                    conn.sendall(b"220-still thinking\r\n")
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
    server = TricklingSmtpServer()
    yield server
    server.stop()


@pytest.fixture
def app_config(app_config, slow_smtp):
    # The per-read timeout alone would never fire: the server sends a line every 0.2 s.
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": slow_smtp.port,
            "MAIL_DEFAULT_SENDER": "console@example.test", "MAIL_TIMEOUT_SECONDS": 30}


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
