"""The ``webhook`` channel: a signed JSON POST, and ``verify_signature`` for receivers.

The request body is the envelope ``{"id", "timestamp", "tenant_id", "data"}`` (``data`` is the
payload's ``body``; ``id`` the message id, the same on every retry, so receivers can drop
duplicates). The header ``X-Console-Signature: t=<timestamp>,v1=<hex>`` carries an HMAC-SHA256,
keyed with the tenant's secret, over ``f"{timestamp}.{raw_body}"``.

The secret: the tenant's ``custom_settings["webhookSecret"]``, else ``WEBHOOK_SIGNING_SECRET``.
With neither, nothing is sent unsigned: the job fails with ``WebhookConfigError``.

Answers: 2xx succeeds; 5xx, 408, 429 and network errors are retried (``Retry-After`` on 429/503
sets the least wait before the next try); other answers (4xx, and 3xx: redirects are not
followed) end the job at once.

Where: public addresses only, checked at queue time for literal addresses and ``localhost`` and
at send time for what a name resolves to (``outbound.py``, ``WEBHOOK_ALLOW_PRIVATE``,
``WEBHOOK_ALLOWED_HOSTS``, ``WEBHOOK_DENIED_NETWORKS``); a refused destination ends the job at
once with one text whatever the address. At most 64 KiB of the answer are read (500 characters
kept in the result), within one deadline of ``WEBHOOK_TIMEOUT_SECONDS`` for the whole request.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ..jobs import JobExecutionContext, JobValidationError
from .delivery import Delivery, DeliveryError, NotificationHandler, check_message_id, config_value
from .outbound import OutboundPolicy, RefusedDestination, http_url, post

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Console-Signature"
# The one text for a destination refused at send time, whatever the address: a tenant learns
# nothing of what its host name resolves to inside (the log names it for operators).
REFUSED_AT_SEND = "refused: webhooks go to public addresses only"
MESSAGE_ID_HEADER = "X-Console-Message-Id"
_RETRYABLE_STATUSES = {408, 429}
_RESERVED_HEADERS = {"content-type", "content-length", "host", SIGNATURE_HEADER.lower(),
                     MESSAGE_ID_HEADER.lower()}


def compute_signature(secret: str, timestamp: int, raw_body: bytes | str) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{raw_body}"`` keyed with ``secret``."""
    body = raw_body.encode() if isinstance(raw_body, str) else raw_body
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, raw_body: bytes | str) -> str:
    return f"t={timestamp},v1={compute_signature(secret, timestamp, raw_body)}"


def verify_signature(secret: str, header: str | None, raw_body: bytes | str,
                     tolerance: float = 300, now: float | None = None) -> bool:
    """True when ``header`` (the ``X-Console-Signature`` value) signs ``raw_body`` with
    ``secret`` and its timestamp is within ``tolerance`` seconds of ``now`` (replays of old
    requests fail). Pass the body exactly as received, before any JSON parsing.

    :param tolerance: seconds; ``None`` skips the age check.
    """
    if not header or not secret:
        return False
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)   # several v1 values while a secret is being rotated
    if timestamp is None or not timestamp.isdigit() or not candidates:
        return False
    if tolerance is not None and abs((now if now is not None else time.time())
                                     - int(timestamp)) > tolerance:
        return False
    expected = compute_signature(secret, int(timestamp), raw_body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` value (seconds, or an HTTP date) in seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def url_for_log(text: Any) -> str:
    """A webhook address as its attempt's log shows it: scheme and host only. The path, the
    query and the user part may be the receiver's secret (a Slack hook's path is)."""
    url = http_url(text)
    if url is None:
        return "an address that is not an http(s) URL"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}/…"


class WebhookHandler(NotificationHandler):
    """Posts ``queue_notification("webhook", url, tenant, body=…)`` jobs."""

    handler_name = "webhook_handler"
    channel = "webhook"
    description = "POSTs a signed JSON envelope to the recipient URL."
    payload_hint = ("needs 'recipient' (an http or https URL) and 'body' (the JSON to post); "
                    "optional 'headers' (dict of str), 'message_id'")

    def __init__(self, engine, config=None):
        super().__init__(engine, config)
        self.policy = OutboundPolicy.from_config(self.config)

    def validate_payload(self, payload: dict[str, Any]) -> bool:
        url = payload.get("recipient")
        parsed = http_url(url)
        if parsed is None:
            raise ValueError(f"recipient {url!r} must be an http or https URL")
        try:
            self.policy.check_destination(parsed.host)   # literals and localhost: no DNS here
        except RefusedDestination as refused:
            raise JobValidationError("recipient", f"{url} points at {refused.kind}; webhooks go "
                                                  "to public addresses only") from None
        if "body" not in payload:
            raise ValueError("body (the JSON to post) is required")
        headers = payload.get("headers")
        if headers is not None and not (isinstance(headers, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
            raise ValueError("headers must be an object of strings")
        if headers and _RESERVED_HEADERS & {k.lower() for k in headers}:
            raise ValueError("headers may not set Content-Type, Host or the signature headers")
        check_message_id(payload)
        return True

    def secret_for(self, context: JobExecutionContext) -> str | None:
        tenant = context.tenant_context.get("tenant")
        settings = getattr(tenant, "custom_settings", None) or {}
        return settings.get("webhookSecret") or config_value(self.config, "WEBHOOK_SIGNING_SECRET")

    def recipient_for_log(self, payload: Mapping[str, Any]) -> str:
        return url_for_log(payload.get("recipient"))

    def deliver(self, context: JobExecutionContext, message_id: str) -> Delivery:
        payload = context.job.payload
        secret = self.secret_for(context)
        if not secret:
            raise DeliveryError(
                f"no webhook signing secret for tenant {context.tenant_id!r}: set the tenant's "
                "custom_settings['webhookSecret'] or WEBHOOK_SIGNING_SECRET",
                retryable=False, error_type="WebhookConfigError")
        timestamp = int(time.time())
        raw_body = json.dumps({"id": message_id, "timestamp": timestamp,
                               "tenant_id": context.tenant_id, "data": payload.get("body")},
                              separators=(",", ":"), default=str).encode()
        headers = {**(payload.get("headers") or {}),
                   "Content-Type": "application/json",
                   "User-Agent": "console-webhooks/1",
                   MESSAGE_ID_HEADER: message_id,
                   SIGNATURE_HEADER: signature_header(secret, timestamp, raw_body)}
        timeout = float(config_value(self.config, "WEBHOOK_TIMEOUT_SECONDS") or 10)
        url = payload["recipient"]
        left = context.seconds_left()
        if left is not None:    # the request ends by the job's deadline, not only its own
            if left <= 0:
                raise DeliveryError(f"the job's deadline passed before {url} was reached",
                                    retryable=True, error_type="WebhookTimeout")
            timeout = min(timeout, left)
        context.logger.info("posting a signed envelope of %d bytes to %s (answer within %g s)",
                            len(raw_body), url_for_log(url), timeout)
        posted = time.monotonic()
        try:
            response = post(url, content=raw_body, headers=headers, policy=self.policy,
                            timeout=timeout)
        except RefusedDestination as refused:
            log.warning("webhook job %s of tenant %s not sent: %s", context.job.id,
                        context.tenant_id, refused)
            raise DeliveryError(f"{url}: {REFUSED_AT_SEND}", retryable=False,
                                error_type="WebhookDestinationRefused") from None
        except httpx.TimeoutException:
            raise DeliveryError(f"{url} did not answer within {timeout:g} s", retryable=True,
                                error_type="WebhookTimeout") from None
        except httpx.TransportError as exc:
            # Only a generic text: what failed how (refused, reset, unknown name) is for the log.
            log.info("webhook job %s to %s: %s: %s", context.job.id, url, type(exc).__name__, exc)
            raise DeliveryError(f"could not connect to the recipient {url}", retryable=True,
                                error_type="WebhookConnectionError") from None
        status = response.status_code
        context.logger.info("the receiver answered %d %s in %.0f ms", status,
                            response.reason_phrase, (time.monotonic() - posted) * 1000)
        details = {"status_code": status, "url": url}
        if 200 <= status < 300:
            if response.truncated:
                details["response_truncated"] = True
            return Delivery(provider_message_id=response.headers.get("X-Request-Id"),
                            details={**details, "response": response.text(500)})
        retryable = status >= 500 or status in _RETRYABLE_STATUSES
        retry_after = (retry_after_seconds(response.headers.get("Retry-After"))
                       if status in (429, 503) else None)
        raise DeliveryError(
            f"{url} answered {status} {response.reason_phrase}: {response.text(200)}",
            retryable=retryable, retry_after=retry_after, details=details,
            error_type="WebhookTemporaryError" if retryable else "WebhookRejected")

