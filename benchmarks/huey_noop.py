#!/usr/bin/env python
"""The engine benchmark's no-op workload on Huey's SQLite queue, for context; ONE JSON object.

    pip install -e ".[bench]"            # huey is a benchmark-only dependency
    python benchmarks/huey_noop.py                # the engine benchmark's job counts
    python benchmarks/huey_noop.py --scale 0.05   # a quick run

The same two figures as ``benchmarks/engine.py``, with the same job counts, on a fresh
``SqliteHuey`` file (WAL, Huey's defaults) in a temporary folder:

- ``enqueue_one_by_one_per_s``: 5000×scale calls of a ``@huey.task()`` from one thread (each an
  autocommitted insert);
- ``drain_noop_per_s``: 10000×scale queued no-op tasks run by a consumer in this process with 8
  worker threads (``huey.create_consumer(workers=8, worker_type="thread")``), from
  ``consumer.start()`` to the last task's return: the engine's in-process drain's threads;
- ``drain_noop_16_threads_per_s``: the same with 16 threads, as many as the engine's deployed
  drain runs (2 worker processes × 8 threads; ``drain_workers_per_s``).

Each drain runs ``--repeat`` times (3) on a fresh file; the figure is the median.

What the numbers leave out: Huey keeps a task as one blob in one table and deletes it when a
worker takes it. The console's engine does more per job — tenants and their limits checked in
the insert's transaction, a lease per claim (a crashed runner's jobs come back), an attempt row
per run, hourly rollups, fair sharing between tenants — so its rates are those of a different
contract, printed side by side only to place them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.report import load_average, log, run_info  # noqa: E402

INSTALL_HINT = 'huey is not installed: pip install -e ".[bench]" (or pip install huey)'


class _Queue:
    """A fresh ``SqliteHuey`` file with the no-op task, counting what its consumer ran."""

    def __init__(self, folder: str):
        from huey import SqliteHuey

        self.huey = SqliteHuey("bench", filename=str(Path(folder) / "huey.db"))
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.executed = 0
        self.target = 0

        @self.huey.task()
        def noop(i):
            with self._lock:
                self.executed += 1
                if self.executed >= self.target:
                    self.done.set()

        self.noop = noop
        for i in range(50):   # warm: the file, its tables, the connection
            noop(i)
        self.huey.flush()


def enqueue(n: int) -> float:
    """Tasks per second, ``n`` queued one by one from one thread."""
    with tempfile.TemporaryDirectory(prefix="huey-bench-") as folder:
        queue = _Queue(folder)
        started = time.perf_counter()
        for i in range(n):
            queue.noop(i)
        return n / (time.perf_counter() - started)


def drain(n: int, threads: int) -> float:
    """Tasks per second, ``n`` queued no-ops run by a consumer of ``threads`` worker threads,
    from ``consumer.start()`` to the last task's return."""
    with tempfile.TemporaryDirectory(prefix="huey-bench-") as folder:
        queue = _Queue(folder)
        for i in range(n):
            queue.noop(i)
        queue.target = n
        consumer = queue.huey.create_consumer(workers=threads, worker_type="thread",
                                              periodic=False, initial_delay=0.01,
                                              max_delay=0.1)
        started = time.perf_counter()
        consumer.start()
        finished = queue.done.wait(timeout=max(120.0, n / 20))
        seconds = time.perf_counter() - started
        consumer.stop(graceful=True)
        if not finished:
            raise RuntimeError(f"huey ran {queue.executed} of {n} tasks in {seconds:.0f} s")
        return n / seconds


def measure(scale: float = 1.0, threads: tuple[int, ...] = (8, 16), repeat: int = 3) -> dict:
    try:
        import huey  # noqa: F401
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None

    enqueue_n = max(50, int(round(5000 * scale)))
    drain_n = max(100, int(round(10000 * scale)))
    log(f"huey: enqueue one by one, {enqueue_n} tasks")
    result: dict = {"enqueue_one_by_one_per_s": round(enqueue(enqueue_n), 1)}
    runs: dict[str, list[float]] = {}
    for count in threads:
        key = "drain_noop_per_s" if count == 8 else f"drain_noop_{count}_threads_per_s"
        log(f"huey: drain {drain_n} queued no-op tasks with {count} worker threads, "
            f"{repeat} runs")
        runs[key] = [round(drain(drain_n, count), 1) for _ in range(repeat)]
        result[key] = round(statistics.median(runs[key]), 1)
        log(f"  huey: {result[key]:,.0f}/s (runs {runs[key]})")
    result["details"] = {"enqueue_jobs": enqueue_n, "drain_jobs": drain_n,
                         "threads": list(threads), "drain_runs": runs,
                         "configuration": "SqliteHuey defaults (WAL); a thread consumer "
                                          "(create_consumer(workers=N, worker_type='thread', "
                                          "periodic=False, initial_delay=0.01, "
                                          "max_delay=0.1)) in the benchmark's process"}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the job counts (5000 enqueued, 10000 drained)")
    parser.add_argument("--threads", default="8,16",
                        help="consumer worker threads, one drain each: 8 as the engine's "
                             "in-process drain, 16 as its deployed 2 processes × 8 threads")
    parser.add_argument("--repeat", type=int, default=3,
                        help="drains of each size; the figure is their median")
    args = parser.parse_args(argv)
    started, load_before = time.monotonic(), load_average()
    import huey as huey_package

    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    result = measure(args.scale, threads, max(1, args.repeat))
    print(json.dumps({"queue": "huey SqliteHuey", "huey": huey_package.__version__,
                      "scale": args.scale, **result,
                      **run_info(None, load_before, started)}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ImportError:
        sys.exit(INSTALL_HINT)
