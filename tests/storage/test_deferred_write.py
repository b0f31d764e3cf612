"""The conversation's update waits for the turn's next statement on PostgreSQL, and goes in one statement with
the record of the platform event (SqlUnitOfWork.defer, ConversationRepository.save, ProcessedEventRepository.
remember). Whatever comes next, the database sees the writes in the order they were asked for, and a unit of
work that is not committed keeps nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from meldbot.core.messaging import Identity, Reply
from meldbot.core.ports import AlreadyHandled, StorageUnavailable
from meldbot.storage import fast
from meldbot.storage.db import Database
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.tables import AuditRow, ConversationRow, OutboxRow, ProcessedEventRow
from meldbot.storage.uow import SqlUnitOfWork
from tests.support.chat import migrated

AT = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


async def _with_conversation(url: str) -> Database:
    await migrated(url)
    db = Database(url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wat"}, AT)
        await uow.commit()
    return db


async def _state(db: Database) -> dict | None:
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        loaded = await uow.conversations.load("teams", "c1")
        return loaded[0] if loaded else None


async def test_the_update_and_the_event_record_are_one_statement_and_both_are_kept(database_url):
    db = await _with_conversation(database_url)
    sent: list[str] = []
    fast.listeners.append(sent.append)
    try:
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"), "$e1")
            sent.clear()
            await uow.conversations.save("teams", "c1", {"step": "waar"}, AT)
            await uow.processed.remember("teams", "$e1", [Reply("Waar was het?")], AT)
            await uow.commit()   # on PostgreSQL the statement goes with the COMMIT (FastStatements.commit_with)
    finally:
        fast.listeners.remove(sent.append)
    assert len(sent) == (1 if db.is_postgres else 2), sent
    assert await _state(db) == {"step": "waar"}
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        earlier = await uow.processed.replies_for("teams", "$e1")
    assert earlier is not None and [r.text for r in earlier.replies] == ["Waar was het?"]
    await db.dispose()


async def test_a_session_query_or_flush_after_the_update_sees_it(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wanneer"}, AT.replace(hour=11))
        # Straight through the session (as the reminder sweep reads conversations), not the repository.
        touched = [row[0] for row in (await uow.session.exec(sa.select(ConversationRow.updated_at))).all()]
        assert touched == [AT.replace(hour=11)]
        await uow.conversations.save("teams", "c1", {"step": "wie"}, AT.replace(hour=12))
        await uow.flush()
        await uow.commit()
    assert await _state(db) == {"step": "wie"}
    await db.dispose()


async def test_an_update_not_committed_is_not_kept(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "vergeten"}, AT)
    assert await _state(db) == {"step": "wat"}
    await db.dispose()


async def test_an_orm_flush_after_the_update_sends_it_first(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wie"}, AT)
        uow.session.add(ProcessedEventRow(key="added-by-the-orm", at=AT))
        await uow.session.flush()             # the session's own flush, not the unit of work's
        assert not uow._deferred
        await uow.commit()
    assert await _state(db) == {"step": "wie"}
    await db.dispose()


async def test_an_event_recorded_before_fails_the_combined_statement_and_keeps_nothing(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.processed.remember("teams", "$e1", [Reply("eerder")], AT)
        await uow.commit()
    with pytest.raises(AlreadyHandled):
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            await uow.conversations.save("teams", "c1", {"step": "dubbel"}, AT)
            await uow.processed.remember("teams", "$e1", [Reply("nog eens")], AT)
            await uow.commit()   # on PostgreSQL the record goes with the COMMIT
    assert await _state(db) == {"step": "wat"}
    await db.dispose()


# --- writes whose outcome nobody reads (SqlUnitOfWork.write) -------------------------------------------------

async def _written(db: Database, *, commit: bool, sent: list[str]) -> None:
    """An audit line, two AF notifications (rows with a column left to its default) and the conversation's
    removal, as a submission writes them."""
    fast.listeners.append(sent.append)
    try:
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            await uow.audit.append(meldpunt_id="eersel", signal_id=None, actor_kind="af", actor="Anna",
                                   action="gelezen", at=AT)
            await uow.outbox.add_many([
                dict(meldpunt_id="eersel", recipient=Identity("teams", f"af{n}"), reply=Reply(f"Nieuw {n}"),
                     key=f"k{n}", kind="new_signal") for n in (1, 2)], AT)
            await uow.conversations.delete("teams", "c1")
            if commit:
                await uow.commit()
    finally:
        fast.listeners.remove(sent.append)


async def _counts(db: Database) -> tuple[int, int, int, list[int]]:
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        audit = (await uow.session.exec(sa.select(sa.func.count()).select_from(AuditRow))).one()[0]
        attempts = [r[0] for r in (await uow.session.exec(sa.select(OutboxRow.attempts).order_by(OutboxRow.id))).all()]
        conversations = (await uow.session.exec(sa.select(sa.func.count()).select_from(ConversationRow))).one()[0]
    return audit, len(attempts), conversations, attempts


async def test_writes_to_several_tables_go_in_one_statement_and_are_all_kept(database_url):
    db = await _with_conversation(database_url)
    sent: list[str] = []
    await _written(db, commit=True, sent=sent)
    # PostgreSQL: one statement for the three writes (and the outbox's two rows); SQLite runs each at once.
    assert len(sent) == (1 if db.is_postgres else 3), sent
    assert await _counts(db) == (1, 2, 0, [0, 0])      # the outbox's `attempts` got its default
    await db.dispose()


async def test_writes_not_committed_are_not_kept(database_url):
    db = await _with_conversation(database_url)
    await _written(db, commit=False, sent=[])
    assert await _counts(db) == (0, 0, 1, [])
    await db.dispose()


async def test_two_writes_to_one_table_keep_their_order(database_url):
    # A statement's WITH parts see one snapshot and not each other's rows: a second write to the same table is
    # not combined with the first. Here the insert must see the delete before it (else: a unique violation).
    db = await _with_conversation(database_url)
    sent: list[str] = []
    fast.listeners.append(sent.append)
    try:
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            await uow.write(ProcessedEventRow.__table__.insert(), dict(key="e1", at=AT))
            sent.clear()
            await uow.write(ProcessedEventRow.__table__.delete().where(ProcessedEventRow.key == sa.bindparam("k")),
                            dict(k="e1"))
            await uow.write(ProcessedEventRow.__table__.insert(), dict(key="e1", at=AT.replace(hour=12)))
            await uow.commit()
    finally:
        fast.listeners.remove(sent.append)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        rows = (await uow.session.exec(sa.select(ProcessedEventRow.at))).all()
    assert [r[0] for r in rows] == [AT.replace(hour=12)]
    assert len(sent) == (3 if db.is_postgres else 2), sent
    await db.dispose()


async def test_a_failed_waiting_write_is_a_database_error_and_not_taken_for_an_event_handled_before(database_url):
    # A write that waits fails with the statement that sends it (on PostgreSQL the COMMIT's, with the record of
    # the platform event in one statement); its failure is not read as "another turn recorded this event"
    # (AlreadyHandled): only a unique violation on the event's own table is.
    db = await _with_conversation(database_url)
    with pytest.raises(StorageUnavailable) as failed:
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            await uow.outbox.add_many([
                dict(meldpunt_id="eersel", recipient=Identity("teams", "af"), reply=Reply("x"), key=None,
                     kind="new_signal")], AT)             # idempotency_key NOT NULL
            await uow.processed.remember("teams", "$e9", [Reply("antwoord")], AT)
            await uow.commit()
    assert isinstance(failed.value.__cause__, sa.exc.IntegrityError)
    assert await _counts(db) == (0, 0, 1, [])
    await db.dispose()


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "sealed"])
async def test_a_new_conversation_inserted_meanwhile_is_a_failed_write_not_an_event_handled_before(
        postgres_database, keyed):
    # On PostgreSQL a new conversation's INSERT waits for the COMMIT and goes with the event's record in one
    # statement. Another unit of work inserted the conversation in between (a turn's lock and check would have
    # caught that; here there is none): the unique violation names the conversation's table, so it is a failed
    # write, not "another turn recorded this event" (AlreadyHandled), and neither row is kept.
    from meldbot.storage.sealing import KeyringSealer, new_key

    await migrated(postgres_database)
    db = Database(postgres_database)
    sealer = KeyringSealer(new_key()) if keyed else PlainSealer()
    with pytest.raises(StorageUnavailable) as failed:
        async with SqlUnitOfWork(db, sealer) as late:
            assert await late.conversations.load("teams", "c1") is None
            async with SqlUnitOfWork(db, sealer) as first:
                await first.conversations.save("teams", "c1", {"step": "wat"}, AT)
                await first.commit()
            await late.conversations.save("teams", "c1", {"step": "waar"}, AT)
            await late.processed.remember("teams", "$e1", [Reply("antwoord")], AT)
            await late.commit()
    cause = failed.value.__cause__
    assert isinstance(cause, sa.exc.IntegrityError) and "conversation" in str(cause.orig), cause
    async with SqlUnitOfWork(db, sealer) as uow:
        assert (await uow.conversations.load("teams", "c1"))[0] == {"step": "wat"}
        assert (await uow.session.exec(sa.select(sa.func.count()).select_from(ProcessedEventRow))).one()[0] == 0
    await db.dispose()


# --- the last write with the COMMIT (FastStatements.commit_with) ---------------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

from meldbot.storage.fast import _literal  # noqa: E402
from meldbot.storage.sealing import KeyringSealer, new_key  # noqa: E402


@given(st.text())
def test_only_text_that_cannot_carry_sql_becomes_a_literal(text):
    literal = _literal(text)
    if literal is not None:
        assert literal == f"'{text}'" and all(c.isascii() and (c.isalnum() or c in "_.:=-") for c in text)
    else:
        assert any(not (c.isascii() and (c.isalnum() or c in "_.:=-")) for c in text)


def test_literals_of_other_values():
    assert _literal(None) == "NULL" and _literal(True) == "true" and _literal(42) == "42"
    assert _literal(datetime(2026, 11, 18, 9, 30)) == "'2026-11-18T09:30:00'::timestamp"
    assert _literal(AT) == "'2026-11-18T09:30:00+00:00'::timestamptz"
    assert _literal(b"bytes") is None and _literal(1.5) is None and _literal("it's") is None


async def test_with_a_data_key_the_update_and_the_event_record_go_with_the_commit_and_are_kept_exactly(
        database_url):
    await migrated(database_url)
    db, sealer = Database(database_url), KeyringSealer(new_key())
    sent: list[str] = []
    later = AT.replace(hour=11, minute=7, second=3, microsecond=120001)
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wat"}, AT)
        await uow.commit()
    fast.listeners.append(sent.append)
    try:
        async with SqlUnitOfWork(db, sealer) as uow:
            await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"), "$e1")
            sent.clear()
            await uow.conversations.save("teams", "c1", {"step": "waar", "tekst": "Kerkstraat 3, 'Eersel'"}, later)
            await uow.processed.remember("teams", "$e1", [Reply("Waar was het?")], later)
            await uow.commit()
    finally:
        fast.listeners.remove(sent.append)
    assert len(sent) == (1 if db.is_postgres else 2), sent    # on PostgreSQL one statement, with the COMMIT
    async with SqlUnitOfWork(db, sealer) as uow:
        state, touched = await uow.conversations.load("teams", "c1")
        earlier = await uow.processed.replies_for("teams", "$e1")
    assert state == {"step": "waar", "tekst": "Kerkstraat 3, 'Eersel'"} and touched == later
    assert [r.text for r in earlier.replies] == ["Waar was het?"]
    await db.dispose()


async def test_a_failed_write_with_the_commit_keeps_nothing_names_no_value_and_the_connection_goes_on(
        postgres_database):
    # The event was recorded by another turn: the unique violation comes from the round trip with the COMMIT.
    await migrated(postgres_database)
    db, sealer = Database(postgres_database), KeyringSealer(new_key())
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wat"}, AT)
        await uow.processed.remember("teams", "$e1", [Reply("eerder")], AT)
        await uow.commit()
    sent: list[str] = []
    fast.listeners.append(sent.append)
    try:
        with pytest.raises(AlreadyHandled) as lost:
            async with SqlUnitOfWork(db, sealer) as uow:
                await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"), "$e1")
                await uow.conversations.save("teams", "c1", {"step": "dubbel"}, AT)
                await uow.processed.remember("teams", "$e1", [Reply("nog eens")], AT)
                sealed_state = uow.conversations._rows[("teams", "c1")].state_sealed
                await uow.commit()
    finally:
        fast.listeners.remove(sent.append)
    assert any("INSERT INTO processed_event" in s for s in sent)
    assert sealed_state not in str(lost.value.__cause__)     # the statement is named with placeholders
    async with SqlUnitOfWork(db, sealer) as uow:
        assert (await uow.conversations.load("teams", "c1"))[0] == {"step": "wat"}
    for n in range(3):    # every pooled connection is out of its transaction and serves the next turn
        async with SqlUnitOfWork(db, sealer) as uow:
            await uow.conversations.save("teams", "c1", {"step": f"waar{n}"}, AT)
            await uow.commit()
    async with SqlUnitOfWork(db, sealer) as uow:
        assert (await uow.conversations.load("teams", "c1"))[0] == {"step": "waar2"}
    await db.dispose()


def test_literals_refuse_subclasses_and_keep_negative_numbers_apart():
    import enum

    class Kind(str, enum.Enum):
        A = "a"

    class Number(int, enum.Enum):
        ONE = 1

    class Sly(str):
        def __str__(self):
            return "x'); DROP TABLE signal; --"

        __format__ = lambda self, spec: str(self)  # noqa: E731

    assert _literal(Kind.A) is None and _literal(Number.ONE) is None and _literal(Sly("ok")) is None
    assert _literal(-5) == "(-5)"      # "--5" would start a comment


async def _count_sessions(monkeypatch) -> list[int]:
    """Count the ORM sessions made by the calling task only: the app's background tasks (the outbox
    dispatcher sending queued reminders) make their own sessions, at times that depend on the machine's load."""
    from meldbot.storage import db as dbmod
    made = [0]
    real = dbmod.AsyncSession.__init__
    turn = asyncio.current_task()

    def counting(self, *args, **kwargs):
        if asyncio.current_task() is turn:
            made[0] += 1
        real(self, *args, **kwargs)

    monkeypatch.setattr(dbmod.AsyncSession, "__init__", counting)
    return made


async def test_an_ordinary_turn_makes_no_orm_session(database_url, clock, monkeypatch):
    from meldbot.core.messaging import IncomingMessage
    from meldbot.run.app import build_app
    from tests.support import FakeNotifier, make_config

    await migrated(database_url)
    app = build_app(make_config(database_url), clock=clock, sealer=KeyringSealer(new_key()),
                    notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await app.settled()
        await app.bot.handle(IncomingMessage(sender=Identity("console", "anna"), conversation_id="anna",
                                             text="melden"))
        made = await _count_sessions(monkeypatch)
        replies = await app.bot.handle(IncomingMessage(sender=Identity("console", "anna"), conversation_id="anna",
                                                       text="Een man houdt de paspoorten van vrouwen", event_id="$e"))
    assert "2 van 7" in replies[0].text
    assert made[0] == 0


@pytest.mark.parametrize("anonymous", [False, True], ids=["named", "anonymous"])
async def test_a_submission_makes_no_orm_session(database_url, clock, monkeypatch, anonymous):
    """`versturen` is the dearest turn of a report: its statements (the AFs' languages, the reference, the free
    pseudonym of an anonymous melder, the signal and what goes with it) all go straight to the driver."""
    from meldbot.core.messaging import IncomingMessage
    from meldbot.run.app import build_app
    from tests.support import FakeNotifier, make_config
    from tests.support.chat import ANONYMOUS, NAMED

    await migrated(database_url)
    app = build_app(make_config(database_url), clock=clock, sealer=KeyringSealer(new_key()),
                    notifiers={"console": FakeNotifier()}, mode="chat")
    script = ANONYMOUS if anonymous else NAMED
    async with app:
        await app.settled()
        for line in script[:-1]:
            await app.bot.handle(IncomingMessage(sender=Identity("console", "anna"), conversation_id="anna", text=line))
        made = await _count_sessions(monkeypatch)
        replies = await app.bot.handle(IncomingMessage(sender=Identity("console", "anna"), conversation_id="anna",
                                                       text=script[-1], event_id="$submit"))
        monkeypatch.undo()
        async with app.uow() as uow:
            signals = await uow.signals.of_melder(Identity("console", "anna"))
    text = " ".join(r.text for r in replies)
    assert str(signals[0].reference) in text
    if anonymous:   # the pseudonym was drawn, checked and told
        assert signals[0].pseudonym and signals[0].pseudonym in text
    assert made[0] == 0

async def test_a_session_made_after_the_connection_that_sends_nothing_still_commits_the_work(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"))      # the connection, first
        await uow.conversations.save("teams", "c1", {"step": "late"}, AT)             # waits (PlainSealer: no literal)
        uow.session.expunge_all()                                                     # a session, no statement
        await uow.commit()
    assert await _state(db) == {"step": "late"}
    await db.dispose()


async def test_a_dirty_session_keeps_the_waiting_write_in_the_transaction(database_url):
    # With ORM changes not yet flushed, the waiting write does not go with a COMMIT of its own: the flush
    # that fails must take the write down with it.
    db = await _with_conversation(database_url)
    sealer = KeyringSealer(new_key())
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.processed.remember("teams", "$taken", [], AT)
        await uow.commit()
    with pytest.raises((StorageUnavailable, sa.exc.IntegrityError)):
        async with SqlUnitOfWork(db, sealer) as uow:
            await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"))
            await uow.conversations.save("teams", "c1", {"step": "verloren"}, AT)
            taken = uow.processed.keys_for("teams", "$taken")[0]
            uow.session.add(ProcessedEventRow(key=taken, at=AT))   # a duplicate, flushed by the commit
            await uow.commit()
    async with SqlUnitOfWork(db, sealer) as uow:
        assert (await uow.conversations.load("teams", "c1")) is None or \
            (await uow.conversations.load("teams", "c1"))[0] != {"step": "verloren"}
    await db.dispose()


async def test_two_commits_in_one_unit_of_work_keep_both_and_the_connection_goes_on(database_url):
    await migrated(database_url)
    db, sealer = Database(database_url), KeyringSealer(new_key())
    sent: list[str] = []
    fast.listeners.append(sent.append)
    try:
        async with SqlUnitOfWork(db, sealer) as uow:
            for n in range(2):
                await uow.conversations.prefetch("teams", f"c{n}", Identity("teams", "p"))
                await uow.conversations.save("teams", f"c{n}", {"n": n}, AT)
                await uow.commit()
                await uow.conversations.save("teams", f"c{n}", {"n": n, "again": True}, AT)
                await uow.commit()
    finally:
        fast.listeners.remove(sent.append)
    async with SqlUnitOfWork(db, sealer) as uow:
        assert (await uow.conversations.load("teams", "c0"))[0] == {"n": 0, "again": True}
        assert (await uow.conversations.load("teams", "c1"))[0] == {"n": 1, "again": True}
    await db.dispose()


async def test_a_submission_s_writes_go_with_the_commit_and_keep_every_value(postgres_database, monkeypatch):
    # More than nine placeholders in the statement that goes with the COMMIT, every value checked.
    import asyncpg

    await migrated(postgres_database)
    db, sealer = Database(postgres_database), KeyringSealer(new_key())
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wat"}, AT)
        await uow.commit()
    executed: list[str] = []
    real = asyncpg.Connection.execute

    async def spying(self, query, *args, **kwargs):
        executed.append(query)
        return await real(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", spying)
    later = AT.replace(hour=14, minute=2, second=9, microsecond=31)
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"))
        await uow.audit.append(meldpunt_id="eersel", signal_id=None, actor_kind="af", actor="Anna",
                               action="gelezen", at=later)
        await uow.outbox.add_many([
            dict(meldpunt_id="eersel", recipient=Identity("teams", f"af{n}"), reply=Reply(f"Nieuw {n}"),
                 key=f"new_signal:MH-2026-{n:04d}:af{n}:teams", kind="new_signal") for n in (1, 2)], later)
        await uow.conversations.delete("teams", "c1")
        await uow.commit()
    monkeypatch.setattr(asyncpg.Connection, "execute", real)
    with_commit = [q for q in executed if q.rstrip().endswith("; COMMIT")]
    assert len(with_commit) == 1 and "$" not in with_commit[0], executed
    async with SqlUnitOfWork(db, sealer) as uow:
        audit = (await uow.session.exec(sa.select(AuditRow.at, AuditRow.action, AuditRow.actor_kind))).all()
        outbox = (await uow.session.exec(sa.select(
            OutboxRow.idempotency_key, OutboxRow.kind, OutboxRow.attempts, OutboxRow.created_at,
            OutboxRow.next_attempt_at, OutboxRow.recipient_platform).order_by(OutboxRow.id))).all()
        items = await uow.outbox.claim_due(later, limit=10, lease=__import__("datetime").timedelta(minutes=1),
                                           platforms=["teams"])
        assert await uow.conversations.load("teams", "c1") is None
    assert [tuple(r) for r in audit] == [(later, "gelezen", "af")]
    assert [tuple(r) for r in outbox] == [
        (f"new_signal:MH-2026-{n:04d}:af{n}:teams", "new_signal", 0, later, later, "teams") for n in (1, 2)]
    assert sorted(i.reply.text for i in items) == ["Nieuw 1", "Nieuw 2"]
    await db.dispose()


async def test_without_a_data_key_no_value_is_written_into_the_statement(postgres_database, monkeypatch):
    # docs/beheer.md: without MELDBOT_DATA_KEY the last write and the COMMIT go as before (placeholders), also
    # when every value would pass as a literal (an audit line with a plain actor name).
    import asyncpg

    await migrated(postgres_database)
    db = Database(postgres_database)
    executed: list[str] = []
    real = asyncpg.Connection.execute

    async def spying(self, query, *args, **kwargs):
        executed.append(query)
        return await real(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", spying)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"))
        await uow.audit.append(meldpunt_id="eersel", signal_id=None, actor_kind="af", actor="Anna",
                               action="gelezen", at=AT)
        await uow.commit()
    monkeypatch.setattr(asyncpg.Connection, "execute", real)
    assert not any("Anna" in q or q.rstrip().endswith("; COMMIT") for q in executed), executed
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        assert (await uow.session.exec(sa.select(AuditRow.actor_sealed))).all()[0][0] == "Anna"
    await db.dispose()


@pytest.mark.parametrize("rows", [12, 70])
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "data-key"])
async def test_rows_for_the_insert_that_waits_last_join_it_in_the_order_asked(database_url, rows, keyed):
    """Found with the growth benchmark's statement count: `lijst` wrote the audit line of each open signal in
    a round trip of its own (43 statements for 40 signals). Rows for the same prebuilt INSERT now join the one
    that waits, up to JOINED_ROWS (a write in between keeps them apart: the order of writes to one table stays
    as asked). With a data key the rows go with the COMMIT, as one INSERT of several rows (commit_with)."""
    from meldbot.storage.sealing import KeyringSealer, new_key
    from meldbot.storage.uow import JOINED_ROWS

    db = await _with_conversation(database_url)
    sealer = KeyringSealer(new_key()) if keyed else PlainSealer()
    sent: list[str] = []
    fast.listeners.append(sent.append)
    actions = [f"gelezen-{n}" for n in range(rows)]
    try:
        async with SqlUnitOfWork(db, sealer) as uow:
            for action in actions:
                await uow.audit.append(meldpunt_id="bergeijk", signal_id=None, actor_kind="af", actor="af",
                                       action=action, at=AT)
            await uow.commit()
    finally:
        fast.listeners.remove(sent.append)
    chunks = -(-rows // JOINED_ROWS)
    assert len(sent) == (chunks if db.is_postgres else rows), sent
    async with SqlUnitOfWork(db, sealer) as uow:
        found = (await uow.session.exec(sa.select(AuditRow.action).order_by(AuditRow.id))).all()
    assert [r[0] for r in found] == actions
    await db.dispose()


def test_a_caller_s_own_list_of_rows_is_not_appended_to():
    from meldbot.storage.uow import _joins

    stmt = AuditRow.__table__.insert()
    theirs = [dict(action="a")]
    assert not _joins((stmt, theirs), stmt, dict(action="b"))
    assert _joins((stmt, dict(action="a")), stmt, dict(action="b"))
    assert not _joins((stmt, dict(action="a")), stmt, dict(action="b", detail_sealed=None))   # other columns
    assert not _joins((stmt, dict(action="a")), AuditRow.__table__.insert(), dict(action="b"))  # another statement
