"""The rule kinds: what each measures, in which unit, which way it fires, and how it reads its
figure from the database (through the reads analytics and the engine already have).

Each kind: its figure (unit) — when it fires — for whom.

- ``queue_backlog``: jobs queued, due and not started (jobs) — above N — system or tenant
- ``oldest_queued_job``: how long the oldest queued job has waited (seconds) — above T — system
  or tenant
- ``success_rate``: completed ÷ (completed + failed) runs in the window (%) — below R — system
  or tenant
- ``health_score``: the tenant's health score, console/analytics/health.py (points) — below S —
  tenant
- ``stuck_jobs``: jobs processing past their lease or their tenant's max_job_duration (jobs) —
  above N — system or tenant
- ``limit_usage``: max_queued_jobs, max_daily_jobs or max_concurrent_jobs used (%) — above P —
  tenant
- ``handler_failure_rate``: failed ÷ runs of one handler in the window (%) — above R — system
  or tenant

Rates need at least ``MIN_RUNS`` runs in the window (as the health score does): fewer runs say
nothing, so such a rule neither fires nor stays firing. System figures leave out the operations
tenant's own jobs (``Readings.of_system``); rules about each tenant watch it like any other.
Windows are whole hours, read from the hourly rollups like every other analytics figure.
Comparisons are strict ("above 1,000" fires at 1,001).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, func, select

from ..analytics.health import MIN_RUNS_FOR_RATE, tenants_job_health
from ..analytics.reports import STUCK_GRACE
from ..jobs.limits import TenantConfig, TenantStore
from ..jobs.models import daily_usage_table, jobs_table, rollups_table
from ..jobs.pauses import Pause, read_pauses
from ..jobs.rollups import hour_of
from ..jobs.usage import live_job_counts

MIN_RUNS = MIN_RUNS_FOR_RATE
# A runner fails an attempt at its deadline and records it within a cycle: one still
# processing this long past its tenant's max_job_duration was not stopped.
DURATION_GRACE = timedelta(seconds=2)
SCOPES = ("system", "each_tenant", "tenant")
LIMIT_NAMES = ("max_queued_jobs", "max_daily_jobs", "max_concurrent_jobs")
TOP_CONTRIBUTORS = 3


@dataclass(frozen=True)
class Rule:
    """An ``alert_rules`` row as the evaluator and the console use it."""

    id: int
    name: str
    kind: str
    scope: str
    tenant_id: str | None
    threshold: float
    window_hours: int | None
    handler: str | None
    limit_name: str | None
    cooldown_seconds: int
    notify_operators: bool
    notify_tenant: bool
    enabled: bool
    muted_until: datetime | None
    seed_key: str | None
    created_at: datetime
    updated_at: datetime
    updated_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> Rule:
        m = row._mapping
        return cls(**{name: m[name] for name in cls.__dataclass_fields__})

    @property
    def spec(self) -> RuleKind:
        return KINDS[self.kind]

    def muted(self, now: datetime) -> bool:
        return self.muted_until is not None and self.muted_until > now

    def scope_text(self) -> str:
        if self.scope == "system":
            return "the whole system"
        if self.scope == "each_tenant":
            return "each tenant"
        return f"tenant {self.tenant_id}"

    def audience_text(self) -> str:
        told = ["operators"] if self.notify_operators else []
        if self.notify_tenant and self.scope != "system":
            told.append("the tenant's admin")
        return ", ".join(told) or "nobody (the console only)"

    def condition_text(self) -> str:
        """``queue backlog above 1,000 queued jobs`` — what the rule watches, in words."""
        spec = self.spec
        return (f"{spec.figure_of(self)} {spec.direction} {spec.format(self.threshold)}"
                f"{spec.window_of(self)}")


@dataclass(frozen=True)
class Measurement:
    """One subject's figure: ``tenant_id`` None for the whole system."""

    tenant_id: str | None
    value: float
    detail: str = ""                         # "16 runs", "190 of 200"
    contributors: tuple[str, ...] = ()       # system figures: the tenants that weigh most

    @property
    def subject_key(self) -> str:
        return subject_key(self.tenant_id)


def subject_key(tenant_id: str | None) -> str:
    return "system" if tenant_id is None else f"tenant:{tenant_id}"


class Readings:
    """The database reads one evaluation needs, each made once, only if a rule asks for it."""

    def __init__(self, engine: Engine, tenants: TenantStore, now: datetime,
                 operations_tenant: str | None = None):
        self.engine = engine
        self.tenants = tenants
        self.now = now
        self.operations_tenant = operations_tenant
        self._runs: dict[tuple[int, str | None], dict[str, tuple[int, int]]] = {}

    def subjects(self, rule: Rule) -> list[str]:
        """The tenants a rule of scope ``each_tenant`` or ``tenant`` is about."""
        return list(self.configs) if rule.scope == "each_tenant" else [rule.tenant_id]

    def of_system(self, per_tenant: dict[str, Any]) -> dict[str, Any]:
        """Per-tenant figures that make up the system's: all but the operations tenant's, whose
        own jobs (an evaluation a minute) would drown a quiet system's failures and waits."""
        return {t: v for t, v in per_tenant.items() if t != self.operations_tenant}

    @cached_property
    def configs(self) -> dict[str, TenantConfig]:
        return {config.tenant_id: config for config in self.tenants.list_tenant_configs()}

    @cached_property
    def paused_tenants(self) -> dict[str, Pause]:
        """Tenants whose work operators paused (the tenant, or everything), with the pause."""
        with self.engine.connect() as conn:
            pauses = read_pauses(conn)
        if pauses.everything is not None:
            return {t: pauses.everything for t in self.configs}
        return {p.tenant_id: p for p in pauses.pauses if p.scope == "tenant"}

    def waiting_of(self, per_tenant: dict[str, Any]) -> dict[str, Any]:
        """Per-tenant waiting figures without the paused tenants'."""
        paused = self.paused_tenants
        return {t: v for t, v in per_tenant.items() if t not in paused}

    @cached_property
    def live(self) -> dict[tuple[str, str], int]:
        with self.engine.connect() as conn:
            return live_job_counts(conn)

    def live_of(self, status: str) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for (tenant_id, job_status), count in self.live.items():
            if job_status == status:
                counts[tenant_id] += count
        return counts

    @cached_property
    def oldest_queued(self) -> dict[str, datetime]:
        """When the oldest queued job of each tenant fell due."""
        j = jobs_table.c
        with self.engine.connect() as conn:
            return dict(conn.execute(select(j.tenant_id, func.min(j.scheduled_for))
                                     .where(j.status == "queued").group_by(j.tenant_id)).all())

    def runs(self, window_hours: int, handler: str | None = None
             ) -> dict[str, tuple[int, int]]:
        """(completed, failed) runs per tenant since the start of the hour ``window_hours``
        ago, from the hourly rollups; of one handler when given."""
        key = (window_hours, handler)
        if key not in self._runs:
            r = rollups_table.c
            query = (select(r.tenant_id, func.sum(r.jobs_completed), func.sum(r.jobs_failed))
                     .where(r.hour >= hour_of(self.now - timedelta(hours=window_hours)))
                     .group_by(r.tenant_id))
            if handler is not None:
                query = query.where(r.handler == handler)
            with self.engine.connect() as conn:
                self._runs[key] = {tenant_id: (int(done or 0), int(failed or 0))
                                   for tenant_id, done, failed in conn.execute(query)}
        return self._runs[key]

    @cached_property
    def health(self) -> dict[str, dict[str, Any]]:
        return tenants_job_health(self.engine, list(self.configs.values()), self.now)

    def health_of(self, tenant_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Health reports of a few tenants (all of them, once read, are reused)."""
        if "health" in self.__dict__:
            return {t: self.health[t] for t in tenant_ids if t in self.health}
        configs = [self.configs[t] for t in tenant_ids if t in self.configs]
        return tenants_job_health(self.engine, configs, self.now)

    @cached_property
    def stuck(self) -> dict[str, int]:
        """Processing jobs past their lease (their runner is gone) or past their tenant's
        max_job_duration (their runner did not stop them), by tenant."""
        j = jobs_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(j.tenant_id, j.lease_expires_at, j.attempt_started_at)
                                .where(j.status == "processing")).all()
        counts: dict[str, int] = defaultdict(int)
        for tenant_id, lease_expires_at, started_at in rows:
            config = self.configs.get(tenant_id)
            limit = config.job_limit.max_job_duration if config else None
            past_lease = lease_expires_at is not None and (
                lease_expires_at < self.now - STUCK_GRACE)
            past_duration = limit is not None and started_at is not None and (
                started_at + limit < self.now - DURATION_GRACE)
            if past_lease or past_duration:
                counts[tenant_id] += 1
        return counts

    @cached_property
    def daily(self) -> dict[str, int]:
        d = daily_usage_table.c
        with self.engine.connect() as conn:
            return {tenant_id: int(used or 0) for tenant_id, used in conn.execute(
                select(d.tenant_id, d.jobs_accepted + d.recurring_runs)
                .where(d.day == self.now.date()))}


# -- measuring -------------------------------------------------------------------------------

def _top(values: dict[str, float]) -> tuple[str, ...]:
    ranked = sorted(((v, t) for t, v in values.items() if v), key=lambda vt: (-vt[0], vt[1]))
    return tuple(t for _, t in ranked[:TOP_CONTRIBUTORS])


def _counts(rule: Rule, readings: Readings, per_tenant: dict[str, int | float]
            ) -> list[Measurement]:
    """A figure that adds up over tenants (jobs), in the rule's scope."""
    if rule.scope == "system":
        counted = readings.of_system(per_tenant)
        return [Measurement(None, float(sum(counted.values())), contributors=_top(counted))]
    return [Measurement(t, float(per_tenant.get(t, 0))) for t in readings.subjects(rule)]


def _rates(rule: Rule, readings: Readings, runs: dict[str, tuple[int, int]],
           of: Callable[[int, int], float]) -> list[Measurement]:
    """A rate over runs, in the rule's scope; subjects with fewer than MIN_RUNS runs have none."""
    def measured(tenant_id, completed, failed, contributors=()):
        total = completed + failed
        if total < MIN_RUNS:
            return None
        return Measurement(tenant_id, of(completed, failed), f"{total:,} runs", contributors)

    if rule.scope == "system":
        counted = readings.of_system(runs)
        completed = sum(c for c, _ in counted.values())
        failed = sum(f for _, f in counted.values())
        found = [measured(None, completed, failed,
                          _top({t: f for t, (_, f) in counted.items()}))]
    else:
        found = [measured(t, *runs.get(t, (0, 0))) for t in readings.subjects(rule)]
    return [m for m in found if m is not None]


def _paused_as_zero(readings: Readings, measured: list[Measurement]) -> list[Measurement]:
    """A waiting figure of paused tenants: operators asked them to wait, so a tenant's reads 0
    ("paused") and the system's leaves them out (``Readings.waiting_of``)."""
    paused = readings.paused_tenants
    return [Measurement(m.tenant_id, 0.0, "paused") if m.tenant_id in paused else m
            for m in measured]


def measure_backlog(rule: Rule, readings: Readings) -> list[Measurement]:
    return _paused_as_zero(readings, _counts(
        rule, readings, readings.waiting_of(readings.live_of("queued"))))


def measure_oldest_queued(rule: Rule, readings: Readings) -> list[Measurement]:
    waited = readings.waiting_of({t: max(0.0, (readings.now - due).total_seconds())
                                  for t, due in readings.oldest_queued.items()
                                  if due is not None})
    if rule.scope == "system":
        counted = readings.of_system(waited)
        return [Measurement(None, max(counted.values(), default=0.0),
                            contributors=_top(counted))]
    return _paused_as_zero(readings, [Measurement(t, waited.get(t, 0.0))
                                            for t in readings.subjects(rule)])


def measure_success_rate(rule: Rule, readings: Readings) -> list[Measurement]:
    return _rates(rule, readings, readings.runs(rule.window_hours or 24),
                  lambda completed, failed: 100.0 * completed / (completed + failed))


def measure_handler_failure_rate(rule: Rule, readings: Readings) -> list[Measurement]:
    return _rates(rule, readings, readings.runs(rule.window_hours or 24, rule.handler),
                  lambda completed, failed: 100.0 * failed / (completed + failed))


def measure_health(rule: Rule, readings: Readings) -> list[Measurement]:
    health = readings.health
    return [Measurement(t, float(health[t]["health_score"]), health[t]["health_status"])
            for t in readings.subjects(rule) if t in health]


def measure_stuck(rule: Rule, readings: Readings) -> list[Measurement]:
    return _counts(rule, readings, readings.stuck)


def measure_limit_usage(rule: Rule, readings: Readings) -> list[Measurement]:
    used_by_limit = {
        "max_queued_jobs": lambda t: (readings.live.get((t, "pending"), 0)
                                      + readings.live.get((t, "queued"), 0)),
        "max_concurrent_jobs": lambda t: readings.live.get((t, "processing"), 0),
        "max_daily_jobs": lambda t: readings.daily.get(t, 0),
    }[rule.limit_name]
    found = []
    for tenant_id in readings.subjects(rule):
        config = readings.configs.get(tenant_id)
        limit = getattr(config.job_limit, rule.limit_name) if config else None
        if limit:   # unlimited (None), or 0 (nothing allowed): no share to measure
            used = used_by_limit(tenant_id)
            found.append(Measurement(tenant_id, 100.0 * used / limit,
                                     f"{used:,} of {limit:,}"))
    return found


# -- the kinds -------------------------------------------------------------------------------

def _count(value: float) -> str:
    return f"{round(value):,}"


def _queued(value: float) -> str:
    n = round(value)
    return f"{n:,} queued job{'' if n == 1 else 's'}"


def _percent(value: float) -> str:
    return f"{value:.1f} %".replace(".0 %", " %")


def _points(value: float) -> str:
    return f"{value:g}"


def seconds_text(value: float) -> str:
    """45 s, 12 min 5 s, 3 h 20 min."""
    seconds = round(value)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@dataclass(frozen=True)
class RuleKind:
    """What a kind of rule measures and how its figures read."""

    name: str
    label: str
    figure: str               # the figure, as a message names it
    direction: str            # "above" or "below": which side of the threshold fires
    format: Callable[[float], str]
    measure: Callable[[Rule, Readings], list[Measurement]]
    advice: str               # what to look at first, before the health report's advice
    unit_hint: str            # how to type the threshold
    minimum: float = 0.0
    maximum: float | None = None
    whole_number: bool = False
    tenant_only: bool = False  # no figure for the whole system (health, limits)
    uses_window: bool = False
    uses_handler: bool = False
    uses_limit: bool = False

    def holds(self, value: float, threshold: float) -> bool:
        return value > threshold if self.direction == "above" else value < threshold

    def figure_of(self, rule: Rule) -> str:
        if self.uses_handler:
            return f"failure rate of handler {rule.handler}"
        if self.uses_limit:
            return f"{rule.limit_name} usage"
        return self.figure

    def window_of(self, rule: Rule) -> str:
        return f" over the last {rule.window_hours or 24} h" if self.uses_window else ""


KINDS: dict[str, RuleKind] = {kind.name: kind for kind in (
    RuleKind("queue_backlog", "Queue backlog", "queue backlog", "above", _queued,
             measure_backlog,
             "runners are not keeping up: add runner capacity (more `flask --app console "
             "worker` processes, or JOBS_WORKER_THREADS) and check that runners are alive",
             "jobs queued (due, not started), e.g. 1000", whole_number=True),
    RuleKind("oldest_queued_job", "Oldest queued job", "wait of the oldest queued job",
             "above", seconds_text, measure_oldest_queued,
             "jobs are due but not started: check that runners are alive and whether the "
             "tenant is held at its max_concurrent_jobs", "seconds, e.g. 300"),
    RuleKind("success_rate", "Success rate", "success rate", "below", _percent,
             measure_success_rate,
             "look at the Failures screen for the failing handlers and their errors",
             "percent, e.g. 90", maximum=100.0, uses_window=True),
    RuleKind("health_score", "Health score", "health score", "below", _points, measure_health,
             "the health report says what lowers the score", "points 0–100, e.g. 70",
             maximum=100.0, tenant_only=True),
    RuleKind("stuck_jobs", "Stuck jobs", "number of jobs stuck in processing (past their "
             "lease or max_job_duration)", "above", _count, measure_stuck,
             "a runner died or hangs: jobs past their lease are requeued when any runner runs "
             "(start one); jobs past max_job_duration point at a handler that ignores its "
             "timeout", "jobs, e.g. 0 (any stuck job)", whole_number=True),
    RuleKind("limit_usage", "Limit usage", "limit usage", "above", _percent,
             measure_limit_usage,
             "raise the limit on the tenant's page, move it to a higher tier, or spread its "
             "work", "percent of the limit, e.g. 90", maximum=100.0, tenant_only=True,
             uses_limit=True),
    RuleKind("handler_failure_rate", "Handler failure rate", "handler failure rate", "above",
             _percent, measure_handler_failure_rate,
             "look at the handler's errors on the Handlers screen", "percent, e.g. 20",
             maximum=100.0, uses_window=True, uses_handler=True),
)}
