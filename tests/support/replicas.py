"""Several `meldbot run` processes with Teams on, against one PostgreSQL database, as a load balancer sees
them: each a real process on a port of its own (`http.listen = 127.0.0.1:0`; the port is read from the
process's own log line), Microsoft's side on loopback (teams_fakes.FakeMicrosoft), and a client that posts
signed activities to the process it chooses. For tests/integration/test_replicas_teams.py and
benchmarks/replicas.py.

Nothing here sleeps for a fixed time: every wait is for a condition, with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.cli import env_for
from tests.support.teams import seen, teams_env
from tests.support.teams_fakes import FakeMicrosoft, User, activity

START_DEADLINE = 60.0       # a process that is not serving /healthz by then failed to start
REFERENCE = re.compile(r"MH-\d{4}-\d{4}")


def melder(i: int) -> User:
    """The i-th employee of the tests: their own Teams user and personal conversation."""
    return User(f"melder{i}", f"Melder {i}", f"{i:08x}-0000-4000-8000-{i:012x}")


@dataclass
class Replica:
    """One `meldbot run` process. Its log (JSON lines) goes to a file, so no pipe can fill up and stall it."""

    name: str
    proc: subprocess.Popen
    log: Path
    url: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"level": "RAW", "message": line})
        return out

    def errors(self) -> list[dict[str, Any]]:
        """Log lines at ERROR, and a traceback (the rest that is not a log line is meldbot's own "it runs")."""
        return [entry for entry in self.lines() if entry.get("level") in ("ERROR", "CRITICAL")
                or (entry.get("level") == "RAW" and "Traceback" in entry["message"])]

    def port(self) -> int | None:
        for entry in self.lines():
            if entry.get("message") == "http server listening":
                return int(entry["port"])
        return None

    def kill(self) -> None:
        """kill -9: no clean-up, open transactions and sends cut off."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


def spawn(name: str, db_url: str, fake: FakeMicrosoft, workdir: Path, **env: str) -> Replica:
    workdir.mkdir(parents=True, exist_ok=True)
    environment = env_for(workdir, MELDBOT_STORAGE__URL=db_url, MELDBOT_HTTP__LISTEN="127.0.0.1:0",
                          MELDBOT_LOGGING__FORMAT="json", **teams_env(fake), **env)
    log = workdir / f"{name}.log"          # stderr: the log
    with open(log, "wb") as err, open(workdir / f"{name}.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "meldbot", "run"], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=workdir, env=environment)
    return Replica(name, proc, log)


async def until_serving(replica: Replica, http: aiohttp.ClientSession, deadline: float) -> None:
    while True:
        if not replica.alive():
            raise AssertionError(f"{replica.name} exited with {replica.proc.returncode}:\n"
                                 + replica.log.read_text(errors="replace")[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"{replica.name} did not serve /healthz within {START_DEADLINE:.0f} s:\n"
                                 + replica.log.read_text(errors="replace")[-3000:])
        port = replica.port()
        if port is not None:
            replica.url = f"http://127.0.0.1:{port}"
            try:
                async with http.get(replica.url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
        await asyncio.sleep(0.05)


@dataclass
class Replicas:
    """The processes, Microsoft's side and an HTTP client; `post` and `say` are what Teams does."""

    processes: list[Replica]
    fake: FakeMicrosoft
    http: aiohttp.ClientSession
    db_url: str
    workdir: Path
    _token: tuple[float, str] | None = None

    def __getitem__(self, index: int) -> Replica:
        return self.processes[index]

    def token(self) -> str:
        # Signing costs more than a turn: reuse a token a while. (No "made at 0.0" default: the monotonic
        # clock starts near 0 at boot, so on a machine up less than 10 minutes no token was ever made.)
        if self._token is None or time.monotonic() - self._token[0] > 600:
            self._token = (time.monotonic(), self.fake.token())
        return self._token[1]

    async def post(self, replica: Replica, body: dict) -> int:
        """POST one activity to one process; its HTTP status (aiohttp.ClientError if the process is gone)."""
        headers = {"Authorization": "Bearer " + self.token()}
        async with self.http.post(replica.url + "/api/messages", json=body, headers=headers) as response:
            await response.read()
            return response.status

    async def say(self, replica: Replica, user: User, text: str, *, activity_id: str | None = None) -> list[str]:
        """Send like Teams; what a Teams client shows of the replies the bot posted to this activity."""
        body = activity(self.fake, user, text, activity_id=activity_id)
        status = await self.post(replica, body)
        assert status in (200, 202), status
        return self.shown(body["id"])

    def shown(self, activity_id: str) -> list[str]:
        return [seen(p) for p in self.fake.replies_to(activity_id)]

    def references(self) -> set[str]:
        """Every reference number any process gave out in a reply to a melder."""
        return {ref for r in self.fake.requests if r.method == "POST" and r.status == 200 and "/activities/" in r.path
                for ref in REFERENCE.findall(seen(r.body) if isinstance(r.body, dict) else "")}

    def errors(self) -> dict[str, list[dict[str, Any]]]:
        return {p.name: p.errors() for p in self.processes if p.errors()}

    async def spawn(self, name: str, **env: str) -> Replica:
        replica = spawn(name, self.db_url, self.fake, self.workdir / name, **env)
        self.processes.append(replica)
        await until_serving(replica, self.http, time.monotonic() + START_DEADLINE)
        return replica


@asynccontextmanager
async def replicas(count: int, db_url: str, fake: FakeMicrosoft, workdir: Path, *, request_timeout: float = 30.0,
                   **env: str):
    """`count` processes on one (migrated) database, all serving; killed afterwards (the database goes with
    the test; a clean stop takes seconds and is tested in tests/run/test_cli.py)."""
    processes = [spawn(f"p{i + 1}", db_url, fake, workdir / f"p{i + 1}", **env) for i in range(count)]
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    connector = aiohttp.TCPConnector(limit=200)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            deadline = time.monotonic() + START_DEADLINE
            await asyncio.gather(*(until_serving(p, http, deadline) for p in processes))
            yield Replicas(processes, fake, http, db_url, workdir)
    finally:
        for process in processes:
            process.kill()


@dataclass(frozen=True)
class Stored:
    """What the database holds after the traffic, read as a fresh process would."""

    signals: list[Any]                                   # meldbot.core.domain.Signal, in id order
    drafts: dict[str, dict[str, Any] | None]             # conversation id -> its stored state


async def stored(db_url: str, conversations: list[str]) -> Stored:
    from meldbot.storage.db import Database
    from meldbot.storage.sealing import PlainSealer
    from meldbot.storage.uow import UnitOfWorkFactory

    db = Database(db_url)
    try:
        async with UnitOfWorkFactory(db, PlainSealer())() as uow:
            signals = await uow.signals.open_signals(["bergeijk"])
            drafts = {}
            for conversation in conversations:
                loaded = await uow.conversations.load("teams", conversation)
                drafts[conversation] = loaded[0] if loaded else None
    finally:
        await db.dispose()
    return Stored(signals, drafts)
