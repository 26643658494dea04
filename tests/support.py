"""Helpers the tests share: waiting for a condition instead of sleeping, and servers on ports
that no other process can take.

A port found free by binding and releasing it can be taken by anyone before the server binds it
again (the other test pass, another engineer's tests). So servers here bind port 0 themselves
and report the port the kernel gave them, and a test that needs a port where nothing listens
holds it bound without listening.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "the condition",
               interval: float = 0.05, sleep: Callable[[float], object] = time.sleep) -> T:
    """Call ``predicate`` until it returns something true, and return that.

    Fails the test (AssertionError naming ``what``; a callable ``what`` is called then, e.g. to
    read a server's log) after ``timeout`` seconds. ``sleep`` waits between calls: a Playwright
    test passes ``lambda s: page.wait_for_timeout(s * 1000)`` so the page's events go on."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"still waiting after {timeout:g} s for "
                                 f"{what() if callable(what) else what}")
        sleep(interval)


@contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port where a connection is refused for as long as the block runs: it stays bound (so
    no one else can listen on it) but never listens."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        yield sock.getsockname()[1]


LISTENING_AT = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+) \((\d+)\)")


def gunicorn_port(log: Path, timeout: float = 30.0) -> tuple[int, int]:
    """(port, master pid) of a gunicorn started with ``-b 127.0.0.1:0``, read from its log."""
    found = wait_until(lambda: LISTENING_AT.search(log.read_text(errors="replace")),
                       timeout, lambda: f"gunicorn to listen; its log:\n{log.read_text()}",
                       interval=0.1)
    return int(found.group(1)), int(found.group(2))


@dataclass(frozen=True)
class Gunicorn:
    """A running ``gunicorn wsgi:app``: its address, master process and logs."""

    url: str
    master: int
    log: Path
    access: Path


@contextmanager
def gunicorn_server(env: dict[str, str], folder: Path, *, workers: int = 2, threads: int = 2,
                    access_format: str | None = None) -> Iterator[Gunicorn]:
    """``gunicorn wsgi:app`` as deployed (gunicorn.conf.py, gthread workers) on 127.0.0.1 and
    a port the kernel picks, logging into ``folder``; with ``access_format``, an access log in
    that format (``%(p)s`` names the worker that answered). Stopped when the block ends."""
    log, access = folder / "gunicorn.log", folder / "access.log"
    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread",
            "--threads", str(threads), "-b", "127.0.0.1:0", "--no-control-socket"]
    if access_format:
        argv += ["--access-logfile", str(access), "--access-logformat", access_format]
    with log.open("w") as output:
        process = subprocess.Popen([*argv, "wsgi:app"], cwd=Path(__file__).parent.parent,
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        port, master = gunicorn_port(log)
        assert master == process.pid, log.read_text()
        yield Gunicorn(f"http://127.0.0.1:{port}", master, log, access)
    finally:
        process.terminate()
        process.wait(timeout=30)


def start_smtp_server(handler, **options):
    """aiosmtpd's ``Controller`` on 127.0.0.1 and a port the kernel picks, started; its
    ``.port`` is that port. ``options`` go to ``Controller`` (ssl_context, authenticator…)."""
    from aiosmtpd.controller import Controller

    class OnAnyPort(Controller):
        def _create_server(self):
            async def bound():
                server = await Controller._create_server(self)
                self.port = server.sockets[0].getsockname()[1]
                return server
            return bound()

    controller = OnAnyPort(handler, hostname="127.0.0.1", port=0, **options)
    controller.start()
    return controller


def schema_differences(engine, tables: set[str]) -> list:
    """What Alembic's autogenerate finds between the migrated database and the models, for
    ``tables`` only: [] when the migrations create exactly what the models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from console.jobs.models import Base

    def ours(obj, name, kind, reflected, compare_to):
        table = obj if kind == "table" else getattr(obj, "table", None)
        return table is not None and table.name in tables

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": ours})
        return compare_metadata(context, Base.metadata)
