"""Benchmark 8, Matrix take-over: how long the bot is silent after `kill -9` of the process that holds it.

Two `meldbot run` processes (instances a and b, each its own device cross-signed by the bot's one
identity) share one Matrix account and one PostgreSQL database; a PostgreSQL advisory lock on its own
connection chooses the one that syncs (meldbot/storage/leader.py), the other stands by. An employee on
Element's own crypto stack (matrix-js-sdk with the Rust crypto, tests/support/element.py, "exclude
insecure devices") talks to the bot in an encrypted direct chat through a real Synapse on loopback.

Measured, with `kill -9` of the holder mid-conversation at t = 0 and a message said at once:
- take-over: until the standby's /healthz names itself the holder;
- answer: until the employee's Element holds the bot's (decrypted, shield-free) answer to that message.
The baseline, in the same run: no standby. Both processes are killed, then instance a is started again
(what systemd does after a crash, with the same device and store) with a message said at once: from
spawn to holder and to the answer. Also per `meldbot run` process: resident memory (VmRSS) when idle
after the first answers, and spawn -> "meldbot draait" (its start).

Checked: every message of the employee answered, and no answer twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import ROOT, Figure, main

SECTION = "8 Matrix take-over"
TARGET_SECONDS = 30.0
WAIT = 60.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Replica:
    """One `meldbot run` process with its own instance name (its own device) and store folder."""

    def __init__(self, folder: Path, name: str, env: dict[str, str]) -> None:
        self.folder, self.name, self.env = folder, name, env
        self.log_path = folder / f"replica-{name}.log"
        self.store = folder / f"store-{name}"
        self.process: subprocess.Popen | None = None
        self.spawned = 0.0

    def start(self) -> "Replica":
        from tests.support import EXAMPLE

        env = {k: v for k, v in os.environ.items() if not k.startswith(("MELDBOT_", "BENCH_"))}
        env.update(self.env, PYTHONPATH=str(ROOT), MELDBOT_CONFIG=str(EXAMPLE), MELDBOT_INSTANCE=self.name,
                   MELDBOT_MATRIX__STORE_PATH=str(self.store))
        self.log = open(self.log_path, "ab")
        self.offset = self.log_path.stat().st_size      # a restart appends: read only its own lines
        self.spawned = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "meldbot", "run"], cwd=self.folder, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def text(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"replica {self.name} ended: {self.text()[-3000:]}")
        return "meldbot draait" in self.text()

    def status(self) -> dict:
        try:
            return json.loads((self.store / self.name / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def device_id(self) -> str | None:
        try:
            return json.loads((self.store / self.name / "credentials.json").read_text())["device_id"]
        except (OSError, ValueError, KeyError):
            return None

    def port(self) -> int | None:
        for line in self.text().splitlines():
            if "http server listening" in line and "port" in line:
                return int(line.rsplit("port", 1)[1].strip(" =:'\"}{,").split()[0].strip("'\",}"))
        return None

    def role(self) -> str | None:
        port = self.port()
        if port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return json.loads(response.read())["matrix"]["role"]
        except (OSError, ValueError, KeyError):
            return None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        if getattr(self, "log", None):
            self.log.close()


async def until(condition, what: str, timeout: float = WAIT, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := await asyncio.to_thread(condition)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(step)
    return value


async def measure(quick: bool) -> list[Figure]:
    from benchmarks.burst import Store
    from meldbot.storage.sealing import new_key
    from tests.support.element import ElementClient
    from tests.support.matrix import PASSWORD, SCRIPT, World
    from tests.support.synapse import Synapse

    logging.getLogger("nio").setLevel(logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="meldbot-bench-takeover-"))
    synapse = await asyncio.to_thread(Synapse, folder / "synapse")
    await asyncio.to_thread(synapse.start)
    replicas: list[Replica] = []
    started: list[Replica] = []     # every process this run spawned, closed at the end
    employee = None
    try:
        async with Store("postgresql") as db_url:
            world = World(synapse, folder)
            world.db_url = db_url
            env = {**world.environment(), "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "false",
                   "MELDBOT_STORAGE__ALLOW_PLAINTEXT": "false", "MELDBOT_DATA_KEY": new_key()}
            a, b = Replica(folder, "a", env).start(), Replica(folder, "b", env).start()
            replicas = [a, b]
            started += replicas
            employee = ElementClient(folder / "element.log", name="employee")
            await employee.start(synapse.url, world.employee_id, PASSWORD, isolation="signed")
            starts = {}
            for replica in replicas:
                await until(replica.alive, f"replica {replica.name} to start")
                starts[replica.name] = time.monotonic() - replica.spawned
                await until(lambda r=replica: r.status().get("identity") in ("created", "present") and r.device_id(),
                            f"replica {replica.name} to cross-sign its device")
            room = await employee.open_direct(world.bot_id)
            for replica in replicas:
                status = await employee.device_status(world.bot_id, replica.device_id())
                if status.get("signedByOwner") is not True:
                    raise RuntimeError(f"replica {replica.name}'s device is not signed by the bot: {status}")

            def holder() -> Replica | None:
                roles = {r.name: r.role() for r in replicas}
                holders = [r for r in replicas if roles[r.name] == "holder"]
                return holders[0] if len(holders) == 1 and all(roles.values()) else None

            first = await until(holder, "one holder")
            standby = b if first is a else a
            lines = iter(SCRIPT[:6])
            for line in (next(lines), next(lines)):
                await employee.ask(room, line, world.bot_id)
            rss = {r.name: rss_mb(r.process.pid) for r in replicas}

            # -- kill -9 of the holder, a message said at once ---------------------------------------------
            first.kill()
            killed = time.monotonic()
            gap = await employee.say(room, next(lines))
            await until(lambda: standby.role() == "holder", "the take-over")
            took_over = time.monotonic() - killed
            await employee.wait_for(lambda: employee.after(room, gap, world.bot_id), "the answer after the take-over",
                                    timeout=WAIT)
            answered = time.monotonic() - killed
            await employee.ask(room, next(lines), world.bot_id)

            # -- the baseline: no standby; the holder is restarted as systemd would ------------------------
            standby.kill()
            await asyncio.sleep(1.0)                 # nobody holds the stream; PostgreSQL freed both locks
            restarted = first.start()
            replicas = [restarted]
            gap2 = await employee.say(room, next(lines))
            await until(lambda: restarted.role() == "holder", "the restarted process to hold the stream")
            restart_holder = time.monotonic() - restarted.spawned
            await employee.wait_for(lambda: employee.after(room, gap2, world.bot_id), "the answer after the restart",
                                    timeout=WAIT)
            restart_answer = time.monotonic() - restarted.spawned
            await employee.ask(room, "help", world.bot_id)
            _check_once(employee, room, world)
    finally:
        if employee:
            await employee.stop()
        for replica in started:
            replica.close()
        await asyncio.to_thread(synapse.stop)
    shutil.rmtree(folder, ignore_errors=True)

    how = ("2 `meldbot run` processes on one PostgreSQL and one bot account (each device cross-signed), an "
           "employee on Element's crypto stack (exclude insecure devices), real Synapse on loopback; kill -9 of "
           "the holder mid-conversation and a message said at once")
    base = ("baseline: both killed, instance a started again alone (as systemd restarts it), a message said at "
            f"once: holder after {restart_holder:.1f} s, answer after {restart_answer:.1f} s from spawn")
    return [
        Figure(SECTION, "kill -9 of the holder -> standby holds the stream", took_over, "s", target=TARGET_SECONDS,
               detail=f"{how}; standby polls the lock every 5 s and waits one check and its deadline before it "
                      f"syncs (meldbot/storage/leader.py); {base}"),
        Figure(SECTION, "kill -9 of the holder -> answer to the message said meanwhile", answered, "s",
               target=TARGET_SECONDS, detail=f"decrypted, no shield; {base}; every message answered once"),
        Figure(SECTION, "baseline: restart without standby -> answer", restart_answer, "s",
               detail=f"spawn of `meldbot run` -> holder {restart_holder:.1f} s -> answer {restart_answer:.1f} s"),
        Figure(SECTION, "take-over / restart without standby (answer)", answered / restart_answer, "x",
               detail=f"{answered:.1f} s vs {restart_answer:.1f} s in the same run"),
        Figure(SECTION, "RSS per `meldbot run` process (Matrix on, PostgreSQL)", max(rss.values()), "MB",
               target=200.0, detail="idle after the first answers: "
               + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(rss.items()))),
        Figure(SECTION, "`meldbot run` spawn -> running (Matrix on, PostgreSQL)", max(starts.values()), "s",
               detail="two processes started at once on 2 cores: "
               + ", ".join(f"{name} {s:.1f} s" for name, s in sorted(starts.items()))),
    ]


def _check_once(employee, room: str, world) -> None:
    """Every message of the employee answered; no answer twice (each question differs); all readable."""
    counts: list[int] = []
    for message in employee.messages(room):
        if message.sender == world.employee_id:
            counts.append(0)
        elif message.sender == world.bot_id and counts:
            counts[-1] += 1
    bodies = [m.body for m in employee.messages(room, world.bot_id)]
    if not all(counts) or len(bodies) != len(set(bodies)):
        raise RuntimeError(f"not every message answered exactly once: {counts}; {employee.summary(40)}")
    if not all(m.decrypted and not m.shield for m in employee.messages(room, world.bot_id)):
        raise RuntimeError(f"an answer was not readable or had a shield: {employee.summary(40)}")


if __name__ == "__main__":
    main(measure)
