"""Outbound requests (webhooks) go to public addresses only, read a bounded answer and end by one
deadline — against real servers on 127.0.0.1 that count what reached them."""
from __future__ import annotations

import ipaddress
import socket
import socketserver
import threading
import time

import pytest

from console.handlers.outbound import OutboundPolicy, RefusedDestination, address_kind
from console.handlers.webhook import REFUSED_AT_SEND
from console.jobs import JobStatus, JobValidationError, TenantConfig

SECRET = "whsec-acme-0123456789"
HUGE = 30 * 1024 * 1024


@pytest.fixture
def app_config(app_config):
    # The production default: private addresses refused. Tests that need them turn it on.
    return {**app_config, "WEBHOOK_ALLOW_PRIVATE": False, "WEBHOOK_TIMEOUT_SECONDS": 2,
            "JOBS_RETRY_MAX_SECONDS": 1.0}


def _tenant(service):
    service.tenants.set_tenant_config(
        TenantConfig.for_tier("acme", "Acme", "tier4", {"webhookSecret": SECRET}))


@pytest.fixture
def tenant(service):
    _tenant(service)


class Server:
    """A raw HTTP server on 127.0.0.1 that counts connections and the bytes it got to send.

    ``mode``: ``ok`` (200, a short body), ``huge`` (200 with 30 MB), ``trickle`` (200, then a
    byte every 100 ms forever), ``trickle_headers`` (a header byte every 100 ms forever)."""

    def __init__(self):
        self.mode = "ok"
        self.connections = 0
        self.sent = 0
        self.done = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.port = 0

    def url(self, host="127.0.0.1", path="/hooks"):
        return f"http://{host}:{self.port}{path}"

    def handle(self, sock: socket.socket):
        with self.lock:
            self.connections += 1
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += sock.recv(65536)
        try:
            if self.mode == "ok":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif self.mode == "huge":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\n\r\n" % HUGE)
                chunk = b"x" * 65536
                while self.sent < HUGE and not self.stop.is_set():
                    sock.sendall(chunk)
                    self.sent += len(chunk)
            elif self.mode == "trickle":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                while not self.stop.wait(0.1):
                    sock.sendall(b"x")
                    self.sent += 1
            elif self.mode == "trickle_headers":
                sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self.stop.wait(0.1):
                    sock.sendall(b"x")
                    self.sent += 1
        except OSError:   # the client closed the connection: what we wanted to see
            pass
        finally:
            self.done.set()


@pytest.fixture
def server():
    state = Server()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            state.handle(self.request)

    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    tcp.daemon_threads = True
    state.port = tcp.server_address[1]
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    yield state
    state.stop.set()
    tcp.shutdown()
    tcp.server_close()


def _app(app_config, **settings):
    from console import create_app

    app = create_app({**app_config, **settings})
    return app, app.extensions["jobs"]


def loopback_name() -> str:
    """A real host name (no test-only resolver) that resolves to loopback addresses only and is
    not ``localhost`` (which queue time already refuses): this machine's name, or one of the
    usual /etc/hosts aliases."""
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost",
                 "ip6-loopback"):
        try:
            found = {info[4][0] for info in socket.getaddrinfo(name, 80,
                                                               type=socket.SOCK_STREAM)}
        except OSError:
            continue
        if found and all(ipaddress.ip_address(a).is_loopback for a in found):
            return name
    pytest.skip("no host name here resolves to loopback only")


# -- queue time: literal addresses and localhost, no DNS ----------------------------------------

REFUSED_URLS = [
    ("http://127.0.0.1:5099/internal", "a loopback address"),
    ("http://localhost:5099/internal", "a loopback address"),
    ("http://api.localhost/x", "a loopback address"),
    ("http://0x7f000001/", "a loopback address"),
    ("http://2130706433/", "a loopback address"),
    ("http://127.1/", "a loopback address"),
    ("http://[::1]/", "a loopback address"),
    ("http://[::ffff:127.0.0.1]/", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://10.0.0.1/", "a private address"),
    ("http://192.168.1.1/", "a private address"),
    ("http://[fd00::1]/", "a private address"),
    ("http://0.0.0.0/", "an unspecified address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://240.0.0.1/", "a reserved address"),
    ("http://100.64.0.1/", "a non-public address"),
]


@pytest.mark.parametrize("url,kind", REFUSED_URLS)
def test_a_private_destination_is_refused_at_queue_time(service, tenant, url, kind):
    with pytest.raises(JobValidationError) as refused:
        service.queue_notification("webhook", url, "acme", body={})
    assert refused.value.field == "recipient"
    assert str(refused.value) == (f"recipient: {url} points at {kind}; webhooks go to public "
                                  "addresses only")
    assert service.count_jobs("acme") == 0


def test_the_receiver_is_not_reached_while_private_addresses_are_refused(service, tenant,
                                                                         server):
    with pytest.raises(JobValidationError, match="loopback"):
        service.queue_notification("webhook", server.url(), "acme", body={})
    service.run_until_idle(settle=0.2)
    assert server.connections == 0


def test_with_private_addresses_allowed_the_receiver_is_reached(app_config, server):
    app, service = _app(app_config, WEBHOOK_ALLOW_PRIVATE=True)
    try:
        _tenant(service)
        job = service.queue_notification("webhook", server.url(), "acme", body={"n": 1})
        service.run_until_idle(settle=0.2)
        done = service.get_job_by_id(job.id)
        assert done.status == JobStatus.COMPLETED, done.last_result
        assert done.last_result.result["response"] == "ok"
        assert server.connections == 1
    finally:
        service.engine.dispose()


# -- send time: what a name resolves to ---------------------------------------------------------

def test_a_name_resolving_to_loopback_fails_for_good_unreached(service, tenant, server):
    url = server.url(loopback_name())
    job = service.queue_notification("webhook", url, "acme", body={}, max_retries=3)
    service.run_until_idle(settle=0.3)
    done = service.get_job_by_id(job.id)
    assert done.status == JobStatus.FAILED
    assert done.last_result.error_type == "WebhookDestinationRefused"
    assert done.last_result.error_message == f"{url}: {REFUSED_AT_SEND}"
    assert len(service.get_job_attempts(job.id)) == 1           # not retried
    assert server.connections == 0


def test_every_refused_address_reads_the_same_at_send_time(app_config, service, tenant, server):
    """Queued while private addresses were allowed, sent once they are not: one text for a
    loopback, a private or a link-local address, and nothing reached."""
    urls = [server.url(), server.url("[::1]"), "http://10.0.0.1/x", "http://169.254.169.254/x"]
    other, queuing = _app(app_config, WEBHOOK_ALLOW_PRIVATE=True, JOBS_RUN_SCHEDULER=False)
    try:
        jobs = [queuing.queue_notification("webhook", url, "acme", body={}) for url in urls]
    finally:
        queuing.engine.dispose()
    service.run_until_idle(settle=0.3)
    for url, job in zip(urls, jobs, strict=True):
        done = service.get_job_by_id(job.id)
        assert done.status == JobStatus.FAILED
        assert (done.last_result.error_type, done.last_result.error_message) == (
            "WebhookDestinationRefused", f"{url}: {REFUSED_AT_SEND}")
    assert server.connections == 0


def test_an_allowed_host_name_goes_through(app_config, server):
    name = loopback_name()
    app, service = _app(app_config, WEBHOOK_ALLOWED_HOSTS=f"{name.upper()}, other.example")
    try:
        _tenant(service)
        job = service.queue_notification("webhook", server.url(name), "acme", body={})
        service.run_until_idle(settle=0.2)
        assert service.get_job_by_id(job.id).status == JobStatus.COMPLETED
        assert server.connections == 1
        with pytest.raises(JobValidationError, match="loopback"):   # only the names listed
            service.queue_notification("webhook", server.url(), "acme", body={})
    finally:
        service.engine.dispose()


def test_a_denied_network_is_refused_even_when_public_or_allowed(app_config, server):
    app, service = _app(app_config, WEBHOOK_ALLOW_PRIVATE=True,
                        WEBHOOK_DENIED_NETWORKS=["93.184.216.0/24", "127.0.0.0/8"])
    try:
        _tenant(service)
        for url in ("http://93.184.216.34/hook", server.url()):
            with pytest.raises(JobValidationError) as refused:
                service.queue_notification("webhook", url, "acme", body={})
            assert refused.value.field == "recipient"
            assert "points at an address in a denied network" in str(refused.value)
        job = service.queue_notification("webhook", server.url(loopback_name()), "acme",
                                          body={})
        service.run_until_idle(settle=0.2)
        assert service.get_job_by_id(job.id).last_result.error_type == (
            "WebhookDestinationRefused")
        assert server.connections == 0
    finally:
        service.engine.dispose()
    # Without the setting, the same public address is fine (queued; nothing sends it here).
    app, service = _app(app_config)
    try:
        _tenant(service)
        assert service.queue_notification("webhook", "http://93.184.216.34/hook", "acme",
                                          body={}, delay=3600)
    finally:
        service.engine.dispose()


def test_a_bad_denied_network_stops_the_app(app_config):
    from console import create_app

    with pytest.raises(ValueError, match="WEBHOOK_DENIED_NETWORKS: 'ten-slash-eight'"):
        create_app({**app_config, "WEBHOOK_DENIED_NETWORKS": "ten-slash-eight"})


def test_the_policy_judges_addresses():
    assert address_kind(ipaddress.ip_address("93.184.216.34")) is None
    assert address_kind(ipaddress.ip_address("2606:2800:220:1::1")) is None
    assert address_kind(ipaddress.ip_address("::ffff:10.1.2.3")) == "a private address"
    assert address_kind(ipaddress.ip_address("64:ff9b::7f00:1")) == "a loopback address"
    assert address_kind(ipaddress.ip_address("2002:a9fe:a9fe::1")) == "a link-local address"
    policy = OutboundPolicy()
    policy.check_destination("hooks.example.com")     # a name: judged when it is resolved
    with pytest.raises(RefusedDestination):
        policy.resolve("localhost", 80, time.monotonic() + 5)
    assert policy.resolve("93.184.216.34", 80, time.monotonic() + 5) == ["93.184.216.34"]


# -- how much, how long --------------------------------------------------------------------------

@pytest.fixture
def private_ok(app_config):
    app, service = _app(app_config, WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT_SECONDS=1)
    _tenant(service)
    yield service
    service.engine.dispose()


def test_a_huge_answer_is_read_only_to_the_cap(private_ok, server):
    server.mode = "huge"
    job = private_ok.queue_notification("webhook", server.url(), "acme", body={})
    private_ok.run_until_idle(settle=0.2)
    assert server.done.wait(10), "the server still sends: the client did not close"
    done = private_ok.get_job_by_id(job.id)
    assert done.status == JobStatus.COMPLETED, done.last_result
    result = done.last_result.result
    assert result["response"] == "x" * 500 and result["response_truncated"] is True
    # What the server got out before the client closed: the cap plus both sockets' buffers
    # (about 4 MB on loopback here), not the 30 MB.
    assert server.sent < 8 * 1024 * 1024, server.sent


@pytest.mark.parametrize("mode", ["trickle", "trickle_headers"])
def test_a_slow_endless_answer_ends_by_the_deadline(private_ok, server, mode):
    server.mode = mode
    job = private_ok.queue_notification("webhook", server.url(), "acme", body={},
                                        max_retries=0)
    started = time.monotonic()
    private_ok.run_until_idle(settle=0.2, timeout=20)
    [attempt] = private_ok.get_job_attempts(job.id)
    assert attempt["error_type"] == "WebhookTimeout"
    assert private_ok.get_job_by_id(job.id).last_result.error_message == (
        f"{server.url()} did not answer within 1 s")
    assert server.sent >= 3                           # it did keep sending, slowly
    assert time.monotonic() - started < 4             # 1 s deadline, a 0.2 s settle, margin
    assert server.done.wait(2), "the connection stayed open after the deadline"


# -- TLS: the connection is pinned to the address, the name stays the name ------------------------

@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names only
    ``loopback_name()``; ``.seen`` lists (SNI, Host header) of each request."""
    import http.server
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    name = loopback_name()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sni: list[str | None] = []
    context.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((sni[-1] if sni else None, self.headers.get("Host")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.name, server.seen = name, seen
    server.client_context = ssl.create_default_context(cafile=str(cert))
    yield server
    server.shutdown()
    server.server_close()


def test_https_goes_to_the_resolved_address_with_the_name_s_sni_and_certificate(tls_receiver):
    import httpx

    from console.handlers.outbound import post

    port, name = tls_receiver.server_address[1], tls_receiver.name
    policy = OutboundPolicy(allowed_hosts=frozenset({name, "127.0.0.1"}))
    answer = post(f"https://{name}:{port}/hooks", content=b"{}", headers={}, policy=policy,
                  timeout=5, ssl_context=tls_receiver.client_context)
    assert (answer.status_code, answer.text()) == (200, "ok")
    assert tls_receiver.seen == [(name, f"{name}:{port}")]
    # The certificate is checked against the URL's name: by address, it does not verify.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|IP address"):
        post(f"https://127.0.0.1:{port}/hooks", content=b"{}", headers={}, policy=policy,
             timeout=5, ssl_context=tls_receiver.client_context)
    assert len(tls_receiver.seen) == 1
