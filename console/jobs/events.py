"""In-process publish/subscribe for job updates and metrics."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

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
