"""benchmarks/RESULTS.md from the JSON of every benchmark (``run_all.py`` calls ``render``).

Every section is always there: a benchmark that did not run says why in its section, so a
reader can tell "not measured" from "measured and fine". SQLite and PostgreSQL sit side by side
in each table.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks.report import dig

DASH = "—"
SECTIONS = ["Machine", "Summary", "Engine", "Engine and Huey", "Analytics", "Console pages",
            "Load: API submissions", "Load: operators", "Load: backlog over time",
            "Exactly once", "Crashes", "Hostile email templates",
            "Pages and API with event streams open", "Problems", "How to run it again"]


def render(outcomes: dict, info: dict[str, Any], wanted: list[str],
           databases: list[str]) -> str:
    report = _Report(outcomes, info, wanted, databases)
    return report.text()


def _fmt(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or DASH
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or DASH
    return str(value).replace("|", "\\|")


def _table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(c) if not isinstance(c, str) else c.replace("|", "\\|")
                                        for c in row) + " |")
    return lines


class _Report:
    def __init__(self, outcomes: dict, info: dict[str, Any], wanted: list[str],
                 databases: list[str]):
        self.outcomes = outcomes
        self.info = info
        self.wanted = wanted
        self.databases = databases
        self.lines: list[str] = []

    # .. helpers ..

    def data(self, name: str, database: str) -> dict | None:
        outcome = self.outcomes.get((name, database))
        return outcome.data if outcome else None

    def status_notes(self, name: str, databases: Iterable[str] | None = None) -> list[str]:
        """One line per database where ``name`` has no figures (or a failed check)."""
        notes = []
        for database in databases or self.databases:
            outcome = self.outcomes.get((name, database))
            if name not in self.wanted:
                notes.append(f"- {database}: not run (not in `--only`).")
            elif outcome is None:
                notes.append(f"- {database}: not run.")
            elif outcome.error:
                notes.append(f"- {database}: {outcome.error}")
        return notes

    def by_db(self, name: str, rows: list[tuple[str, str, str | None]],
              databases: list[str] | None = None) -> list[str]:
        """A table: figure | SQLite | PostgreSQL | target, from dotted keys."""
        databases = databases or self.databases
        header = ["figure", *databases, "target"]
        body = [[label, *[dig(self.data(name, db), key) for db in databases], target or ""]
                for label, key, target in rows]
        return _table(header, body)

    def section(self, title: str) -> None:
        self.lines += ["", f"## {title}", ""]

    # .. sections ..

    def text(self) -> str:
        info = self.info
        quick = " (a --quick smoke run: tiny sizes, the figures say nothing about speed)" \
            if info.get("quick") else ""
        self.lines = [
            "# Benchmark results",
            "",
            f"Written by `benchmarks/run_all.py` on {info.get('finished', DASH)} at commit "
            f"`{info.get('commit') or DASH}`{quick}. Every figure below comes from that one run "
            f"({_fmt(info.get('elapsed_s'))} s in all). The machine is small and shared: "
            "compare runs on the same machine only, and read the load average beside them.",
        ]
        cores = info.get("machine", {}).get("cores") or 1
        busiest = max((info.get("loadavg_before") or [0])[:1] + (info.get("loadavg_after")
                                                                  or [0])[:1])
        if busiest > cores:
            self.lines += ["", f"**This run shared the machine**: a load average of up to "
                               f"{_fmt(float(busiest))} on {cores} cores, so other work took a "
                               "large part of the CPU (the load tables' `machine` line counts "
                               "every process). Figures that need the whole machine — rates, "
                               "latencies under load — are lower than the product gives on a "
                               "machine of its own; rerun on a quiet machine before comparing "
                               "them with a target."]
        if info.get("note"):
            self.lines += ["", str(info["note"])]
        self.machine_section()
        self.summary_section()
        self.engine_section()
        self.huey_section()
        self.analytics_section()
        self.pages_section()
        self.load_sections()
        self.generic_section("Exactly once", "exactly_once")
        self.generic_section("Crashes", "crash")
        self.generic_section("Hostile email templates", "templates")
        self.generic_section("Pages and API with event streams open", "streams")
        self.problems_section()
        self.rerun_section()
        return "\n".join(self.lines) + "\n"

    def machine_section(self) -> None:
        self.section("Machine")
        m = self.info.get("machine", {})
        postgres = self.info.get("databases", {}).get("postgresql")
        self.lines += _table(["", ""], [
            ["CPU", m.get("cpu")], ["cores", m.get("cores")],
            ["memory", f"{m.get('memory_gib')} GiB"], ["OS", m.get("os")],
            ["Python", m.get("python")], ["SQLite", m.get("sqlite")],
            ["PostgreSQL", postgres or "not used"],
            ["load average before / after (1, 5, 15 min)",
             f"{_fmt(self.info.get('loadavg_before'))} / {_fmt(self.info.get('loadavg_after'))}"],
            ["started / finished", f"{self.info.get('started')} / {self.info.get('finished')}"],
        ])

    def summary_section(self) -> None:
        self.section("Summary")
        self.lines.append("The issue's targets and what this run measured.")
        self.lines.append("")
        rows = [
            ("engine as deployed (2 × flask worker, 8 threads): drain, jobs/s", "engine",
             "drain_workers_per_s", "≥ 4000 (PostgreSQL ≥ 3000)"),
            ("engine as deployed: start latency p50 / p99, ms", "engine",
             "@pair:start_latency_deployed_ms", "≤ 3 / ≤ 10"),
            ("engine: enqueue one by one, jobs/s", "engine", "enqueue_one_by_one_per_s",
             "≥ 3500"),
            ("engine: drain no-op jobs, jobs/s", "engine", "drain_noop_per_s", "≥ 3000"),
            ("engine: start latency p99, other process, ms", "engine",
             "start_latency_other_process_ms.p99", "≤ 10"),
            ("engine: noisy neighbour, ms", "engine", "noisy_neighbour_ms", "≤ 250"),
            ("engine: dependency release p99, ms", "engine", "dependency_release_ms.p99",
             "≤ 20 (PostgreSQL ≤ 30)"),
            ("analytics: slowest call p95, ms", "analytics", "@max_p95:calls_ms", "≤ 200"),
            ("console: slowest page p95, ms", "console_pages", "@max_p95:pages_ms", "≤ 200"),
            ("load: API submissions achieved, /s", "load", "api.achieved_rate_per_s",
             "300"),
            ("load: API latency p99, ms", "load", "api.latency_ms.p99", "≤ 100"),
            ("load: API errors", "load", "api.error_count", "0"),
            ("load: jobs executed, /s", "load", "api.executed_rate_per_s", "keeps up"),
            ("load: backlog drained after the last submission, s", "load",
             "api.backlog.drain_seconds", "a few"),
            ("load: operators, slowest page p95, ms", "load",
             "@max_p95:operators.pages_ms", "≤ 200"),
            ("exactly once: every job once, none lost", "exactly_once", "ok", "yes"),
            ("exactly once: jobs/s", "exactly_once", "jobs_per_s", ""),
            ("crashes: every job ended, repeats explained", "crash", "ok", "yes"),
            ("crashes: kills", "crash", "kills", ""),
        ]
        if self.has_large():
            big, small = self.jobs_label("analytics_large"), self.jobs_label("analytics")
            scale = f"≤ 200 or ≤ 1.5× {small}"
            rows += [
                (f"history of {big} jobs: generated in, min", "analytics_large",
                 "@minutes:generation_seconds", "≤ 15"),
                (f"analytics at {big}: slowest call p95, ms", "analytics_large",
                 "@max_p95:calls_ms", scale),
                (f"analytics at {big}: calls over their target", "analytics_large",
                 "@over_scale:calls_ms", "none"),
                (f"console at {big}: slowest page p95, ms", "console_pages_large",
                 "@max_p95:pages_ms", scale),
                (f"console at {big}: pages over their target", "console_pages_large",
                 "@over_scale:pages_ms", "none"),
            ]
        body = []
        for label, name, key, target in rows:
            cells = []
            for db in self.databases:
                data = self.data(name, db)
                if key.startswith("@max_p95:"):
                    cells.append(_slowest(dig(data, key.split(":", 1)[1])))
                elif key.startswith("@minutes:"):
                    seconds = dig(data, key.split(":", 1)[1])
                    cells.append(None if seconds is None else float(seconds) / 60)
                elif key.startswith("@over_scale:"):
                    table = key.split(":", 1)[1]
                    cells.append(_over_scale(dig(self.data(name[:-len("_large")], db), table),
                                             dig(data, table)) if data else None)
                elif key.startswith("@pair:"):
                    figure = dig(data, key.split(":", 1)[1]) or {}
                    cells.append(f"{_fmt(figure.get('p50'))} / {_fmt(figure.get('p99'))}"
                                 if figure else None)
                else:
                    cells.append(dig(data, key))
            body.append([label, *cells, target])
        self.lines += _table(["figure", *self.databases, "target"], body)

    def engine_section(self) -> None:
        self.section("Engine")
        self.lines.append("`benchmarks/engine.py`; latencies in ms. First as deployed: runners "
                          "in the processes users start (two `flask --app console worker` "
                          "processes, or gunicorn's two workers, 8 threads each), jobs queued "
                          "from another process. Then the engine's own paths (a runner in the "
                          "queueing process), for finding where time goes.")
        self.lines.append("")
        rows = [("as deployed: drain no-op, 2 × flask worker, jobs/s", "drain_workers_per_s",
                 "≥ 4000 (PostgreSQL ≥ 3000)"),
                ("as deployed: drain no-op, gunicorn 2 workers, jobs/s", "drain_gunicorn_per_s",
                 ""),
                ("as deployed: start latency p50", "start_latency_deployed_ms.p50", "≤ 3"),
                ("as deployed: start latency p99", "start_latency_deployed_ms.p99", "≤ 10"),
                ("as deployed: delayed job lateness p99", "delayed_lateness_deployed_ms.p99",
                 "≤ 20"),
                ("as deployed: noisy neighbour", "noisy_neighbour_deployed_ms", "≤ 100"),
                ("enqueue one by one, jobs/s", "enqueue_one_by_one_per_s", "≥ 3500"),
                ("enqueue batched, jobs/s", "enqueue_batched_per_s", "≥ 20000"),
                ("drain no-op, 8 threads, jobs/s", "drain_noop_per_s", "≥ 3000"),
                ("drain no-op, 16 threads, jobs/s", "drain_noop_16_threads_per_s", ""),
                ("start latency, same process, p50", "start_latency_same_process_ms.p50", "≤ 3"),
                ("start latency, same process, p99", "start_latency_same_process_ms.p99", "≤ 10"),
                ("start latency, other process, p50", "start_latency_other_process_ms.p50",
                 "≤ 5"),
                ("start latency, other process, p99", "start_latency_other_process_ms.p99",
                 "≤ 10"),
                ("delayed job lateness p99", "delayed_lateness_ms.p99", "≤ 50"),
                ("noisy neighbour: small tenant done after", "noisy_neighbour_ms", "≤ 250"),
                ("noisy neighbour: big tenant done after", "noisy_neighbour_tenant_a_completion_ms",
                 ""),
                ("rate limit 50 per 1 s, 3 workers: most starts in any 1 s",
                 "rate_limit.max_in_any_period", "≤ 50"),
                ("rate limit: most starts in any 0.2 s (burst 10)",
                 "rate_limit.max_in_any_burst_window", "≤ 10"),
                ("rate limit: mean starts per 1 s", "rate_limit.mean_per_period", ""),
                ("dependency release p50", "dependency_release_ms.p50", ""),
                ("dependency release p99", "dependency_release_ms.p99",
                 "≤ 20 (PostgreSQL ≤ 30)"),
                ("batch of 10,000: callback start after the last job, slowest of 3",
                 "batch_callback_ms.max", "≤ 100"),
                ("bounded waits: low jobs in a critical flood, longest wait (2 s steps)",
                 "low_priority_wait_ms.max", "≤ 9500")]
        self.lines += self.by_db("engine", rows)
        self.lines += [""] + self.status_notes("engine")

    def huey_section(self) -> None:
        self.section("Engine and Huey")
        huey = self.data("huey", "sqlite")
        engine = self.data("engine", "sqlite")
        self.lines.append(
            "The engine's no-op workload on Huey's SQLite queue (`benchmarks/huey_noop.py`: "
            "`SqliteHuey` with its defaults, a thread consumer in the benchmark's process, each "
            "drain the median of 3 on a fresh file), same job counts, same run. The engine's "
            "deployed drain (2 `flask --app console worker` processes × 8 threads) faces Huey's "
            "consumer with as many threads, 16; its in-process drain (8 threads) faces 8. Huey "
            "stores a task as one blob and deletes it when a worker takes it; the engine also "
            "checks tenant limits in the insert's transaction, leases each claim, writes an "
            "attempt row and the hourly rollups, and shares the runners fairly between tenants.")
        self.lines.append("")
        deployed = dig(engine, "drain_workers_per_s")
        huey_16 = dig(huey, "drain_noop_16_threads_per_s")
        ratio = (f"{deployed / huey_16:.2f}×" if isinstance(deployed, (int, float))
                 and isinstance(huey_16, (int, float)) and huey_16 else None)
        rows = [["enqueue one by one, jobs/s", dig(engine, "enqueue_one_by_one_per_s"),
                 dig(huey, "enqueue_one_by_one_per_s"), ""],
                ["drain no-op jobs, 16 threads (engine: 2 processes × 8), jobs/s", deployed,
                 huey_16, f"engine {ratio or '—'} Huey (target ≥ 1.5×)"],
                ["drain no-op jobs, 8 threads (engine: in-process), jobs/s",
                 dig(engine, "drain_noop_per_s"), dig(huey, "drain_noop_per_s"), ""]]
        self.lines += _table(["figure", "engine on SQLite", "Huey SqliteHuey "
                              + (str(dig(huey, "huey")) if huey else ""), "ratio"], rows)
        self.lines += [""] + self.status_notes("huey", ["sqlite"])

    def analytics_section(self) -> None:
        self.section("Analytics")
        first = next((self.data("analytics", db) for db in self.databases
                      if self.data("analytics", db)), None)
        jobs = dig(first, "rows.jobs")
        self.lines.append(f"`benchmarks/analytics.py` over a generated history of {_fmt(jobs)} "
                          "jobs (30 days, 20 tenants): each call p50 / p95 in ms, target "
                          "p95 ≤ 200 ms.")
        self.lines += self.large_history_note("analytics")
        self.lines.append("")
        self.lines += self.timings_table("analytics", "calls_ms", "call")
        checks = [f"{db}: " + ("all checks hold" if all((dig(self.data(name, db), "checks")
                                                         or {"none": False}).values())
                               else f"checks {_fmt(dig(self.data(name, db), 'checks'))}")
                  + ("" if name == "analytics" else f" ({self.jobs_label(name)} jobs)")
                  for name in ("analytics", "analytics_large") for db in self.databases
                  if self.data(name, db)]
        if checks:
            self.lines += ["", "Analytics against the raw tables: " + "; ".join(checks) + "."]
        self.lines += [""] + self.status_notes("analytics")
        if self.has_large():
            self.lines += self.status_notes("analytics_large")

    def pages_section(self) -> None:
        self.section("Console pages")
        self.lines.append("`benchmarks/console_pages.py`: every page and fragment's server time "
                          "(Flask test client, signed-in admin) over the same history; p50 / p95 "
                          "in ms, target p95 ≤ 200 ms.")
        self.lines += self.large_history_note("console_pages")
        self.lines.append("")
        self.lines += self.timings_table("console_pages", "pages_ms", "page")
        self.lines += [""] + self.status_notes("console_pages")
        if self.has_large():
            self.lines += self.status_notes("console_pages_large")

    # .. the larger history (run_all.py --history-jobs) ..

    def has_large(self) -> bool:
        return any(name in self.wanted for name in ("analytics_large", "console_pages_large"))

    def jobs_label(self, name: str) -> str:
        """How many jobs ``name``'s history held (the first database's count), e.g. "10M"."""
        jobs = next((dig(self.data(name, db), "rows.jobs") for db in self.databases
                     if dig(self.data(name, db), "rows.jobs")), None)
        return _jobs_label(jobs) or ("larger" if name.endswith("_large") else "")

    def large_history_note(self, name: str) -> list[str]:
        """What the larger history's columns are, its generation time and their targets."""
        large = f"{name}_large"
        if not any(self.data(large, db) for db in self.databases):
            return []
        generation = []
        for db in self.databases:
            seconds = dig(self.data("analytics_large", db), "generation_seconds")
            if seconds is not None:
                how = "COPY, ANALYZE included" if db == "postgresql" else "executemany"
                load = dig(self.data("analytics_large", db), "generation.loadavg_after")
                generation.append(f"{db} {_fmt(float(seconds) / 60)} min ({how}; load average "
                                  f"{_fmt(load[0]) if load else DASH} at its end)")
        loads = [f"{db} {_fmt(dig(self.data(large, db), 'machine.loadavg_before'))} → "
                 f"{_fmt(dig(self.data(large, db), 'machine.loadavg_after'))}"
                 for db in self.databases if self.data(large, db)]
        return ["", f"Beside them, the same over a history of {self.jobs_label(large)} jobs "
                    "(`run_all.py --history-jobs`), the issue's scale check: cost should grow "
                    "with what is shown, not with history. Target: each p95 ≤ 200 ms, or at "
                    f"most 1.5× its {self.jobs_label(name)}-job figure (the last column). "
                    "Generating it (target ≤ 15 min): "
                    + ("; ".join(generation) or DASH) + ". Load average (1, 5, 15 min) before → "
                    "after each run: " + ("; ".join(loads) or DASH) + "."]

    def timings_table(self, name: str, key: str, what: str) -> list[str]:
        """``what`` (p50 / p95 ms) per database; with a larger history, its columns beside
        each database's and whether each met the scale target."""
        large = f"{name}_large"
        with_large = any(self.data(large, db) for db in self.databases)
        names = _keys([self.data(name, db) or {} for db in self.databases]
                      + [self.data(large, db) or {} for db in self.databases])(key)
        header = [f"{what} (p50 / p95 ms)"]
        if not with_large:
            body = [[label, *[_pair(dig(self.data(name, db), key), label)
                              for db in self.databases]] for label in names]
            return _table(header + list(self.databases), body)
        small, big = self.jobs_label(name), self.jobs_label(large)
        for db in self.databases:
            header += [f"{db}, {small}", f"{db}, {big}"]
        header.append(f"{big}: ≤ 200 or ≤ 1.5× {small} ({' / '.join(self.databases)})")
        body = []
        for label in names:
            row: list[Any] = [label]
            verdicts = []
            for db in self.databases:
                before = (dig(self.data(name, db), key) or {}).get(label)
                after = (dig(self.data(large, db), key) or {}).get(label)
                row += [_pair(before), _pair(after)]
                verdicts.append(_scale_verdict(before, after))
            body.append(row + [" / ".join(verdicts)])
        return _table(header, body)

    def load_sections(self) -> None:
        first = next((self.data("load", db) for db in self.databases
                      if self.data("load", db)), None) or {}
        self.section("Load: API submissions")
        self.lines.append(
            f"`benchmarks/load.py`: `POST /api/v1/jobs` (a no-op job) at "
            f"{_fmt(first.get('rate'))}/s for {_fmt(first.get('seconds'))} s, open loop "
            "(latency from each request's due time, so a stall counts against every request it "
            f"delays), {_fmt(first.get('tenants'))} tenants, against `gunicorn -c gunicorn.conf.py`"
            f" with {_fmt(first.get('web_workers'))} workers × {_fmt(first.get('web_threads'))} "
            f"threads plus {_fmt(first.get('workers'))} `flask worker` process(es), whose runners "
            "execute the jobs meanwhile. CPU in % of one core (the machine has "
            f"{_fmt(self.info.get('machine', {}).get('cores'))}; `machine` counts every process "
            "on it, other people's too).")
        self.lines.append("")
        rows = [("requests", "api.requests", ""), ("errors", "api.error_count", "0"),
                ("achieved rate, /s", "api.achieved_rate_per_s", ""),
                ("latency p50, ms", "api.latency_ms.p50", ""),
                ("latency p95, ms", "api.latency_ms.p95", ""),
                ("latency p99, ms", "api.latency_ms.p99", "≤ 100"),
                ("latency max, ms", "api.latency_ms.max", ""),
                ("server time p99 (from the actual send), ms", "api.service_ms.p99", ""),
                ("jobs executed, /s", "api.executed_rate_per_s", ""),
                ("queued at most", "api.backlog.queued_max", ""),
                ("queued when the submissions stopped", "api.backlog.queued_at_end", ""),
                ("backlog drained after, s", "api.backlog.drain_seconds", "a few"),
                ("generator: timer lag p99, ms", "api.generator.timer_lag_ms.p99", ""),
                ("generator: slots that found every sender busy",
                 "api.generator.slots_with_every_sender_busy", ""),
                ("CPU: gunicorn workers", "api.cpu_percent_of_one_core.gunicorn_workers", ""),
                ("CPU: worker processes", "api.cpu_percent_of_one_core.worker_processes", ""),
                ("CPU: load generator", "api.cpu_percent_of_one_core.load_generator", ""),
                ("CPU: PostgreSQL server (on this machine)",
                 "api.cpu_percent_of_one_core.postgresql_server", ""),
                ("CPU: machine (everyone)", "api.cpu_percent_of_one_core.machine", ""),
                ("when p99 missed: highest rate holding it, /s",
                 "rate_search.highest_holding_rate", "300"),
                ("… CPU there: gunicorn workers",
                 "rate_search.cpu_percent_of_one_core_there.gunicorn_workers", ""),
                ("… CPU there: worker processes",
                 "rate_search.cpu_percent_of_one_core_there.worker_processes", ""),
                ("… CPU there: PostgreSQL server",
                 "rate_search.cpu_percent_of_one_core_there.postgresql_server", "")]
        self.lines += self.by_db("load", rows)
        self.lines += [""] + self.status_notes("load")

        self.section("Load: operators")
        operators = first.get("operators") or {}
        self.lines.append(
            f"{_fmt(operators.get('sessions'))} signed-in sessions cycling through dashboard, "
            "jobs table, a job page, tenants, a tenant page, failures and handlers, each page "
            "followed by the fragments a browser loads with it, think time "
            f"{_fmt(operators.get('think_s'))} s on average, for {_fmt(operators.get('seconds'))}"
            f" s, while the API takes {_fmt(operators.get('api_rate', first.get('rate')))} "
            "submissions a second. p50 / p95 / max in ms "
            "(round trip on the loopback), target p95 ≤ 200 ms.")
        self.lines.append("")
        names = _keys(self.data("load", db) or {} for db in self.databases)
        body = [[name, *[_triple(dig(self.data("load", db), "operators.pages_ms"), name)
                         for db in self.databases]] for name in names("operators.pages_ms")]
        self.lines += _table(["page (n, p50 / p95 / max ms)", *self.databases], body)
        self.lines.append("")
        self.lines += self.by_db("load", [
            ("API meanwhile: rate asked, /s", "operators.api_rate", ""),
            ("API meanwhile: latency p99, ms", "operators.api_meanwhile.latency_ms.p99", ""),
            ("API meanwhile: errors", "operators.api_meanwhile.error_count", "0"),
            ("API meanwhile: achieved, /s", "operators.api_meanwhile.achieved_rate_per_s", ""),
            ("operator errors", "operators.errors", "none")])
        self.lines += [""] + self.status_notes("load")

        self.section("Load: backlog over time")
        self.lines.append("Jobs queued (waiting for a runner) every 5 s of the API phase, then "
                          "the drain.")
        self.lines.append("")
        for db in self.databases:
            series = dig(self.data("load", db), "api.backlog.series") or []
            if series:
                t0 = series[0]["t"]
                points = [f"{s['t'] - t0:.0f}s: {s['queued']}" for s in series[::5]]
                self.lines.append(f"- {db}: " + ", ".join(points))
        self.lines += self.status_notes("load")

    def generic_section(self, title: str, name: str) -> None:
        self.section(title)
        script = f"`benchmarks/{name}.py`"
        self.lines.append(f"{script} (its own JSON: every scalar figure; the sizes are in the "
                          "commands below).")
        self.lines.append("")
        keys: list[str] = []
        for db in self.databases:
            for key in _flat(self.data(name, db) or {}):
                if key not in keys:
                    keys.append(key)
        if keys:
            body = [[key, *[_flat(self.data(name, db) or {}).get(key) for db in self.databases]]
                    for key in keys]
            self.lines += _table(["figure", *self.databases], body)
        for db in self.databases:
            problems = dig(self.data(name, db), "problems")
            if problems:
                self.lines.append(f"- {db} problems: " + "; ".join(map(str, problems)))
        self.lines += [""] + self.status_notes(name)

    def problems_section(self) -> None:
        self.section("Problems")
        lines = [f"- {o.name} on {o.database}: {o.error}" for o in self.outcomes.values()
                 if o.error]
        self.lines += lines or ["None: every benchmark asked for ran and its checks held."]

    def rerun_section(self) -> None:
        self.section("How to run it again")
        self.lines += [
            "```bash",
            'pip install -e ".[test,bench]"',
            "python benchmarks/run_all.py            # both databases, full sizes; writes this "
            "file",
            "python benchmarks/run_all.py --database-url postgresql+psycopg://user@host:port/db",
            "python benchmarks/soak.py --minutes 30  # memory over 30 minutes (not part of "
            "run_all)",
            "```",
            "",
            f"Each benchmark's JSON and progress log were kept in `{self.info.get('raw_dir')}` "
            "(not committed). The commands of this run:",
            "",
        ]
        for outcome in self.outcomes.values():
            if outcome.command:
                args = " ".join(a if not a.endswith(".py") else "benchmarks/" + a.rsplit("/", 1)[-1]
                                for a in outcome.command[1:])
                self.lines.append(f"- {outcome.name} on {outcome.database} "
                                  f"({_fmt(outcome.seconds)} s): `{args}`")


# -- cell builders --------------------------------------------------------------------------

def _slowest(table: dict | None) -> str | None:
    if not table:
        return None
    name, timing = max(table.items(), key=lambda kv: kv[1].get("p95") or 0)
    return f"{_fmt(timing.get('p95'))} ({name})"


def _pair(timing: Any, name: str | None = None) -> str:
    if name is not None:
        timing = (timing or {}).get(name)
    if not timing:
        return DASH
    return f"{_fmt(timing.get('p50'))} / {_fmt(timing.get('p95'))}"


def _jobs_label(jobs: Any) -> str | None:
    """1000000 → "1M", 10000000 → "10M", 3000 → "3,000"."""
    if not isinstance(jobs, int) or jobs <= 0:
        return None
    if jobs % 1_000_000 == 0:
        return f"{jobs // 1_000_000}M"
    return f"{jobs:,}"


SCALE_TARGET_MS = 200.0
SCALE_TARGET_RATIO = 1.5


def _scale_verdict(before: dict | None, after: dict | None) -> str:
    """Whether a figure over the larger history met the issue's scale target: p95 ≤ 200 ms,
    or at most 1.5× its figure over the smaller history."""
    p95, was = (after or {}).get("p95"), (before or {}).get("p95")
    if p95 is None:
        return DASH
    if p95 <= SCALE_TARGET_MS:
        return "yes"
    if was and p95 <= SCALE_TARGET_RATIO * was:
        return f"yes ({p95 / was:.2f}×)"
    return f"**no** ({p95 / was:.1f}×)" if was else "**no**"


def _over_scale(before: dict | None, after: dict | None) -> str:
    """The figures over the larger history that missed the scale target, or "none"."""
    missed = [label for label, timing in (after or {}).items()
              if _scale_verdict((before or {}).get(label), timing).startswith("**no**")]
    return ", ".join(missed) if missed else "none"


def _triple(table: dict | None, name: str) -> str:
    timing = (table or {}).get(name)
    if not timing:
        return DASH
    return (f"{timing.get('n')}: {_fmt(timing.get('p50'))} / {_fmt(timing.get('p95'))} / "
            f"{_fmt(timing.get('max'))}")


def _keys(datas):
    datas = list(datas)

    def names(dotted: str) -> list[str]:
        found: list[str] = []
        for data in datas:
            for key in (dig(data, dotted) or {}):
                if key not in found:
                    found.append(key)
        return found
    return names


_NOT_FIGURES = {"machine", "python", "date", "commit", "note", "elapsed_s", "problems",
                "executions_per_process", "targets", "details", "final_statuses", "workdir"}


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    """Scalars, and one level of small dicts of scalars, as ``a.b`` keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _NOT_FIGURES:
            continue
        if isinstance(value, dict) and not prefix and all(
                not isinstance(v, (dict, list)) for v in value.values()):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        elif not isinstance(value, (dict, list)):
            out[prefix + key] = value
    return out
