"""Intake (meldbot.service.services): a submitted signal and a melder's addition, with the audit entries
and the content-free messages for the AFs they queue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from meldbot.core.clock import ManualClock
from meldbot.core.domain import EventKind, Status
from meldbot.core.messaging import Identity
from meldbot.service.services import MAX_SUPPLEMENTS, TooManySupplements
from tests.service.office import OTHER, Office

ANNA, BRAM = Identity("console", "af"), Identity("console", "af2")


async def test_a_submitted_signal_is_kept_audited_and_announced_to_the_afs_who_are_no_backup(office: Office) -> None:
    signal = await office.submit("piet")
    assert str(signal.reference) == "MH-2026-0001" and signal.status is Status.RECEIVED
    stored = await office.signal(1)
    assert stored.content.wat == "Een man houdt de paspoorten van zes vrouwen"
    assert [e.kind for e in stored.events] == [EventKind.SUBMITTED]
    assert [(e.actor_kind, e.actor, e.action) for e in await office.audit(1)] == [("melder", "melder", "ingediend")]
    (announced,) = await office.outbox()
    assert (announced.recipient, announced.kind, announced.idempotency_key) == (
        ANNA, "new_signal", "new-signal:MH-2026-0001:anna:console")
    assert announced.reply.text == "Nieuwe melding MH-2026-0001 (arbeidsuitbuiting). Typ toon 1 om hem te lezen."
    assert "paspoorten" not in announced.reply.text and not announced.reply.urgent
    assert announced.reply.actions[0].command == "toon 1"


async def test_an_urgent_signal_is_announced_as_urgent(office: Office) -> None:
    await office.submit("piet", urgent=True)
    (announced,) = await office.outbox()
    assert announced.reply.urgent and "MH-2026-0001" in announced.reply.text


async def test_an_anonymous_melder_is_known_by_a_pseudonym_only(office: Office) -> None:
    signal = await office.submit("geheime.collega", anonymous=True)
    assert signal.pseudonym is not None and signal.pseudonym.startswith("Melder ")
    assert [e.actor for e in await office.audit(1)] == [signal.pseudonym]
    assert "geheime" not in "".join(m.reply.text for m in await office.outbox())


async def test_references_count_up_within_a_year_and_start_again_in_the_next(office: Office,
                                                                           clock: ManualClock) -> None:
    assert str((await office.submit("piet")).reference) == "MH-2026-0001"
    assert str((await office.submit("klaas", OTHER)).reference) == "MH-2026-0002"
    clock.set(datetime(2027, 1, 4, 9, 0, tzinfo=timezone.utc))
    assert str((await office.submit("piet")).reference) == "MH-2027-0001"


async def test_an_af_who_chose_english_is_told_in_english(office: Office) -> None:
    async with office.uow() as uow:
        await uow.people.update(ANNA, language="en")
        await uow.commit()
    await office.submit("piet")
    (announced,) = await office.outbox()
    assert announced.reply.text == "New report MH-2026-0001 (labour exploitation). Type show 1 to read it."


async def test_a_melder_cannot_add_to_someone_elses_signal(office: Office) -> None:
    await office.submit("piet")
    before = await office.outbox()
    assert await office.supplement("klaas", 1, "nog iets") is None
    assert await office.outbox() == before
    assert await office.actions(1) == ["ingediend"]


async def test_an_addition_is_kept_audited_and_told_to_the_handling_af_only(office: Office) -> None:
    await office.submit("piet")
    await office.af("af2", "oppakken 1")
    before = len(await office.outbox())
    assert await office.supplement("piet", 1, "Het busje staat er elke ochtend om zes uur") is not None
    (told,) = (await office.outbox())[before:]
    assert told.recipient == BRAM and told.kind == "supplement"
    assert told.idempotency_key.startswith("supplement:MH-2026-0001:")
    assert "busje" not in told.reply.text
    assert (await office.signal(1)).events[-1].data == {"text": "Het busje staat er elke ochtend om zes uur"}
    assert (await office.actions(1))[-1] == "aangevuld"


async def test_past_the_limit_an_addition_is_refused_and_the_af_told_once_a_day(office: Office,
                                                                              clock: ManualClock) -> None:
    await office.submit("piet")
    for i in range(MAX_SUPPLEMENTS):
        clock.advance(timedelta(seconds=1))
        await office.supplement("piet", 1, f"aanvulling {i}")
    before = len(await office.outbox())
    for _ in range(2):
        with pytest.raises(TooManySupplements):
            await office.supplement("piet", 1, "nog meer")
    (refused,) = (await office.outbox())[before:]
    assert refused.recipient == ANNA and refused.idempotency_key == "supplement-refused:MH-2026-0001:2026-11-18:anna:console"
    assert "nog meer" not in refused.reply.text
    assert (await office.actions(1)).count("aangevuld") == MAX_SUPPLEMENTS
