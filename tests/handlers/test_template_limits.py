"""Hostile email templates against a real runner and SMTP server: each fails fast and for good,
naming the bound it passed, and the same runner sends a normal email right after."""
from __future__ import annotations

import threading

import pytest

from console.jobs import JobStatus
from console.jobs.runner import Runner
from tests.support import wait_until

CPU_SECONDS = 0.5
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}BODY{% endfor %}{% endfor %}"


@pytest.fixture
def cpu_seconds(request):
    return getattr(request, "param", CPU_SECONDS)


@pytest.fixture
def app_config(app_config, smtp_server, cpu_seconds):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "MAIL_DEFAULT_SENDER": "console@example.test", "MAIL_TIMEOUT_SECONDS": 5,
            "TEMPLATE_CPU_SECONDS": cpu_seconds}


@pytest.fixture
def runner(service):
    """One handler thread, running in the background as in a deployment."""
    runner = Runner(service, threads=1, name="mail-limits").start()
    yield runner
    runner.stop(grace=1)


def finished(service, job_id):
    job = service.get_job_by_id(job_id)
    return job if job.status in (JobStatus.COMPLETED, JobStatus.FAILED) else None


# The doubled string copies hundreds of MiB before it reaches the memory bound; on a busy machine
# that copying alone can outlast a short CPU bound, so that case has a CPU bound it cannot reach
# first: the bound it names is then always the memory one.
HOSTILE = {
    "nested ranges, no output": (NESTED.replace("BODY", ""), "TEMPLATE_CPU_SECONDS",
                                 CPU_SECONDS),
    "'x' * 100000 inside loops": (NESTED.replace("BODY", '{{ "x" * 100000 }}'),
                                  "TEMPLATE_MAX_OUTPUT_BYTES", CPU_SECONDS),
    "plain text without end": (NESTED.replace("BODY", "Dear customer {{ i }}-{{ j }}. "),
                               "TEMPLATE_MAX_OUTPUT_BYTES", CPU_SECONDS),
    "one huge string": ('{{ "x" * 100000000 }}', "TEMPLATE_MAX_OUTPUT_BYTES", CPU_SECONDS),
    "a string doubled": ('{% set ns = namespace(s="x") %}{% for i in range(40) %}'
                         '{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}',
                         "TEMPLATE_MEMORY_BYTES", 10),
}


@pytest.mark.parametrize("template,setting,cpu_seconds", HOSTILE.values(), ids=HOSTILE.keys(),
                         indirect=["cpu_seconds"])
def test_a_hostile_template_fails_fast_for_good_and_the_next_email_goes_out_at_once(
        service, make_tenant, smtp_server, runner, template, setting, cpu_seconds):
    make_tenant("acme")
    hostile = service.queue_notification("email", "mallory@example.test", "acme",
                                         subject="hi", body=template, max_retries=3)
    failed = wait_until(lambda: finished(service, hostile.id), 15, "the hostile job to end")
    normal = service.queue_notification("email", "jane@example.test", "acme",
                                        subject="Hello {{ name }}", body="Hi {{ name }}!",
                                        variables={"name": "Jane"})
    sent = wait_until(lambda: finished(service, normal.id), 10, "the normal email to go out")

    assert failed.status is JobStatus.FAILED
    assert failed.last_result.error_type == "TemplateLimitExceeded"
    assert setting in failed.last_result.error_message
    assert failed.last_result.metadata["limit"] == setting
    [attempt] = service.get_job_attempts(hostile.id)          # not retried
    assert attempt["duration_ms"] < (min(cpu_seconds, 2) + 3) * 1000   # stopped at its bound
    assert sent.status is JobStatus.COMPLETED, sent.last_result
    [message] = smtp_server.sink.messages
    assert message["To"] == "jane@example.test" and message["Subject"] == "Hello Jane"
    assert message.get_content().strip() == "Hi Jane!"
    # The render ran elsewhere: no handler thread was retired and left behind to finish it.
    assert len([t for t in threading.enumerate()
                if t.name.startswith("mail-limits-worker-")]) == 1


def test_every_bound_is_named_with_what_to_do(service, make_tenant, smtp_server, runner):
    make_tenant("acme")
    job = service.queue_notification("email", "mallory@example.test", "acme",
                                     body=NESTED.replace("BODY", ""))
    failed = wait_until(lambda: finished(service, job.id), 15, "the job to end")
    assert failed.last_result.error_message == (
        f"the template used more than TEMPLATE_CPU_SECONDS ({CPU_SECONDS:g} s) of CPU time and "
        "was stopped: make its loops shorter (a loop inside a loop over large ranges runs their "
        "product), or ask an operator to raise the limit")
    assert failed.last_result.metadata["retryable"] is False
    assert smtp_server.sink.envelopes == []


def test_a_template_that_raises_fails_for_good(service, make_tenant, smtp_server, runner):
    make_tenant("acme")
    job = service.queue_notification("email", "jane@example.test", "acme", body="{{ 1 / 0 }}")
    failed = wait_until(lambda: finished(service, job.id), 10, "the job to end")
    assert failed.status is JobStatus.FAILED
    assert failed.last_result.error_type == "TemplateError"
    assert "ZeroDivisionError" in failed.last_result.error_message
    assert len(service.get_job_attempts(job.id)) == 1
