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
  ``consumer.start()`` to the last task's return.

What the numbers leave out: Huey keeps a task as one blob in one table and deletes it when a
worker takes it. The console's engine does more per job — tenants and their limits checked in
the insert's transaction, a lease per claim (a crashed runner's jobs come back), an attempt row
per run, hourly rollups, fair sharing between tenants — so its rates are those of a different
contract, printed side by side only to place them.
"""
from __future__ import annotations

import argparse
import json
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


def measure(scale: float = 1.0, threads: int = 8) -> dict:
    try:
        from huey import SqliteHuey
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None

    enqueue_n = max(50, int(round(5000 * scale)))
    drain_n = max(100, int(round(10000 * scale)))
    with tempfile.TemporaryDirectory(prefix="huey-bench-") as folder:
        huey = SqliteHuey("bench", filename=str(Path(folder) / "huey.db"))
        done = threading.Event()
        lock = threading.Lock()
        executed = [0]
        target = [0]

        @huey.task()
        def noop(i):
            with lock:
                executed[0] += 1
                if executed[0] >= target[0]:
                    done.set()

        for i in range(50):   # warm: the file, its tables, the connection
            noop(i)
        huey.flush()

        log(f"huey: enqueue one by one, {enqueue_n} tasks")
        started = time.perf_counter()
        for i in range(enqueue_n):
            noop(i)
        enqueue_s = time.perf_counter() - started
        huey.flush()

        log(f"huey: drain {drain_n} queued no-op tasks with {threads} worker threads")
        for i in range(drain_n):
            noop(i)
        target[0] = drain_n
        consumer = huey.create_consumer(workers=threads, worker_type="thread", periodic=False,
                                        initial_delay=0.01, max_delay=0.1)
        started = time.perf_counter()
        consumer.start()
        finished = done.wait(timeout=max(120.0, drain_n / 20))
        drain_s = time.perf_counter() - started
        consumer.stop(graceful=True)
        left = len(huey)
    if not finished:
        raise RuntimeError(f"huey ran {executed[0]} of {drain_n} tasks in {drain_s:.0f} s")
    result = {"enqueue_one_by_one_per_s": round(enqueue_n / enqueue_s, 1),
              "drain_noop_per_s": round(drain_n / drain_s, 1),
              "details": {"enqueue_jobs": enqueue_n, "drain_jobs": drain_n, "threads": threads,
                          "enqueue_seconds": round(enqueue_s, 3),
                          "drain_seconds": round(drain_s, 3), "left_in_queue": left}}
    log(f"  huey: enqueue {result['enqueue_one_by_one_per_s']:,.0f}/s, drain "
        f"{result['drain_noop_per_s']:,.0f}/s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the job counts (5000 enqueued, 10000 drained)")
    parser.add_argument("--threads", type=int, default=8, help="consumer worker threads")
    args = parser.parse_args(argv)
    started, load_before = time.monotonic(), load_average()
    import huey as huey_package

    result = measure(args.scale, args.threads)
    print(json.dumps({"queue": "huey SqliteHuey", "huey": huey_package.__version__,
                      "scale": args.scale, **result,
                      **run_info(None, load_before, started)}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ImportError:
        sys.exit(INSTALL_HINT)
