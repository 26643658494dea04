"""In-process publish/subscribe for job updates and metrics."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class EventStream:
    """``stream.subscribe(callback) -> unsubscribe``. Callbacks run in the publishing thread,
    so they must be quick; one that raises is logged and the others still run."""

    def __init__(self, name: str):
        self.name = name
        self._subscribers: list[Callable[[Any], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]
        return unsubscribe

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def publish(self, event: Any) -> None:
        for callback in self._subscribers:  # a copy-on-write list: safe without the lock
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not break the runner
                log.exception("subscriber of %s failed", self.name)

    def publish_many(self, events) -> None:
        if self._subscribers:
            for event in events:
                self.publish(event)


class PeriodicStream(EventStream):
    """Publishes what ``produce()`` returns (an event, or a list of events) every ``interval``
    seconds, while anyone subscribes; the producer runs in a thread of its own."""

    def __init__(self, name: str, produce: Callable[[], Any], interval: float):
        super().__init__(name)
        self._produce = produce
        self.interval = interval
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(callback)
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._stop.is_set():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                                name=f"{self.name}-publisher", daemon=True)
                self._thread.start()

        def unsubscribe_and_maybe_stop() -> None:
            unsubscribe()
            if not self.has_subscribers:
                self._stop.set()
        return unsubscribe_and_maybe_stop

    def _run(self, stop: threading.Event) -> None:
        while True:
            started = time.monotonic()
            try:
                produced = self._produce()
            except Exception:  # the database blinked: skip this beat, keep the rhythm
                log.warning("%s: could not compute the update", self.name, exc_info=True)
            else:
                for event in produced if isinstance(produced, list) else [produced]:
                    self.publish(event)
            if stop.wait(max(0.0, self.interval - (time.monotonic() - started))):
                return
