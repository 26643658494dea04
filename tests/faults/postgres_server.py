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
import subprocess
import tempfile
from pathlib import Path

# Throwaway settings: no durability (fsync off), room for many test processes' pools.
SERVER_OPTIONS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=200")
# The first port the server tries (each engineer and CI job can have its own range: the
# kernel's ephemeral ports could collide with a fixed one).
FIRST_PORT = int(os.environ.get("FAULTS_PG_FIRST_PORT", "55467"))
PORTS_TRIED = 100


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


class PostgresServer:
    """One cluster in a temporary folder, on 127.0.0.1:``port``."""

    def __init__(self, bin_dir: Path, port: int | None = None):
        self.bin_dir = bin_dir
        self.port = port          # None: the first from FIRST_PORT on that the server can bind
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
        """Start on ``port``; the first time without one, on the first port from FIRST_PORT on
        that the server itself could bind (a port found free and released could be taken by
        another process before the server binds it). A restart keeps the port."""
        if self.port is not None:
            self._start(self.port)
            return
        for port in range(FIRST_PORT, FIRST_PORT + PORTS_TRIED):
            logged = len(self.server_log())
            try:
                self._start(port)
            except RuntimeError:
                if "could not bind" in self.server_log()[logged:]:
                    continue                       # taken: the server did not start
                raise
            self.port = port
            return
        raise RuntimeError(f"no port in {FIRST_PORT}–{FIRST_PORT + PORTS_TRIED - 1} could be "
                           f"bound:\n{self.server_log()[-2000:]}")

    def _start(self, port: int) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root / 'sock'} "
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
