"""A pool of handler threads that keeps its capacity when a handler never returns.

Python cannot kill a thread. When an attempt passes its deadline the runner records it as a
timeout, the thread running it is retired (left to finish on its own, its result discarded) and a
fresh thread takes its place, so one hung handler never costs the runner a slot.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()
_ids = itertools.count(1)


@dataclass(eq=False)
class WorkItem:
    """One claimed job on its way through the pool."""

    job: Any
    duration_limit: float | None          # seconds; None: no timeout
    started_monotonic: float | None = None
    deadline: float | None = None         # monotonic
    state: str = "waiting"                # waiting → running → done | timed_out | released
    context: Any = None
    log: Any = None                       # its AttemptLog (attempt_logs.py) once it runs
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> bool:
        with self.lock:
            if self.state != "waiting":
                return False
            self.state = "running"
            self.started_monotonic = time.monotonic()
            if self.duration_limit is not None:
                self.deadline = self.started_monotonic + self.duration_limit
            self.thread = threading.current_thread()
            return True

    def transition(self, from_state: str, to_state: str) -> bool:
        with self.lock:
            if self.state != from_state:
                return False
            self.state = to_state
            return True


class WorkerPool:
    def __init__(self, size: int, run: Callable[[WorkItem], None], name: str = "jobs",
                 on_slot_freed: Callable[[], None] = lambda: None):
        self.size = size
        self._run = run
        self._on_slot_freed = on_slot_freed
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._retired: set[threading.Thread] = set()
        self._outstanding: set[WorkItem] = set()   # submitted, not yet finished
        self._stopping = False

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work, name=f"{self._name}-worker-{next(_ids)}",
                                  daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            try:
                if item.begin():
                    self._run(item)
            except Exception:  # the runner's own bookkeeping failed; never lose the thread
                log.exception("worker failed while running job %s", getattr(item.job, "id", "?"))
            finally:
                with self._lock:
                    self._outstanding.discard(item)
                    retired = me in self._retired
                    if retired:
                        self._retired.discard(me)
                self._on_slot_freed()
            if retired:
                return  # a replacement took this thread's place when its attempt timed out
        with self._lock:
            self._threads.discard(me)

    def submit(self, item: WorkItem) -> None:
        with self._lock:
            self._outstanding.add(item)
        self._queue.put(item)

    @property
    def free_slots(self) -> int:
        """How many more items would start at once."""
        with self._lock:
            return self.size - len(self._outstanding)

    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._outstanding)

    def running_items(self) -> list[WorkItem]:
        with self._lock:
            return [i for i in self._outstanding if i.state == "running"]

    def waiting_items(self) -> list[WorkItem]:
        with self._lock:
            return [i for i in self._outstanding if i.state == "waiting"]

    def abandon(self, item: WorkItem) -> None:
        """The item's attempt is over (timed out): free its slot and replace its thread."""
        with self._lock:
            self._outstanding.discard(item)
            thread = item.thread
            if thread is not None and thread in self._threads:
                self._threads.discard(thread)
                self._retired.add(thread)
        if not self._stopping:
            self._spawn()

    def stop(self, wait: float = 0.0) -> None:
        """Let running items finish (up to ``wait`` seconds); the threads then exit."""
        self._stopping = True
        with self._lock:
            count = len(self._threads)
        for _ in range(count):
            self._queue.put(_STOP)
        deadline = time.monotonic() + wait
        for thread in list(self._threads):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            thread.join(remaining)
