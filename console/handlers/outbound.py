"""Outbound HTTP to addresses tenants give (webhooks, alert webhooks): public addresses only, a
bounded answer, one deadline.

- **Where.** ``OutboundPolicy`` (from ``WEBHOOK_ALLOW_PRIVATE``, ``WEBHOOK_ALLOWED_HOSTS``,
  ``WEBHOOK_DENIED_NETWORKS``) judges addresses. At queue time ``check_destination`` judges
  what needs no DNS (literal addresses in any numeric form the resolver takes, ``localhost``).
  At send time the host name is resolved once; every address it resolves to must be allowed
  (a name with one private address among public ones is refused whole: such a mix is how DNS
  rebinding is set up, and a connection that falls back to the next address must never reach a
  private one), and the connection goes to that resolved address only. httpx still sees the
  original URL, so the Host header, TLS SNI and the certificate check are about the original
  name: only the network backend's ``connect_tcp`` is pinned (``_PinnedBackend``).
- **How much.** At most ``MAX_RESPONSE_BYTES`` of the answer are read; then the connection is
  closed. ``Accept-Encoding: identity``: nothing is decompressed.
- **How long.** One deadline for the whole exchange (name lookup, connect, TLS, send, answer):
  every socket operation's timeout is cut to the time left, and none starts after it.
- Redirects are never followed.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from .. import defaults

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 64 * 1024
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_V4 = re.compile(r"[0-9a-fA-FxX.]+")
_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")


class RefusedDestination(Exception):
    """The destination is not allowed. ``kind`` says why ("a loopback address"): fine to show
    for what the tenant typed (queue time), never for what a name resolved to (send time)."""

    def __init__(self, host: str, address: str | None, kind: str):
        super().__init__(f"{host} ({address or 'no lookup'}) is {kind}")
        self.host, self.address, self.kind = host, address, kind


def _listed(value: Any) -> list[str]:
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def http_url(text: Any) -> httpx.URL | None:
    """``text`` parsed as an http(s) URL with a host, or None: the one test of what a tenant
    gives as a webhook address."""
    try:
        url = httpx.URL(text) if isinstance(text, str) else None
    except httpx.InvalidURL:
        return None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        return None
    return url


def _host_key(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` is without any lookup: an IP literal, or a numeric IPv4 form the
    resolver accepts (``0x7f000001``, ``2130706433``, ``127.1``); else None."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))   # what getaddrinfo does
        except OSError:
            return None
    return None


def _embedded_v4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 one carries: mapped (``::ffff:a.b.c.d``), 6to4, NAT64."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def address_kind(address: IPAddress) -> str | None:
    """What makes ``address`` non-public ("a loopback address", …), or None for a public one."""
    for inner in _embedded_v4(address):
        kind = address_kind(inner)
        if kind:
            return kind
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or (isinstance(address, ipaddress.IPv6Address)
                              and address.is_site_local):
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses outbound requests may go to (see the module docstring)."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    denied_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> OutboundPolicy:
        """The policy the settings describe; ``ValueError`` naming a bad network."""
        def setting(key):
            if config is not None and key in config:
                return config[key]
            return getattr(defaults, key)

        networks = []
        for text in _listed(setting("WEBHOOK_DENIED_NETWORKS")):
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"WEBHOOK_DENIED_NETWORKS: {text!r} is not a network such as "
                                 "'203.0.113.0/24'") from None
        return cls(allow_private=bool(setting("WEBHOOK_ALLOW_PRIVATE")),
                   allowed_hosts=frozenset(_host_key(h) for h in
                                           _listed(setting("WEBHOOK_ALLOWED_HOSTS"))),
                   denied_networks=tuple(networks))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why ``address`` (what ``host`` names) is refused, or None when it is allowed. A
        denied network is refused even for an allowed host or with private addresses on."""
        candidates = [address, *_embedded_v4(address)]
        if any(a in net for a in candidates for net in self.denied_networks):
            return "an address in a denied network"
        if self.allow_private or _host_key(host) in self.allowed_hosts:
            return None
        return address_kind(address)

    def check_destination(self, host: str) -> None:
        """Queue time, no DNS: ``RefusedDestination`` for a literal address or ``localhost``
        name that is refused. Other names are judged when they are resolved, at send time."""
        key = _host_key(host)
        address = literal_address(key)
        if address is None and (key == "localhost" or key.endswith(".localhost")):
            address = _LOOPBACK_V4            # RFC 6761: always loopback
        if address is None:
            return
        kind = self.refusal(host, address)
        if kind:
            raise RefusedDestination(host, None, kind)

    def resolve(self, host: str, port: int, deadline: float) -> list[str]:
        """The addresses ``host`` resolves to, looked up once; ``RefusedDestination`` unless
        every one is allowed; ``httpx.ConnectError``/``ConnectTimeout`` when the lookup fails
        or does not finish before ``deadline``."""
        infos = _getaddrinfo(host, port, deadline)
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            raise httpx.ConnectError(f"{host} resolves to no address")
        for text in addresses:
            kind = self.refusal(host, ipaddress.ip_address(text.split("%", 1)[0]))
            if kind:
                raise RefusedDestination(host, text, kind)
        return addresses


def _getaddrinfo(host: str, port: int, deadline: float):
    """``socket.getaddrinfo`` that gives up at ``deadline`` (the system resolver has no timeout
    of its own: the lookup finishes in a daemon thread nobody waits for)."""
    outcome: dict[str, Any] = {}

    def lookup():
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=lookup, name="outbound-dns", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise httpx.ConnectTimeout(f"looking up {host} took too long")
    if "error" in outcome:
        raise httpx.ConnectError(f"could not resolve {host}: {outcome['error']}")
    return outcome["infos"]


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream, self._deadline = stream, deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname,
                                     self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to ``address`` whatever host the URL names (httpcore passes the URL's host):
    the name was resolved once, and nothing resolves it again."""

    def __init__(self, address: str, deadline: float):
        self._address, self._deadline = address, deadline
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the request's deadline passed")
        stream = self._backend.connect_tcp(
            self._address, port, timeout=left if timeout is None else min(timeout, left),
            local_address=local_address, socket_options=socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, *args, **kwargs):   # pragma: no cover - never configured
        raise httpcore.ConnectError("unix sockets are not used for outbound requests")

    def sleep(self, seconds: float) -> None:   # pragma: no cover - no retries configured
        time.sleep(seconds)


_default_ssl_context: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CAs, hostname checked), made once."""
    global _default_ssl_context
    if _default_ssl_context is None:
        _default_ssl_context = httpx.create_ssl_context(trust_env=False)
    return _default_ssl_context


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport (its request conversion and exception mapping) over a connection
    pool that uses ``_PinnedBackend``; no proxy from the environment. httpcore wraps the socket
    with ``server_hostname`` = the URL's host: SNI and the certificate check are about the name,
    not the address the backend connected to."""

    def __init__(self, backend: _PinnedBackend, ssl_context: ssl.SSLContext):
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool.close()
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, max_connections=1,
                                             max_keepalive_connections=0,
                                             network_backend=backend)


@dataclass
class OutboundResponse:
    """An answer, of which at most ``MAX_RESPONSE_BYTES`` were read (``truncated``: reading
    stopped there, unfinished)."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes
    truncated: bool

    def text(self, limit: int = 500) -> str:
        """The first ``limit`` characters of what was read (undecodable bytes replaced)."""
        match = re.search(r"charset=([\w.:-]+)", self.headers.get("content-type", ""))
        try:
            return self.content.decode(match.group(1) if match else "utf-8", "replace")[:limit]
        except LookupError:
            return self.content.decode("utf-8", "replace")[:limit]


def post(url: str, *, content: bytes, headers: Mapping[str, str], policy: OutboundPolicy,
         timeout: float, max_bytes: int = MAX_RESPONSE_BYTES,
         ssl_context: ssl.SSLContext | None = None) -> OutboundResponse:
    """POST ``content`` to ``url`` under ``policy``, all within ``timeout`` seconds.

    :param ssl_context: how to verify an https receiver; default: certifi's CAs.

    :raise RefusedDestination: the host is, or resolves to, an address the policy refuses.
    :raise httpx.TimeoutException: the deadline passed (lookup, connect, send or answer).
    :raise httpx.TransportError: the lookup or the connection failed.
    """
    deadline = time.monotonic() + timeout
    target = httpx.URL(url)
    if target.scheme not in ("http", "https") or not target.host:
        raise ValueError(f"{url!r} is not an http or https URL")
    port = target.port or (443 if target.scheme == "https" else 80)
    # The ASCII (IDNA) form httpx sends as SNI and Host: the name resolved is the name named.
    addresses = policy.resolve(target.raw_host.decode("ascii"), port, deadline)
    failure: httpx.TransportError | None = None
    for address in addresses:   # every one allowed; the next only when this one refused us
        try:
            return _post_to(address, target, content, headers, deadline, max_bytes,
                            ssl_context or default_ssl_context())
        except httpx.ConnectError as exc:
            failure = exc
    assert failure is not None
    raise failure


def _post_to(address: str, target: httpx.URL, content: bytes, headers: Mapping[str, str],
             deadline: float, max_bytes: int, ssl_context: ssl.SSLContext) -> OutboundResponse:
    transport = _PinnedTransport(_PinnedBackend(address, deadline), ssl_context)
    with httpx.Client(transport=transport, follow_redirects=False, trust_env=False,
                      timeout=max(0.001, deadline - time.monotonic())) as client:
        with client.stream("POST", target, content=content,
                           headers={**headers, "Accept-Encoding": "identity"}) as response:
            body, truncated = bytearray(), False
            for chunk in response.iter_raw():
                body += chunk
                if len(body) >= max_bytes:
                    truncated = True
                    break
                if time.monotonic() >= deadline:
                    raise httpx.ReadTimeout("the request's deadline passed")
            # Leaving the block closes the connection, whatever of the answer is unread.
            return OutboundResponse(response.status_code, response.reason_phrase,
                                    response.headers, bytes(body[:max_bytes]), truncated)
