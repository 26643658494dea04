"""Attempt logs: what a handler logs while its attempt runs is kept with that attempt (the job's
page and the API read it), live while it runs, capped per attempt, and pruned with it."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, select

from console.handlers.maintenance import prune_finished_jobs
from console.jobs import JobStatus
from console.jobs.attempt_logs import LogLimits
from console.jobs.models import attempt_lines_table, attempts_table, jobs_table
from console.jobs.runner import Runner
from tests.support import wait_until

UTC = timezone.utc


def lines_of(service, job_id):
    """Every attempt's (level, message) lines, by attempt number."""
    return {a["attempt"]: [(line["level"], line["message"]) for line in a["lines"]]
            for a in service.get_job_attempts(job_id, with_lines=True)}


def test_a_handlers_lines_and_its_failure_are_kept_with_each_attempt(service, make_tenant):
    make_tenant("acme")
    job = service.queue_job("immediate", "logs_lines",
                            {"lines": 2, "plain": True, "fail": True}, "acme", max_retries=1)
    service.run_until_idle(timeout=20)

    attempts = service.get_job_attempts(job.id, with_lines=True)
    assert [a["attempt"] for a in attempts] == [1, 2]
    for attempt in attempts:
        lines = attempt["lines"]
        # context.logger's lines, a library's warning logged on the attempt's thread, then the
        # exception with its traceback: each attempt has its own, not the other's.
        assert [(line["level"], line["message"]) for line in lines] == [
            ("INFO", "line 1 of 2"), ("INFO", "line 2 of 2"),
            ("WARNING", "a library's warning"), ("ERROR", "ValueError: gave up after logging")]
        assert [line["logger"] for line in lines[:3]] == [
            "jobs.handler.logs_lines", "jobs.handler.logs_lines", "some.library"]
        assert 'raise ValueError("gave up after logging")' in lines[-1]["traceback"]
        assert lines[0]["traceback"] is None
        times = [line["logged_at"] for line in lines]
        assert times == sorted(times)
        assert attempt["started_at"] - timedelta(seconds=1) <= times[0] <= \
            attempt["finished_at"] + timedelta(seconds=1)


def test_concurrent_attempts_keep_only_their_own_lines(service, make_tenant):
    """Attempts of two tenants logging at once on neighbouring threads: no line crosses over."""
    make_tenant("acme")
    make_tenant("globex")
    jobs = {tenant: [service.queue_job("immediate", "logs_lines",
                                       {"lines": 20, "interval_ms": 2}, tenant)
                     for _ in range(4)] for tenant in ("acme", "globex")}
    service.run_until_idle(timeout=30)
    for tenant_jobs in jobs.values():
        for job in tenant_jobs:
            assert lines_of(service, job.id) == {
                1: [("INFO", f"line {n} of 20") for n in range(1, 21)]}


@pytest.fixture
def small_cap(app_config):
    app_config.update(JOBS_ATTEMPT_LOG_LINES=5, JOBS_ATTEMPT_LOG_LINE_CHARS=100)
    return app_config


def test_the_cap_keeps_the_first_lines_and_says_how_many_were_not_kept(small_cap, service,
                                                                         make_tenant):
    make_tenant("acme")
    chatty = service.queue_job("immediate", "logs_lines", {"lines": 12, "fail": True}, "acme",
                               max_retries=0)
    quiet = service.queue_job("immediate", "logs_lines", {"lines": 5}, "acme")
    service.run_until_idle(timeout=20)

    [lines] = lines_of(service, chatty.id).values()
    assert lines[:5] == [("INFO", f"line {n} of 12") for n in range(1, 6)]
    # The failure is kept whatever the cap; the last line tells what was left out and why.
    assert lines[5] == ("ERROR", "ValueError: gave up after logging")
    assert lines[6] == ("WARNING", "7 more lines were not kept: an attempt keeps its first 5 "
                                   "lines (the JOBS_ATTEMPT_LOG_LINES setting raises this cap)")
    assert len(lines) == 7
    # Exactly at the cap: nothing was left out, so nothing says so.
    assert lines_of(service, quiet.id) == {1: [("INFO", f"line {n} of 5") for n in range(1, 6)]}


def test_a_long_line_is_cut_at_the_line_length_setting(small_cap, service, make_tenant):
    from console.jobs import JobExecutionResult, JobHandler

    class LongLine(JobHandler):
        handler_name = "long_line"
        supported_job_types = {"immediate"}

        def execute(self, context):
            context.logger.warning("x" * 250)
            return JobExecutionResult(success=True, executed_at=context.actual_start_time,
                                      execution_time=timedelta(0))

    service.register_handler(LongLine())
    make_tenant("acme")
    job = service.queue_job("immediate", "long_line", {}, "acme")
    service.run_until_idle(timeout=20)
    [[(level, message)]] = lines_of(service, job.id).values()
    assert message == "x" * 100 + " … (150 more characters not kept)"


@pytest.mark.parametrize("lines, chars", [(-1, 2000), (200, 10), ("200", 2000)])
def test_a_cap_setting_that_makes_no_sense_is_refused_naming_it(lines, chars):
    with pytest.raises(ValueError, match="JOBS_ATTEMPT_LOG_LINE"):
        LogLimits(lines=lines, line_chars=chars)


def test_a_running_attempts_lines_reach_the_database_and_watchers_before_it_ends(
        service, make_tenant):
    make_tenant("acme")
    published = []
    unsubscribe = service.job_updates.subscribe(published.append)
    runner = Runner(service, threads=2, poll_interval=30).start()
    try:
        job = service.queue_job("immediate", "logs_lines", {"lines": 2, "interval_ms": 3000},
                                "acme")
        wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.PROCESSING, 5,
                   "the job to start", interval=0.01)
        # Line 1 is in while the attempt still waits 3 s before line 2.
        [running] = wait_until(lambda: [a for a in service.attempt_history(
            service.get_job_by_id(job.id)) if a["lines"]], 2, "line 1 to be written",
            interval=0.02)
        assert running["running"] is True and running["attempt"] == 1
        assert [line["message"] for line in running["lines"]] == ["line 1 of 2"]
        assert service.get_job_by_id(job.id).status is JobStatus.PROCESSING
        assert service.get_job_attempts(job.id) == []   # its row comes when it ends
        # The job's change feed carried it: a page listening for this job refreshes.
        assert any(j.id == job.id and j.status is JobStatus.PROCESSING for j in published)
        wait_until(lambda: service.get_job_by_id(job.id).status is JobStatus.COMPLETED, 10,
                   "the job to end", interval=0.05)
    finally:
        runner.stop(grace=1)
        unsubscribe()
    [finished] = service.attempt_history(service.get_job_by_id(job.id))
    assert finished["running"] is False and finished["success"] is True
    assert [line["message"] for line in finished["lines"]] == ["line 1 of 2", "line 2 of 2"]


def test_attempts_that_log_nothing_cost_no_statement_about_lines(service, make_tenant):
    """The hot path: no insert, no touch of running jobs, for attempts that log nothing."""
    make_tenant("acme", maxConcurrentJobs=None)
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(service.engine, "before_cursor_execute", seen)
    try:
        for _ in range(30):
            service.queue_job("immediate", "sleeps", {"ms": 1}, "acme")
        assert service.run_until_idle(timeout=20) == 30
    finally:
        event.remove(service.engine, "before_cursor_execute", seen)
    assert statements
    assert not [s for s in statements if "job_attempt_lines" in s]
    # write_results' raw SQL and the claim touch jobs; no other UPDATE of them stamps updated_at
    # alone (what a line's touch of its running job looks like).
    assert not [s for s in statements if s.startswith("UPDATE jobs SET updated_at=")]


def test_lines_go_when_their_attempts_are_pruned(service, make_tenant):
    make_tenant("acme")
    old = service.queue_job("immediate", "logs_lines", {"lines": 3}, "acme")
    service.run_until_idle(timeout=20)
    cutoff = datetime.now(UTC)   # a retention that ends between the two jobs
    time.sleep(0.01)
    kept = service.queue_job("immediate", "logs_lines", {"lines": 3}, "acme")
    service.run_until_idle(timeout=20)
    assert lines_of(service, old.id)[1] and lines_of(service, kept.id)[1]

    assert prune_finished_jobs(service.engine, "acme", cutoff) == (1, 1)
    assert lines_of(service, kept.id) == {1: [("INFO", f"line {n} of 3") for n in (1, 2, 3)]}
    with service.engine.connect() as conn:
        left = conn.execute(select(attempt_lines_table.c.job_id).distinct()).scalars().all()
    assert left == [kept.id]


def test_old_attempts_of_a_recurring_job_are_pruned_with_their_lines(service, make_tenant):
    make_tenant("acme")
    job = service.queue_job("recurring", "logs_lines", {"lines": 2}, "acme",
                            cron_schedule="0 0 1 1 *")
    for _ in range(2):   # two runs, made due by hand
        with service.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == job.id).values(
                scheduled_for=datetime.now(UTC) - timedelta(seconds=1)))
        service.run_until_idle(timeout=20)
    assert set(lines_of(service, job.id)) == {1, 2}
    with service.engine.begin() as conn:
        conn.execute(attempts_table.update().where(attempts_table.c.job_id == job.id,
                                                   attempts_table.c.attempt == 1)
                     .values(started_at=datetime.now(UTC) - timedelta(days=60)))

    assert prune_finished_jobs(service.engine, "acme",
                               datetime.now(UTC) - timedelta(days=30)) == (0, 1)
    assert set(lines_of(service, job.id)) == {2}
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(attempt_lines_table)
                            ).scalar_one() == 2


def test_capturing_lines_does_not_silence_a_process_whose_logging_nobody_configured():
    """The capture is a handler on the root logger; Python prints warnings only when there is
    none. With the capture installed, an unconfigured process still prints them."""
    code = ("import logging\n"
            "from console.jobs import attempt_logs\n"
            "attempt_logs.install()\n"
            "logging.getLogger('some.library').warning('still printed')\n"
            "logging.getLogger('some.library').info('not printed')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "still printed" in done.stderr and "not printed" not in done.stderr
