"""The webhook catch-all: a real receiver that writes what it gets into the outbox, for demos and
for testing the webhook channel end to end without the internet. It checks the
``X-Console-Signature`` with the tenant's secret (as any receiver should), keeps each message id
once, and answers 204. Unsigned or mis-signed requests get 400 and store nothing.
``WEBHOOK_CATCH_ALL = False`` turns it off (404).
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ...handlers.models import outbox_messages_table
from ...handlers.webhook import MESSAGE_ID_HEADER, SIGNATURE_HEADER, verify_signature
from ...jobs import JobService, db
from ...jobs.models import jobs_table

UTC = timezone.utc
MAX_CAUGHT_BYTES = 64 * 1024
_KEPT_HEADERS = ("Content-Type", "User-Agent", MESSAGE_ID_HEADER, SIGNATURE_HEADER)


class CatchRefused(Exception):
    """The request is not a signed webhook this console can check; ``status`` to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def catch_webhook(service: JobService, config, raw: bytes, headers,
                  url: str) -> tuple[str, bool]:
    """Verify and keep one received webhook. Returns (outbox id, whether it is new).

    :raise CatchRefused: too large, not the console's envelope, or the signature fails.
    """
    if len(raw) > MAX_CAUGHT_BYTES:
        raise CatchRefused(413, f"the catch-all keeps bodies up to {MAX_CAUGHT_BYTES} bytes")
    try:
        envelope = json.loads(raw)
    except ValueError:
        raise CatchRefused(400, "the body is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("tenant_id"), str) or \
            not isinstance(envelope.get("id"), str) or not envelope["id"]:
        raise CatchRefused(400, "not a console webhook: expected {id, timestamp, tenant_id, "
                                "data}")
    tenant = service.tenants.get_tenant_config(envelope["tenant_id"])
    secret = ((tenant.custom_settings or {}).get("webhookSecret") if tenant else None) or \
        config.get("WEBHOOK_SIGNING_SECRET")
    if tenant is None or not verify_signature(secret, headers.get(SIGNATURE_HEADER), raw):
        raise CatchRefused(400, "the signature does not verify")
    message_id = envelope["id"][:200]
    kept = {name: headers.get(name) for name in _KEPT_HEADERS if headers.get(name)}
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()), "tenant_id": tenant.tenant_id, "channel": "webhook",
        "recipient": url[:320], "subject": None,
        "body": json.dumps(envelope.get("data"), indent=2, ensure_ascii=False, default=str),
        "data": {"headers": kept, "timestamp": envelope.get("timestamp")},
        "job_id": None, "message_id": message_id, "created_at": datetime.now(UTC)}
    o = outbox_messages_table.c
    try:
        with db.write_transaction(service.engine) as conn:
            existing = conn.execute(select(o.id).where(o.tenant_id == tenant.tenant_id,
                                                       o.message_id == message_id)).scalar()
            if existing:
                return existing, False
            job = conn.execute(select(jobs_table.c.id).where(
                jobs_table.c.id == message_id,
                jobs_table.c.tenant_id == tenant.tenant_id)).scalar()
            row["job_id"] = job
            conn.execute(outbox_messages_table.insert().values(**row))
    except IntegrityError:   # the same message arrived twice at once: the other one kept it
        return message_id, False
    return row["id"], True
