"""The live stream: a job's change reaches an open page as server-sent events."""
from __future__ import annotations

import threading


def read_events_until(response, marker: str, limit: int = 50) -> str:
    """Read the event stream until ``marker`` appears (each chunk is one send)."""
    received = ""
    for _, chunk in zip(range(limit), response.response, strict=False):
        received += chunk.decode() if isinstance(chunk, bytes) else chunk
        if marker in received:
            break
    return received


def test_a_status_change_arrives_as_a_badge_and_a_feed_line(client_as, service, make_tenant):
    make_tenant("acme")
    client = client_as("viewer")
    response = client.get("/events", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    try:
        job = service.queue_job("immediate", "noop", {}, "acme")
        runner = threading.Thread(target=service.run_until_idle, kwargs={"timeout": 10})
        runner.start()
        received = read_events_until(response, "status-completed")
        runner.join()
    finally:
        response.close()
    assert received.startswith("retry: 2000")
    assert f"event: job-{job.id}\ndata: <span class=\"status status-completed\">" in received
    assert "event: job-event" in received and f'href="/jobs/{job.id}"' in received
    assert "status-completed" in received


def test_the_stream_unsubscribes_when_the_page_goes_away(client_as, service):
    response = client_as("viewer").get("/events", buffered=False)
    next(iter(response.response))
    assert service.job_updates.has_subscribers
    response.close()
    assert not service.job_updates.has_subscribers


def test_open_streams_end_when_the_server_stops(client_as, service):
    """A graceful stop (gunicorn waits for running requests) is not held up by open pages."""
    from console.web.stream import close_streams

    response = client_as("viewer").get("/events", buffered=False)
    chunks = iter(response.response)
    next(chunks)                      # connected
    close_streams()
    assert list(chunks) == []         # the stream ends at once instead of after minutes
    assert not service.job_updates.has_subscribers
