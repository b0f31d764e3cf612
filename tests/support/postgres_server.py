"""A private PostgreSQL server for tests that stop, restart or crash it: never the machine's own cluster.

As pytest-postgresql does: initdb into a temporary directory, start `postgres` on a free loopback port
with its unix socket in that directory too, trust authentication, and pg_ctl to stop or restart it.
PostgreSQL refuses to run as root (as tests do in CI), so then the server runs as the `postgres` OS user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "postgres"
OS_USER = "postgres"  # who runs the server when the tests run as root


class PostgresUnavailable(Exception):
    """No PostgreSQL server binaries on this machine, or no user that may run them."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres; the newest version when there are several."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        # Debian's pg_config may belong to libpq-dev of another version than the server: check.
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if out:
            candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parent.name
        return tuple(int(p) for p in number.split(".") if p.isdigit())
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresUnavailable("no initdb, pg_ctl and postgres found (pg_config --bindir, /usr/lib/postgresql/*/bin, "
                              "PATH); install the PostgreSQL server package")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throw-away cluster. `start()`, then `url(db)`; `stop(mode)` and `restart(mode)` as pg_ctl does
    them ("fast" rolls back open transactions and shuts down cleanly, "immediate" is a crash and recovery)."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PostgresUnavailable(f"running as root, and there is no {OS_USER!r} user to run "
                                          f"PostgreSQL as (it refuses root)") from None
        # Not pytest's tmp_path: that is private to root, and the socket path must stay short.
        self.folder = Path(tempfile.mkdtemp(prefix="meldbot-pg-"))
        self.data, self.sockets, self.log = self.folder / "data", self.folder / "socket", self.folder / "server.log"
        self.sockets.mkdir()
        if self.user:
            for path in (self.folder, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.port = free_port()
        self._initialised = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        owner = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[]) if self.user else {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        done = subprocess.run([str(self.bindir / tool), *args], cwd=self.folder, env=env, capture_output=True,
                              text=True, timeout=120, **owner)
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(none)"
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}\n"
                               f"server log: {log}")
        return done

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale",
                  "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\n# meldbot tests\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.sockets}'\n"
                       # No machine crash to survive: the OS keeps what was written, even after "immediate".
                       "fsync = off\n")
        self._initialised = True

    def start(self) -> None:
        if not self._initialised:
            self._initdb()
        # -l: the server must not keep our pipe open, or the call would never return.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        return self._initialised and self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    async def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn(), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)
