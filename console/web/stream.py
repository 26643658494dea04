"""Live updates: one server-sent-events stream per open page (htmx's SSE extension listens).

Every job status change anywhere — this process, another gunicorn worker, a ``flask worker`` on
another machine — reaches ``JobService.job_updates`` (console/jobs/feeds.py) and is sent as two
events: ``job-<id>`` with the job's status badge (pages swap it in where that job is shown) and
``job-event`` with a line for the dashboard's feed. A connection holds one server thread, so it
ends after ``STREAM_SECONDS``; the browser reconnects by itself.

Streams are bounded, because each holds a thread the pages and the API need too: at most
``STREAMS_PER_SESSION`` per browser session and ``STREAMS_PER_PROCESS`` per process. A new
stream that would pass either cap closes the oldest one first (of that session, or of the
process) with a ``stream-closed`` event; that page closes its EventSource for good
(``sse-close`` in base.html) and polls instead (static/js/console.js fires ``live-poll``, which
the live parts of each page also refresh on), so it still shows every change, only later.
ends after ``STREAM_SECONDS``; the browser reconnects by itself. A user bound to tenants gets
only its tenants' changes: the others are dropped before they are queued (console/web/scope.py).
"""
from __future__ import annotations

import queue
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field

from flask import Blueprint, Response, current_app, render_template, session, stream_with_context

from ..jobs import get_job_service
from ..jobs.types import SystemJob
from .scope import current_scope, in_scope, tenant_scoped

bp = Blueprint("stream", __name__)
STREAM_SECONDS = 300
KEEP_ALIVE_SECONDS = 15
COALESCE_SECONDS = 0.25   # gather changes this long, then send the newest state of each job
FEED_LINES_PER_SEND = 20  # a flood of changes shows its newest lines, not all of them


@dataclass(eq=False)
class _Stream:
    session_key: str
    updates: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)


# This process's open streams, oldest first. On shutdown each gets _CLOSE, so a server's graceful
# stop (gunicorn waits for running requests) is not held up by pages that would otherwise stay
# connected for minutes; one pushed out by a newer stream gets _REPLACED.
_open_streams: list[_Stream] = []
_streams_lock = threading.Lock()
_CLOSE = object()
_REPLACED = object()
STREAM_SESSION_KEY = "stream_session"


def close_streams() -> None:
    with _streams_lock:
        streams = list(_open_streams)
    for stream in streams:
        stream.updates.put(_CLOSE)


def open_stream(session_key: str, per_session: int, per_process: int) -> _Stream:
    """Register a new stream, first closing the oldest ones that would leave it past a cap."""
    stream = _Stream(session_key)
    with _streams_lock:
        own = [s for s in _open_streams if s.session_key == session_key]
        pushed_out = own[:max(0, len(own) - per_session + 1)]
        rest = [s for s in _open_streams if s not in pushed_out]
        pushed_out += rest[:max(0, len(rest) - per_process + 1)]
        for old in pushed_out:
            _open_streams.remove(old)
            old.updates.put(_REPLACED)
        _open_streams.append(stream)
    return stream


def forget_stream(stream: _Stream) -> None:
    with _streams_lock:
        if stream in _open_streams:
            _open_streams.remove(stream)


def open_stream_count() -> int:
    with _streams_lock:
        return len(_open_streams)


def close_streams_on_sigterm() -> None:
    """Chain a SIGTERM handler that ends open streams before the server's own handler (gunicorn's
    graceful stop, or Flask's) runs. Only the main thread may set handlers; elsewhere, skip."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "closes_streams", False):
        return

    def on_sigterm(signum, frame):
        close_streams()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    on_sigterm.closes_streams = True
    signal.signal(signal.SIGTERM, on_sigterm)


def sse_event(name: str, html: str) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    return f"event: {name}\n{data}\n\n"


def _session_key() -> str:
    """This browser session's id for the per-session cap (kept in its signed cookie)."""
    key = session.get(STREAM_SESSION_KEY)
    if not key:
        key = session[STREAM_SESSION_KEY] = secrets.token_urlsafe(9)
    return key


STREAM_CLOSED = sse_event("stream-closed", "too many open pages")


@bp.get("/events")
@tenant_scoped
def events():
    config = current_app.config
    stream = open_stream(_session_key(), max(1, int(config["STREAMS_PER_SESSION"])),
                         max(1, int(config["STREAMS_PER_PROCESS"])))
    updates = stream.updates
    scope = current_scope()   # read now: the callback runs on the feed's thread, not this one

    def take(job: SystemJob) -> None:
        if in_scope(job.tenant_id, scope):
            updates.put(job)

    unsubscribe = get_job_service().job_updates.subscribe(take)

    def generate():
        try:
            yield "retry: 2000\n\n"
            ends = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < ends:
                try:
                    first = updates.get(timeout=KEEP_ALIVE_SECONDS)
                except queue.Empty:
                    yield ": keep-alive\n\n"   # also how a closed connection is noticed
                    continue
                if first is _CLOSE:
                    return
                if first is _REPLACED:
                    yield STREAM_CLOSED   # the page polls from now on
                    return
                time.sleep(COALESCE_SECONDS)
                replaced = False
                newest: dict[str, SystemJob] = {first.id: first}
                while True:
                    try:
                        job = updates.get_nowait()
                    except queue.Empty:
                        break
                    if job is _CLOSE or job is _REPLACED:
                        ends = 0.0   # send what was gathered, then end
                        replaced = replaced or job is _REPLACED
                        continue
                    newest.pop(job.id, None)
                    newest[job.id] = job
                chunks = [sse_event(f"job-{job.id}",
                                    render_template("jobs/_status.html", job=job))
                          for job in newest.values()]
                chunks += [sse_event("job-event",
                                     render_template("shared/_job_event.html", job=job))
                           for job in list(newest.values())[-FEED_LINES_PER_SEND:]]
                yield "".join(chunks) + (STREAM_CLOSED if replaced else "")
        finally:
            unsubscribe()
            forget_stream(stream)

    return Response(stream_with_context(generate()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
