#!/usr/bin/env python
"""Crashes: runner processes are SIGKILLed every few seconds while jobs run; nothing is lost, the
only repeats are attempts that were in flight at a kill, and idempotent sends happen once.

    # SQLite: gunicorn 2 + 1 worker
    python benchmarks/crash.py
    # PostgreSQL: gunicorn 4 + 2 workers
    python benchmarks/crash.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/scale
    python benchmarks/crash.py --jobs 2000 --kill-every 2 --lease-seconds 3 --json out.json

The product runs as users run it (``benchmarks/cluster.py``). ``--jobs`` jobs (20,000) are
queued across ``--tenants`` tenants: RecordingHandler jobs (``--sleep-ms`` each, so that attempts
are in flight when the kills come) and, for ``--message-share`` of them, SMS and push
notifications to the outbox — an idempotent handler that writes the message and its sent-record
in one transaction. Every ``--kill-every`` seconds (2) a random live runner process — a gunicorn
worker or a ``flask worker`` — gets SIGKILL and is restarted (gunicorn's master respawns its
worker; the worker process is started again), until every job has ended. ``JOBS_LEASE_SECONDS``
is ``--lease-seconds`` (3) so lost attempts are recovered quickly.

Checks afterwards (``verify_crash``): every job ended (completed or failed — a job whose every
attempt was lost fails after its retries, and is counted); no job holds a lease; each repeat (a
RecordingHandler job that ran more than once, by its O_APPEND log) is accounted for by attempts
recorded ``WorkerLost`` for a runner that was killed — any other repeat is a failure; no job has
two successful attempts; each completed notification job has exactly one outbox message and one
sent-record. Figures: kills (by kind), attempts lost, repeats, recovery time per kill (kill →
its lost attempts recorded), wall time and jobs per second. ``--json PATH`` writes them; exit
status 1 when a check fails.

A PostgreSQL database given with ``--database-url`` is emptied first: give it one of its own.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``console`` and ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import workload  # noqa: E402
from benchmarks.cluster import Cluster, RunnerProcess  # noqa: E402
from benchmarks.report import latency_summary, load_average, log, run_info  # noqa: E402

UTC = timezone.utc
DEFAULTS = {"postgresql": {"web_workers": 4, "workers": 2},
            "sqlite": {"web_workers": 2, "workers": 1}}
MESSAGE_HANDLERS = ("sms_handler", "push_handler")


@dataclass
class Kill:
    """One SIGKILL: when (database-comparable UTC time), whom, and what it held just before."""

    at: datetime
    kind: str
    pid: int
    runner_id: str
    leased_before: int      # jobs leased to it a moment before the kill


def leased_to(engine, runner_id: str) -> int:
    from sqlalchemy import func, select

    from console.jobs.models import jobs_table

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs_table)
                            .where(jobs_table.c.lease_owner == runner_id)).scalar_one()


def registered_runners(engine) -> list[str]:
    """Runner ids in the ``runners`` table (a killed runner's row stays until it is stale:
    ``Cluster.runners`` keeps only those whose process is alive)."""
    from sqlalchemy import select

    from console.jobs.models import runners_table

    with engine.connect() as conn:
        return list(conn.execute(select(runners_table.c.id)).scalars())


class Killer:
    """Kills a random live runner process every ``every`` seconds and restarts it."""

    def __init__(self, cluster: Cluster, engine, every: float, rng: random.Random,
                 max_kills: int | None = None):
        self.cluster = cluster
        self.engine = engine
        self.every = every
        self.rng = rng
        self.max_kills = max_kills
        self.kills: list[Kill] = []
        self.kinds: dict[int, str] = {}          # every runner pid seen → "web"/"worker"
        self._next = time.monotonic() + every

    def remember(self, processes: list[RunnerProcess]) -> None:
        for proc in processes:
            self.kinds[proc.pid] = proc.kind

    def tick(self, _counts: Counter | None = None) -> None:
        """Called while waiting for the jobs: kill when the next kill is due."""
        if time.monotonic() < self._next:
            return
        if self.max_kills is not None and len(self.kills) >= self.max_kills:
            return
        # The next kill one period on; after a late tick (a slow /healthz), not a burst.
        self._next = max(self._next + self.every, time.monotonic() + self.every / 2)
        # Runner ids from the database, not /healthz: it cannot answer while every gunicorn
        # worker is down, and the worker processes are fair game then too.
        candidates = self.cluster.runners(registered_runners(self.engine))
        self.remember(candidates)
        if not candidates:
            log("no kill this time: no runner is up")
            return
        victim = self.rng.choice(candidates)
        held = leased_to(self.engine, victim.runner_id)
        at = datetime.now(UTC)
        self.cluster.kill(victim)
        self.kills.append(Kill(at, victim.kind, victim.pid, victim.runner_id, held))
        self.cluster.restart(victim, wait=False)
        log(f"kill {len(self.kills)}: {victim.kind} pid {victim.pid} (held {held} jobs)")


def verify_crash(evidence: workload.Evidence, record_ids: list[str], message_ids: list[str],
                 kills: list[Kill]) -> tuple[list[str], dict[str, Any]]:
    """(problems in words, figures). See the module docstring for what is checked."""
    from benchmarks.cluster import runner_pid

    problems: list[str] = []
    wanted = set(record_ids) | set(message_ids)
    killed = {k.runner_id for k in kills}
    statuses = Counter(evidence.jobs[i].status for i in wanted if i in evidence.jobs)
    missing = wanted - set(evidence.jobs)
    if missing:
        problems.append(f"{len(missing)} queued jobs are gone from the jobs table")
    unfinished = {s: n for s, n in statuses.items() if s not in ("completed", "failed")}
    if unfinished:
        problems.append(f"jobs that never ended: {unfinished}")
    held = [i for i in wanted if i in evidence.jobs and evidence.jobs[i].lease_owner]
    if held:
        problems.append(f"{len(held)} jobs still carry a lease owner, e.g. {held[:3]}")

    attempts = evidence.attempts_by_job()
    lost = [a for i in wanted for a in attempts.get(i, []) if a.error_type == "WorkerLost"]
    lost_elsewhere = [a for a in lost if a.worker not in killed]
    if lost_elsewhere:
        problems.append(f"{len(lost_elsewhere)} attempts recorded lost for runners that were "
                        f"never killed (a live runner's lease lapsed), e.g. "
                        f"{sorted({a.worker for a in lost_elsewhere})[:3]}")
    other_failures = Counter(a.error_type for i in wanted for a in attempts.get(i, [])
                             if not a.success and a.error_type != "WorkerLost")
    if other_failures:
        problems.append(f"attempts failed for other reasons than a kill: {dict(other_failures)}")
    twice_successful = [i for i in wanted
                        if sum(1 for a in attempts.get(i, []) if a.success) > 1]
    if twice_successful:
        problems.append(f"{len(twice_successful)} jobs have two successful attempts, e.g. "
                        f"{twice_successful[:3]}")

    # Repeats of the RecordingHandler's jobs: each execution beyond the successful attempt's
    # must be an attempt in flight at a kill, recorded WorkerLost for the killed runner's pid.
    executions: dict[str, Counter] = {}
    for job_id, pid in evidence.executions:
        executions.setdefault(job_id, Counter())[pid] += 1
    repeats, unexplained, not_run = 0, [], []
    for job_id in record_ids:
        ran = executions.get(job_id, Counter())
        if sum(ran.values()) > 1:
            repeats += 1
        allowed = Counter(runner_pid(a.worker) for a in attempts.get(job_id, [])
                          if a.success or (a.error_type == "WorkerLost" and a.worker in killed))
        if ran - allowed:
            unexplained.append((job_id, dict(ran), [(a.success, a.error_type, a.worker)
                                                    for a in attempts.get(job_id, [])]))
        succeeded = [runner_pid(a.worker) for a in attempts.get(job_id, []) if a.success]
        if succeeded and ran[succeeded[0]] < 1:
            not_run.append(job_id)
    if unexplained:
        problems.append(f"{len(unexplained)} executions not explained by a kill, e.g. "
                        f"{unexplained[:2]}")
    if not_run:
        problems.append(f"{len(not_run)} jobs completed without their handler running, e.g. "
                        f"{not_run[:3]}")

    # The idempotent handler: one outbox message and one sent-record per completed job.
    completed_messages = [i for i in message_ids if evidence.jobs.get(i) is not None
                          and evidence.jobs[i].status == "completed"]
    wrong_outbox = {i: evidence.outbox_per_job[i] for i in completed_messages
                    if evidence.outbox_per_job[i] != 1 or evidence.sent_per_job[i] != 1}
    extra = {i: n for i, n in evidence.outbox_per_job.items() if n > 1}
    if wrong_outbox or extra:
        problems.append(f"{len(wrong_outbox) + len(extra)} notification jobs without exactly one "
                        f"outbox message, e.g. {dict(list({**wrong_outbox, **extra}.items())[:3])}")
    messages_retried = sum(1 for i in message_ids
                           if any(a.error_type == "WorkerLost" for a in attempts.get(i, [])))

    recovery = []
    lost_by_runner: dict[str, list[Any]] = {}
    for attempt in lost:
        lost_by_runner.setdefault(attempt.worker, []).append(attempt)
    for kill in kills:
        mine = lost_by_runner.get(kill.runner_id, [])
        if mine:
            recovery.append((max(a.finished_at for a in mine) - kill.at).total_seconds())
    figures = {
        "kills": len(kills), "kills_by_kind": dict(Counter(k.kind for k in kills)),
        "statuses": dict(statuses), "attempts_lost": len(lost),
        "jobs_with_lost_attempts": len({a.job_id for a in lost}),
        "repeats": repeats, "repeats_explained_by_kills": repeats - len(
            {job_id for job_id, _, _ in unexplained}),
        "failed_after_repeated_losses": statuses.get("failed", 0),
        "notification_jobs": len(message_ids),
        "notification_jobs_completed": len(completed_messages),
        "notification_jobs_with_lost_attempts": messages_retried,
        "outbox_messages": sum(evidence.outbox_per_job[i] for i in message_ids),
        "recovery_s": latency_summary(recovery),
    }
    return problems, figures


def run(database_url: str | None, *, jobs: int, web_workers: int, workers: int,
        kill_every: float = 2.0, lease_seconds: float = 3.0, sleep_ms: int = 20,
        message_share: float = 0.5, tenants: int = 4, threads: int | None = None,
        batch: int = 1000, max_kills: int | None = None, seed: int | None = None,
        workdir: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run ``jobs`` jobs while killing runners; returns figures and checks."""
    url = workload.empty_database(database_url, workdir)
    app = workload.build_app(url)
    service = app.extensions["jobs"]
    tenant_ids = workload.make_tenants(service, tenants)
    executions_log = workdir / "executions.log"
    executions_log.unlink(missing_ok=True)
    messages = int(round(jobs * message_share))
    timeout = timeout or max(300.0, jobs / 10.0)
    seed = seed if seed is not None else random.randrange(1 << 30)
    settings = {"JOBS_LEASE_SECONDS": lease_seconds}
    if threads:
        settings["JOBS_WORKER_THREADS"] = threads
    log(f"{jobs} jobs ({messages} notifications) on "
        f"{'PostgreSQL' if workload.is_postgres(url) else 'SQLite'}: gunicorn {web_workers} "
        f"workers + {workers} worker processes, a kill every {kill_every:g} s (seed {seed})")
    try:
        with Cluster(url, web_workers=web_workers, workers=workers, settings=settings,
                     log_dir=workdir / "logs") as cluster:
            killer = Killer(cluster, service.engine, kill_every, random.Random(seed), max_kills)
            killer.remember(cluster.runners(registered_runners(service.engine)))
            began = time.monotonic()
            record_ids = workload.queue_in_batches(
                service, tenant_ids, jobs - messages,
                workload.recording_spec(executions_log, sleep_ms), batch=batch)
            message_ids = workload.queue_in_batches(service, tenant_ids, messages,
                                                    workload.message_spec, batch=batch)
            log(f"queued {jobs} jobs in {time.monotonic() - began:.1f} s")
            counts = workload.wait_until_terminal(service.engine, jobs, timeout, tenant_ids,
                                                  on_tick=killer.tick)
            observed_s = time.monotonic() - began
            killer.remember(cluster.runners(registered_runners(service.engine)))
            time.sleep(1.0)   # a late duplicate would show itself now
        evidence = workload.read_evidence(service.engine, executions_log)
    finally:
        service.engine.dispose()
    job_ids = record_ids + message_ids
    problems, figures = verify_crash(evidence, record_ids, message_ids, killer.kills)
    speed = workload.throughput(evidence, job_ids)
    finished = max((evidence.jobs[i].completed_at for i in job_ids
                    if evidence.jobs[i].completed_at), default=None)
    # The last kill while jobs were still running (one after the end caught nothing).
    last_kill = max((k.at for k in killer.kills if finished and k.at < finished), default=None)
    return {
        "database": "postgresql" if workload.is_postgres(url) else "sqlite",
        "jobs": jobs, "web_workers": web_workers, "workers": workers, "tenants": tenants,
        "kill_every_s": kill_every, "lease_seconds": lease_seconds, "sleep_ms": sleep_ms,
        "seed": seed, "observed_wall_s": round(observed_s, 2), **speed, **figures,
        "last_kill_to_all_ended_s": round((finished - last_kill).total_seconds(), 2)
        if finished and last_kill else None,
        "final_statuses": dict(counts),
        "executions_per_process": workload.executions_per_process(evidence, killer.kinds,
                                                                  job_ids),
        "kill_log": [{**asdict(k), "at": k.at.isoformat()} for k in killer.kills],
        "ok": not problems, "problems": problems,
    }


def print_figures(result: dict[str, Any]) -> None:
    rec = result["recovery_s"]
    print(f"crashes on {result['database']}: {result['jobs']} jobs, gunicorn "
          f"{result['web_workers']} workers + {result['workers']} worker processes, "
          f"lease {result['lease_seconds']:g} s")
    print(f"  {result['kills']} kills every {result['kill_every_s']:g} s "
          f"({result['kills_by_kind']}); wall {result['wall_s']} s, {result['jobs_per_s']} jobs/s")
    print(f"  {result['attempts_lost']} attempts lost ({result['jobs_with_lost_attempts']} jobs); "
          f"{result['repeats']} repeats, {result['repeats_explained_by_kills']} explained by a "
          f"kill; {result['failed_after_repeated_losses']} jobs failed after repeated losses")
    print(f"  recovery after a kill: p50 {rec['p50']} s, max {rec['max']} s; last kill → all "
          f"ended {result['last_kill_to_all_ended_s']} s")
    print(f"  {result['notification_jobs']} notification jobs "
          f"({result['notification_jobs_with_lost_attempts']} with a lost attempt): "
          f"{result['outbox_messages']} outbox messages")
    print(f"  final: {result['final_statuses']}")
    print("  OK: nothing lost, every repeat was in flight at a kill, each message sent once"
          if result["ok"] else "  FAILED:\n    " + "\n    ".join(result["problems"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (emptied first) or sqlite:///… "
                                               "(default: a new SQLite file)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--web-workers", type=int, help="gunicorn workers (default 4 / 2)")
    parser.add_argument("--workers", type=int, help="flask worker processes (default 2 / 1)")
    parser.add_argument("--threads", type=int, help="JOBS_WORKER_THREADS per process (8)")
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between kills")
    parser.add_argument("--max-kills", type=int, help="stop killing after this many")
    parser.add_argument("--lease-seconds", type=float, default=3.0, help="JOBS_LEASE_SECONDS")
    parser.add_argument("--sleep-ms", type=int, default=20,
                        help="how long each recording job runs")
    parser.add_argument("--message-share", type=float, default=0.5,
                        help="share of the jobs that are SMS/push notifications")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--seed", type=int, help="random seed for the choice of victims")
    parser.add_argument("--workdir", type=Path, help="where the SQLite file, the handler log "
                                                     "and the process logs go (default: temp)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)

    sizes = workload.sizes_from(args, DEFAULTS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crash-"))
    load_before, started = load_average(), time.monotonic()
    result = run(args.database_url, jobs=args.jobs, kill_every=args.kill_every,
                 lease_seconds=args.lease_seconds, sleep_ms=args.sleep_ms,
                 message_share=args.message_share, tenants=args.tenants, threads=args.threads,
                 max_kills=args.max_kills, seed=args.seed, workdir=workdir, **sizes)
    result.update(run_info(args.database_url, load_before, started), workdir=str(workdir))
    print_figures(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
