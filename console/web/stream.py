"""Live updates: one server-sent-events stream per open page (htmx's SSE extension listens).

Every job status change anywhere — this process, another gunicorn worker, a ``flask worker`` on
another machine — reaches ``JobService.job_updates`` (console/jobs/feeds.py) and is sent as two
events: ``job-<id>`` with the job's status badge (pages swap it in where that job is shown) and
``job-event`` with a line for the dashboard's feed. A connection holds one server thread, so it
ends after ``STREAM_SECONDS``; the browser reconnects by itself. A user bound to tenants gets
only its tenants' changes: the others are dropped before they are queued (console/web/scope.py).
"""
from __future__ import annotations

import queue
import signal
import threading
import time
import weakref

from flask import Blueprint, Response, render_template, stream_with_context

from ..jobs import get_job_service
from ..jobs.types import SystemJob
from .scope import current_scope, in_scope, tenant_scoped

bp = Blueprint("stream", __name__)
STREAM_SECONDS = 300
KEEP_ALIVE_SECONDS = 15
COALESCE_SECONDS = 0.25   # gather changes this long, then send the newest state of each job
FEED_LINES_PER_SEND = 20  # a flood of changes shows its newest lines, not all of them


# Open streams' queues: on shutdown each gets _CLOSE, so a server's graceful stop (gunicorn waits
# for running requests) is not held up by pages that would otherwise stay connected for minutes.
_open_streams: weakref.WeakSet[queue.SimpleQueue] = weakref.WeakSet()
_CLOSE = object()


def close_streams() -> None:
    for updates in list(_open_streams):
        updates.put(_CLOSE)


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


@bp.get("/events")
@tenant_scoped
def events():
    updates: queue.SimpleQueue = queue.SimpleQueue()
    _open_streams.add(updates)
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
                time.sleep(COALESCE_SECONDS)
                newest: dict[str, SystemJob] = {first.id: first}
                while True:
                    try:
                        job = updates.get_nowait()
                    except queue.Empty:
                        break
                    if job is _CLOSE:
                        ends = 0.0   # send what was gathered, then end
                        continue
                    newest.pop(job.id, None)
                    newest[job.id] = job
                chunks = [sse_event(f"job-{job.id}",
                                    render_template("jobs/_status.html", job=job))
                          for job in newest.values()]
                chunks += [sse_event("job-event",
                                     render_template("shared/_job_event.html", job=job))
                           for job in list(newest.values())[-FEED_LINES_PER_SEND:]]
                yield "".join(chunks)
        finally:
            unsubscribe()
            _open_streams.discard(updates)

    return Response(stream_with_context(generate()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
