"""The live stream: a job's change reaches an open page as server-sent events."""
from __future__ import annotations

import threading

import pytest

from tests.support import wait_until


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


@pytest.fixture
def app_config(app_config):
    return {**app_config, "STREAMS_PER_SESSION": 2, "STREAMS_PER_PROCESS": 3}


class StreamReader(threading.Thread):
    """One open page's stream, read on a thread of its own (as a server thread serves it)."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client, self.text, self.connected = client, "", threading.Event()
        self.start()
        assert self.connected.wait(10), "the stream to open"

    def run(self):
        response = self.client.get("/events", buffered=False)
        try:
            for chunk in response.response:
                self.text += chunk.decode() if isinstance(chunk, bytes) else chunk
                self.connected.set()
        finally:
            response.close()

    def ended(self) -> bool:
        self.join(10)
        return not self.is_alive()


def test_a_session_past_its_cap_closes_its_oldest_stream(client_as, service):
    from console.web.stream import close_streams, open_stream_count

    client = client_as("viewer")
    oldest, second = StreamReader(client), StreamReader(client)
    assert open_stream_count() == 2
    newest = StreamReader(client)                 # the third of a session with room for two
    assert oldest.ended() and "event: stream-closed" in oldest.text   # telling the page
    assert open_stream_count() == 2 and second.is_alive() and newest.is_alive()
    close_streams()
    assert second.ended() and newest.ended()
    wait_until(lambda: open_stream_count() == 0, 5, "every stream forgotten")
    assert not service.job_updates.has_subscribers


def test_a_process_past_its_cap_closes_its_oldest_stream(client_as, service, make_tenant):
    from console.web.stream import close_streams, open_stream_count

    make_tenant("acme")
    readers = [StreamReader(client_as(role)) for role in ("viewer", "operator", "admin")]
    assert open_stream_count() == 3
    fourth = StreamReader(client_as("viewer"))    # another session: the process's cap is 3
    assert readers[0].ended() and "event: stream-closed" in readers[0].text
    assert open_stream_count() == 3
    job = service.queue_job("immediate", "noop", {}, "acme")   # the others still stream
    service.run_until_idle(timeout=10)
    wait_until(lambda: f"event: job-{job.id}" in fourth.text, 5, "the change on the stream")
    assert "stream-closed" not in fourth.text
    close_streams()
    assert all(r.ended() for r in [*readers[1:], fourth])
