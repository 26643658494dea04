"""The product started as users run it, for benchmarks and scale tests.

``Cluster`` starts ``gunicorn wsgi:app -c gunicorn.conf.py`` with N workers (each gunicorn worker
serves HTTP and runs its own job runner) plus M ``flask --app console worker`` processes, all on
one database URL (an SQLite file or PostgreSQL), and stops every one of them on exit::

    from benchmarks.cluster import Cluster

    with Cluster("sqlite:////tmp/x.sqlite3", web_workers=2, workers=1,
                 settings={"JOBS_LEASE_SECONDS": 3}, log_dir="/tmp/logs") as cluster:
        cluster.base_url                     # "http://127.0.0.1:<the port gunicorn bound>"
        for proc in cluster.runners():       # RunnerProcess(kind="web"|"worker", pid, runner_id)
            ...
        victim = cluster.runners()[0]
        cluster.kill(victim)                 # SIGKILL by default
        replacement = cluster.restart(victim)   # web: the master's respawn; worker: a new process

Configuration reaches the processes the way it reaches a user's: ``DATABASE_URL`` and
``CONSOLE_<SETTING>`` environment variables (``settings`` values are JSON-encoded, which
``create_app`` parses back). ``handlers`` (``"package.module:Class"`` strings, default: the
test handlers of ``tests/jobs/handlers.py``) become ``CONSOLE_JOBS_HANDLERS``; the repository
root is on ``PYTHONPATH`` so ``tests.*`` and ``benchmarks.*`` handlers import.

Start-up waits until ``/healthz`` lists a live runner for every gunicorn worker and every worker
process (matched by pid: runner ids are ``host:pid:name:hex``). A SIGKILLed runner's heartbeat
row stays "live" in ``/healthz`` until it is a lease old, so the cluster never counts runners by
number alone: it pairs each process it knows to be alive with its runner id.

No orphans: gunicorn and each worker process start in their own session (a process group),
``stop()`` (also run by ``__exit__`` and at interpreter exit) sends SIGTERM to every group,
then SIGKILL to what is left; children also get SIGTERM if the process that started them dies
(Linux ``PR_SET_PDEATHSIG``). gunicorn workers are children of the master: killing one's pid is
a crash of that worker and its runner, and the master respawns it (``restart`` waits for that).

Every process writes to ``log_dir``: ``gunicorn.log`` (master and all its workers) and
``worker-<n>.log`` (a restarted worker appends to its slot's file).
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import procstats

ROOT = Path(__file__).resolve().parent.parent
TEST_HANDLERS = [f"tests.jobs.handlers:{name}" for name in (
    "RecordingHandler", "FailsNTimesHandler", "AlwaysFailsHandler", "FailsPermanentlyHandler",
    "HangsHandler", "ConcurrencyProbeHandler", "OrderRecorderHandler", "PickyHandler",
    "SleepsHandler")]
# Settings every cluster process gets unless ``settings`` says otherwise: a fixed secret key (so
# nothing is written to the instance folder and all workers sign alike) and a short shutdown
# grace (a benchmark's stop should not wait 20 s for attempts it no longer cares about).
# METRICS_TOKEN: /healthz lists the runners' ids (which the cluster pairs with its processes)
# only to a caller that holds it.
DEFAULT_SETTINGS: dict[str, Any] = {"SECRET_KEY": "cluster-secret",
                                    "JOBS_SHUTDOWN_GRACE_SECONDS": 2,
                                    "METRICS_TOKEN": "cluster-scraper"}
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """A process of the cluster failed to start or to come back; the message has its log tail."""


@dataclass(frozen=True)
class RunnerProcess:
    """One process with a job runner: a gunicorn worker (``kind="web"``) or a ``flask worker``
    process (``kind="worker"``). ``slot`` names a worker process's place ("worker-1"), kept
    across restarts; gunicorn workers are all in slot "web"."""

    kind: str
    pid: int
    runner_id: str
    slot: str


# What gunicorn logs once it has bound its socket.
_LISTENING_AT = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+) ")


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the starting thread dies (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def runner_pid(runner_id: str) -> int | None:
    """The pid inside a runner id ``host:pid:name:hex``."""
    parts = runner_id.split(":")
    try:
        return int(parts[-3])
    except (IndexError, ValueError):
        return None


class Cluster:
    """gunicorn (``web_workers`` workers) + ``workers`` ``flask worker`` processes on one database.

    :param database_url: the database every process uses (``DATABASE_URL``).
    :param web_workers: gunicorn workers (``-w``), at least 1 (``/healthz`` tells the cluster
        which runners are up).
    :param workers: ``flask --app console worker`` processes.
    :param settings: console settings for every process, as ``CONSOLE_<KEY>`` (JSON-encoded).
    :param handlers: ``JOBS_HANDLERS`` specs; ``None`` for the test handlers.
    :param worker_threads: ``--threads`` of the worker processes (default: JOBS_WORKER_THREADS).
    :param web_threads: gunicorn threads per worker (``CONSOLE_WEB_THREADS``).
    :param log_dir: where the logs go; a temporary folder when not given (kept, see ``log_dir``).
    :param start_timeout: seconds to wait for every runner to be live.
    """

    def __init__(self, database_url: str, *, web_workers: int = 2, workers: int = 1,
                 settings: dict[str, Any] | None = None, handlers: list[str] | None = None,
                 worker_threads: int | None = None, web_threads: int | None = None,
                 log_dir: str | Path | None = None, start_timeout: float = 60.0,
                 extra_env: dict[str, str] | None = None):
        if web_workers < 1:
            raise ValueError(f"web_workers must be at least 1 (got {web_workers}): the cluster "
                             "asks gunicorn's /healthz which runners are up")
        self.database_url = database_url
        self.web_workers = web_workers
        self.workers = workers
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.handlers = TEST_HANDLERS if handlers is None else handlers
        self.worker_threads = worker_threads
        self.web_threads = web_threads
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="cluster-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self.extra_env = extra_env or {}
        self.port: int | None = None       # the one gunicorn binds (port 0: the kernel picks)
        self.base_url = ""
        self._gunicorn: subprocess.Popen | None = None
        self._workers: dict[str, subprocess.Popen] = {}   # slot → its current process
        self._every_worker: list[subprocess.Popen] = []     # the killed ones too, to reap
        self._before_kill: dict[int, set[int]] = {}         # killed pid → runner pids then
        self._groups: set[int] = set()                     # process groups to end on stop
        self._logs: list[Any] = []
        self._log_names: set[str] = set()
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> Cluster:
        atexit.register(self.stop)
        self._start_gunicorn()
        for n in range(1, self.workers + 1):
            self._start_worker(f"worker-{n}")
        self.wait_for_runners(self.start_timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every process group, wait up to ``timeout`` s, then SIGKILL what is left."""
        if self._stopped:
            return
        self._stopped = True
        for group in self._groups:
            _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self._processes():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Also whatever the masters left behind (a gunicorn worker outliving its master).
        for group in self._groups:
            _signal_group(group, signal.SIGKILL)
        for proc in self._processes():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for handle in self._logs:
            handle.close()
        atexit.unregister(self.stop)

    def _processes(self) -> list[subprocess.Popen]:
        return ([self._gunicorn] if self._gunicorn else []) + list(self._every_worker)

    # -- starting processes ---------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """What every process of the cluster gets."""
        env = {**os.environ, "DATABASE_URL": self.database_url,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                          os.environ.get("PYTHONPATH")])),
               "CONSOLE_JOBS_HANDLERS": json.dumps(self.handlers),
               "WEB_CONCURRENCY": str(self.web_workers)}
        if self.web_threads:
            env["CONSOLE_WEB_THREADS"] = str(self.web_threads)
        for key, value in self.settings.items():
            env[f"CONSOLE_{key}"] = value if isinstance(value, str) else json.dumps(value)
        env.update(self.extra_env)
        return env

    def _spawn(self, command: list[str], log_name: str) -> subprocess.Popen:
        # A new cluster starts its logs afresh; a restarted worker appends to its slot's log.
        handle = open(self.log_dir / log_name, "ab" if log_name in self._log_names else "wb")
        self._log_names.add(log_name)
        self._logs.append(handle)
        proc = subprocess.Popen(command, cwd=str(ROOT), env=self.environment(),
                                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
        self._groups.add(proc.pid)   # a new session: its pgid is its pid
        return proc

    def _start_gunicorn(self) -> None:
        # gunicorn binds a port of the kernel's choosing and names it in its log: a port found
        # free beforehand could be taken by another process before gunicorn bound it.
        self._gunicorn = self._spawn(
            [sys.executable, "-m", "gunicorn", "wsgi:app", "-c", "gunicorn.conf.py",
             "-w", str(self.web_workers), "-b", "127.0.0.1:0", "--no-control-socket"],
            "gunicorn.log")
        log = self.log_dir / "gunicorn.log"
        deadline = time.monotonic() + self.start_timeout
        while not (found := _LISTENING_AT.search(log.read_bytes())):
            if self._gunicorn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start listening:\n"
                                   + log.read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        self.port = int(found.group(1))
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _start_worker(self, slot: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "flask", "--app", "console", "worker"]
        if self.worker_threads:
            command += ["--threads", str(self.worker_threads)]
        proc = self._spawn(command, f"{slot}.log")
        self._workers[slot] = proc
        self._every_worker.append(proc)
        return proc

    # -- looking at the runners -----------------------------------------------------------

    def health(self, timeout: float = 5.0) -> dict:
        """``GET /healthz`` as JSON (a 503 body too); raises ``OSError`` when nobody answers."""
        try:
            asking = urllib.request.Request(f"{self.base_url}/healthz", headers={
                "Authorization": f"Bearer {self.settings['METRICS_TOKEN']}"})
            with urllib.request.urlopen(asking, timeout=timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")

    def web_worker_pids(self) -> list[int]:
        """The gunicorn master's live workers."""
        if self._gunicorn is None or self._gunicorn.poll() is not None:
            return []
        return procstats.children(self._gunicorn.pid)

    def expected_pids(self) -> dict[int, tuple[str, str]]:
        """pid → (kind, slot) of every runner process that should be running now."""
        pids = {pid: ("web", "web") for pid in self.web_worker_pids()}
        for slot, proc in self._workers.items():
            if proc.poll() is None:
                pids[proc.pid] = ("worker", slot)
        return pids

    def runners(self, runner_ids: Iterable[str] | None = None) -> list[RunnerProcess]:
        """Every live runner process with its runner id (those already registered).

        The ids come from ``/healthz``, or from ``runner_ids`` when given (e.g. read from the
        ``runners`` table by a caller with its own database connection: ``/healthz`` cannot
        answer while every gunicorn worker is down).
        """
        if runner_ids is None:
            runner_ids = [r["id"] for r in self.health().get("runners", {}).get("details", [])]
        by_pid = {}
        for runner_id in runner_ids:
            pid = runner_pid(runner_id)
            if pid is not None:
                by_pid[pid] = runner_id
        return [RunnerProcess(kind, pid, by_pid[pid], slot)
                for pid, (kind, slot) in sorted(self.expected_pids().items())
                if pid in by_pid and procstats.alive(pid)]

    def wait_for_runners(self, timeout: float = 60.0) -> list[RunnerProcess]:
        """Until ``web_workers`` gunicorn workers and every worker slot have a live runner."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            self._check_alive()
            try:
                found = self.runners()
                web = sum(1 for r in found if r.kind == "web")
                workers = sum(1 for r in found if r.kind == "worker")
                if web == self.web_workers and workers == len(self._workers):
                    return found
                last_error = (f"{web}/{self.web_workers} gunicorn workers and "
                              f"{workers}/{len(self._workers)} worker processes have a runner")
            except (OSError, ValueError) as exc:
                last_error = f"/healthz: {exc}"
            if time.monotonic() >= deadline:
                raise ClusterError(f"the cluster did not come up within {timeout} s "
                                   f"({last_error})\n{self.log_tails()}")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        if self._gunicorn is not None and self._gunicorn.poll() is not None:
            raise ClusterError(f"gunicorn exited with {self._gunicorn.returncode}\n"
                               f"{self.log_tails()}")
        for slot, proc in self._workers.items():
            if proc.poll() is not None:
                raise ClusterError(f"{slot} exited with {proc.returncode}\n{self.log_tails()}")

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of every log, to explain a failure."""
        parts = []
        for path in sorted(self.log_dir / name for name in self._log_names):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path.name} -----\n" + "\n".join(text))
        return "\n".join(parts)

    # -- crashes and restarts -------------------------------------------------------------

    def kill(self, proc: RunnerProcess, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one runner process (a gunicorn worker's pid, or a worker process)."""
        self._before_kill[proc.pid] = set(self.expected_pids())
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        if proc.kind == "worker" and sig in (signal.SIGKILL, signal.SIGTERM):
            popen = self._workers.get(proc.slot)
            if popen is not None and popen.pid == proc.pid:
                try:
                    popen.wait(timeout=30)   # reap it, so it is gone from /proc at once
                except subprocess.TimeoutExpired:
                    pass
        elif sig == signal.SIGKILL:
            # Delivery is not instantaneous: return once it is dead (a zombie for the master).
            deadline = time.monotonic() + 10
            while procstats.alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)

    def restart(self, proc: RunnerProcess, timeout: float = 60.0,
                wait: bool = True) -> RunnerProcess | None:
        """Bring ``proc``'s place back and return its new runner process.

        A gunicorn worker is respawned by the master (this only waits for it); a worker process
        still running is stopped with SIGTERM first, then started again in its slot. With
        ``wait=False``, returns None at once (the new runner shows in ``runners()`` once it is
        up).
        """
        known = self._before_kill.pop(proc.pid, None)
        if known is None:
            known = set(self.expected_pids())
        if proc.kind == "worker":
            if procstats.alive(proc.pid):
                self.kill(proc, signal.SIGTERM)
            self._start_worker(proc.slot)
        elif procstats.alive(proc.pid):
            raise ClusterError(f"gunicorn worker {proc.pid} is still running: kill it first "
                               "(the master respawns it)")
        if not wait:
            return None
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                fresh = [p for p in self.runners() if p.pid not in known
                         and p.kind == proc.kind and (p.kind == "web" or p.slot == proc.slot)]
            except (OSError, ValueError):
                fresh = []
            if fresh:
                return fresh[0]
            if time.monotonic() >= deadline:
                raise ClusterError(f"{proc.slot} did not come back within {timeout} s after "
                                   f"pid {proc.pid}\n{self.log_tails()}")
            time.sleep(0.1)


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pids_in_groups(groups: Iterable[int]) -> list[int]:
    """Live processes in the given process groups (to check that nothing was left behind)."""
    wanted = set(groups)
    return [pid for pid, fields in procstats.live_processes() if int(fields[2]) in wanted]
