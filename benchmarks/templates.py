#!/usr/bin/env python
"""Hostile email templates against a runner process, as a deployment runs one.

    python benchmarks/templates.py [--hostile 20] [--normal 10]

Starts ``flask --app console worker`` on a temp SQLite file with a real SMTP server (aiosmtpd)
on 127.0.0.1, sends normal emails (warm-up), then ``--hostile`` hostile templates (nested
``range(100000)`` loops with no output, ``"x" * 100000`` inside loops, endless text, a string
doubled to exhaustion), then normal emails again. Prints one JSON object: the runner's peak
memory (VmHWM) before and after the hostile ones, how long they took to fail, and how long a
normal email took before and after; also what one render costs through a render process against
rendering in the caller's thread.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console import create_app  # noqa: E402
from console.jobs import JobStatus, TenantConfig  # noqa: E402

NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}BODY{% endfor %}{% endfor %}"
HOSTILE = [NESTED.replace("BODY", ""),
           NESTED.replace("BODY", '{{ "x" * 100000 }}'),
           NESTED.replace("BODY", "Dear customer {{ i }}-{{ j }}. "),
           '{% set ns = namespace(s="x") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}'
           '{% endfor %}{{ ns.s | length }}']
NORMAL = {"subject": "Your invoice {{ number }}",
          "body": "Dear {{ name }},\n\n{% for line in lines %}- {{ line.item }}: {{ line.amount }}"
                  "\n{% endfor %}\nTotal: {{ total }}\n",
          "html": "<p>Dear {{ name }},</p><ul>{% for line in lines %}<li>{{ line.item }}: "
                  "{{ line.amount }}</li>{% endfor %}</ul><p>Total: {{ total }}</p>",
          "variables": {"name": "Jane <Doe>", "number": 17, "total": "99.00",
                        "lines": [{"item": f"item {n}", "amount": "9.90"} for n in range(10)]}}


def start_smtp_server(handler):
    """aiosmtpd on 127.0.0.1 and a port the kernel picks (``.port``), started."""
    from aiosmtpd.controller import Controller

    class OnAnyPort(Controller):
        def _create_server(self):
            async def bound():
                server = await Controller._create_server(self)
                self.port = server.sockets[0].getsockname()[1]
                return server
            return bound()

    controller = OnAnyPort(handler, hostname="127.0.0.1", port=0)
    controller.start()
    return controller


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"still waiting after {timeout:g} s for {what}")
        time.sleep(interval)


class Sink:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def render_cost(samples: int = 500) -> dict[str, float]:
    """Milliseconds per render of NORMAL: through a render process, and in this thread."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    from console.handlers.rendering import TemplateLimits, TemplateRenderer

    renderer = TemplateRenderer(TemplateLimits.from_config({}))
    templates = [(name, NORMAL[name], name == "html") for name in ("subject", "body", "html")]
    started = time.perf_counter()
    renderer.render(templates, NORMAL["variables"])
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(samples):
        renderer.render(templates, NORMAL["variables"])
    through = (time.perf_counter() - started) / samples
    renderer.close()
    envs = {False: SandboxedEnvironment(undefined=StrictUndefined),
            True: SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)}
    started = time.perf_counter()
    for _ in range(samples):
        for _name, source, escape in templates:
            envs[escape].from_string(source).render(NORMAL["variables"])
    inline = (time.perf_counter() - started) / samples
    return {"first_render_ms (starts the process)": round(first * 1000, 1),
            "render_process_ms": round(through * 1000, 3),
            "in_thread_ms (compiled each time, as before)": round(inline * 1000, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile", type=int, default=20)
    parser.add_argument("--normal", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="templates-bench-"))
    url = f"sqlite:///{folder / 'console.sqlite3'}"
    smtp = start_smtp_server(Sink())
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "JOBS_RUN_SCHEDULER": False,
                      "SECRET_KEY": "bench", "ALERTS_ENABLED": False,
                      "JOBS_LOAD_PLUGINS": False})
    service = app.extensions["jobs"]
    service.tenants.set_tenant_config(TenantConfig.for_tier(
        "acme", "Acme", "tier4", {"jobLimits": {"maxQueuedJobs": None, "maxDailyJobs": None}}))
    env = {**os.environ, "DATABASE_URL": url, "CONSOLE_SECRET_KEY": "bench",
           "CONSOLE_ALERTS_ENABLED": "false", "CONSOLE_JOBS_LOAD_PLUGINS": "false",
           "CONSOLE_MAIL_SERVER": "127.0.0.1", "CONSOLE_MAIL_PORT": str(smtp.port),
           "CONSOLE_MAIL_DEFAULT_SENDER": "console@example.test",
           "CONSOLE_JOBS_POLL_INTERVAL": "0.5"}
    worker = subprocess.Popen([str(Path(sys.executable).with_name("flask")), "--app", "console",
                               "worker"], cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL,
                              stderr=open(folder / "worker.log", "w"))
    try:
        def send_normal() -> list[float]:
            jobs = [service.queue_notification("email", f"user{n}@example.test", "acme",
                                               **NORMAL) for n in range(args.normal)]
            return [attempt_ms(service, wait_done(service, j.id, 60)) for j in jobs]

        normal_before = send_normal()
        peak_before = peak_mib(worker.pid)
        started = time.monotonic()
        hostile = [service.queue_notification("email", "mallory@example.test", "acme",
                                              subject="hi", body=HOSTILE[n % len(HOSTILE)])
                   for n in range(args.hostile)]
        ended = [wait_done(service, j.id, 120) for j in hostile]
        all_failed_s = time.monotonic() - started
        peak_after = peak_mib(worker.pid)
        normal_after = send_normal()
        failures = [service.get_job_by_id(j).last_result for j in ended]
        result = {
            "hostile_jobs": args.hostile,
            "hostile_failed_for_good": sum(r.metadata.get("retryable") is False
                                           and r.error_type == "TemplateLimitExceeded"
                                           for r in failures),
            "limits_named": sorted({r.metadata.get("limit") for r in failures}),
            "hostile_all_failed_within_s": round(all_failed_s, 2),
            "hostile_attempt_ms_max": round(max(attempt_ms(service, j) for j in ended), 1),
            "runner_peak_mib_before": round(peak_before, 1),
            "runner_peak_mib_after": round(peak_after, 1),
            "runner_peak_growth_mib": round(peak_after - peak_before, 1),
            "normal_email_attempt_ms_p50_before": round(statistics.median(normal_before), 1),
            "normal_email_attempt_ms_p50_after": round(statistics.median(normal_after), 1),
            "emails_delivered": smtp.handler.count,
            **render_cost(),
        }
    finally:
        worker.terminate()
        worker.wait(30)
        smtp.stop()
    print(json.dumps(result, indent=2))
    return 0 if result["runner_peak_growth_mib"] <= 50 else 1


def wait_done(service, job_id: str, timeout: float) -> str:
    wait_until(lambda: service.get_job_by_id(job_id).status in (JobStatus.COMPLETED,
                                                                JobStatus.FAILED),
               timeout, f"job {job_id} to end", interval=0.02)
    return job_id


def attempt_ms(service, job_id: str) -> float:
    return service.get_job_attempts(job_id)[-1]["duration_ms"]


if __name__ == "__main__":
    sys.exit(main())
