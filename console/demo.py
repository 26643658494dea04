"""Demo data: tenants in every tier, a week of finished history, and live jobs in every status.

History rows are written directly in batches (a seed, not a queue call: it has to create
thousands of finished jobs in the past quickly). Live jobs go through ``JobService`` like any
other, so they obey every limit.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

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


def load_demo(service: JobService, days: int = 7, jobs_per_day: int = 300,
              seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    for tenant_id, name, tier, settings in TENANTS:
        service.tenants.set_tenant_config(TenantConfig.for_tier(tenant_id, name, tier, settings))
    history = _write_history(service, rng, days, jobs_per_day)
    live = _queue_live_jobs(service, rng)
    return [f"tenants: {', '.join(f'{t[0]} ({t[2]})' for t in TENANTS)}",
            f"history: {history} finished jobs over {days} days", f"live jobs: {live}"]


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
    with service.engine.begin() as conn:
        for start in range(0, len(jobs), 2000):
            conn.execute(jobs_table.insert(), jobs[start:start + 2000])
        for start in range(0, len(attempts), 2000):
            conn.execute(attempts_table.insert(), attempts[start:start + 2000])
        from .jobs import db as jobs_db
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
        if tier == "tier1":
            for i in range(5):
                attempt(service.queue_job, "notification", "noop",
                        {"channel": "sms", "recipient": f"+1555000{i:04d}"}, tenant_id)
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
