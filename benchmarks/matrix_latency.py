"""Benchmark 1, Matrix against the limit: meldbot's answer time next to a bare matrix-nio echo bot.

Through a real Synapse on loopback, one employee client (matrix-nio, E2EE) answers the report dialog in
an encrypted direct chat with meldbot, and sends the same texts in an encrypted direct chat with an echo
bot: a bare matrix-nio client that encrypts the same text back. Measured per round trip: from just before
the employee's `room_send` until the employee's client holds the bot's first (decrypted) message after
it. Meldbot and the echo bot take turns message by message (ABBA order), so machine noise hits both
alike; the first round trips of each (olm sessions, room keys) are not counted.

Both bots run as their own processes, as they would in production: meldbot wired by `build_app` exactly
as `meldbot run` does it (SQLite file, sealed data, a frozen Wednesday-morning clock), the echo bot as a
few lines of matrix-nio. Each writes, on SIGTERM, how long it spent per incoming message, which the
figures show beside the round trips. With BENCH_PROFILE=/some/prefix set, each bot process also writes
cProfile statistics to /some/prefix.meldbot and /some/prefix.echo.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, Figure, main, percentile, summary_ms

SECTION = "1 Matrix"
PASSWORD = "bench-password-1"
# The report dialog of the Matrix tests (tests/support/matrix.py).
SCRIPT = ["melden", "Een man houdt de paspoorten van zes vrouwen", "Kerkstraat 12a, Bergeijk", "gisteren",
          "Piet Jansen, Jansen Uitzend B.V.", "arbeid", "balie", "nee", "versturen"]
# Messages meldbot sends for each line of SCRIPT: "melden" gets a welcome and the first question.
MELDBOT_REPLIES = {"melden": 2}
WEDNESDAY = "2026-11-18T09:30:00+00:00"   # 10:30 in Amsterdam: office hours
WAIT = 30.0                                 # seconds; no single wait may take longer
# Between an answer and the next message, as a person types: what a bot does after answering (saving its
# sync token, key upkeep, the outbox after a report) lands in no one's round trip.
PAUSE = 0.1


# --- the bots, each in its own process ------------------------------------------------------------------

def _child() -> None:
    """Entry point of a bot process: BENCH_ROLE is `meldbot` or `echo`; prints `ready` once it listens."""
    role = os.environ["BENCH_ROLE"]
    profile = os.environ.get("BENCH_PROFILE")  # a file: where the bot's cProfile statistics go
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    asyncio.run(_run_meldbot() if role == "meldbot" else _run_echo())
    if profile:
        profiler.disable()
        profiler.dump_stats(f"{profile}.{role}")


async def _stopped() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _write_stats(stats: dict) -> None:
    Path(os.environ["BENCH_STATS"]).write_text(json.dumps(stats))


async def _run_meldbot() -> None:
    from datetime import datetime

    from meldbot.core import logs
    from meldbot.run.app import build_app
    from meldbot.core.clock import ManualClock
    from meldbot.core.config import load_config

    stop = await _stopped()
    config = load_config(ROOT / "config.example.toml", os.environ)
    logs.setup(config.logging.level)
    app = build_app(config, mode="run", clock=ManualClock(datetime.fromisoformat(WEDNESDAY)))
    [adapter] = app.adapters

    # Light instrumentation (a perf_counter pair per call): where a turn's time goes inside the bot.
    stats: dict[str, dict[str, float]] = {}
    current: dict[int, str] = {}
    # The adapter builds its Inbound (meldbot/adapters/matrix/sync.py) at start: its class is timed, and the
    # adapter's handle callable, which Inbound is given then.
    from meldbot.adapters.matrix.sync import Inbound

    on_event, send, handle = Inbound._on_event, Inbound._send, adapter._handle_message

    async def timed_on_event(self, room_id, event):
        started = time.perf_counter()
        entry = stats.setdefault(getattr(event, "event_id", "?"), {"handle": 0.0, "send": 0.0})
        current[id(asyncio.current_task())] = entry
        try:
            await on_event(self, room_id, event)
        finally:
            entry["total"] = time.perf_counter() - started
            current.pop(id(asyncio.current_task()), None)

    async def timed_handle(message):
        started = time.perf_counter()
        try:
            return await handle(message)
        finally:
            entry = current.get(id(asyncio.current_task()))
            if entry is not None:
                entry["handle"] += time.perf_counter() - started

    async def timed_send(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await send(self, *args, **kwargs)
        finally:
            entry = current.get(id(asyncio.current_task()))
            if entry is not None:
                entry["send"] += time.perf_counter() - started
                entry.setdefault("first_send", time.perf_counter() - started)

    Inbound._on_event, Inbound._send, adapter._handle_message = timed_on_event, timed_send, timed_handle
    async with app:
        await asyncio.wait_for(adapter.ready.wait(), WAIT)
        print("ready", flush=True)
        await stop.wait()
    _write_stats(stats)


async def _run_echo() -> None:
    from nio import AsyncClient, AsyncClientConfig, InviteMemberEvent, LoginResponse, RoomMessageText

    stop = await _stopped()
    store = Path(os.environ["BENCH_STORE"])
    store.mkdir(parents=True, exist_ok=True)
    client = AsyncClient(os.environ["BENCH_HOMESERVER"], os.environ["BENCH_USER"], store_path=str(store),
                         config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True))
    response = await client.login(os.environ["BENCH_PASSWORD"], device_name="echo")
    assert isinstance(response, LoginResponse), response
    stats: dict[str, dict[str, float]] = {}

    async def on_invite(room, event) -> None:
        if event.state_key == client.user_id and event.membership == "invite":
            await client.join(room.room_id)

    async def on_text(room, event) -> None:
        if event.sender == client.user_id:
            return
        started = time.perf_counter()
        await client.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": event.body},
                               ignore_unverified_devices=True)
        took = time.perf_counter() - started
        stats[event.event_id] = {"handle": 0.0, "send": took, "first_send": took, "total": took}

    client.add_event_callback(on_invite, InviteMemberEvent)
    client.add_event_callback(on_text, RoomMessageText)
    syncing = asyncio.create_task(client.sync_forever(timeout=30_000, full_state=True))
    deadline = time.monotonic() + WAIT
    while not client.next_batch or client.should_upload_keys:
        if syncing.done() or time.monotonic() > deadline:
            raise RuntimeError(f"echo bot did not start: {syncing}")
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await stop.wait()
    syncing.cancel()
    await asyncio.gather(syncing, return_exceptions=True)
    await client.close()
    _write_stats(stats)


class BotProcess:
    def __init__(self, role: str, folder: Path, env: dict[str, str]) -> None:
        self.role, self.folder, self.env = role, folder, env
        self.stats_path = folder / f"{role}-stats.json"
        self.log_path = folder / f"{role}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MELDBOT_", "BENCH_"))}
        env.update(self.env, PYTHONPATH=str(ROOT), BENCH_ROLE=self.role, BENCH_STATS=str(self.stats_path))
        if os.environ.get("BENCH_PROFILE"):
            env["BENCH_PROFILE"] = os.environ["BENCH_PROFILE"]
        self._log = open(self.log_path, "ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from benchmarks.matrix_latency import _child; _child()", cwd=self.folder,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=self._log)
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), 90)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await self.stop()
            raise RuntimeError(f"{self.role} did not start: {self.log_path.read_text()[-2000:]}")

    async def stop(self) -> dict:
        if self.process and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
        try:
            return json.loads(self.stats_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}


# --- the employee ---------------------------------------------------------------------------------------

class Employee:
    """One matrix-nio client with encryption; its sync loop runs all the time, for both bots alike."""

    def __init__(self, url: str, user_id: str, folder: Path) -> None:
        from nio import AsyncClient, AsyncClientConfig

        folder.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.client = AsyncClient(url, user_id, store_path=str(folder), config=AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False))
        self.received: dict[str, list[tuple[float, object]]] = {}  # room -> (arrival, event) of others
        self.arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from nio import InviteMemberEvent, LoginResponse, MegolmEvent, RoomMessageNotice, RoomMessageText

        response = await self.client.login(PASSWORD, device_name="phone")
        assert isinstance(response, LoginResponse), response
        self.client.add_event_callback(self._on_message, (RoomMessageText, RoomMessageNotice, MegolmEvent))
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)
        self._task = asyncio.create_task(self.client.sync_forever(timeout=5000, full_state=True))
        await self._until(lambda: self.client.next_batch and not self.client.should_upload_keys, "first sync")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()

    async def _on_message(self, room, event) -> None:
        if event.sender != self.user_id:
            self.received.setdefault(room.room_id, []).append((time.perf_counter(), event))
            self.arrived.set()

    async def _on_invite(self, room, event) -> None:
        if event.state_key == self.user_id and event.membership == "invite":
            await self.client.join(room.room_id)

    async def _until(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            self.arrived.clear()
            if condition():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self._task and self._task.done()):
                raise RuntimeError(f"timed out waiting for {what}")
            try:
                await asyncio.wait_for(self.arrived.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    async def open_direct(self, bot_id: str) -> str:
        from nio import RoomPreset

        from meldbot.adapters.matrix import ENCRYPTION_STATE

        response = await self.client.room_create(is_direct=True, preset=RoomPreset.trusted_private_chat,
                                                 invite=[bot_id], initial_state=[ENCRYPTION_STATE])
        room_id = response.room_id
        await self._until(lambda: room_id in self.client.rooms and bot_id in self.client.rooms[room_id].users
                          and not self.client.rooms[room_id].users[bot_id].invited, f"{bot_id} to join")
        return room_id

    async def round_trip(self, room_id: str, body: str, replies: int = 1) -> tuple[float, str, object]:
        """Send `body`; wait for the bot's `replies` messages. Returns (seconds to the first, event id, it)."""
        from nio import RoomMessageText

        seen = len(self.received.get(room_id, ()))
        started = time.perf_counter()
        response = await self.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                               ignore_unverified_devices=True)
        if not hasattr(response, "event_id"):
            raise RuntimeError(f"send failed: {response}")
        await self._until(lambda: len(self.received.get(room_id, ())) >= seen + replies, f"the answer to {body!r}")
        arrival, first = self.received[room_id][seen]
        if not (isinstance(first, RoomMessageText) and first.decrypted):
            raise RuntimeError(f"the answer to {body!r} was not a decrypted text: {type(first).__name__}")
        return arrival - started, response.event_id, first


# --- the measurement ------------------------------------------------------------------------------------

async def measure(quick: bool) -> list[Figure]:
    from meldbot.storage.db import Database
    from meldbot.storage.sealing import new_key
    from tests.support.synapse import Synapse

    logging.getLogger("nio").setLevel(logging.ERROR)  # "Missing session for device": the expected first share
    measured = 10 if quick else 100
    warm_up = 3 if quick else len(SCRIPT)  # the first sends share olm sessions and room keys
    folder = Path(tempfile.mkdtemp(prefix="meldbot-bench-matrix-"))
    synapse = await asyncio.to_thread(Synapse, folder / "synapse")
    await asyncio.to_thread(synapse.start)
    bots: list[BotProcess] = []
    employee = None
    element: dict | None = None
    try:
        bot_id = synapse.register("meldbot", PASSWORD)
        af_id = synapse.register("af", PASSWORD)
        echo_id = synapse.register("echo", PASSWORD)
        employee_id = synapse.register("medewerker", PASSWORD)
        db_url = f"sqlite+aiosqlite:///{folder}/meldbot.db"
        db = Database(db_url)
        await db.migrate()
        await db.dispose()

        meldbot = BotProcess("meldbot", folder, {
            "MELDBOT_STORAGE__URL": db_url, "MELDBOT_STORAGE__ALLOW_PLAINTEXT": "false", "MELDBOT_DATA_KEY": new_key(),
            "MELDBOT_MELDPUNT__0__AF__0__MATRIX": af_id, "MELDBOT_MELDPUNT__0__MATRIX_DOMAINS": "localhost",
            "MELDBOT_HTTP__LISTEN": "127.0.0.1:0", "MELDBOT_MATRIX__ENABLED": "true",
            "MELDBOT_MATRIX__HOMESERVER": synapse.url, "MELDBOT_MATRIX__USER_ID": bot_id,
            "MELDBOT_MATRIX__PASSWORD": PASSWORD, "MELDBOT_MATRIX__STORE_PATH": str(folder / "meldbot-store")})
        echo = BotProcess("echo", folder, {
            "BENCH_HOMESERVER": synapse.url, "BENCH_USER": echo_id, "BENCH_PASSWORD": PASSWORD,
            "BENCH_STORE": str(folder / "echo-store")})
        bots = [meldbot, echo]
        await asyncio.gather(*(bot.start() for bot in bots))

        employee = Employee(synapse.url, employee_id, folder / "employee")
        await employee.start()
        rooms = {"meldbot": await employee.open_direct(bot_id), "echo": await employee.open_direct(echo_id)}
        lines = {name: itertools.cycle(SCRIPT) for name in rooms}
        samples: dict[str, list[float]] = {name: [] for name in rooms}
        event_ids: dict[str, list[str]] = {name: [] for name in rooms}

        async def turn(name: str, count: bool) -> None:
            body = next(lines[name])
            replies = MELDBOT_REPLIES.get(body, 1) if name == "meldbot" else 1
            await asyncio.sleep(PAUSE)
            seconds, event_id, answer = await employee.round_trip(rooms[name], body, replies)
            if name == "echo" and answer.body != body:
                raise RuntimeError(f"the echo bot answered {answer.body!r} to {body!r}")
            if count:
                samples[name].append(seconds)
                event_ids[name].append(event_id)

        for _ in range(warm_up):
            for name in rooms:
                await turn(name, count=False)
        # Turn by turn, in the order meldbot-echo, echo-meldbot, ...: what the machine does meanwhile, and
        # whatever one bot still does after its answer, hits both alike.
        for index in range(measured):
            for name in (rooms if index % 2 == 0 else reversed(rooms)):
                await turn(name, count=True)
        await employee.stop()            # its sync loop would only add load to the Element turns
        employee = None
        element = await _element_turns(synapse, {"meldbot": bot_id, "echo": echo_id}, folder, measured, warm_up)
    finally:
        if employee:
            await employee.stop()
        inside = {bot.role: await bot.stop() for bot in bots}
        await asyncio.to_thread(synapse.stop)

    figures = _figures(samples, event_ids, inside)
    if element is not None:
        figures += _element_figures(element, inside)
    shutil.rmtree(folder, ignore_errors=True)
    return figures


class _TimedElement:
    """An Element client (tests/support/element.py) that notes when each message reached this process."""

    def __new__(cls, *args, **kwargs):
        from tests.support.element import ElementClient

        class Timed(ElementClient):
            def __init__(self, *a, **k) -> None:
                super().__init__(*a, **k)
                self.arrivals: dict[str, float] = {}

            def _add(self, line: dict) -> None:
                self.arrivals.setdefault(line["event_id"], time.perf_counter())
                super()._add(line)

        return Timed(*args, **kwargs)


async def _element_turns(synapse, bots: dict[str, str], folder: Path, measured: int, warm_up: int) -> dict:
    """The same dialog from an employee on Element's crypto stack (matrix-js-sdk + Rust crypto), to the same two
    bot processes. With meldbot the client runs Element's "exclude insecure devices" (only cross-signed
    devices get room keys: meldbot's device is signed by its identity); the echo bot (bare matrix-nio, no
    cross-signing) would get no keys in that mode, so with it the client sends to all devices. Round trip:
    from just before the `say` command to the moment the bot's first answer, decrypted, reached this process."""
    from tests.support.element import node_command

    try:
        node_command()
    except AssertionError as exc:
        return {"unavailable": str(exc)}
    employee_id = synapse.register("medewerker-element", PASSWORD)
    client = _TimedElement(folder / "element.log", name="employee")
    samples: dict[str, list[float]] = {name: [] for name in bots}
    event_ids: dict[str, list[str]] = {name: [] for name in bots}
    try:
        await client.start(synapse.url, employee_id, PASSWORD, isolation="signed")
        rooms = {name: await client.open_direct(bot_id) for name, bot_id in bots.items()}
        lines = {name: itertools.cycle(SCRIPT) for name in rooms}
        mode = {"meldbot": "signed", "echo": "all"}
        current = ["signed"]

        async def turn(name: str, count: bool) -> None:
            body = next(lines[name])
            replies = MELDBOT_REPLIES.get(body, 1) if name == "meldbot" else 1
            if current[0] != mode[name]:
                await client.set_isolation(mode[name])
                current[0] = mode[name]
            await asyncio.sleep(PAUSE)
            started = time.perf_counter()
            event_id = await client.say(rooms[name], body)

            def answers():
                after = client.after(rooms[name], event_id, bots[name])
                return after if after is not None and len(after) >= replies else None

            answer = (await client.wait_for(answers, f"the answer of {name} to {body!r}", WAIT))[0]
            if not answer.decrypted:
                raise RuntimeError(f"{name}'s answer to {body!r} was not decrypted: {answer.summary()}")
            if name == "meldbot" and answer.shield:
                raise RuntimeError(f"Element shows a shield on meldbot's answer: {answer.summary()}")
            if name == "echo" and answer.body != body:
                raise RuntimeError(f"the echo bot answered {answer.body!r} to {body!r}")
            if count:
                samples[name].append(client.arrivals[answer.event_id] - started)
                event_ids[name].append(event_id)

        for _ in range(warm_up):
            for name in rooms:
                await turn(name, count=False)
        for index in range(measured):
            for name in (list(rooms) if index % 2 == 0 else list(reversed(list(rooms)))):
                await turn(name, count=True)
    finally:
        await client.stop()
    return {"samples": samples, "event_ids": event_ids}


def _element_figures(element: dict, inside: dict) -> list[Figure]:
    section = f"{SECTION} (Element)"
    if "unavailable" in element:
        return [Figure(section, "p50 ratio meldbot/echo, Element client", float("nan"), target=1.15,
                       detail=f"not measured: {element['unavailable']}")]
    samples, event_ids = element["samples"], element["event_ids"]
    p = {(name, q): percentile(values, q) for name, values in samples.items() for q in (50, 95)}
    handle = [inside.get("meldbot", {}).get(e, {}).get("handle") for e in event_ids["meldbot"]]
    handle = [h for h in handle if h is not None]
    inner = f"; inside meldbot: handle p50 {percentile(handle, 50) * 1000:.1f} ms" if handle else ""
    how = ("employee on Element's crypto stack (matrix-js-sdk, Rust crypto; 'exclude insecure devices' with "
           "meldbot, whose device is cross-signed; all devices with the bare matrix-nio echo bot), same Synapse, "
           "same two bot processes, turns interleaved ABBA; meldbot's answers decrypted without a shield")
    return [
        Figure(section, "p50 ratio meldbot/echo, Element client", p["meldbot", 50] / p["echo", 50], target=1.15,
               detail=f"meldbot p50 {p['meldbot', 50] * 1000:.1f} ms, echo p50 {p['echo', 50] * 1000:.1f} ms{inner}; "
                      + how),
        Figure(section, "p95 ratio meldbot/echo, Element client", p["meldbot", 95] / p["echo", 95], target=1.3,
               detail=f"meldbot p95 {p['meldbot', 95] * 1000:.1f} ms, echo p95 {p['echo', 95] * 1000:.1f} ms"),
        Figure(section, "meldbot answer p50, Element client", p["meldbot", 50] * 1000, "ms",
               detail=summary_ms(samples["meldbot"])),
        Figure(section, "echo answer p50, Element client", p["echo", 50] * 1000, "ms",
               detail=summary_ms(samples["echo"])),
    ]


def _figures(samples: dict[str, list[float]], event_ids: dict[str, list[str]], inside: dict) -> list[Figure]:
    p = {(name, q): percentile(values, q) for name, values in samples.items() for q in (50, 95)}

    def in_bot(name: str) -> str:
        entries = [inside.get(name, {}).get(e) for e in event_ids[name]]
        entries = [e for e in entries if e and "total" in e]
        if not entries:
            return f"{name}: no timings from inside the bot"
        parts = [f"{key} p50 {percentile([e.get(key, 0.0) for e in entries], 50) * 1000:.1f} ms"
                 for key in (("handle", "first_send", "total") if name == "meldbot" else ("first_send",))]
        parts = [part.replace("first_send", "first send").replace("total", "whole turn") for part in parts]
        return f"inside {name}: " + ", ".join(parts)

    breakdown = f"{in_bot('meldbot')}; {in_bot('echo')}"
    return [
        Figure(SECTION, "p50 ratio meldbot/echo", p["meldbot", 50] / p["echo", 50], target=1.15,
               detail=f"meldbot p50 {p['meldbot', 50] * 1000:.1f} ms, echo p50 {p['echo', 50] * 1000:.1f} ms; "
                      f"{breakdown}"),
        Figure(SECTION, "p95 ratio meldbot/echo", p["meldbot", 95] / p["echo", 95], target=1.3,
               detail=f"meldbot p95 {p['meldbot', 95] * 1000:.1f} ms, echo p95 {p['echo', 95] * 1000:.1f} ms"),
        Figure(SECTION, "meldbot answer p50", p["meldbot", 50] * 1000, "ms", detail=summary_ms(samples["meldbot"])),
        Figure(SECTION, "meldbot answer p95", p["meldbot", 95] * 1000, "ms"),
        Figure(SECTION, "echo answer p50", p["echo", 50] * 1000, "ms", detail=summary_ms(samples["echo"])),
        Figure(SECTION, "echo answer p95", p["echo", 95] * 1000, "ms"),
    ]


if __name__ == "__main__":
    main(measure)
