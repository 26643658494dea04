"""Alert rules: the checks every change goes through, and the verbs that store them.

Rules are never deleted: an admin disables one (its open alerts resolve at the next evaluation)
or mutes it until a time (it keeps being evaluated and shown, but sends nothing). So the
three default rules (``DEFAULT_RULES``), seeded once by ``seed_key``, never come back after an
admin turned them off.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select

from ..jobs import db
from ..jobs.audit import Actor, record
from .models import alert_rules_table
from .rules import KINDS, LIMIT_NAMES, SCOPES, Rule
from .sql import insert_unless_present

UTC = timezone.utc
MAX_NAME_LENGTH = 200
MAX_WINDOW_HOURS = 7 * 24
MAX_COOLDOWN_SECONDS = 7 * 24 * 3600
MAX_MUTE = timedelta(days=90)
DEFAULT_COOLDOWN_SECONDS = 3600


class RuleError(ValueError):
    """A rule that cannot be stored: ``field`` names the input at fault, the message the fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RuleValues:
    """What an admin sets on a rule (everything but its id, history and mute)."""

    name: str
    kind: str
    scope: str
    threshold: float
    tenant_id: str | None = None
    window_hours: int | None = None
    handler: str | None = None
    limit_name: str | None = None
    cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS
    notify_operators: bool = True
    notify_tenant: bool = True
    enabled: bool = True


# The default health check, as rules (seeded by ensure_default_rules): a system backlog over
# 1,000 queued jobs, a system success rate under 90 % over 24 h, a tenant's health under 70.
DEFAULT_RULES: dict[str, RuleValues] = {
    "reference:queue_backlog": RuleValues(
        "Queue backlog", "queue_backlog", "system", 1000.0),
    "reference:success_rate": RuleValues(
        "System success rate", "success_rate", "system", 90.0, window_hours=24),
    "reference:health_score": RuleValues(
        "Tenant health", "health_score", "each_tenant", 70.0),
}


def check_rule(values: RuleValues, tenant_ids: Iterable[str], handler_names: Iterable[str]
               ) -> RuleValues:
    """The values made canonical (fields the kind does not use cleared), or ``RuleError``."""
    name = (values.name or "").strip()
    if not name:
        raise RuleError("name", "Name the rule after what it watches, e.g. “Queue backlog”.")
    if len(name) > MAX_NAME_LENGTH:
        raise RuleError("name", f"At most {MAX_NAME_LENGTH} characters.")
    if "\x00" in name:
        raise RuleError("name", "Leave out the NUL character (\\u0000): it cannot be stored.")
    spec = KINDS.get(values.kind)
    if spec is None:
        raise RuleError("kind", f"Choose one of: {', '.join(KINDS)}.")
    tenant_id = _check_scope(values, spec, set(tenant_ids))
    threshold = _check_threshold(values.threshold, spec)
    window = handler = limit_name = None
    if spec.uses_window:
        window = values.window_hours
        if isinstance(window, bool) or not isinstance(window, int) or not (
                1 <= window <= MAX_WINDOW_HOURS):
            raise RuleError("window_hours", f"Give the window in whole hours, 1 to "
                                            f"{MAX_WINDOW_HOURS} (a week).")
    if spec.uses_handler:
        handler = (values.handler or "").strip()
        if handler not in set(handler_names):
            raise RuleError("handler", "Choose a registered handler from the list.")
    if spec.uses_limit:
        limit_name = values.limit_name
        if limit_name not in LIMIT_NAMES:
            raise RuleError("limit_name", f"Choose one of: {', '.join(LIMIT_NAMES)}.")
    cooldown = values.cooldown_seconds
    if isinstance(cooldown, bool) or not isinstance(cooldown, int) or not (
            0 <= cooldown <= MAX_COOLDOWN_SECONDS):
        raise RuleError("cooldown_seconds", "Give the cool-down as 0 to 7 days.")
    return RuleValues(name=name, kind=spec.name, scope=values.scope, threshold=threshold,
                      tenant_id=tenant_id, window_hours=window, handler=handler,
                      limit_name=limit_name, cooldown_seconds=cooldown,
                      notify_operators=bool(values.notify_operators),
                      notify_tenant=bool(values.notify_tenant), enabled=bool(values.enabled))


def _check_scope(values: RuleValues, spec, tenant_ids: set[str]) -> str | None:
    if values.scope not in SCOPES:
        raise RuleError("scope", "Choose the whole system, each tenant, or one tenant.")
    if values.scope == "system" and spec.tenant_only:
        raise RuleError("scope", f"{spec.label} belongs to a tenant: choose “each tenant” or "
                                 "one tenant.")
    if values.scope != "tenant":
        return None
    if values.tenant_id not in tenant_ids:
        raise RuleError("scope", "There is no such tenant; choose one from the list.")
    return values.tenant_id


def _check_threshold(value, spec) -> float:
    """A number in the kind's range, and one the figure can actually pass."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RuleError("threshold", f"Give a number: {spec.unit_hint}.")
    value = float(value)
    if spec.whole_number and not value.is_integer():
        raise RuleError("threshold", f"Give a whole number: {spec.unit_hint}.")
    low, high = spec.minimum, spec.maximum
    if value < low or (high is not None and value > high):
        bound = f"from {low:g} to {high:g}" if high is not None else f"of {low:g} or more"
        raise RuleError("threshold", f"Give a number {bound}: {spec.unit_hint}.")
    if spec.direction == "below" and value <= low:
        raise RuleError("threshold", f"Nothing is below {low:g}: the rule would never fire.")
    if spec.direction == "above" and high is not None and value >= high:
        raise RuleError("threshold", f"Nothing is above {high:g}: the rule would never fire.")
    return value


# -- reading ---------------------------------------------------------------------------------

def list_rules(engine: Engine) -> list[Rule]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert_rules_table).order_by(alert_rules_table.c.id)).all()
    return [Rule.from_row(row) for row in rows]


def get_rule(engine: Engine, rule_id: int) -> Rule | None:
    with engine.connect() as conn:
        row = conn.execute(select(alert_rules_table)
                           .where(alert_rules_table.c.id == rule_id)).first()
    return Rule.from_row(row) if row else None


# -- changing --------------------------------------------------------------------------------

def create_rule(engine: Engine, values: RuleValues, by: str | None = None,
                seed_key: str | None = None, actor: Actor | None = None) -> Rule:
    """Store a rule checked by ``check_rule`` (with ``actor``: and its audit entry)."""
    now = datetime.now(UTC)
    with db.write_transaction(engine) as conn:
        rule_id = conn.execute(alert_rules_table.insert().values(
            **asdict(values), muted_until=None, seed_key=seed_key, created_at=now,
            updated_at=now, updated_by=by).returning(alert_rules_table.c.id)).scalar_one()
        record(conn, actor, "alert_rule_created", tenant_id=values.tenant_id,
               target_type="alert_rule", target_id=rule_id, after=asdict(values), now=now)
    return get_rule(engine, rule_id)


def update_rule(engine: Engine, rule_id: int, values: RuleValues,
                by: str | None = None, actor: Actor | None = None) -> Rule | None:
    """Replace a rule's settings (checked by ``check_rule``); None when there is no such rule.
    Open alerts the new settings no longer hold for resolve at the next evaluation."""
    return _update(engine, rule_id, by, (actor, "alert_rule_changed"), **asdict(values))


def set_enabled(engine: Engine, rule_id: int, enabled: bool, by: str | None = None,
                actor: Actor | None = None) -> Rule | None:
    action = "alert_rule_enabled" if enabled else "alert_rule_disabled"
    return _update(engine, rule_id, by, (actor, action), enabled=bool(enabled))


def mute_rule(engine: Engine, rule_id: int, until: datetime | None,
              by: str | None = None, actor: Actor | None = None) -> Rule | None:
    """Send nothing for this rule until ``until`` (None: unmute). It is still evaluated: its
    alerts show on the console, and one still firing when the mute ends is sent then.

    :raise RuleError: (``until``) not in the future, or more than 90 days away.
    """
    if until is not None:
        now = datetime.now(UTC)
        if until.tzinfo is None:
            raise RuleError("until", "Give a time with its time zone (UTC).")
        if until <= now:
            raise RuleError("until", "Choose a time in the future.")
        if until - now > MAX_MUTE:
            raise RuleError("until", "Mute for at most 90 days; to stop a rule for good, "
                                     "disable it.")
    action = "alert_rule_muted" if until is not None else "alert_rule_unmuted"
    return _update(engine, rule_id, by, (actor, action), muted_until=until)


def _update(engine: Engine, rule_id: int, by: str | None,
            audited: tuple[Actor | None, str], **changes) -> Rule | None:
    """Change a rule; ``audited`` is (who, which action) for its audit entry, written with the
    settings that changed, before and after."""
    actor, action = audited
    now = datetime.now(UTC)
    with db.write_transaction(engine) as conn:
        old = conn.execute(select(alert_rules_table)
                           .where(alert_rules_table.c.id == rule_id)).first()
        updated = conn.execute(alert_rules_table.update()
                               .where(alert_rules_table.c.id == rule_id)
                               .values(**changes, updated_at=now, updated_by=by)).rowcount
        if updated:
            changed = [k for k, v in changes.items() if getattr(old, k) != v]
            record(conn, actor, action, tenant_id=changes.get("tenant_id", old.tenant_id),
                   target_type="alert_rule", target_id=rule_id,
                   before={k: getattr(old, k) for k in changed},
                   after={k: changes[k] for k in changed}, details={"name": old.name}, now=now)
    return get_rule(engine, rule_id) if updated else None


def ensure_default_rules(engine: Engine) -> list[Rule]:
    """Seed the default rules that were never seeded (see the module docstring). Returns
    the rules it created: none once seeded, however many processes call it at once."""
    keys = list(DEFAULT_RULES)
    with engine.connect() as conn:
        seeded = set(conn.execute(select(alert_rules_table.c.seed_key)
                                  .where(alert_rules_table.c.seed_key.in_(keys))).scalars())
    missing = [key for key in keys if key not in seeded]
    if not missing:
        return []
    now = datetime.now(UTC)
    created = []
    with db.write_transaction(engine) as conn:
        insert = insert_unless_present(conn, alert_rules_table, ["seed_key"]).returning(
            alert_rules_table.c.id)
        for key in missing:
            rule_id = conn.execute(insert.values(
                **asdict(DEFAULT_RULES[key]), muted_until=None, seed_key=key, created_at=now,
                updated_at=now, updated_by=None)).scalar()
            if rule_id is not None:
                created.append(rule_id)
    return [get_rule(engine, rule_id) for rule_id in created]
