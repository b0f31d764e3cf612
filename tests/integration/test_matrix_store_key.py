"""The Matrix store folder under the data key, against a real Synapse with real end-to-end encryption:
a store from before the protection (nio's default pickle key) is re-pickled at start, and the bot stays
the same device that everyone's clients already know (tests/adapters/test_matrix_store_key.py has the rest)."""

from __future__ import annotations

import json
import sqlite3

from nio.crypto import InboundGroupSession, OlmAccount

from meldbot.adapters.matrix import session
from meldbot.adapters.matrix.session import NIO_DEFAULT_KEY, derive_store_key, store_file
from meldbot.storage.sealing import new_key
from tests.support.matrix import SCRIPT, Bot, needs_synapse, until, wednesday


def opens(folder, user_id, device_id, key) -> tuple[bool, int]:
    """Whether the account and every room key in the bot's store open with `key`; how many room keys."""
    with sqlite3.connect(store_file(folder, user_id, device_id)) as db:
        [account] = db.execute("SELECT account FROM accounts").fetchone()
        groups = [bytes(g) for (g,) in db.execute("SELECT session FROM megolminboundsessions")]
    try:
        OlmAccount.from_pickle(bytes(account), key)
        for group in groups:
            InboundGroupSession.from_pickle(group, "", "", "", key)
    except ValueError:
        return False, len(groups)
    return True, len(groups)


@needs_synapse
async def test_a_store_from_before_the_data_key_is_migrated_and_the_bot_stays_the_same_device(world, monkeypatch):
    key = new_key()
    config = world.config(MELDBOT_DATA_KEY=key)
    folder = world.folder / "bot-store"
    # The old behaviour: nio's own default pickle key.
    monkeypatch.setattr(session, "derive_store_key", lambda data_key: NIO_DEFAULT_KEY)
    async with Bot(config, clock=wednesday()) as bot:
        employee = await world.person(world.employee_id)
        room = await employee.open_direct(world.bot_id)
        await employee.ask(room, SCRIPT[0], world.bot_id)
        device = bot.adapter.device_id
    assert opens(folder, world.bot_id, device, NIO_DEFAULT_KEY)[0] is True
    monkeypatch.undo()

    # Written while the bot is away, then the start with the protection.
    wat = await employee.say(room, SCRIPT[1])
    async with Bot(config, clock=wednesday()) as bot:
        assert bot.adapter.device_id == device   # the same device: no new login, no new keys
        await until(lambda: employee.after(room, wat, world.bot_id), "the answer after the restart")
        [answer] = employee.after(room, wat, world.bot_id)
        assert answer.decrypted and "niet lezen" not in answer.body   # the bot read it, the employee reads it
        answers = await employee.ask(room, SCRIPT[2], world.bot_id)
        assert "<undecryptable>" not in answers and "niet lezen" not in answers[0]
    migrated, groups = opens(folder, world.bot_id, device, derive_store_key(key))
    assert migrated and groups >= 1
    assert opens(folder, world.bot_id, device, NIO_DEFAULT_KEY)[0] is False
    assert json.loads((folder / "status.json").read_text()).get("undecryptable", 0) == 0
