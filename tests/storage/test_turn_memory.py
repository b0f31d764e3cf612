"""The process's memory of its last turn of a conversation (TurnMemory, PostgreSQL): bounded, taken by the turn
that uses it, and left only by a turn that committed without writing the person (their row's new version is
not known to the process). That the memory is checked against the database is shown in
tests/service/test_turns_across_processes.py; that it saves the read, in tests/storage/test_turn_statements.py."""

from __future__ import annotations

import pytest

from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.core.ports import PersonSettings
from meldbot.run.app import build_app
from meldbot.storage.repositories.conversations import TurnMemory, _Remembered, state_digest
from meldbot.storage.sealing import KeyringSealer, new_key
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated


def entry(n: int) -> _Remembered:
    return _Remembered(("k",), ("l",), None, (), PersonSettings(str(n), None))


def test_the_memory_keeps_the_conversations_used_last_and_a_turn_takes_its_entry():
    memory = TurnMemory(size=2)
    memory.put("a", entry(1))
    memory.put("b", entry(2))
    memory.put("a", entry(3))    # used again: now the newest
    memory.put("c", entry(4))    # one too many: the oldest goes
    assert len(memory) == 2
    assert memory.take("b") is None
    assert memory.take("a").settings.language == "3"
    assert memory.take("a") is None   # taken: a second turn reads for itself
    memory.forget("c")
    assert len(memory) == 0


def test_the_digest_is_postgresql_s_md5_of_the_sealed_state():
    # md5('abc') in PostgreSQL
    assert state_digest("abc") == "900150983cd24fb0d6963f7d28e17f72"


def message(text: str, event_id: str, conversation: str = "anna") -> IncomingMessage:
    return IncomingMessage(sender=Identity("console", "anna"), conversation_id=conversation, text=text,
                           event_id=event_id)


async def test_a_turn_that_wrote_the_person_leaves_nothing_to_remember(postgres_database, clock):
    await migrated(postgres_database)
    app = build_app(make_config(postgres_database), clock=clock, sealer=KeyringSealer(new_key()),
                    notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        memory = app.uow.memory
        await app.bot.handle(message("melden", "$1"))
        assert len(memory) == 1
        await app.bot.handle(message("taal en", "$2"))
        assert len(memory) == 0
        replies = await app.bot.handle(message("Er slapen tien mensen in een schuur", "$3"))
        assert "Where did it happen?" in replies[-1].text
        assert len(memory) == 1


@pytest.mark.parametrize("url", ["postgres_database", "sqlite_url"])
async def test_no_memory_for_a_keyless_database_nor_for_sqlite(url, clock, request):
    # Keyless (local testing): the state is stored as is, so two writes can leave the same text and the digest
    # could not tell them apart. SQLite: one process per file, and its reads cost no round trip.
    url = request.getfixturevalue(url)
    await migrated(url)
    app = build_app(make_config(url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await app.bot.handle(message("melden", "$1"))
        async with app.uow() as uow:
            assert uow.memory is None
