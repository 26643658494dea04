"""Real servers on 127.0.0.1 for the notification handlers: SMTP (aiosmtpd) and HTTP."""
from __future__ import annotations

import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import start_smtp_server


class SmtpSink:
    """An aiosmtpd handler that keeps every message; ``rcpt_replies`` / ``data_replies`` are
    answers to give (one per command, in order) before accepting again."""

    def __init__(self):
        self.envelopes = []
        self.rcpt_replies: list[str] = []
        self.data_replies: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.pop(0)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self):
        return [message_from_bytes(e.original_content or e.content, policy=default_policy)
                for e in self.envelopes]


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1; ``.sink`` is its ``SmtpSink``, ``.port`` its port."""
    sink = SmtpSink()
    controller = start_smtp_server(sink)
    controller.sink = sink
    yield controller
    controller.stop()


class HttpReceiver:
    """What a webhook receiver got, and the answers it gives: ``responses`` is a list of
    ``(status, headers)`` used in order, then 200."""

    def __init__(self):
        self.requests: list[tuple[str, dict, bytes, float]] = []
        self.responses: list[tuple[int, dict]] = []
        self.lock = threading.Lock()
        self.url = ""

    def next_response(self):
        with self.lock:
            return self.responses.pop(0) if self.responses else (200, {})


@pytest.fixture
def http_receiver():
    """A real HTTP server on 127.0.0.1 in a thread; ``.url`` to post to."""
    receiver = HttpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.requests.append((self.path, dict(self.headers), raw, time.monotonic()))
            status, headers = receiver.next_response()
            body = b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield receiver
    server.shutdown()
    server.server_close()
