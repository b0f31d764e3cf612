"""What the service layer may count on from a unit of work (meldbot.core.ports.UnitOfWork), true of the real
one and of the fake alike: its writes are its own until it commits, and are gone if it does not."""

from __future__ import annotations

import pytest

from meldbot.core.clock import ManualClock
from meldbot.core.messaging import Identity, Reply
from meldbot.core.ports import UnitOfWorkFactory
from tests.support.fakes import FakeConflict, FakeStorage
from tests.service.office import MELDPUNT, Office

PIET = Identity("console", "piet")


async def _queue(storage: UnitOfWorkFactory, clock: ManualClock, key: str, *, commit: bool) -> None:
    async with storage() as uow:
        await uow.outbox.add(meldpunt_id=MELDPUNT, recipient=PIET, reply=Reply(key), key=key, kind="x", at=clock.now())
        assert key in await uow.outbox.states([key])   # this unit of work sees its own write at once
        if commit:
            await uow.commit()


async def test_a_committed_write_is_there_for_the_next_unit_of_work(office: Office, clock: ManualClock) -> None:
    await _queue(office.uow, clock, "kept", commit=True)
    assert [m.idempotency_key for m in await office.outbox()] == ["kept"]


async def test_a_unit_of_work_left_without_a_commit_leaves_nothing(office: Office, clock: ManualClock) -> None:
    await _queue(office.uow, clock, "dropped", commit=False)
    assert await office.outbox() == []


async def test_an_exception_inside_leaves_nothing_behind(office: Office) -> None:
    with pytest.raises(RuntimeError):
        async with office.uow() as uow:
            await uow.people.update(PIET, language="en")
            raise RuntimeError("the use case failed")
    async with office.uow() as uow:
        assert (await uow.people.get(PIET)).language is None


async def test_the_same_key_twice_is_one_message(office: Office, clock: ManualClock) -> None:
    for text in ("first", "second"):
        async with office.uow() as uow:
            await uow.outbox.add(meldpunt_id=MELDPUNT, recipient=PIET, reply=Reply(text), key="once", kind="x",
                                 at=clock.now())
            await uow.commit()
    assert [m.reply.text for m in await office.outbox()] == ["first"]


# Two units of work at once: SQLite has one connection, so only the fake is asked.

async def test_in_the_fake_others_see_a_write_only_after_its_commit(clock: ManualClock) -> None:
    storage = FakeStorage()
    async with storage() as writer:
        await writer.people.update(PIET, language="en")
        async with storage() as reader:
            assert (await reader.people.get(PIET)).language is None
            await writer.commit()
        async with storage() as reader:
            assert (await reader.people.get(PIET)).language == "en"


async def test_the_fake_refuses_two_overlapping_writers(clock: ManualClock) -> None:
    storage = FakeStorage()
    async with storage() as first, storage() as second:
        await first.people.update(PIET, language="en")
        await second.people.update(PIET, language="nl")
        await first.commit()
        with pytest.raises(FakeConflict):
            await second.commit()
    async with storage() as uow:
        assert (await uow.people.get(PIET)).language == "en"
