"""The render processes themselves: bounds, reuse, replacement, and the caller's deadline."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from console.handlers.rendering import (
    RenderUnavailable,
    TemplateFailed,
    TemplateLimitError,
    TemplateLimits,
    TemplateRenderer,
)
from tests.support import wait_until

LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def renderer():
    renderer = TemplateRenderer(TemplateLimits(cpu_seconds=0.5, max_output_bytes=4096,
                                               memory_bytes=64 * 1024 * 1024, processes=1))
    yield renderer
    renderer.close()


def body(text: str) -> list[tuple[str, str, bool]]:
    return [("body", text, False)]


def alive(pid: int) -> bool:
    """Running (not ended, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_text_and_html_render_as_jinja_would(renderer):
    assert renderer.render([("subject", "Hi {{ n }}", False), ("html", "<b>{{ n }}</b>", True)],
                           {"n": "A & <B>"}) == {"subject": "Hi A & <B>",
                                                 "html": "<b>A &amp; &lt;B&gt;</b>"}


def test_the_output_cap_counts_bytes_not_characters(renderer):
    assert len(renderer.render(body("{{ 'é' * 2048 }}"), {})["body"]) == 2048   # 4096 bytes
    with pytest.raises(TemplateLimitError) as caught:
        renderer.render(body("{{ 'é' * 2048 }}!"), {})
    assert caught.value.setting == "TEMPLATE_MAX_OUTPUT_BYTES"
    assert "4096 bytes" in str(caught.value)


def test_a_process_stopped_for_cpu_time_serves_the_next_render(renderer):
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match="TEMPLATE_CPU_SECONDS"):
        renderer.render(body(LOOPS), {})
    assert time.monotonic() - started < 3
    [pid] = renderer.process_ids
    assert renderer.render(body("ok {{ 1 + 1 }}"), {}) == {"body": "ok 2"}
    assert renderer.process_ids == [pid]


def test_a_process_that_ran_out_of_memory_is_replaced(renderer):
    renderer.render(body("warm"), {})
    [first] = renderer.process_ids
    with pytest.raises(TemplateLimitError, match="TEMPLATE_MEMORY_BYTES"):
        renderer.render(body('{% set ns = namespace(s="x") %}{% for i in range(40) %}'
                             '{% set ns.s = ns.s ~ ns.s %}{% endfor %}'), {})
    assert not alive(first) or renderer.process_ids != [first]
    assert renderer.render(body("again"), {}) == {"body": "again"}
    assert renderer.process_ids != [first]


def test_a_process_killed_while_idle_is_replaced_unseen(renderer):
    renderer.render(body("warm"), {})
    [pid] = renderer.process_ids
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 5, "the process to die")
    assert renderer.render(body("still {{ 'here' }}"), {}) == {"body": "still here"}


def test_the_callers_deadline_ends_the_render_and_its_process():
    renderer = TemplateRenderer(TemplateLimits(cpu_seconds=30, max_output_bytes=4096,
                                               memory_bytes=64 * 1024 * 1024, processes=1))
    try:
        renderer.render(body("warm"), {})
        [pid] = renderer.process_ids
        started = time.monotonic()
        with pytest.raises(RenderUnavailable, match="deadline"):
            renderer.render(body(LOOPS), {}, deadline=time.monotonic() + 0.5)
        assert time.monotonic() - started < 2
        assert not alive(pid)
        assert renderer.process_ids == []
    finally:
        renderer.close()


def test_renders_wait_for_the_one_process_and_all_get_their_answer(renderer):
    answers = {}

    def render(n: int) -> None:
        answers[n] = renderer.render(body("{{ n }}"), {"n": n})["body"]

    threads = [threading.Thread(target=render, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {n: str(n) for n in range(6)}
    assert len(renderer.process_ids) == 1


def test_the_sandbox_still_refuses_python_internals(renderer):
    with pytest.raises(TemplateFailed, match="unsafe"):
        renderer.render(body("{{ ''.__class__.__mro__[1].__subclasses__() }}"), {})
