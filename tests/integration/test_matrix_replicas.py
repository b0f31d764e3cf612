"""Several `meldbot run` processes on one PostgreSQL with Matrix on (issue 17, item 3).

One process holds the bot account's sync stream (a PostgreSQL advisory lock); the others stand by with
their own device, signed by the bot's one identity, and receive the room keys Element sends to that device.
The employee is on Element's own crypto stack (tests/support/element.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.support import EXAMPLE, ROOT
from tests.support.chat import migrated
from tests.support.element import ElementClient
from tests.support.matrix import PASSWORD, SCRIPT, World, needs_synapse, until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
async def world(synapse, tmp_path, postgres_database):
    world = World(synapse, tmp_path)
    world.db_url = postgres_database
    await migrated(world.db_url)
    clients: list[ElementClient] = []

    async def element(user_id: str) -> ElementClient:
        client = ElementClient(tmp_path / f"element-{len(clients)}.log", name=user_id)
        clients.append(client)
        return await client.start(synapse.url, user_id, PASSWORD, isolation="signed")

    world.element = element
    yield world
    for client in clients:
        await client.stop()
    await world.close()


class Replica:
    """One `meldbot run` process with its own instance name (and so its own device)."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name
        self.log_path = world.folder / f"replica-{name}.log"
        # Its own store folder in any case: before issue 17 there was no --instance, two processes with one
        # store folder would share one device.
        self.store = world.folder / f"store-{name}"
        self.process: subprocess.Popen | None = None

    @property
    def folder(self) -> Path:
        """The device's folder: <store_path>/<instance>."""
        return self.store / self.name

    def start(self) -> "Replica":
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELDBOT_")}
        env.update(self.world.environment(), PYTHONPATH=str(ROOT), MELDBOT_CONFIG=str(EXAMPLE),
                   MELDBOT_INSTANCE=self.name, MELDBOT_MATRIX__STORE_PATH=str(self.store))
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "meldbot", "run"], cwd=self.world.folder, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"replica {self.name} ended: {self.log_path.read_text()[-3000:]}")
        return "meldbot draait" in self.log_path.read_text()

    def status(self) -> dict:
        for folder in (self.folder, self.store):   # before issue 17: the store path itself
            try:
                return json.loads((folder / "status.json").read_text())
            except (OSError, ValueError):
                continue
        return {}

    def device_id(self) -> str | None:
        for folder in (self.folder, self.store):
            try:
                return json.loads((folder / "credentials.json").read_text())["device_id"]
            except (OSError, ValueError, KeyError):
                continue
        return None

    def port(self) -> int | None:
        for line in self.log_path.read_text().splitlines():
            if "http server listening" in line and "port" in line:
                return int(line.rsplit("port", 1)[1].strip(" =:'\"}{,").split()[0].strip("'\",}"))
        return None

    def healthz(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port()}/healthz", timeout=5) as response:
            return json.loads(response.read())

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self.log.close()


async def signed_in(employee: ElementClient, world: World, replicas: list[Replica]) -> None:
    """Every replica's device is cross-signed by the bot's identity and known to the employee's Element."""
    for replica in replicas:
        await until(replica.alive, f"replica {replica.name} to start", timeout=60)
        await until(lambda r=replica: r.status().get("identity") in ("created", "present") and r.device_id(),
                    f"replica {replica.name} to cross-sign its device", timeout=60)



async def verified(employee: ElementClient, world: World, replicas: list[Replica]) -> None:
    """The employee's Element (sharing a room with the bot) sees every replica's device signed by the bot."""
    for replica in replicas:
        deadline = time.monotonic() + 30
        while True:
            try:
                status = await employee.device_status(world.bot_id, replica.device_id())
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        assert status["signedByOwner"] is True, (replica.name, status)


def roles(replicas: list[Replica]) -> dict[str, dict]:
    return {r.name: r.healthz() for r in replicas}


async def one_holder(replicas: list[Replica]) -> tuple[Replica, Replica]:
    """Exactly one replica holds Matrix; every one is healthy and names it. Returns (holder, standby)."""
    def settled():
        seen = roles(replicas)
        holders = [n for n, h in seen.items() if h["matrix"]["role"] == "holder"]
        return len(holders) == 1 and all(h["matrix"]["holder"] == holders[0] for h in seen.values())
    await until(settled, "one holder named by every replica", timeout=30)
    seen = roles(replicas)
    assert all(h["status"] == "ok" and h["matrix"]["instance"] == n for n, h in seen.items()), seen
    [holder] = [r for r in replicas if seen[r.name]["matrix"]["role"] == "holder"]
    [standby] = [r for r in replicas if r is not holder]
    return holder, standby


def answers_per_message(employee: ElementClient, room: str, world: World) -> list[int]:
    """For each message of the employee: how many messages of the bot came before the next one."""
    counts: list[int] = []
    for message in employee.messages(room):
        if message.sender == world.employee_id:
            counts.append(0)
        elif message.sender == world.bot_id and counts:
            counts[-1] += 1
    return counts


def assert_once(employee: ElementClient, room: str, world: World) -> None:
    """Every message of the employee was answered, and no answer came twice (each question differs)."""
    counts = answers_per_message(employee, room, world)
    bodies = [m.body for m in employee.messages(room, world.bot_id)]
    assert all(counts) and len(bodies) == len(set(bodies)), (counts, employee.summary(40))
    assert all(m.decrypted and not m.shield for m in employee.messages(room, world.bot_id)), employee.summary(40)


@asynccontextmanager
async def two_processes_in_a_room(world):
    """Two `meldbot run` processes on one database, and an employee on Element in a verified room with the bot."""
    replicas = [Replica(world, "a").start(), Replica(world, "b").start()]
    try:
        employee = await world.element(world.employee_id)
        await signed_in(employee, world, replicas)
        room = await employee.open_direct(world.bot_id)
        await verified(employee, world, replicas)
        yield replicas, employee, room
    finally:
        for replica in replicas:
            replica.close()


@needs_synapse
async def test_two_processes_answer_every_message_once(world):
    async with two_processes_in_a_room(world) as (replicas, employee, room):
        await one_holder(replicas)
        for line in SCRIPT[:4]:
            await employee.ask(room, line, world.bot_id)
        # A last line: a second answer to anything before it would have arrived by now.
        await employee.ask(room, "help", world.bot_id)
        assert_once(employee, room, world)


@needs_synapse
async def test_the_standby_takes_over_within_30_seconds_after_a_kill_9_and_answers_once(world):
    async with two_processes_in_a_room(world) as (replicas, employee, room):
        holder, standby = await one_holder(replicas)
        for line in SCRIPT[:2]:   # mid-conversation: melden, wat
            await employee.ask(room, line, world.bot_id)

        holder.kill()
        killed = time.monotonic()
        # Said while nobody holds the stream: answered once, after the take-over.
        gap = await employee.say(room, SCRIPT[2])
        await until(lambda: standby.healthz()["matrix"]["role"] == "holder", "the take-over", timeout=30)
        seconds = time.monotonic() - killed
        print(f"\ntake-over after kill -9: {seconds:.1f} s")
        await employee.wait_for(lambda: employee.after(room, gap, world.bot_id), "the answer to the gap message",
                                timeout=30)
        for line in SCRIPT[3:6]:
            await employee.ask(room, line, world.bot_id)
        await employee.ask(room, "help", world.bot_id)
        assert_once(employee, room, world)
        health = standby.healthz()
        assert health["status"] == "ok" and health["matrix"] == {
            "role": "holder", "holder": standby.name, "instance": standby.name, "lock": True}, health
        assert seconds < 30
