"""One turn at a time per conversation across processes, on real PostgreSQL (issue 17, items 1 and 2).

Two (or three) apps built as `meldbot run` builds them, each with its own engine and connection pool,
share one database in one event loop: for the database they are separate processes. Their in-process
locks know nothing of each other; only the transaction-scoped advisory lock on the conversation
(ConversationRepository.lock, the first statement of a turn) keeps their turns apart."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import pytest
import sqlalchemy as sa

from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.dialogs.conversation import ConversationState
from meldbot.run.app import build_app
from tests.support import FakeNotifier, make_config, until_async
from tests.support.chat import migrated

NL = texts("nl")
ERRORS = (NL("error.resend"), NL("error.general"))
CONVERSATIONS = 40
# Each text is a fine answer to "wat" and to "waar": whichever turn goes first fills `wat`.
FIRST = "Bij de Molenweg {i} wonen veel mensen in een klein huis"
SECOND = "Kerkstraat {i}, Bergeijk: er slapen mensen in de schuur"


def message(user: str, text: str, event_id: str | None = None) -> IncomingMessage:
    return IncomingMessage(sender=Identity("console", user), conversation_id=user, text=text, sender_name=user,
                           event_id=event_id)


async def apps(stack: AsyncExitStack, url: str, clock, count: int) -> list:
    """`count` apps on one database: separate engines, so separate connections and locks."""
    started = []
    for _ in range(count):
        app = build_app(make_config(url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
        started.append(await stack.enter_async_context(app))
    return started


async def draft(app, user: str):
    async with app.uow() as uow:
        loaded = await uow.conversations.load("console", user)
    return ConversationState.from_dict(loaded[0] if loaded else None).draft


def said(replies) -> str:
    return "\n".join(r.text for r in replies)


async def waiting_for_locks(app) -> int:
    """Transactions of this database waiting for an advisory lock."""
    async with app.db.engine.connect() as conn:
        return (await conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))).scalar()


async def test_two_messages_of_one_conversation_on_two_processes_each_get_their_own_field(postgres_database, clock):
    """Finding: "in 40 of 40 conversations one answer was lost" (both turns read the same draft)."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await apps(stack, postgres_database, clock, 2)
        users = [f"melder{i}" for i in range(CONVERSATIONS)]
        for user in users:
            assert "Wat zag of hoorde je?" in said(await one.bot.handle(message(user, "melden")))
        pairs = await asyncio.gather(*(
            asyncio.gather(one.bot.handle(message(user, FIRST.format(i=i))),
                           two.bot.handle(message(user, SECOND.format(i=i))))
            for i, user in enumerate(users)))
        lost = []
        for i, (user, (first, second)) in enumerate(zip(users, pairs)):
            got = await draft(one, user)
            texts_sent = {FIRST.format(i=i), SECOND.format(i=i)}
            if {got.answers.get("wat"), got.answers.get("waar")} != texts_sent or got.step != "wanneer":
                lost.append(user)
                continue
            # In order: the turn that filled `wat` asked for `waar`, the other one for `wanneer`.
            by_text = {FIRST.format(i=i): said(first), SECOND.format(i=i): said(second)}
            assert "Waar gebeurde het?" in by_text[got.answers["wat"]], user
            assert "Wanneer was het?" in by_text[got.answers["waar"]], user
            assert not any(e in said(first) + said(second) for e in ERRORS)
        assert lost == [], f"{len(lost)} of {CONVERSATIONS} conversations lost an answer"


async def begun(app) -> list[str]:
    """CONVERSATIONS melders who each started a report on `app`."""
    users = [f"melder{i}" for i in range(CONVERSATIONS)]
    for user in users:
        await app.bot.handle(message(user, "melden", event_id=f"$start-{user}"))
    return users


async def test_the_same_event_on_two_processes_gets_one_answer_twice_and_moves_the_dialog_one_step(
        postgres_database, clock):
    """Finding: one real answer plus "Je laatste bericht kon ik niet opslaan..."; the melder who resent
    then had the `wat` answer stored as `waar`."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await apps(stack, postgres_database, clock, 2)
        users = await begun(one)
        answers = await asyncio.gather(*(
            asyncio.gather(one.bot.handle(message(user, FIRST.format(i=i), event_id=f"$wat-{user}")),
                           two.bot.handle(message(user, FIRST.format(i=i), event_id=f"$wat-{user}")))
            for i, user in enumerate(users)))
        for i, (user, (first, second)) in enumerate(zip(users, answers)):
            assert said(first) == said(second), user
            assert "Waar gebeurde het?" in said(first) and not any(e in said(first) for e in ERRORS), user
            got = await draft(two, user)
            assert got.step == "waar" and got.answers == {"wat": FIRST.format(i=i)}, user


async def test_turns_waiting_on_other_processes_are_served_in_arrival_order(postgres_database, clock):
    """PostgreSQL queues the waiters of a lock first come, first served: three messages that arrive at three
    processes while the conversation is busy are handled in the order they arrived."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two, three = await apps(stack, postgres_database, clock, 3)
        await one.bot.handle(message("piet", "melden"))
        sent = [(two, FIRST.format(i=1)), (three, SECOND.format(i=2)), (one, "gisteren")]
        turns = []
        async with one.uow() as busy:       # another turn of this conversation, still under way
            await busy.conversations.lock("console", "piet")
            for waiting, (app, text) in enumerate(sent, start=1):
                turns.append(asyncio.create_task(app.bot.handle(message("piet", text))))
                await until_async(lambda: _at_least(one, waiting))
        replies = await asyncio.wait_for(asyncio.gather(*turns), 20)
        got = await draft(one, "piet")
    assert got.answers["wat"] == FIRST.format(i=1) and got.answers["waar"] == SECOND.format(i=2)
    assert got.answers["wanneer"] == "gisteren" and got.step == "wie"
    assert ["Waar gebeurde het?" in said(replies[0]), "Wanneer was het?" in said(replies[1]),
            "Wie waren erbij?" in said(replies[2])] == [True, True, True]


async def _at_least(app, count: int) -> bool:
    return await waiting_for_locks(app) >= count


async def test_a_redelivery_that_races_past_the_processed_check_gets_the_stored_answer(
        postgres_database, clock, monkeypatch, caplog):
    """Defence in depth: without the conversation lock (switched off here) both turns pass the processed check;
    the second one's record of the event hits the unique key. That is no database failure: the turn is
    rolled back and answered with the replies the first one stored."""
    from meldbot.storage.repositories.conversations import ConversationRepository

    async def no_lock(self, platform: str, conversation_id: str, optimistic: bool = False) -> None:
        return None

    monkeypatch.setattr(ConversationRepository, "lock", no_lock)
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await apps(stack, postgres_database, clock, 2)
        users = await begun(one)
        caplog.clear()
        answers = await asyncio.gather(*(
            asyncio.gather(one.bot.handle(message(user, FIRST.format(i=i), event_id=f"$wat-{user}")),
                           two.bot.handle(message(user, FIRST.format(i=i), event_id=f"$wat-{user}")))
            for i, user in enumerate(users)))
        raced = [r for r in caplog.records if r.getMessage().startswith("turn lost a race")]
        for i, (user, (first, second)) in enumerate(zip(users, answers)):
            assert said(first) == said(second) and "Waar gebeurde het?" in said(first), user
            got = await draft(two, user)
            assert got.step == "waar" and got.answers == {"wat": FIRST.format(i=i)}, user
    assert raced, "no turn raced past the processed check: the test proved nothing"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_two_bots_on_one_storage_take_turns_on_the_fake_and_on_sqlite(storage, config, clock, monkeypatch):
    """The ports' promise without PostgreSQL: two Bots (two processes' in-process locks) on one storage. The
    fake holds the conversation's lock until the unit of work ends, as PostgreSQL does; SQLite (one process
    per database file) needs none: each transaction takes the file's write lock at BEGIN."""
    from meldbot.service.bot import Bot
    from tests.support.fakes import FakeConversationRepository

    load = FakeConversationRepository.load

    async def slow_load(self, platform: str, conversation_id: str):
        await asyncio.sleep(0)      # a real database makes the turn wait here: the other turn may run
        return await load(self, platform, conversation_id)

    monkeypatch.setattr(FakeConversationRepository, "load", slow_load)

    one, two = (Bot(config, storage, clock, ("console",)) for _ in range(2))
    await one.handle(message("piet", "melden"))
    first, second = await asyncio.gather(one.handle(message("piet", FIRST.format(i=1))),
                                         two.handle(message("piet", SECOND.format(i=2))))
    async with storage() as uow:
        loaded = await uow.conversations.load("console", "piet")
    got = ConversationState.from_dict(loaded[0] if loaded else None).draft
    assert {got.answers.get("wat"), got.answers.get("waar")} == {FIRST.format(i=1), SECOND.format(i=2)}
    assert got.step == "wanneer" and not any(e in said(first) + said(second) for e in ERRORS)


async def test_a_turn_waiting_for_a_conversation_held_elsewhere_gives_up_after_the_lock_timeout(
        postgres_database, clock, monkeypatch):
    """Review M2: a process cut off while its turn's transaction is open keeps the conversation's lock until
    PostgreSQL notices (hours). A turn waiting for it gives up after the lock timeout, asks to resend and
    stores nothing, and so frees its turn slot."""
    from meldbot.storage.repositories.conversations import ConversationRepository

    monkeypatch.setattr(ConversationRepository, "lock_timeout_seconds", 0.5)
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await apps(stack, postgres_database, clock, 2)
        await one.bot.handle(message("piet", "melden"))
        async with one.uow() as stuck:      # the cut-off process's open transaction
            await stuck.conversations.lock("console", "piet")
            replies = await asyncio.wait_for(two.bot.handle(message("piet", FIRST.format(i=1))), 10)
        assert said(replies) == NL("error.resend")
        got = await draft(one, "piet")
        assert got.step == "wat" and got.answers == {}
        # The conversation goes on once the lock is free.
        assert "Waar gebeurde het?" in said(await two.bot.handle(message("piet", FIRST.format(i=1))))


# --- optimistic turns: the read before the lock (ConversationRepository.lock, optimistic) -----------------

class Paused:
    """Holds `app`'s next turn right after its first read (the optimistic read, before the conversation's lock)
    until `go` is set: another process's turn can change the conversation in between."""

    def __init__(self, app, monkeypatch) -> None:
        from meldbot.storage.repositories.conversations import ConversationRepository

        self.read, self.go = asyncio.Event(), asyncio.Event()
        real = ConversationRepository.prefetch
        paused = self

        async def prefetch(repo, *args, **kwargs):
            await real(repo, *args, **kwargs)
            if repo._uow._db is app.db and not paused.read.is_set():
                paused.read.set()
                await paused.go.wait()

        monkeypatch.setattr(ConversationRepository, "prefetch", prefetch)


async def raced(one, two, monkeypatch, caplog, held: IncomingMessage, meanwhile: IncomingMessage):
    """`held` on `one`, paused right after its first read while `meanwhile` is handled on `two`; then `held` goes
    on. Both answers, in that order; the log from here on at INFO (the notice that a turn went again)."""
    paused = Paused(one, monkeypatch)
    caplog.set_level(logging.INFO, logger="meldbot")
    caplog.clear()
    first = asyncio.create_task(one.bot.handle(held))
    await asyncio.wait_for(paused.read.wait(), 10)
    second = await asyncio.wait_for(two.bot.handle(meanwhile), 10)
    paused.go.set()
    return await asyncio.wait_for(first, 10), second


def keyed_apps(stack: AsyncExitStack, url: str, clock, count: int, keyed: bool):
    """As `apps`; `keyed`: with a data key, as in production (the turn's last write then goes with the COMMIT,
    FastStatements.commit_with), else keyless as the other tests here."""
    if not keyed:
        return apps(stack, url, clock, count)
    from meldbot.storage.sealing import KeyringSealer, new_key

    key = new_key()

    async def started():
        made = []
        for _ in range(count):
            app = build_app(make_config(url), clock=clock, sealer=KeyringSealer(key),
                            notifiers={"console": FakeNotifier()}, mode="chat")
            made.append(await stack.enter_async_context(app))
        return made
    return started()


def logged(caplog, text: str) -> int:
    return len([r for r in caplog.records if r.getMessage().startswith(text)])


@pytest.mark.parametrize("keyed", [False, True], ids=["keyless", "data-key"])
async def test_a_turn_that_read_before_another_process_wrote_is_handled_again_in_its_transaction(
        postgres_database, clock, monkeypatch, caplog, keyed):
    """An ordinary turn reads its conversation before it takes the lock (one round trip less). When another
    process's turn commits in between, the check that goes with the lock fails; the turn is handled again in
    the same transaction, which keeps the lock, and both answers land in their own field, in the order the
    turns committed. (Before: the paused turn held the lock, and the other process's turn waited for it.)"""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, keyed)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        first, second = await raced(one, two, monkeypatch, caplog, message("piet", FIRST.format(i=1), event_id="$2"),
                                    message("piet", SECOND.format(i=2), event_id="$3"))
        got = await draft(one, "piet")
    assert got.answers == {"wat": SECOND.format(i=2), "waar": FIRST.format(i=1)} and got.step == "wanneer"
    assert "Waar gebeurde het?" in said(second) and "Wanneer was het?" in said(first)
    # Keyless, each commit first reads the database's canary through the ORM session
    # (meldbot.storage.canary.PlaintextGuard): then the turn goes again in a new transaction.
    assert logged(caplog, "turn handled again in its transaction") == (1 if keyed else 0)
    assert logged(caplog, "turn handled again: its conversation changed") == (0 if keyed else 1)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("keyed", [False, True], ids=["keyless", "data-key"])
async def test_melden_in_a_new_chat_on_two_processes_at_once_makes_one_conversation(
        postgres_database, clock, monkeypatch, caplog, keyed):
    """A new chat: the paused turn read no conversation; meanwhile the other process's turn (`melden`) inserted
    it. The check that goes with the lock sees the new row (the paused turn's INSERT waits for the COMMIT on
    PostgreSQL, so it was never sent): the turn is handled again and finds the report under way. No unique
    violation, no error, one conversation."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, keyed)
        first, second = await raced(one, two, monkeypatch, caplog, message("piet", FIRST.format(i=1), event_id="$a"),
                                    message("piet", "melden", event_id="$b"))
        got = await draft(one, "piet")
        async with one.db.engine.connect() as conn:
            conversations = (await conn.execute(sa.text("SELECT count(*) FROM conversation"))).scalar()
    # Handled again, the paused message is the answer to the report the other process started.
    assert got.answers == {"wat": FIRST.format(i=1)} and got.step == "waar", got
    assert "Waar gebeurde het?" in said(first)
    assert conversations == 1
    assert not any(e in said(first) + said(second) for e in ERRORS), (said(first), said(second))
    assert logged(caplog, "turn handled again") == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("keyed", [False, True], ids=["keyless", "data-key"])
async def test_versturen_on_two_processes_at_once_makes_one_signal(postgres_database, clock, monkeypatch, caplog,
                                                                   keyed):
    """The paused turn's first write (the reference number) comes after the other process submitted the same
    report: the check fails there, the turn is handled again and finds no report under way. One signal."""
    from tests.support.chat import SCRIPT

    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, keyed)
        for n, line in enumerate(SCRIPT[:-1]):
            await one.bot.handle(message("piet", line, event_id=f"${n}"))
        first, second = await raced(one, two, monkeypatch, caplog, message("piet", "versturen", event_id="$a"),
                                    message("piet", "versturen", event_id="$b"))
        async with one.db.engine.connect() as conn:
            signals = (await conn.execute(sa.text("SELECT count(*) FROM signal"))).scalar()
    assert "MH-2026-" in said(second) and "MH-2026-" not in said(first)
    assert not any(e in said(first) + said(second) for e in ERRORS)
    assert signals == 1
    assert logged(caplog, "turn handled again") == 1


async def test_a_turn_that_used_the_orm_session_is_handled_again_in_a_new_transaction(
        postgres_database, clock, monkeypatch, caplog):
    """`taal en` writes the person's settings through the ORM session, whose objects would be stale after the
    rollback to the savepoint: the turn is handled again in a new unit of work, waiting for the lock first."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, True)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        first, _ = await raced(one, two, monkeypatch, caplog, message("piet", "taal en", event_id="$2"),
                               message("piet", SECOND.format(i=2), event_id="$3"))
        got = await draft(one, "piet")
        async with one.uow() as uow:
            language = (await uow.people.get(Identity("console", "piet"))).language
    assert got.answers == {"wat": SECOND.format(i=2)} and got.step == "waar"
    assert language == "en" and "Where did it happen?" in said(first)
    assert logged(caplog, "turn handled again: its conversation changed") == 1
    assert logged(caplog, "turn handled again in its transaction") == 0


async def test_a_turn_that_read_the_person_before_their_language_changed_elsewhere_answers_in_the_new_one(
        postgres_database, clock, monkeypatch, caplog):
    """The check covers the person who writes too: `taal en` in another chat of theirs (on another process)
    while this turn waited after its read. Review: without it the turn answered in the old language."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, True)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        elsewhere = IncomingMessage(sender=Identity("console", "piet"), conversation_id="piet-elders",
                                    text="taal en", sender_name="piet", event_id="$3")
        first, second = await raced(one, two, monkeypatch, caplog,
                                    message("piet", FIRST.format(i=1), event_id="$2"), elsewhere)
    assert "English" in said(second)
    assert "Where did it happen?" in said(first), said(first)
    assert [r.language for r in first] == ["en"] * len(first)
    assert logged(caplog, "turn handled again") == 1


async def test_the_read_before_the_lock_is_bounded_by_the_lock_timeout_too(postgres_database, clock, monkeypatch):
    """Review: the optimistic read runs before the transaction sets its lock_timeout. A table held by a
    migration (ACCESS EXCLUSIVE) must not keep the turn waiting for ever: it asks to resend, as a lock wait."""
    from meldbot.storage.repositories.conversations import ConversationRepository

    monkeypatch.setattr(ConversationRepository, "lock_timeout_seconds", 0.5)
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, = await keyed_apps(stack, postgres_database, clock, 1, True)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        async with one.db.engine.connect() as migration:
            await migration.execute(sa.text("LOCK TABLE conversation IN ACCESS EXCLUSIVE MODE"))
            replies = await asyncio.wait_for(one.bot.handle(message("piet", FIRST.format(i=1), event_id="$2")), 10)
            await migration.rollback()
        assert said(replies) == NL("error.resend")
        assert "Waar gebeurde het?" in said(await one.bot.handle(message("piet", FIRST.format(i=1), event_id="$3")))


async def test_the_log_line_of_a_conflict_is_the_one_the_admin_guide_quotes(postgres_database, clock):
    """docs/beheer.md tells administrators that PostgreSQL's log shows this line on such a conflict (no failure):
    the storage's own error, with the unit of work still holding the conversation afterwards."""
    from pathlib import Path

    from meldbot.core.ports import ConversationChanged
    from meldbot.storage.sealing import KeyringSealer, new_key

    await migrated(postgres_database)
    key = new_key()
    async with AsyncExitStack() as stack:
        one, two = [await stack.enter_async_context(build_app(
            make_config(postgres_database), clock=clock, sealer=KeyringSealer(key),
            notifiers={"console": FakeNotifier()}, mode="chat")) for _ in range(2)]
        await one.bot.handle(message("piet", "melden"))
        reader = Identity("console", "piet")
        async with one.uow() as late:
            await late.conversations.lock("console", "piet", optimistic=True)
            await late.conversations.prefetch("console", "piet", reader)
            assert "Waar gebeurde het?" in said(await two.bot.handle(message("piet", FIRST.format(i=1))))
            state, _ = await late.conversations.load("console", "piet")
            await late.conversations.save("console", "piet", state, clock.now())
            with pytest.raises(ConversationChanged) as changed:
                await late.commit()
            assert changed.value.holds_lock
    logged_line = str(changed.value.__cause__)
    guide = (Path(__file__).parents[2] / "docs" / "beheer.md").read_text(encoding="utf-8")
    assert logged_line == 'invalid input syntax for type integer: "meldbot: conversation changed 1"'
    assert f"`{logged_line}`" in guide


# --- the process's memory of its last turn of a conversation (TurnMemory): no read at all ------------------

@pytest.mark.parametrize("keyed", [False, True], ids=["keyless", "data-key"])
async def test_a_conversation_the_process_remembers_is_read_again_after_another_process_wrote_it(
        postgres_database, clock, caplog, keyed):
    """`one` remembers the draft its last turn left (with a data key), and its next turn sends no read. Meanwhile `two` handled a
    message of the same conversation: the check under the lock finds the state changed, and the turn is
    handled again on what `two` wrote. Each answer lands in its own field."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, keyed)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        await one.bot.handle(message("piet", FIRST.format(i=1), event_id="$2"))
        assert "Wanneer was het?" in said(await two.bot.handle(message("piet", SECOND.format(i=2), event_id="$3")))
        caplog.set_level(logging.INFO, logger="meldbot")
        caplog.clear()
        replies = await one.bot.handle(message("piet", "gisteren", event_id="$4"))
        got = await draft(one, "piet")
    assert "Wie waren erbij?" in said(replies), said(replies)
    assert got.answers == {"wat": FIRST.format(i=1), "waar": SECOND.format(i=2), "wanneer": "gisteren"}
    # Keyless: no memory (the turn reads as before, after `two`'s commit).
    assert logged(caplog, "turn handled again") == (1 if keyed else 0)
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


async def test_a_conversation_removed_behind_the_process_s_back_is_not_taken_from_its_memory(
        postgres_database, clock):
    """A write that knows no conversation (retention's clean-up, an administrator's DELETE) removed the row the
    process remembers: the turn finds no report under way, as a turn that read would."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, = await keyed_apps(stack, postgres_database, clock, 1, True)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        await one.bot.handle(message("piet", FIRST.format(i=1), event_id="$2"))
        async with one.db.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM conversation"))
        replies = await one.bot.handle(message("piet", SECOND.format(i=2), event_id="$3"))
        got = await draft(one, "piet")
        async with one.db.engine.connect() as conn:
            conversations = (await conn.execute(sa.text("SELECT count(*) FROM conversation"))).scalar()
    assert "Wanneer was het?" not in said(replies) and not any(e in said(replies) for e in ERRORS), said(replies)
    assert not got.active and conversations == 0


async def test_a_redelivered_event_on_the_same_process_gets_its_stored_answer_and_one_step(
        postgres_database, clock, caplog):
    """The remembered turn reads nothing, also not whether its event was handled before: a redelivery (Teams and
    Matrix send an event again after a time-out) fails the check that goes with the lock, is handled again
    after a real read and gets the stored answer. An expected case: no warning in the log."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, = await keyed_apps(stack, postgres_database, clock, 1, True)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        first = await one.bot.handle(message("piet", FIRST.format(i=1), event_id="$2"))
        caplog.set_level(logging.INFO, logger="meldbot")
        caplog.clear()
        again = await one.bot.handle(message("piet", FIRST.format(i=1), event_id="$2"))
        got = await draft(one, "piet")
        # The conversation goes on, from memory again.
        after = await one.bot.handle(message("piet", SECOND.format(i=2), event_id="$3"))
    assert said(again) == said(first) and "Waar gebeurde het?" in said(first)
    assert got.step == "waar" and got.answers == {"wat": FIRST.format(i=1)}
    assert logged(caplog, "turn handled again in its transaction") == 1
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert "Wanneer was het?" in said(after)


async def test_a_remembered_turn_answers_in_the_language_the_person_chose_elsewhere_meanwhile(
        postgres_database, clock):
    """The memory holds the person's settings with their row's version: `taal en` in another chat of theirs,
    on another process, is seen by the next turn here."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, True)
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        await one.bot.handle(message("piet", FIRST.format(i=1), event_id="$2"))
        await two.bot.handle(IncomingMessage(sender=Identity("console", "piet"), conversation_id="piet-elders",
                                             text="taal en", sender_name="piet", event_id="$3"))
        replies = await one.bot.handle(message("piet", SECOND.format(i=2), event_id="$4"))
    assert "When was it?" in said(replies), said(replies)
    assert [r.language for r in replies] == ["en"] * len(replies)


async def test_a_redelivered_event_recorded_under_the_old_key_during_a_key_rotation_is_not_handled_twice(
        postgres_database, clock):
    """Review: a rolling key rotation. `one` knows only the old key and records event $2 under it; `two` knows
    the new key and the old one, and remembers the conversation from its own later turn. $2 comes again, to
    `two`: its record under the old key is found, and the stored answer given; the dialog moves no step."""
    from meldbot.storage.sealing import KeyringSealer, new_key

    old, new = new_key(), new_key()
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        made = []
        for sealer in (KeyringSealer(old), KeyringSealer(new, [old])):
            app = build_app(make_config(postgres_database), clock=clock, sealer=sealer,
                            notifiers={"console": FakeNotifier()}, mode="chat")
            made.append(await stack.enter_async_context(app))
        one, two = made
        await one.bot.handle(message("piet", "melden", event_id="$1"))
        first = await one.bot.handle(message("piet", FIRST.format(i=1), event_id="$2"))
        await two.bot.handle(message("piet", SECOND.format(i=2), event_id="$3"))
        again = await two.bot.handle(message("piet", FIRST.format(i=1), event_id="$2"))
        got = await draft(two, "piet")
    assert said(again) == said(first) and "Waar gebeurde het?" in said(first)
    assert got.answers == {"wat": FIRST.format(i=1), "waar": SECOND.format(i=2)} and got.step == "wanneer"


async def test_a_remembered_turn_that_writes_nothing_still_checks_what_it_answers_on(postgres_database, clock):
    """Review: `hallo` outside a report stores nothing, so `one` remembers "no conversation". Then `two` starts a
    report. `one`'s next turn (`help`, without a platform event id), which would send nothing at all if it
    believed its memory, sends the check with its COMMIT: the help is the report question's."""
    await migrated(postgres_database)
    async with AsyncExitStack() as stack:
        one, two = await keyed_apps(stack, postgres_database, clock, 2, True)
        await one.bot.handle(message("piet", "hallo"))
        async with one.db.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM conversation"))).scalar() == 0
        assert len(one.uow.memory) == 1
        assert "Wat zag of hoorde je?" in said(await two.bot.handle(message("piet", "melden")))
        # Believing its memory, `one` would give the general help and send nothing at all.
        replies = await one.bot.handle(message("piet", "help"))
        got = await draft(one, "piet")
    assert "Wat zag of hoorde je?" in said(replies) and "Dit kan ik" not in said(replies), said(replies)
    assert got.active and got.step == "wat"
