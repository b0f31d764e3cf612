"""Retention (meldbot.service.retention): an erased signal's messages go, found by the reference they carry."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

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


async def test_retention_erases_the_oldest_signal_first_over_all_meldpunten(clock: ManualClock) -> None:
    """Review finding: erase_expired went meldpunt by meldpunt, in the database's order. A key rotation locks
    its batches of signals oldest first (meldbot.storage.rotation); erasing signal 2 and then 1 while a batch
    held 1 and waited for 2 was a deadlock, and the night's erasure was rolled back."""
    erased: list[int] = []

    async def closed_before(meldpunt_id, cutoff):
        return {"a": [(7, "MH-2024-0007"), (2, "MH-2024-0002")], "b": [(5, "MH-2024-0005"), (1, "MH-2024-0001")]}[
            meldpunt_id]

    async def erase(signal_id, reference, at):
        erased.append(signal_id)

    async def nothing(*_args):
        return None

    uow = SimpleNamespace(signals=SimpleNamespace(closed_before=closed_before, erase=erase),
                          processed=SimpleNamespace(forget_before=nothing, forget_replies_before=nothing),
                          outbox=SimpleNamespace(forget_delivered_before=nothing),
                          conversations=SimpleNamespace(forget_markers_before=nothing))
    config = SimpleNamespace(meldpunten=[SimpleNamespace(id="a", tz=ZoneInfo("Europe/Amsterdam")),
                                         SimpleNamespace(id="b", tz=ZoneInfo("Europe/Amsterdam"))],
                             reminders_for=lambda meldpunt_id: SimpleNamespace(retention_closed_months=24))
    assert await erase_expired(uow, config, clock) == 4
    assert erased == [1, 2, 5, 7]
