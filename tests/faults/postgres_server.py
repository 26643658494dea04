"""A throwaway PostgreSQL server that a test may stop, start and restart at will.

The same steps as ``.ci/postgres.sh`` (initdb, pg_ctl, fsync off), in Python so that a fixture
owns the server: tests that take the database away must not disturb the shared one the rest of
the suite uses. ``initdb`` and ``pg_ctl`` refuse to run as root, so as root they run as the
``postgres`` user (``runuser``).
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

# Throwaway settings: no durability (fsync off), room for many test processes' pools.
SERVER_OPTIONS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=200")
FIRST_PORT = int(os.environ.get("FAULTS_PG_FIRST_PORT", "55467"))


def postgres_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: ``PG_BIN``, Debian's newest
    ``/usr/lib/postgresql/*/bin``, or wherever ``initdb`` is on the PATH; None when absent."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                        if x.isdigit()], reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def free_port(first: int = FIRST_PORT, tries: int = 100) -> int:
    """The first port from ``first`` on that nobody listens on (each engineer and CI job has
    its own range; the kernel's ephemeral ports could collide with a fixed one)."""
    for port in range(first, first + tries):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}–{first + tries - 1}")


class PostgresServer:
    """One cluster in a temporary folder, on 127.0.0.1:``port``."""

    def __init__(self, bin_dir: Path, port: int | None = None):
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="console-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0

    # -- running the tools --------------------------------------------------------------------

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{self.server_log()[-2000:]}")
        return done

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    # -- lifecycle ----------------------------------------------------------------------------

    def init(self) -> PostgresServer:
        if self._as_postgres:
            if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                "/usr/sbin/nologin", "postgres"], check=True)
            (self.root / "sock").mkdir()
            shutil.chown(self.root, "postgres")
            shutil.chown(self.root / "sock", "postgres")
        else:
            (self.root / "sock").mkdir()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-locale")
        return self

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root / 'sock'} "
                   f"{SERVER_OPTIONS}")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back open transactions and close every connection, as an operator's
        restart does. ``immediate``: as if the server crashed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        if self.data.exists() and self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template``; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' +
                         (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)
