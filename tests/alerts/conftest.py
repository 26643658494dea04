"""Alert tests: rules made through the store's own checks, evaluations run in this process (or
by real worker processes), and the console's signed-in clients."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from console.alerts import evaluate_alert_rules
from console.alerts.models import alert_notifications_table, alerts_table
from console.alerts.store import RuleValues, check_rule, create_rule
from console.web.auth.views import set_user
from tests.handlers.conftest import http_receiver, smtp_server  # noqa: F401  (real servers)
from tests.web.conftest import PASSWORDS, ROLE_USERS, csrf_token, sign_in


@pytest.fixture
def evaluate(app, service):
    """``evaluate(**settings)``: one evaluation, now, with the app's config plus ``settings``."""
    def run(**settings):
        return evaluate_alert_rules(service, {**app.config, **settings})
    return run


@pytest.fixture
def add_rule(service):
    """``add_rule("queue_backlog", 2)``: a rule about tenant acme (``scope="system"`` or
    ``"each_tenant"`` otherwise), through the same checks as the console's form."""
    def add(kind: str, threshold: float, scope: str = "tenant", tenant_id: str = "acme",
            **fields):
        values = RuleValues(name=fields.pop("name", kind), kind=kind, scope=scope,
                            threshold=threshold,
                            tenant_id=tenant_id if scope == "tenant" else None, **fields)
        tenants = [t.tenant_id for t in service.tenants.list_tenant_configs()]
        return create_rule(service.engine, check_rule(values, tenants, service.handlers.names()))
    return add


def alerts_of(service, rule=None, state: str | None = None) -> list:
    """Alert rows, oldest first: of one rule, in one state."""
    a = alerts_table.c
    query = select(alerts_table).order_by(a.fired_at, a.id)
    if rule is not None:
        query = query.where(a.rule_id == rule.id)
    if state is not None:
        query = query.where(a.state == state)
    with service.engine.connect() as conn:
        return conn.execute(query).all()


def firing_subjects(service, rule) -> dict[str, float]:
    """What the rule fires for now: subject → its latest figure."""
    return {alert.subject_key: alert.last_value
            for alert in alerts_of(service, rule, "firing")}


def notifications_of(service, alert_id: str | None = None) -> list:
    n = alert_notifications_table.c
    query = select(alert_notifications_table).order_by(n.queued_at, n.job_id)
    if alert_id is not None:
        query = query.where(n.alert_id == alert_id)
    with service.engine.connect() as conn:
        return conn.execute(query).all()


def run_jobs(service, timeout: float = 20.0) -> int:
    """Run what is due in this process until idle."""
    return service.run_until_idle(timeout=timeout, settle=0.2)


@pytest.fixture
def client_as(app):
    """``client_as("viewer")``: a test client signed in with that role (with ``.csrf``), as in
    tests/web/conftest.py — but each user is created only when asked for: a password hash is
    slow on purpose (scrypt), and most of these tests need one role."""
    def make(role: str):
        username = ROLE_USERS[role]
        with app.app_context():
            set_user(username, role, PASSWORDS[username])
        client = app.test_client()
        assert sign_in(client, username, PASSWORDS[username]).status_code == 302
        client.csrf = csrf_token(client, "/")
        return client
    return make
