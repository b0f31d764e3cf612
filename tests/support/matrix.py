"""Matrix with real end-to-end encryption: people on matrix-nio with Element's habits, fresh accounts per test on
a shared Synapse (tests/support/synapse.py), and the bot wired by build_app as `meldbot run` wires it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from meldbot.adapters.matrix import ENCRYPTION_STATE, MatrixAdapter
from meldbot.core.clock import ManualClock
from meldbot.run.app import build_app
from tests.support import EXAMPLE, make_config


def needs_synapse(test):
    """A real homeserver (and for some tests a bot process): slow. Never skipped: matrix-synapse comes with
    the test extras, and a test that skips when its server is missing could not catch its loss."""
    return pytest.mark.slow(test)

PASSWORD = "test-password-1"
SCRIPT = ["melden", "Een man houdt de paspoorten van zes vrouwen", "Kerkstraat 12a, Bergeijk", "gisteren",
          "Piet Jansen, Jansen Uitzend B.V.", "arbeid", "balie", "nee", "versturen"]
WAIT = 30  # seconds; no single wait of the Matrix tests may take longer, so a failure never hangs CI
_names = itertools.count(1)


class Person:
    """A Matrix user with Element's habits: own device and E2EE store, joins invites, reads everything.

    A matrix-nio device, made as the bot makes its own: not cross-signed by its account. Keeps every room
    message and every unknown to-device event (m.room_key.withheld)."""

    def __init__(self, synapse, user_id: str, folder: Path) -> None:
        from nio import AsyncClient, AsyncClientConfig

        folder.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.client = AsyncClient(synapse.url, user_id, store_path=str(folder), config=AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False, max_timeout_retry_wait_time=1, backoff_factor=0.05))
        self.events: list[tuple[str, object]] = []  # (room id, event) in arrival order
        self.invites: list[object] = []
        self.to_device: list[object] = []
        self._task: asyncio.Task | None = None

    async def start(self, device_name: str = "test") -> "Person":
        from nio import (BadEvent, InviteMemberEvent, LoginResponse, MegolmEvent, RoomEncryptedImage,
                         RoomMessageImage, RoomMessageNotice, RoomMessageText, UnknownToDeviceEvent)

        response = await self.client.login(PASSWORD, device_name=device_name)
        assert isinstance(response, LoginResponse), response
        self.client.add_event_callback(self._on_event, (RoomMessageText, RoomMessageNotice, RoomMessageImage,
                                                        RoomEncryptedImage, MegolmEvent, BadEvent))
        self.client.add_to_device_callback(self._on_to_device, UnknownToDeviceEvent)
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)
        self._task = asyncio.create_task(self.client.sync_forever(timeout=5000, full_state=True))
        await until(lambda: self.client.next_batch and not self.client.should_upload_keys, "first sync")
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()

    async def _on_to_device(self, event) -> None:
        self.to_device.append(event)

    async def _on_event(self, room, event) -> None:
        self.events.append((room.room_id, event))

    async def _on_invite(self, room, event) -> None:
        if event.state_key == self.user_id and event.membership == "invite":
            self.invites.append(event)
            await self.client.join(room.room_id)

    async def open_direct(self, bot_id: str) -> str:
        from nio import RoomPreset

        response = await self.client.room_create(is_direct=True, preset=RoomPreset.trusted_private_chat,
                                                 invite=[bot_id], initial_state=[ENCRYPTION_STATE])
        room_id = response.room_id
        await until(lambda: room_id in self.client.rooms and bot_id in self.client.rooms[room_id].users
                    and not self.client.rooms[room_id].users[bot_id].invited, "bot joined")
        return room_id

    async def say(self, room_id: str, body: str) -> str:
        response = await self.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                               ignore_unverified_devices=True)
        assert hasattr(response, "event_id"), response
        await until(lambda: any(e.event_id == response.event_id for _, e in self.events), "own message synced")
        return response.event_id

    def after(self, room_id: str, event_id: str | None, sender: str) -> list:
        """Messages of `sender` in the room after `event_id` (all, when None), in timeline order."""
        in_room = [e for r, e in self.events if r == room_id]
        index = next((i for i, e in enumerate(in_room) if e.event_id == event_id), None) if event_id else -1
        if index is None:
            return []  # not synced here yet: nothing can be after it
        return [e for e in in_room[index + 1:] if e.sender == sender]

    async def ask(self, room_id: str, body: str, bot_id: str, count: int = 1) -> list[str]:
        """Say something, wait for `count` messages of the bot after it, return their bodies."""
        event_id = await self.say(room_id, body)
        await until(lambda: len(self.after(room_id, event_id, bot_id)) >= count, f"answer to {body!r}")
        return [getattr(e, "body", "<undecryptable>") for e in self.after(room_id, event_id, bot_id)]

    async def message_containing(self, part: str, sender: str) -> tuple[str, object]:
        await until(lambda: self._find(part, sender), f"a message with {part!r}", seen=self.summary)
        return self._find(part, sender)

    def summary(self) -> str:
        """What arrived, for a failing wait: event types and the start of each body."""
        return "; ".join(f"{type(e).__name__}:{getattr(e, 'body', '')[:40]!r}" for _, e in self.events[-12:])

    def _find(self, part: str, sender: str):
        return next(((r, e) for r, e in self.events if e.sender == sender and part in getattr(e, "body", "")), None)


async def until(condition, what: str, timeout: float = WAIT, seen=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = f"; got {seen()}" if seen else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")
        await asyncio.sleep(0.05)


class World:
    """Fresh accounts per test on the shared homeserver: a bot, an AF, an employee and a colleague."""

    def __init__(self, synapse, folder: Path) -> None:
        n = next(_names)
        self.synapse, self.folder = synapse, folder
        self.bot_id = synapse.register(f"meldbot{n}", PASSWORD)
        self.af_id = synapse.register(f"af{n}", PASSWORD)
        self.employee_id = synapse.register(f"medewerker{n}", PASSWORD)
        self.colleague_id = synapse.register(f"collega{n}", PASSWORD)
        self.db_url = f"sqlite+aiosqlite:///{folder}/meldbot.db"
        self.people: list[Person] = []

    def environment(self, homeserver: str | None = None, **env: str) -> dict[str, str]:
        return {"MELDBOT_STORAGE__URL": self.db_url, "MELDBOT_MELDPUNT__0__AF__0__MATRIX": self.af_id,
                "MELDBOT_MELDPUNT__0__MATRIX_DOMAINS": "localhost", "MELDBOT_HTTP__LISTEN": "127.0.0.1:0",
                "MELDBOT_MATRIX__ENABLED": "true", "MELDBOT_MATRIX__HOMESERVER": homeserver or self.synapse.url,
                "MELDBOT_MATRIX__USER_ID": self.bot_id, "MELDBOT_MATRIX__PASSWORD": PASSWORD,
                "MELDBOT_MATRIX__STORE_PATH": str(self.folder / "bot-store"),
                "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true", **env}

    def config(self, homeserver: str | None = None, **env: str):
        return make_config(self.db_url, **self.environment(homeserver, **env))

    async def person(self, user_id: str, device: str = "phone") -> Person:
        person = Person(self.synapse, user_id, self.folder / f"{user_id[1:].split(':')[0]}-{device}")
        self.people.append(person)
        return await person.start(device)

    async def close(self) -> None:
        for person in self.people:
            await person.stop()

    async def count(self, table: str) -> int:
        from meldbot.storage.db import Database

        db = Database(self.db_url)
        try:
            async with db.engine.connect() as conn:
                return (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
        finally:
            await db.dispose()


class Bot:
    """The bot in this process, wired by build_app exactly as `meldbot run` does it."""

    def __init__(self, config, clock=None) -> None:
        self.app = build_app(config, mode="run", clock=clock, poll_interval=0.5)
        [self.adapter] = self.app.adapters
        assert isinstance(self.adapter, MatrixAdapter) and self.app.notifiers == {"matrix": self.adapter.notifier}

    async def __aenter__(self) -> "Bot":
        await self.app.__aenter__()
        await asyncio.wait_for(self.adapter.ready.wait(), WAIT)
        assert await self.adapter.notifier.healthy()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.app.__aexit__(*exc)


def wednesday() -> ManualClock:
    return ManualClock(datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc))


def bot_process() -> None:
    """The bot in its own process, so the test can kill -9 it. MELDBOT_TEST_PAUSE_* make it hang mid-turn."""
    from meldbot.core.config import load_config

    config = load_config(EXAMPLE, os.environ)
    pause_text, pause_when = os.environ.get("MELDBOT_TEST_PAUSE_TEXT"), os.environ.get("MELDBOT_TEST_PAUSE_WHEN")
    marker = Path(os.environ["MELDBOT_TEST_MARKER"])
    logging.basicConfig(level=logging.INFO)

    async def main() -> None:
        app = build_app(config, mode="run", poll_interval=0.5)
        [adapter] = app.adapters
        handle = app.bot.handle

        async def paused(msg):
            if msg.text == pause_text and pause_when == "before-commit":
                marker.write_text("paused")
                await asyncio.Event().wait()
            replies = await handle(msg)
            if msg.text == pause_text and pause_when == "after-commit":
                marker.write_text("paused")  # committed, nothing sent yet
                await asyncio.Event().wait()
            return replies

        app.bot.handle = paused
        async with app:
            await adapter.ready.wait()
            marker.with_suffix(".ready").write_text("ready")
            await asyncio.Event().wait()

    asyncio.run(main())
