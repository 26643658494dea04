"""Evaluation over time: the cool-down that keeps a flapping rule from flooding anyone, mutes,
disabled rules, notices owed until a channel exists, and one alert however many evaluate."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from console.alerts import store
from console.jobs.models import jobs_table
from tests.alerts.conftest import alerts_of, notifications_of

UTC = timezone.utc
OPS = {"ALERTS_EMAIL_TO": "ops@example.com"}   # notices are queued (not run) in these tests


@pytest.fixture
def app_config(app_config):
    return {**app_config, **OPS}


@pytest.fixture
def backlog(service, make_tenant, add_rule):
    """A rule that holds while acme has a queued job; ``backlog.flip(True|False)`` makes it."""
    make_tenant("acme")

    class Backlog:
        rule = add_rule("queue_backlog", 0, cooldown_seconds=2)
        job = None

        def flip(self, holds: bool):
            if holds:
                self.job = service.queue_job("immediate", "sleeps", {}, "acme")
            else:
                service.cancel_job(self.job.id)
    return Backlog()


def sent(service) -> list[tuple[str, str]]:
    """(alert id, transition) of every notice queued, in order."""
    return [(n.alert_id, n.transition) for n in notifications_of(service)]


def test_a_flapping_rule_sends_one_fired_and_resolved_per_cool_down(service, backlog,
                                                                    evaluate):
    backlog.flip(True)
    evaluate()
    [first] = alerts_of(service, backlog.rule)
    assert sent(service) == [(first.id, "fired")]
    backlog.flip(False)
    evaluate()
    assert sent(service) == [(first.id, "fired"), (first.id, "resolved")]

    backlog.flip(True)                       # fires again within the cool-down: shown, quiet
    evaluate()
    second = alerts_of(service, backlog.rule, "firing")[0]
    assert second.id != first.id and second.notice_due == "fired"
    first_notified = alerts_of(service, backlog.rule)[0].notified_at
    assert second.held_until == first_notified + timedelta(seconds=2)
    backlog.flip(False)                      # resolves before it was announced: nothing sent
    evaluate()
    assert len(sent(service)) == 2
    assert alerts_of(service, backlog.rule)[1].notice_due is None

    backlog.flip(True)                       # fires again, and keeps firing
    evaluate()
    third = alerts_of(service, backlog.rule, "firing")[0]
    assert len(sent(service)) == 2 and third.held_until is not None
    time.sleep(max(0.0, (third.held_until - datetime.now(UTC)).total_seconds()) + 0.05)
    evaluate()                               # the cool-down is over: announced now
    assert sent(service)[2:] == [(third.id, "fired")]
    evaluate()
    assert len(sent(service)) == 3
    assert [a.state for a in alerts_of(service, backlog.rule)] == ["resolved", "resolved",
                                                                   "firing"]


def test_a_muted_rule_fires_quietly_and_speaks_when_unmuted(service, backlog, evaluate):
    until = datetime.now(UTC) + timedelta(hours=1)
    store.mute_rule(service.engine, backlog.rule.id, until, by="ada")
    backlog.flip(True)
    evaluate()
    [alert] = alerts_of(service, backlog.rule, "firing")
    assert alert.held_until == until and sent(service) == []
    store.mute_rule(service.engine, backlog.rule.id, None, by="ada")
    evaluate()
    assert sent(service) == [(alert.id, "fired")]


def test_disabling_a_rule_resolves_its_alerts(service, backlog, evaluate):
    backlog.flip(True)
    evaluate()
    store.set_enabled(service.engine, backlog.rule.id, False, by="ada")
    evaluate()
    [alert] = alerts_of(service, backlog.rule)
    assert alert.state == "resolved" and alert.resolution == "the rule was disabled"
    assert sent(service) == [(alert.id, "fired"), (alert.id, "resolved")]
    evaluate()
    assert len(alerts_of(service, backlog.rule)) == 1


def test_a_notice_stays_owed_until_a_channel_is_configured(service, backlog, evaluate):
    backlog.flip(True)
    evaluate(ALERTS_EMAIL_TO=None)
    [alert] = alerts_of(service, backlog.rule)
    assert alert.notice_due == "fired" and sent(service) == []
    evaluate()
    assert sent(service) == [(alert.id, "fired")]
    assert alerts_of(service, backlog.rule)[0].notice_due is None


def test_evaluations_at_once_open_one_alert_and_send_one_notice(service, backlog, evaluate):
    backlog.flip(True)
    barrier = threading.Barrier(6)
    errors = []

    def evaluate_at_once():
        try:
            barrier.wait(timeout=10)
            evaluate()
        except Exception as exc:   # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=evaluate_at_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    [alert] = alerts_of(service, backlog.rule)
    assert sent(service) == [(alert.id, "fired")]
    with service.engine.connect() as conn:
        notices = conn.execute(select(func.count()).select_from(jobs_table).where(
            jobs_table.c.handler == "email_handler")).scalar()
    assert notices == 1
