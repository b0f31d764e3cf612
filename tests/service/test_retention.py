"""Retention (meldbot.service.retention): an erased signal's messages go, found by the reference they carry."""

from __future__ import annotations

from datetime import timedelta

from meldbot.core.clock import ManualClock
from meldbot.core.messaging import Identity, Reply
from meldbot.service.retention import erase_expired
from tests.service.office import MELDPUNT, OTHER, Office

AF = Identity("console", "af")


async def test_erasing_a_signal_erases_the_messages_that_carry_its_reference(office: Office,
                                                                           clock: ManualClock) -> None:
    await office.submit("piet")
    await office.submit("klaas", OTHER)
    await office.af("af", "terugkoppelen 1 Het is doorgezet.")
    await office.af("af", "sluiten 1 afgerond")
    (told,) = [m for m in await office.outbox() if m.recipient == Identity("console", "piet")]
    now = clock.now()
    async with office.uow() as uow:
        # The column decides, not the key: one names the signal only there, one names it only in its key.
        await uow.outbox.add(meldpunt_id=MELDPUNT, recipient=AF, reply=Reply("a"), key="custom:1", kind="x",
                             at=now, reference="MH-2026-0001")
        await uow.outbox.add(meldpunt_id=MELDPUNT, recipient=AF, reply=Reply("b"), key="custom:MH-2026-0001:2",
                             kind="x", at=now, reference="MH-2026-0002")
        # A notice about the melder's message whose key names only that row (as older notices did).
        await uow.outbox.add(meldpunt_id=MELDPUNT, recipient=AF, reply=Reply("c"), kind="undelivered", at=now,
                             key=f"undelivered:{told.id}:parked:1:anna:console")
        await uow.commit()
    clock.advance(timedelta(days=24 * 31 + 1))
    async with office.uow() as uow:
        assert await erase_expired(uow, office.config, clock) == 1
        await uow.commit()
    assert sorted(m.idempotency_key for m in await office.outbox()) == [
        "custom:MH-2026-0001:2", "new-signal:MH-2026-0002:anna:console"]
    erased = await office.signal(1)
    assert erased.erased_at == clock.now() and erased.content.wat == ""
    assert await office.audit(1) == []
    assert (await office.signal(2)).erased_at is None
