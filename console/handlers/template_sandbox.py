"""The render process: renders tenants' Jinja templates under a CPU, output and memory bound.

It runs as a script of its own (``python template_sandbox.py CPU OUTPUT MEMORY``), started and
fed by ``console/handlers/rendering.py``; it imports only the standard library and Jinja, so it
starts small and holds nothing of the app (no database connection, no secrets).

Why a process: a Python thread cannot be stopped, so a template that loops for minutes or grows a
string without end would keep a runner thread and its memory for as long as it liked. Here:

- **CPU**: before each render, a CPU-time timer (``ITIMER_PROF``) is armed for the budget; when it
  fires the render is interrupted and the process lives on for the next one. ``RLIMIT_CPU`` a few
  seconds past the budget is the backstop for one C call that never returns to the interpreter
  (the kernel then ends the process with SIGXCPU), and the parent's wall-clock deadline the last.
- **Output**: chunks are counted as Jinja produces them and the render stops at the cap; ``*``,
  ``**`` and ``+`` refuse, before computing it, a value larger than the cap could ever print.
- **Memory**: ``RLIMIT_AS`` a fixed allowance above what the process holds once started; a render
  past it gets ``MemoryError`` and the process exits after answering (the parent starts another).

Protocol, on stdin and stdout: frames of a 4-byte big-endian length and UTF-8 JSON. The process
first writes ``{"ready": true}``; then for each request ``{"templates": [[name, source,
autoescape], …], "variables": {…}}`` it answers ``{"ok": {name: text}}``, ``{"limit": "cpu" |
"output" | "memory", "detail": …}`` or ``{"error": class name, "detail": …}``.
"""
from __future__ import annotations

import json
import math
import operator
import os
import resource
import select
import signal
import sys
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

# An idle process exits after this long with no request; the parent starts a fresh one when it
# needs one, so an app that stopped sending email holds no process.
IDLE_EXIT_SECONDS = 300.0
# RLIMIT_CPU counts whole seconds; this far past the budget the kernel stops a C call that the
# CPU-time timer's signal cannot interrupt.
CPU_BACKSTOP_SECONDS = 2
# Templates compiled once and kept: sources up to this size, up to this many.
CACHE_SOURCE_CHARS = 16 * 1024
CACHE_ENTRIES = 256
# A bigger power than this many bits is refused outright (no email prints such a number).
MAX_POWER_BITS = 4096


class RenderLimit(Exception):
    """A render passed one of its bounds; ``kind`` is ``cpu``, ``output`` or ``memory``."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox, plus arithmetic that refuses results beyond the output cap up front."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, max_output_bytes: int, **options: Any):
        super().__init__(undefined=StrictUndefined, **options)
        self.max_output_bytes = max_output_bytes

    def call_binop(self, context, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            self._check_repeat(left, right)
            self._check_repeat(right, left)
        elif op == "+":
            if _is_sized(left) and _is_sized(right):
                self._check_size(len(left) + len(right), "+")
        elif op == "**":
            _check_power(left, right)
        return _BINOPS[op](left, right)

    def _check_repeat(self, sequence: Any, times: Any) -> None:
        if _is_sized(sequence) and isinstance(times, int) and not isinstance(times, bool):
            self._check_size(len(sequence) * times, "*")

    def _check_size(self, size: int, op: str) -> None:
        if size > self.max_output_bytes:
            raise RenderLimit("output", f"'{op}' would make a value of {size} items, more than "
                                        f"the {self.max_output_bytes} bytes a message may have")


_BINOPS = {"*": operator.mul, "**": operator.pow, "+": operator.add}


def _is_sized(value: Any) -> bool:
    return isinstance(value, (str, list, tuple, bytes))


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if base.bit_length() * exponent > MAX_POWER_BITS:
            raise RenderLimit("output", f"'**' would make a number of more than "
                                        f"{MAX_POWER_BITS} bits")


class CpuBudget:
    """Arms the CPU-time timer for one render; its signal interrupts the render."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = False
        signal.signal(signal.SIGPROF, self._expired)

    def __enter__(self) -> CpuBudget:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = usage.ru_utime + usage.ru_stime
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = math.ceil(used + self.seconds) + CPU_BACKSTOP_SECONDS
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        self.armed = True
        signal.setitimer(signal.ITIMER_PROF, self.seconds)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)

    def _expired(self, signum: int, frame: Any) -> None:
        if not self.armed:
            return
        # Again shortly, should the code that was running swallow this exception.
        signal.setitimer(signal.ITIMER_PROF, 0.05)
        raise RenderLimit("cpu", f"the render used more than {self.seconds:g} s of CPU time")


class Renderer:
    """Renders requests within the output cap; the caller holds the CPU budget."""

    def __init__(self, max_output_bytes: int):
        self.max_output_bytes = max_output_bytes
        # Subject and plain text are not HTML: escaping them would show "&amp;" to readers.
        self._envs = {False: BoundedSandbox(max_output_bytes, autoescape=False),
                      True: BoundedSandbox(max_output_bytes, autoescape=True)}
        self._cache: dict[tuple[bool, str], Any] = {}

    def render(self, templates: list[list[Any]], variables: dict[str, Any]) -> dict[str, str]:
        left = self.max_output_bytes
        rendered = {}
        for name, source, autoescape in templates:
            parts = []
            for chunk in self._compiled(bool(autoescape), source).generate(variables):
                left -= len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "replace"))
                if left < 0:
                    raise RenderLimit("output", f"the rendered message passed "
                                                f"{self.max_output_bytes} bytes")
                parts.append(chunk)
            rendered[name] = "".join(parts)
        return rendered

    def _compiled(self, autoescape: bool, source: str):
        key = (autoescape, source)
        template = self._cache.get(key)
        if template is None:
            template = self._envs[autoescape].from_string(source)
            if len(source) <= CACHE_SOURCE_CHARS:
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[key] = template
        return template


def answer(renderer: Renderer, budget: CpuBudget, request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request (never raises but for the process's own failure)."""
    try:
        try:
            with budget:
                return {"ok": renderer.render(request["templates"], request["variables"])}
        except MemoryError:
            raise RenderLimit("memory", "the render ran out of its memory allowance") from None
        except RecursionError:
            raise TemplateError("the template nests or recurses too deeply") from None
    except RenderLimit as exc:
        return {"limit": exc.kind, "detail": str(exc)}
    except TemplateError as exc:
        return {"error": "TemplateError", "detail": str(exc)}
    except Exception as exc:   # the template raised (1 / 0, a bad filter argument …)
        return {"error": type(exc).__name__, "detail": str(exc)}


def read_frame(stream, idle_seconds: float | None = None) -> Any:
    """The next frame's JSON; None at end of input or after ``idle_seconds`` without one."""
    if idle_seconds is not None:
        ready, _, _ = select.select([stream], [], [], idle_seconds)
        if not ready:
            return None
    header = stream.read(4)
    if len(header) < 4:
        return None
    body = stream.read(int.from_bytes(header, "big"))
    return json.loads(body)


def write_frame(stream, value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")
    stream.write(len(body).to_bytes(4, "big") + body)
    stream.flush()


def limit_memory(allowance: int) -> None:
    """Cap the address space at what the process maps now plus ``allowance`` bytes."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = mapped + allowance
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def main(argv: list[str]) -> int:
    cpu_seconds, max_output, memory = float(argv[1]), int(argv[2]), int(argv[3])
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr     # nothing printed by accident can corrupt a reply
    # The parent's Ctrl-C reaches its whole process group; the parent ends this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    renderer = Renderer(max_output)
    budget = CpuBudget(cpu_seconds)
    answer(renderer, budget, {"templates": [["warm-up", "{{ x }}", True]],
                              "variables": {"x": 1}})
    if os.path.exists("/proc/self/statm"):
        limit_memory(memory)
    write_frame(replies, {"ready": True})
    while True:
        request = read_frame(requests, IDLE_EXIT_SECONDS)
        if request is None:
            return 0
        reply = answer(renderer, budget, request)
        write_frame(replies, reply)
        if reply.get("limit") == "memory":
            return 0     # leave no fragmented heap behind: the parent starts a fresh process


if __name__ == "__main__":
    sys.exit(main(sys.argv))
