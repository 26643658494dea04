#!/usr/bin/env python
"""Every benchmark on SQLite and on PostgreSQL, and one report: benchmarks/RESULTS.md.

    pip install -e ".[test,bench]"                     # bench: Huey, for the comparison
    python benchmarks/run_all.py                       # full sizes (README says how long)
    python benchmarks/run_all.py --database-url postgresql+psycopg://user@host:port/db
    python benchmarks/run_all.py --quick --output /tmp/RESULTS.md    # a smoke run, minutes
    python benchmarks/run_all.py --only engine,load --databases sqlite
    python benchmarks/run_all.py --only analytics,console_pages --history-jobs 10000000

Without ``--database-url`` a throwaway PostgreSQL cluster is started for the run (as
``.ci/postgres.sh`` does: Debian's ``initdb``/``pg_ctl`` as the ``postgres`` user, a free port,
``fsync=off``) and removed at the end; a given database has its tables dropped by the
benchmarks, so give it one of its own. Where no PostgreSQL can be had, its column says why.

Each benchmark runs as its own process (``benchmarks/<name>.py``), reading its JSON (stdout, or
the file its ``--json`` writes); its progress lines go to ``<raw-dir>/<name>-<db>.log`` next to
the JSON. A benchmark that fails or is missing is reported as such in its section — the report
always has every section. Huey's SQLite queue runs the engine's no-op workload once (it has no
PostgreSQL flavour here), side by side with the engine's figures.

``--history-jobs N`` also times analytics and console pages over a second, larger history (the
issue's 10,000,000 jobs: cost should grow with what is shown, not with history), after every
other benchmark of that database: ``analytics.py --jobs N`` generates it (its generation time
is in its JSON) and ``console_pages.py`` times the same data. They report as
``analytics_large`` and ``console_pages_large``, beside the 1,000,000-job figures. At 10 million
jobs this adds about 15 minutes per database (generation 13–14 min on 2 shared cores, then
the timings and the checks' counts over the raw tables; 29 min for both databases in the run
in benchmarks/RESULTS.md), and the SQLite file takes ~14 GB while it runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import results_md  # noqa: E402
from benchmarks.report import git_commit, load_average, log, machine, now_iso  # noqa: E402

DATABASES = ("sqlite", "postgresql")
BENCHMARKS = ("engine", "analytics", "console_pages", "load", "exactly_once", "crash", "huey",
              "templates", "streams")
# Run once, on SQLite: Huey has no PostgreSQL flavour here, and the hostile templates load a
# runner's render processes, which no database takes part in.
SQLITE_ONLY = ("huey", "templates")
# A second, larger history (``--history-jobs``): the same scripts, reported under these names.
LARGE_HISTORY = {"analytics_large": "analytics", "console_pages_large": "console_pages"}


def script_of(name: str) -> str:
    """The script a benchmark's name runs (``benchmarks/<script>.py``)."""
    return {"huey": "huey_noop", **LARGE_HISTORY}.get(name, name)


@dataclass
class Outcome:
    """One benchmark on one database: its JSON, or why there is none."""

    name: str
    database: str
    data: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)


# -- what each benchmark is called with -----------------------------------------------------

def _sizes(quick: bool, history_jobs: int | None = None) -> dict[str, list[str]]:
    """Command-line sizes per benchmark: the issue's full sizes, or a smoke run's; with
    ``history_jobs``, the large-history runs' too (the same options, that many jobs)."""
    sizes = _base_sizes(quick)
    if history_jobs:
        for large, base in LARGE_HISTORY.items():
            argv = list(sizes[base])
            if "--jobs" in argv:
                argv[argv.index("--jobs") + 1] = str(history_jobs)
            else:
                argv += ["--jobs", str(history_jobs)]
            sizes[large] = argv
    return sizes


def _base_sizes(quick: bool) -> dict[str, list[str]]:
    if quick:
        return {"engine": ["--scale", "0.02", "--only", "enqueue_one,drain"],
                "analytics": ["--jobs", "3000", "--days", "7", "--repeat", "2", "--batch", "1000"],
                "console_pages": ["--jobs", "3000", "--days", "7", "--repeat", "2"],
                "load": ["--rate", "20", "--seconds", "3", "--operators", "2",
                         "--operator-seconds", "3", "--operator-rate", "10", "--think", "0.5",
                         "--history", "0", "--senders", "4"],
                "exactly_once": ["--jobs", "300"],
                "crash": ["--jobs", "300", "--max-kills", "1"],
                "huey": ["--scale", "0.02"],
                "templates": ["--hostile", "4", "--normal", "2"],
                "streams": ["--streams", "10", "--repeat", "5"]}
    return {"engine": [], "analytics": ["--jobs", "1000000"],
            "console_pages": ["--jobs", "1000000"], "load": [],
            "exactly_once": [], "crash": [], "huey": [], "templates": [], "streams": []}


def commands(name: str, database: str, url: str | None, sizes: list[str], raw_dir: Path,
             history_file: Path | None) -> tuple[list[str], Path | None]:
    """(argv, the JSON file it writes or None for stdout JSON).

    ``history_file`` (SQLite: where analytics.py keeps its history, console_pages.py reuses
    it; PostgreSQL: any value means "reuse what analytics.py left") or None to generate anew.
    """
    script = ROOT / "benchmarks" / f"{script_of(name)}.py"
    argv = [sys.executable, str(script), *sizes]
    json_file = None
    if name in ("load", "exactly_once", "crash", "streams"):
        json_file = raw_dir / f"{name}-{database}.json"
        argv += ["--json", str(json_file)]
    if name in SQLITE_ONLY:
        return argv, json_file
    if url:
        argv += ["--database-url", url]
        if script_of(name) == "console_pages" and history_file is not None:
            argv += ["--keep-data"]   # analytics.py's history, generated just before
    elif script_of(name) == "analytics" and history_file is not None:
        argv += ["--keep", str(history_file)]
    elif script_of(name) == "console_pages" and history_file is not None:
        argv += ["--reuse", str(history_file)]
    return argv, json_file


def run_one(name: str, database: str, url: str | None, sizes: list[str], raw_dir: Path,
            history_file: Path | None, timeout: float) -> Outcome:
    script = ROOT / "benchmarks" / f"{script_of(name)}.py"
    outcome = Outcome(name, database)
    if not script.exists():
        outcome.error = f"benchmarks/{script.name} is not in this checkout yet"
        return outcome
    if name == "huey":
        if importlib.util.find_spec("huey") is None:
            outcome.error = 'huey is not installed: pip install -e ".[test,bench]"'
            return outcome
    argv, json_file = commands(name, database, url, sizes, raw_dir, history_file)
    outcome.command = argv
    log_path = raw_dir / f"{name}-{database}.log"
    shown = " ".join(Path(a).name if a.endswith(".py") else a for a in argv[1:])
    log(f"{name} on {database}: {shown}")
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}
    try:
        with open(log_path, "w") as progress:
            done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=progress, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        outcome.error = f"did not finish within {timeout:.0f} s (log: {log_path})"
        return outcome
    finally:
        outcome.seconds = round(time.monotonic() - started, 1)
    try:
        text = json_file.read_text() if json_file else done.stdout
        outcome.data = json.loads(text)
    except (OSError, ValueError):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        outcome.error = (f"exit {done.returncode}, no JSON; the log ends: "
                         + " / ".join(tail)[-600:])
        return outcome
    if json_file is None:
        (raw_dir / f"{name}-{database}.json").write_text(text)
    if done.returncode != 0:
        outcome.error = f"exit {done.returncode} (a check failed; see {log_path.name})"
    log(f"  {name} on {database}: {outcome.seconds:.0f} s"
        + (f" — {outcome.error}" if outcome.error else ""))
    return outcome


# -- a throwaway PostgreSQL -----------------------------------------------------------------

class ThrowawayPostgres:
    """initdb + pg_ctl as the ``postgres`` user on a free port, removed by ``stop()``."""

    def __init__(self):
        self.root: Path | None = None
        self.bin: Path | None = None
        self.url: str | None = None

    @staticmethod
    def find_bin() -> Path | None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                       key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
        if found:
            return found[-1]
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    def start(self) -> str:
        self.bin = self.find_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server here (apt-get install postgresql, or give "
                               "--database-url)")
        if os.geteuid() != 0:
            raise RuntimeError("starting a throwaway PostgreSQL needs root (initdb runs as the "
                               "postgres user); give --database-url instead")
        port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="console-bench-pg-"))
        (self.root / "sock").mkdir()
        subprocess.run(["id", "postgres"], check=True, capture_output=True)
        subprocess.run(["chown", "-R", "postgres:", str(self.root)], check=True)
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(as_postgres + [str(self.bin / "initdb"), "-D", str(self.root / "data"),
                                      "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                      "--no-locale"], check=True, capture_output=True)
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root / 'sock'} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=300")
        subprocess.run(as_postgres + [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"),
                                      "-l", str(self.root / "server.log"), "-w", "-t", "30",
                                      "-o", options, "start"], check=True, capture_output=True)
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "console_bench"], check=True, capture_output=True)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/console_bench"
        return self.url

    def stop(self) -> None:
        if self.root is None:
            return
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D",
                        str(self.root / "data"), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- main -----------------------------------------------------------------------------------

TIMEOUTS = {"engine": 1800, "analytics": 3600, "console_pages": 1800, "load": 1200,
            "exactly_once": 2400, "crash": 2400, "huey": 900,
            "templates": 900, "streams": 900,
            # 10 million jobs: generation (~12 min), then counts over the raw tables
            "analytics_large": 5400, "console_pages_large": 2400}


def run_all(args) -> tuple[dict[tuple[str, str], Outcome], dict[str, Any]]:
    sizes = _sizes(args.quick, args.history_jobs)
    wanted = [b for b in BENCHMARKS if b in args.only]
    if args.history_jobs:   # after every other benchmark of a database: they replace its data
        wanted += [large for large, base in LARGE_HISTORY.items() if base in wanted]
    databases = [d for d in DATABASES if d in args.databases]
    raw_dir = Path(args.raw_dir or tempfile.mkdtemp(prefix="console-bench-results-"))
    raw_dir.mkdir(parents=True, exist_ok=True)
    outcomes: dict[tuple[str, str], Outcome] = {}
    info: dict[str, Any] = {"started": now_iso(), "commit": git_commit(),
                            "loadavg_before": load_average(), "quick": args.quick,
                            "raw_dir": str(raw_dir), "databases": {}, "wanted": wanted,
                            "database_list": databases}
    started = time.monotonic()
    scale = 0.05 if args.quick else 1.0
    for database in databases:
        postgres: ThrowawayPostgres | None = None
        url: str | None = None
        if database == "postgresql":
            url = args.database_url
            if url is None:
                postgres = ThrowawayPostgres()
                try:
                    url = postgres.start()
                    log(f"throwaway PostgreSQL at {url}")
                except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
                    reason = getattr(exc, "stderr", None) or str(exc)
                    for name in wanted:
                        if name not in SQLITE_ONLY:
                            outcomes[(name, database)] = Outcome(
                                name, database, error=f"no PostgreSQL: {reason}"[:300])
                    postgres = None
                    continue
            info["databases"]["postgresql"] = machine(url).get("postgresql")
        # Each history (1M jobs; with --history-jobs, a larger one too) is generated once per
        # database, by analytics.py, and timed again by console_pages.py (SQLite: a kept file;
        # PostgreSQL: the tables analytics.py left).
        history_files = {analytics: raw_dir / f"history{suffix}-{database}.sqlite3"
                         for analytics, suffix in (("analytics", ""),
                                                   ("analytics_large", "-large"))
                         if analytics in wanted}
        try:
            for name in wanted:
                if name in SQLITE_ONLY and database != "sqlite":
                    continue
                analytics = "analytics_large" if name in LARGE_HISTORY else "analytics"
                reuse = history_files.get(analytics)
                if script_of(name) == "console_pages" and (
                        (analytics, database) not in outcomes
                        or outcomes[(analytics, database)].data is None):
                    reuse = None   # no history to reuse: console_pages.py generates its own
                outcomes[(name, database)] = run_one(
                    name, database, url, sizes[name], raw_dir, reuse,
                    TIMEOUTS[name] * (0.25 if args.quick else 1))
                if name == "console_pages":   # done with the 1M history: free its disk
                    _remove_history(history_files.get("analytics"))
        finally:
            if postgres is not None:
                postgres.stop()
            for history_file in history_files.values():
                _remove_history(history_file)
    info.update(finished=now_iso(), loadavg_after=load_average(),
                elapsed_s=round(time.monotonic() - started), machine=machine(), scale=scale)
    return outcomes, info


def _remove_history(history_file: Path | None) -> None:
    """An SQLite history and the files beside it (WAL, shared memory, the app's locks)."""
    if history_file is not None:
        for suffix in ("", "-wal", "-shm", "-writer.lock"):
            Path(f"{history_file}{suffix}").unlink(missing_ok=True)
        history_file.with_suffix(".migrate.lock").unlink(missing_ok=True)


def save_run(outcomes: dict[tuple[str, str], Outcome], info: dict[str, Any]) -> None:
    """``run.json`` in the raw folder: what ``--render`` needs besides each benchmark's JSON."""
    meta = [{"name": o.name, "database": o.database, "error": o.error, "seconds": o.seconds,
             "command": o.command} for o in outcomes.values()]
    (Path(info["raw_dir"]) / "run.json").write_text(
        json.dumps({"info": info, "outcomes": meta}, indent=2, default=str) + "\n")


def load_run(raw_dir: Path) -> tuple[dict[tuple[str, str], Outcome], dict[str, Any]]:
    saved = json.loads((raw_dir / "run.json").read_text())
    outcomes = {}
    for meta in saved["outcomes"]:
        outcome = Outcome(**meta)
        path = raw_dir / f"{outcome.name}-{outcome.database}.json"
        if path.exists():
            outcome.data = json.loads(path.read_text())
        outcomes[(outcome.name, outcome.database)] = outcome
    return outcomes, saved["info"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="the PostgreSQL to use (its tables are dropped); default: a "
                             "throwaway cluster for the run")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that everything runs, not how fast")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated, from {','.join(BENCHMARKS)}")
    parser.add_argument("--databases", default=",".join(DATABASES),
                        help="sqlite, postgresql or both")
    parser.add_argument("--history-jobs", type=int, default=None, metavar="N",
                        help="also time analytics and console pages over an N-job history "
                             "(the issue's 10000000: ~15 min more per database), beside the "
                             "1,000,000-job figures")
    parser.add_argument("--output", type=Path, default=None,
                        help="the report (default benchmarks/RESULTS.md; with --quick a "
                             "temporary file, so a smoke run never replaces real figures)")
    parser.add_argument("--raw-dir", default=None,
                        help="where each benchmark's JSON and log go (default: a temp folder)")
    parser.add_argument("--render", metavar="RAW_DIR", default=None,
                        help="run nothing: write the report again from a run's --raw-dir "
                             "(after a change to the report's layout)")
    args = parser.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = ([b for b in args.only if b not in BENCHMARKS]
               + [d for d in args.databases if d not in DATABASES])
    if unknown:
        parser.error(f"unknown {unknown}: benchmarks are {BENCHMARKS}, databases {DATABASES}")
    output = args.output or (Path(tempfile.mkdtemp(prefix="console-bench-")) / "RESULTS.md"
                             if args.quick else ROOT / "benchmarks" / "RESULTS.md")

    if args.render:
        outcomes, info = load_run(Path(args.render))
    else:
        outcomes, info = run_all(args)
        save_run(outcomes, info)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(results_md.render(outcomes, info, info.get("wanted", args.only),
                                        info.get("database_list", args.databases)))
    failed = [f"{o.name}/{o.database}: {o.error}" for o in outcomes.values() if o.error]
    log(f"report written to {output}" + (f"; {len(failed)} problems" if failed else ""))
    for line in failed:
        log(f"  {line}")
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
