"""Helpers shared by the tests of every folder: paths, configurations, PostgreSQL settings, the fake notifier.

Fixtures live in the conftest.py files; what test modules import lives here (tests/support/), never in
another test module. The larger rigs have modules of their own: chat.py (the bot in a chat), cli.py (the
`meldbot` command), matrix.py and synapse.py, element.py, teams.py and teams_fakes.py, postgres_server.py,
fakes.py (the in-memory unit of work)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from meldbot.core.config import load_config
from meldbot.core.messaging import Identity, RecipientAway, Reply

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
PG_ENV = "MELDBOT_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV)


def skip_or_fail(reason: str) -> None:
    if os.environ.get("MELDBOT_TEST_REQUIRE_POSTGRES"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_sync(coro):
    """Run a coroutine to completion from sync code, even inside a running loop's thread."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def make_config(url: str, **env: str):
    # Tests run Matrix and Teams without a data key; production refuses that (see config.example.toml).
    environ = {"MELDBOT_STORAGE__URL": url, "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true", **env}
    return load_config(EXAMPLE, environ)


REMINDER_KEY_PREFIX = "reminder:"


def is_reminder(idempotency_key: str) -> bool:
    """A message of the reminder sweep (reminders and the weekly overview): meldbot/service/reminders.py
    gives their outbox rows keys that start with "reminder:". The Notifier port sees nothing but the key."""
    return idempotency_key.startswith(REMINDER_KEY_PREFIX)


class FakeNotifier:
    """Records deliveries; like real platforms, shows a message once per idempotency key.

    Two streams, kept apart on purpose. The reminder sweep runs at every start and sends the weekly
    overview from Monday 09:00 on, so almost any test gets messages it did not cause. Those are recorded
    in `reminders`, everything else in `messages`; `shown` holds both, in the order they were shown.
    `calls`, `fail_next` and `to()` concern `messages` only, so tests of those stay exact; a test about
    reminders reads `reminders` or `reminders_to()`. Someone `away` gets neither."""

    def __init__(self, platform: str = "console") -> None:
        self.platform = platform
        self.shown: list[tuple[Identity, Reply, str]] = []
        self.messages: list[tuple[Identity, Reply, str]] = []
        self.reminders: list[tuple[Identity, Reply, str]] = []
        self.calls = 0          # send() calls for messages, failed and repeated ones included
        self.away: set[str] = set()
        self.fail_next = 0      # how many of the next messages fail with a (temporary) DeliveryError
        self._keys: set[str] = set()

    async def send(self, recipient: Identity, reply: Reply, idempotency_key: str) -> None:
        reminder = is_reminder(idempotency_key)
        if not reminder:
            self.calls += 1
        if recipient.user_id in self.away:
            raise RecipientAway(recipient.user_id)
        if self.fail_next and not reminder:
            self.fail_next -= 1
            from meldbot.core.messaging import DeliveryError

            raise DeliveryError("connection refused")
        if idempotency_key in self._keys:
            return
        self._keys.add(idempotency_key)
        entry = (recipient, reply, idempotency_key)
        self.shown.append(entry)
        (self.reminders if reminder else self.messages).append(entry)

    def to(self, user_id: str) -> list[Reply]:
        """The messages (not the reminders) shown to `user_id`."""
        return [r for who, r, _ in self.messages if who.user_id == user_id]

    def reminders_to(self, user_id: str) -> list[Reply]:
        return [r for who, r, _ in self.reminders if who.user_id == user_id]


async def until_async(check, timeout: float = 10.0):
    """Wait until the coroutine function `check` gives something true (which it returns), for at most `timeout`
    seconds (TimeoutError after)."""
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.01)
        return found
