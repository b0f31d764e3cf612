"""Issue 19: the AFs' notice of a new signal names a form the melder did not know as "soort nog onbekend", not
with the melder's own "weet ik niet"."""

from __future__ import annotations

from meldbot.core.domain import Context, Form
from meldbot.core.messaging import Identity
from meldbot.service.services import SubmitSignal, submit_signal
from tests.service.office import MELDPUNT, NAMED, PLATFORMS, Office


async def test_the_notice_of_a_signal_of_unknown_form_reads_soort_nog_onbekend(office: Office) -> None:
    cmd = SubmitSignal(meldpunt_id=MELDPUNT, melder=Identity("console", "piet"), melder_name="Piet",
                       content=NAMED, form=Form.UNKNOWN, context=Context.DESK, urgent=False, anonymous=False)
    async with office.uow() as uow:
        await submit_signal(cmd, uow, office.config, office.clock, PLATFORMS)
        await uow.commit()
    (announced,) = await office.outbox()
    assert announced.reply.text == "Nieuwe melding MH-2026-0001 (soort nog onbekend). Typ toon 1 om hem te lezen."
