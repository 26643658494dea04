"""Tenants' templates rendered outside the runner: a small pool of long-lived render processes.

A Python thread cannot be stopped, so a template that loops for minutes or grows a string without
end must not run on a runner thread: it would keep the thread and its memory past the job's
timeout. Each render goes to a process of ``template_sandbox.py`` instead, which bounds its CPU
time, output and memory itself (see there); this side bounds the wall-clock time, ends a process
that overstays, and starts another in its place. The answer is read as a stream, at most the
output cap's worth (as JSON), so a render can never cost this process more than that.

Settings (``console/defaults.py``): ``TEMPLATE_CPU_SECONDS``, ``TEMPLATE_MAX_OUTPUT_BYTES``,
``TEMPLATE_MEMORY_BYTES``, ``TEMPLATE_RENDER_PROCESSES``.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .delivery import config_value

log = logging.getLogger(__name__)

_SCRIPT = Path(__file__).with_name("template_sandbox.py")
# A render never waits on anything but the CPU: wall-clock time beyond this many times its CPU
# budget means its process is starved or stuck, and is ended.
WALL_FACTOR = 10.0
# How long a new render process may take to start (the interpreter and Jinja's imports).
START_SECONDS = 30.0
# JSON escapes a control character as six bytes: the longest answer the output cap allows.
_JSON_EXPANSION = 6
_FRAME_SLACK = 64 * 1024


class TemplateLimitError(Exception):
    """The render passed a bound; ``setting`` names it. Rendering again would do the same."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


class TemplateFailed(Exception):
    """The template raised while rendering (a missing variable, a sandbox refusal, 1 / 0)."""


class RenderUnavailable(Exception):
    """No answer for reasons outside the template (the job's deadline, a starved machine):
    worth another try."""


@dataclass(frozen=True)
class TemplateLimits:
    cpu_seconds: float
    max_output_bytes: int
    memory_bytes: int
    processes: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> TemplateLimits:
        return cls(cpu_seconds=float(config_value(config, "TEMPLATE_CPU_SECONDS")),
                   max_output_bytes=int(config_value(config, "TEMPLATE_MAX_OUTPUT_BYTES")),
                   memory_bytes=int(config_value(config, "TEMPLATE_MEMORY_BYTES")),
                   processes=max(1, int(config_value(config, "TEMPLATE_RENDER_PROCESSES"))))

    def message(self, kind: str, detail: str) -> TemplateLimitError:
        """The error for a render past the bound ``kind``: which setting, and what to do."""
        if kind == "cpu":
            return TemplateLimitError("TEMPLATE_CPU_SECONDS", (
                f"the template used more than TEMPLATE_CPU_SECONDS ({self.cpu_seconds:g} s) of "
                f"CPU time and was stopped: make its loops shorter (a loop inside a loop over "
                f"large ranges runs their product), or ask an operator to raise the limit"))
        if kind == "memory":
            return TemplateLimitError("TEMPLATE_MEMORY_BYTES", (
                f"the template needed more than TEMPLATE_MEMORY_BYTES "
                f"({_mib(self.memory_bytes)}) of memory and was stopped: build smaller values "
                f"(a string doubled in a loop grows exponentially)"))
        return TemplateLimitError("TEMPLATE_MAX_OUTPUT_BYTES", (
            f"the rendered message would be larger than TEMPLATE_MAX_OUTPUT_BYTES "
            f"({_mib(self.max_output_bytes)}) and was stopped ({detail}): send less text, or "
            f"link to large content instead of including it"))


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:g} MiB" if size >= 1024 * 1024 else f"{size} bytes"


class _RenderProcess:
    """One ``template_sandbox.py`` process and its pipes."""

    def __init__(self, limits: TemplateLimits):
        # The parent's import path, so that the child finds the same Jinja; -P: not the
        # script's own folder, whose modules would shadow nothing it needs.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(_SCRIPT), repr(limits.cpu_seconds),
             str(limits.max_output_bytes), str(limits.memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self.max_frame = limits.max_output_bytes * _JSON_EXPANSION + _FRAME_SLACK

    def request(self, value: Any) -> None:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")
        self.process.stdin.write(len(body).to_bytes(4, "big") + body)
        self.process.stdin.flush()

    def reply(self, deadline: float, cancelled: Callable[[], bool]) -> Any:
        """The next answer; ``TimeoutError`` at ``deadline`` (monotonic), ``InterruptedError``
        once ``cancelled()``, ``EOFError`` if the process ended."""
        fd = self.process.stdout.fileno()
        buffer = bytearray()
        size = None
        while size is None or len(buffer) < 4 + size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if cancelled():
                raise InterruptedError
            ready, _, _ = select.select([fd], [], [], min(left, 0.1))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError
            buffer += chunk
            if size is None and len(buffer) >= 4:
                size = int.from_bytes(buffer[:4], "big")
                if size > self.max_frame:
                    raise EOFError     # not an answer this protocol gives: end the process
        return json.loads(bytes(buffer[4:4 + size]))

    def end(self) -> int | None:
        """Kill the process (if it still runs) and reap it; its return code."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            return self.process.wait(5)
        except subprocess.TimeoutExpired:
            return None
        finally:
            for pipe in (self.process.stdin, self.process.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass


def _end_all(processes: list[_RenderProcess]) -> None:
    for process in list(processes):
        process.end()


class TemplateRenderer:
    """Renders templates in at most ``limits.processes`` render processes, started on demand."""

    def __init__(self, limits: TemplateLimits):
        self.limits = limits
        self._idle: list[_RenderProcess] = []
        self._all: list[_RenderProcess] = []
        self._free = threading.Condition()
        # Processes end with the renderer (an app that is thrown away) or at interpreter exit.
        self._finalizer = weakref.finalize(self, _end_all, self._all)

    def render(self, templates: list[tuple[str, str, bool]], variables: Mapping[str, Any],
               deadline: float | None = None,
               cancelled: Callable[[], bool] = lambda: False) -> dict[str, str]:
        """``{name: text}`` for each ``(name, source, autoescape)``.

        :param deadline: monotonic time after which the caller gives up (the job's deadline).
        :raise TemplateLimitError: past a bound (CPU, output, memory): final.
        :raise TemplateFailed: the template raised: final.
        :raise RenderUnavailable: the deadline passed, the caller was cancelled, or the render
            process was starved or died for another reason: another try may succeed.
        """
        request = {"templates": [list(t) for t in templates], "variables": dict(variables)}
        for fresh_try in (False, True):
            process = self._acquire(deadline, cancelled)
            try:
                process.request(request)
            except OSError:     # it had exited while idle (IDLE_EXIT_SECONDS): start another
                self._discard(process)
                if fresh_try:
                    raise RenderUnavailable("could not reach a render process") from None
                continue
            try:
                return self._answer(process, deadline, cancelled)
            except _Exited:     # it reached IDLE_EXIT_SECONDS as the request arrived
                if fresh_try:
                    raise RenderUnavailable("the render process ended unexpectedly") from None
        raise AssertionError("unreachable")

    def _answer(self, process: _RenderProcess, deadline: float | None,
                cancelled: Callable[[], bool]) -> dict[str, str]:
        wall = time.monotonic() + self.limits.cpu_seconds * WALL_FACTOR
        try:
            reply = process.reply(min(wall, deadline or wall), cancelled)
        except TimeoutError:
            self._discard(process)
            if deadline is not None and deadline <= wall:
                raise RenderUnavailable("the job's deadline passed while its template "
                                        "rendered") from None
            raise RenderUnavailable(f"the render process did not answer within "
                                    f"{self.limits.cpu_seconds * WALL_FACTOR:g} s (the machine "
                                    f"is overloaded)") from None
        except InterruptedError:
            self._discard(process)
            raise RenderUnavailable("the job was cancelled while its template rendered") from None
        except EOFError:
            code = self._discard(process)
            if code == -signal.SIGXCPU:
                raise self.limits.message("cpu", "") from None
            if code == 0:
                raise _Exited from None
            raise RenderUnavailable(f"the render process ended unexpectedly (exit code "
                                    f"{code})") from None
        if "limit" in reply:
            if reply["limit"] == "memory":
                self._discard(process)      # it exits after a MemoryError
            else:
                self._release(process)
            raise self.limits.message(reply["limit"], reply.get("detail", ""))
        self._release(process)
        if "error" in reply:
            detail = reply.get("detail", "")
            raise TemplateFailed(detail if reply["error"] == "TemplateError"
                                 else f"{reply['error']}: {detail}")
        return reply["ok"]

    def close(self) -> None:
        """End every render process (the renderer starts new ones if used again)."""
        with self._free:
            self._idle.clear()
        _end_all(self._all)
        with self._free:
            self._all.clear()
            self._free.notify_all()

    @property
    def process_ids(self) -> list[int]:
        with self._free:
            return [p.process.pid for p in self._all if p.process is not None]

    # -- the pool -----------------------------------------------------------------------------

    def _acquire(self, deadline: float | None, cancelled: Callable[[], bool]) -> _RenderProcess:
        with self._free:
            while not self._idle and len(self._all) >= self.limits.processes:
                if cancelled() or (deadline is not None and time.monotonic() >= deadline):
                    raise RenderUnavailable("every render process stayed busy until the job's "
                                            "deadline")
                self._free.wait(0.1)
            if self._idle:
                return self._idle.pop()
            starting = _Starting()
            self._all.append(starting)      # holds the place while it starts, outside the lock
        try:
            process = self._start()
        except BaseException:
            with self._free:
                self._all.remove(starting)
                self._free.notify()
            raise
        with self._free:
            self._all[self._all.index(starting)] = process
        return process

    def _start(self) -> _RenderProcess:
        process = _RenderProcess(self.limits)
        try:
            ready = process.reply(time.monotonic() + START_SECONDS, lambda: False)
        except (TimeoutError, EOFError):
            code = process.end()
            raise RenderUnavailable(f"a render process did not start (exit code {code})") from None
        if ready != {"ready": True}:
            process.end()
            raise RenderUnavailable("a render process did not start")
        return process

    def _release(self, process: _RenderProcess) -> None:
        with self._free:
            if process in self._all:
                self._idle.append(process)
            self._free.notify()

    def _discard(self, process: _RenderProcess) -> int | None:
        code = process.end()
        with self._free:
            if process in self._all:
                self._all.remove(process)
            self._free.notify()
        return code


class _Exited(Exception):
    """The render process had ended normally (idle) before it read the request."""


class _Starting:
    """A place in the pool held by a process still starting."""

    process = None

    def end(self) -> None:
        pass
