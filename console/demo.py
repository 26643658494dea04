"""Demo data: tenants in every tier, a week of finished history, and live jobs in every status.

History rows are written directly in batches (a seed, not a queue call: it has to create
thousands of finished jobs in the past quickly). Live jobs go through ``JobService`` like any
other, so they obey every limit.

Notifications are real sends that never leave this machine (``demo_notifications``): SMS and
push go to the outbox (only while ``SMS_PROVIDER``/``PUSH_PROVIDER`` are ``outbox``); webhooks
go, signed with each tenant's secret, to the console's own catch-all (``--webhook-url``, a
loopback URL; they arrive once the console runs there), only with ``WEBHOOK_ALLOW_PRIVATE`` on
(the console sends webhooks to public addresses only otherwise); emails are queued only when
``MAIL_SERVER`` is a loopback address that accepts connections now, addressed to ``.invalid``
domains. Tenants whose tier allows it get the standard maintenance jobs, and the two largest
get a usage report of their history, so the Reports page has content at once.
"""
from __future__ import annotations

import ipaddress
import random
import secrets
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from .jobs import JobService, TenantConfig, TenantLimitException
from .jobs.models import attempts_table, daily_usage_table, jobs_table
from .jobs.records import new_job_id
from .jobs.rollups import RollupBatch

UTC = timezone.utc

TENANTS = [
    ("acme", "Acme Corporation", "tier4", {}),
    ("globex", "Globex Industries", "tier3", {"jobLimits": {"maxConcurrentJobs": 10}}),
    ("initech", "Initech", "tier2", {}),
    ("hooli", "Hooli", "tier2", {"jobLimits": {"maxDailyJobs": 2_000}}),
    ("umbrella", "Umbrella Health", "tier1", {}),
]

_HISTORY_MIX = [  # handler, type, payload, success rate, mean duration (ms)
    ("data_processor", "immediate", {"data_id": "ds-1", "processing_type": "quick"}, 0.97, 60),
    ("data_processor", "data_sync", {"data_id": "ds-2", "processing_type": "standard"}, 0.9, 240),
    ("wait", "delayed", {"seconds": 0.2}, 0.99, 210),
    ("noop", "notification", {"channel": "email", "recipient": "ops@example.com"}, 0.995, 4),
    ("noop", "maintenance", {"task": "cleanup"}, 1.0, 12),
]
_ERRORS = [("ConnectionError", "storage for ds-2 did not answer"),
           ("DataProcessingError", "data set ds-2 failed its checksum"),
           ("JobTimeoutError", "attempt exceeded the tenant's max_job_duration of 300 s")]


DEFAULT_WEBHOOK_URL = "http://127.0.0.1:5000/outbox/webhooks"
REPORT_TENANTS = ("acme", "globex")


def load_demo(service: JobService, days: int = 7, jobs_per_day: int = 300,
              seed: int = 7, config: Mapping[str, Any] | None = None,
              webhook_url: str = DEFAULT_WEBHOOK_URL) -> list[str]:
    check_local_url(webhook_url)
    rng = random.Random(seed)
    for tenant_id, name, tier, settings in TENANTS:
        settings = {**settings, "webhookSecret": f"demo-{secrets.token_hex(16)}"}
        service.tenants.set_tenant_config(TenantConfig.for_tier(tenant_id, name, tier, settings))
    history = _write_history(service, rng, days, jobs_per_day)
    reports = _write_history_reports(service, days)
    live = _queue_live_jobs(service, rng)
    sends = demo_notifications(service, config or {}, webhook_url)
    maintenance = _create_maintenance_jobs(service)
    return [f"tenants: {', '.join(f'{t[0]} ({t[2]})' for t in TENANTS)}",
            f"history: {history} finished jobs over {days} days", f"live jobs: {live}",
            f"reports: {reports} (usage of the history days)",
            f"maintenance jobs: {maintenance}", *sends]


def check_local_url(url: str) -> None:
    """``ValueError`` unless ``url`` is http(s) on this machine: the demo sends nowhere else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _is_loopback(parts.hostname or ""):
        raise ValueError(f"{url!r} is not an http(s) URL on this machine (127.0.0.1, ::1 or "
                         "localhost): the demo never sends to other hosts")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _webhooks_refused(config: Mapping[str, Any], webhook_url: str) -> str | None:
    """Why the console would refuse the demo's webhooks (they go to this machine, and webhooks
    go to public addresses only unless WEBHOOK_ALLOW_PRIVATE is on; the catch-all that receives
    them answers only with WEBHOOK_CATCH_ALL on), or None."""
    from .handlers.outbound import OutboundPolicy, RefusedDestination

    if not config.get("WEBHOOK_CATCH_ALL"):
        return ("the console's catch-all is off (WEBHOOK_CATCH_ALL, off by default in "
                "production); run the demo and the console with CONSOLE_WEBHOOK_CATCH_ALL=true")
    try:
        OutboundPolicy.from_config(config).check_destination(urlsplit(webhook_url).hostname or "")
    except RefusedDestination:
        return (f"{webhook_url} is on this machine and WEBHOOK_ALLOW_PRIVATE is off (webhooks "
                "go to public addresses only); run the demo and the console with "
                "CONSOLE_WEBHOOK_ALLOW_PRIVATE=true")
    return None


def _smtp_reachable(config: Mapping[str, Any]) -> str | None:
    """Why the demo will not send email, or None when a local SMTP server answers now."""
    from .handlers.mail import check_address

    host, port = config.get("MAIL_SERVER") or "localhost", int(config.get("MAIL_PORT") or 25)
    if not _is_loopback(host):
        return f"MAIL_SERVER {host} is not on this machine"
    sender = config.get("MAIL_DEFAULT_SENDER")
    try:
        check_address(sender if isinstance(sender, str) else None, "MAIL_DEFAULT_SENDER",
                      local_domain_ok=True)
    except ValueError as exc:
        return f"{exc} (set CONSOLE_MAIL_DEFAULT_SENDER, e.g. console@example.test)"
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return None
    except OSError:
        return (f"nothing listens on {host}:{port} (start an SMTP server, e.g. `python -m "
                "aiosmtpd -n -l 127.0.0.1:8025`, and set CONSOLE_MAIL_PORT=8025)")


def demo_notifications(service: JobService, config: Mapping[str, Any],
                       webhook_url: str) -> list[str]:
    """Queue real sends that stay on this machine; what was queued, and what was not and why."""
    counts = {"sms": 0, "push": 0, "webhook": 0, "email": 0}
    skipped = []
    outbox = {channel: (config.get(f"{channel.upper()}_PROVIDER") or "outbox") == "outbox"
              for channel in ("sms", "push")}
    for channel, local in outbox.items():
        if not local:
            skipped.append(f"{channel}: {channel.upper()}_PROVIDER is not the outbox")
    no_email = _smtp_reachable(config)
    if no_email:
        skipped.append(f"email: {no_email}")
    no_webhooks = _webhooks_refused(config, webhook_url)
    if no_webhooks:
        skipped.append(f"webhook: {no_webhooks}")

    def send(channel, recipient, tenant_id, **fields):
        try:
            service.queue_notification(channel, recipient, tenant_id, **fields)
            counts[channel] += 1
        except TenantLimitException:
            pass

    for n, (tenant_id, name, tier, _) in enumerate(TENANTS):
        if outbox["sms"]:
            for i in range(2):
                send("sms", f"+1555010{n}{i:03d}", tenant_id,
                     body=f"{name}: your verification code is {100_000 + 7919 * (n + i)}")
        if outbox["push"] and tier != "tier1":
            send("push", f"demo-device-{tenant_id}-1", tenant_id, subject="Order shipped",
                 body=f"Your {name} order is on its way.", data={"order": 1000 + n})
        if not no_webhooks:
            send("webhook", webhook_url, tenant_id,
                 body={"event": "invoice.paid", "tenant": tenant_id, "amount": 120 + 15 * n})
        if not no_email:
            send("email", f"ops@{tenant_id}.invalid", tenant_id,
                 subject="Daily digest for {{ tenant }}",
                 body="Hello,\n\n{{ count }} jobs ran for {{ tenant }} today.",
                 variables={"tenant": name, "count": 42 + n})
    return [f"notifications: {counts['sms']} SMS and {counts['push']} push to the outbox, "
            f"{counts['webhook']} webhooks to {webhook_url}, {counts['email']} emails",
            *(f"  not sent: {reason}" for reason in skipped)]


def _create_maintenance_jobs(service: JobService) -> str:
    made, refused = 0, []
    for tenant_id, _, tier, _ in TENANTS:
        if not _allowed(service, tenant_id, "maintenance"):
            refused.append(f"{tenant_id} ({tier} has no maintenance jobs)")
            continue
        made += len(service.create_maintenance_jobs(tenant_id))
    return f"{made}" + (f"; none for {', '.join(refused)}" if refused else "")


def _write_history_reports(service: JobService, days: int) -> int:
    """A usage report of the history days for the largest tenants (the report_generator's
    own code, written directly like the history it reports on)."""
    from .handlers.reports import write_usage_report

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for tenant_id in REPORT_TENANTS:
        config = service.tenants.get_tenant_config(tenant_id)
        write_usage_report(service, tenant_id, today - timedelta(days=days), today,
                           "Demo history report", tenant_name=config.name)
    return len(REPORT_TENANTS)


def _allowed(service: JobService, tenant_id: str, job_type: str) -> bool:
    allowed = service.tenants.get_tenant_config(tenant_id).job_limit.allowed_job_types
    return allowed is None or job_type in allowed


def _write_history(service: JobService, rng: random.Random, days: int, per_day: int) -> int:
    now = datetime.now(UTC)
    jobs, attempts, daily = [], [], {}
    rollups = RollupBatch()   # what the runner would have counted, had it run this history
    for tenant_id, _, tier, _ in TENANTS:
        scale = {"tier1": 0.1, "tier2": 0.4, "tier3": 0.7, "tier4": 1.0}[tier]
        mix = [m for m in _HISTORY_MIX if _allowed(service, tenant_id, m[1])]
        for day in range(days, 0, -1):
            for _ in range(int(per_day * scale)):
                handler, job_type, payload, success_rate, mean_ms = rng.choice(mix)
                created = now - timedelta(days=day) + timedelta(seconds=rng.uniform(0, 86_400))
                if created > now - timedelta(minutes=5):
                    continue
                tries = 1 if rng.random() < success_rate else rng.randint(2, 4)
                succeeded = tries == 1 or rng.random() < 0.5
                job_id = new_job_id(at=created)
                moment = created + timedelta(milliseconds=rng.uniform(1, 40))
                for attempt in range(1, tries + 1):
                    duration = max(1.0, rng.gauss(mean_ms, mean_ms / 4))
                    ok = succeeded and attempt == tries
                    error = None if ok else rng.choice(_ERRORS)
                    attempts.append({
                        "job_id": job_id, "tenant_id": tenant_id, "job_type": job_type,
                        "handler": handler, "attempt": attempt, "started_at": moment,
                        "finished_at": moment + timedelta(milliseconds=duration),
                        "duration_ms": round(duration, 3), "success": ok,
                        "error_type": error and error[0], "error_message": error and error[1],
                        "worker": "demo-history"})
                    last = attempt == tries
                    rollups.add_attempt(
                        moment + timedelta(milliseconds=duration), tenant_id, handler, job_type,
                        round(duration, 3), ok, error and error[0], error and error[1],
                        ("completed" if ok else "failed") if last else None,
                        wait_ms=rng.uniform(1, 30))
                    moment += timedelta(milliseconds=duration + 2000 * 2 ** attempt)
                jobs.append({
                    "id": job_id, "tenant_id": tenant_id, "type": job_type, "handler": handler,
                    "payload": payload, "priority": rng.choice([1, 1, 1, 2, 0, 3]),
                    "status": "completed" if succeeded else "failed", "scheduled_for": created,
                    "cron_schedule": None, "timezone": "UTC", "max_retries": 3,
                    "current_retries": tries - 1, "total_attempts": tries,
                    "last_attempt": moment, "completed_at": moment,
                    "last_result": {"success": succeeded, "executed_at": moment.isoformat(),
                                    "execution_time_ms": mean_ms, "result": None,
                                    "error_message": None if succeeded else error[1],
                                    "error_type": None if succeeded else error[0],
                                    "metadata": None},
                    "metadata": {"source": "demo"}, "idempotency_key": None,
                    "progress": 1.0 if succeeded else None, "progress_message": None,
                    "lease_owner": None, "lease_expires_at": None, "attempt_started_at": None,
                    "created_at": created, "updated_at": moment})
                key = (tenant_id, created.date())
                daily[key] = daily.get(key, 0) + 1
                rollups.add_jobs(created, tenant_id, handler, job_type, "jobs_created")
    from .jobs import db as jobs_db

    # The write lock at BEGIN, as every write takes it: the console may be running meanwhile.
    with jobs_db.write_transaction(service.engine) as conn:
        for start in range(0, len(jobs), 2000):
            conn.execute(jobs_table.insert(), jobs[start:start + 2000])
        for start in range(0, len(attempts), 2000):
            conn.execute(attempts_table.insert(), attempts[start:start + 2000])
        rollups.write(conn)
        for (tenant_id, day), count in daily.items():
            jobs_db.upsert(conn, daily_usage_table,
                           {"tenant_id": tenant_id, "day": day, "jobs_accepted": count,
                            "recurring_runs": 0}, ["tenant_id", "day"], ["jobs_accepted"])
    return len(jobs)


def _queue_live_jobs(service: JobService, rng: random.Random) -> int:
    """Jobs that the console's runner will work on: due, delayed, cron, some doomed to fail."""
    queued = 0

    def attempt(call, *args, **kwargs):
        nonlocal queued
        try:
            job = call(*args, **kwargs)
            queued += 1
            return job
        except TenantLimitException:
            return None

    for tenant_id, _, tier, _ in TENANTS:
        if tier == "tier1":   # its notifications: demo_notifications
            continue
        for i in range(8):
            data_id = rng.choice(["ds", "ds", "ds", "flaky", "corrupt"]) + f"-{i}"
            attempt(service.queue_job, "immediate", "data_processor",
                    {"data_id": data_id, "processing_type": rng.choice(["quick", "standard"]),
                     "step_ms": 50}, tenant_id, max_retries=2)
        attempt(service.queue_delayed_job, "wait", {"seconds": 1}, timedelta(minutes=30),
                tenant_id)
        attempt(service.queue_scheduled_job, "Hourly sync", "15 * * * *", "data_processor",
                {"data_id": f"{tenant_id}-sync", "processing_type": "quick"}, tenant_id)
        doomed = attempt(service.queue_delayed_job, "noop", {"note": "cancelled by demo"},
                         timedelta(hours=2), tenant_id)
        if doomed:
            service.cancel_job(doomed.id)
    return queued
