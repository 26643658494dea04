"""The scale checks catch what they are for: a job run twice, a job never run, a repeat that no
kill explains, a notification sent twice. Fed hand-made evidence, so each failure is certain
(the cluster runs in test_exactly_once.py and test_crash.py should never produce one)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from benchmarks.crash import Kill, verify_crash
from benchmarks.exactly_once import verify_exactly_once
from benchmarks.workload import Evidence

UTC = timezone.utc
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
RUNNER_A, RUNNER_B = "host:101:runner:aaaaaa", "host:202:runner:bbbbbb"


def job(job_id, status="completed", lease_owner=None):
    return SimpleNamespace(id=job_id, status=status, lease_owner=lease_owner, created_at=T0,
                           completed_at=T0 + timedelta(seconds=1))


def attempt(job_id, worker, success=True, error_type=None, n=1):
    return SimpleNamespace(job_id=job_id, attempt=n, started_at=T0, success=success,
                           finished_at=T0 + timedelta(seconds=n), error_type=error_type,
                           worker=worker)


def clean_run() -> Evidence:
    return Evidence(jobs={"j1": job("j1"), "j2": job("j2")},
                    attempts=[attempt("j1", RUNNER_A), attempt("j2", RUNNER_B)],
                    executions=[("j1", 101), ("j2", 202)])


def test_exactly_once_passes_a_clean_run():
    assert verify_exactly_once(clean_run(), ["j1", "j2"]) == []


def test_exactly_once_catches_a_double_execution():
    evidence = clean_run()
    evidence.executions.append(("j1", 202))
    problems = verify_exactly_once(evidence, ["j1", "j2"])
    assert any("executed more than once" in p for p in problems), problems


def test_exactly_once_catches_a_lost_job():
    evidence = clean_run()
    evidence.jobs["j2"] = job("j2", status="queued")
    evidence.attempts.pop()
    evidence.executions.pop()
    problems = verify_exactly_once(evidence, ["j1", "j2"])
    assert any("not every job completed" in p for p in problems), problems
    assert any("never executed" in p for p in problems), problems
    assert any("exactly one successful attempt" in p for p in problems), problems


def crash_run() -> tuple[Evidence, list[Kill]]:
    """j1 ran on A, A was killed, the recovery recorded WorkerLost and B ran it again: an
    explained repeat. m1 is a notification with one outbox message."""
    kill = Kill(T0, "worker", 101, RUNNER_A, 1)
    evidence = Evidence(
        jobs={"j1": job("j1"), "m1": job("m1")},
        attempts=[attempt("j1", RUNNER_A, False, "WorkerLost"), attempt("j1", RUNNER_B, n=2),
                  attempt("m1", RUNNER_B)],
        executions=[("j1", 101), ("j1", 202)],
        outbox_per_job=Counter({"m1": 1}), sent_per_job=Counter({"m1": 1}))
    return evidence, [kill]


def test_crash_accepts_a_repeat_in_flight_at_a_kill():
    evidence, kills = crash_run()
    problems, figures = verify_crash(evidence, ["j1"], ["m1"], kills)
    assert problems == []
    assert figures["repeats"] == figures["repeats_explained_by_kills"] == 1
    assert figures["attempts_lost"] == 1


def test_crash_catches_a_repeat_no_kill_explains():
    evidence, _ = crash_run()
    problems, _ = verify_crash(evidence, ["j1"], ["m1"], kills=[])   # A was never killed
    assert any("never killed" in p for p in problems), problems
    assert any("not explained by a kill" in p for p in problems), problems


def test_crash_catches_a_notification_sent_twice_and_a_job_left_running():
    evidence, kills = crash_run()
    evidence.outbox_per_job["m1"] = 2
    evidence.jobs["j1"] = job("j1", status="processing", lease_owner=RUNNER_B)
    problems, _ = verify_crash(evidence, ["j1"], ["m1"], kills)
    assert any("outbox message" in p for p in problems), problems
    assert any("never ended" in p for p in problems), problems
    assert any("lease owner" in p for p in problems), problems
