"""The meldpunt's use cases driven as the bot drives them, for the service layer's tests (tests/service)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from meldbot.core.clock import ManualClock
from meldbot.core.domain import Content, Context, Form, RefQuery, Signal
from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity
from meldbot.core.ports import AuditEntry, OutboxItem, UnitOfWorkFactory
from meldbot.dialogs.af import Usage, parse_af
from meldbot.dialogs.commands import AF_ONLY, parse
from meldbot.service.desk import Desk, Seat
from meldbot.service.services import SubmitSignal, SupplementSignal, TooManySupplements, submit_signal, \
    supplement_signal

# The platforms running here: the console only (a Literal, so it fits wherever a platform is typed).
PLATFORMS: tuple[Literal["console"], ...] = ("console",)
MELDPUNT = "bergeijk"
NAMED = Content(wat="Een man houdt de paspoorten van zes vrouwen", waar="Kerkstraat 12a, Bergeijk",
                wanneer="gisteren", wie="Piet Jansen, Jansen Uitzend B.V.")
OTHER = Content(wat="Stapelbedden voor twaalf mensen", waar="kerkstraat 12 A", wanneer="vandaag", wie="onbekend")


class Office:
    """The meldpunt's use cases as the bot calls them, one unit of work each, and what they left behind."""

    def __init__(self, storage: UnitOfWorkFactory, config: Any, clock: ManualClock) -> None:
        self.uow, self.config, self.clock = storage, config, clock

    # --- the use cases ---------------------------------------------------------------------------

    async def submit(self, melder: str, content: Content = NAMED, *, urgent: bool = False,
                     anonymous: bool = False) -> Signal:
        cmd = SubmitSignal(meldpunt_id=MELDPUNT, melder=Identity("console", melder), melder_name=melder.title(),
                           content=content, form=Form.LABOUR, context=Context.DESK, urgent=urgent,
                           anonymous=anonymous)
        async with self.uow() as uow:
            signal = await submit_signal(cmd, uow, self.config, self.clock, PLATFORMS)
            await uow.commit()
        return signal

    async def supplement(self, melder: str, number: int, text: str) -> Signal | None:
        """The melder adds to their signal; past the limit the refusal is committed, as the bot does."""
        cmd = SupplementSignal(Identity("console", melder), RefQuery(number), text)
        async with self.uow() as uow:
            try:
                signal = await supplement_signal(cmd, uow, self.config, self.clock, PLATFORMS)
            except TooManySupplements:
                await uow.commit()
                raise
            await uow.commit()
        return signal

    async def af(self, user: str, text: str, *, platform: str = "console") -> str:
        """An AF command (`toon 1`) through the desk, as the bot hands it over after authorising the seat;
        `platform` names where the AF typed it (the seat is always the console AF `user`)."""
        identity = Identity(platform, user)
        seats = [Seat(m, a) for m, a in self.config.af_for("console", user)]
        assert seats, f"{user} is no AF in the example configuration"
        t = texts("nl")
        command = parse(text, AF_ONLY)
        assert command is not None, text
        try:
            parsed = parse_af(command.name, command.args)
        except Usage as usage:
            return t(usage.key, **usage.params)
        async with self.uow() as uow:
            replies = await Desk(uow, self.config, self.clock, PLATFORMS, identity, seats, t).run(parsed)
            await uow.commit()
        return "\n".join(r.text for r in replies)

    # --- what they left behind, read through the ports --------------------------------------------

    async def signal(self, number: int, *, events: bool = True) -> Signal:
        async with self.uow() as uow:
            found = await uow.signals.find(RefQuery(number), [MELDPUNT], with_events=events)
        assert found is not None, number
        return found

    async def audit(self, number: int) -> list[AuditEntry]:
        async with self.uow() as uow:
            signal = await uow.signals.find(RefQuery(number), [MELDPUNT])
            assert signal is not None and signal.id is not None
            return await uow.audit.of_signal(signal.id)

    async def actions(self, number: int) -> list[str]:
        return [entry.action for entry in await self.audit(number)]

    async def outbox(self) -> list[OutboxItem]:
        """Every queued message, oldest first (claimed in a unit of work that is then rolled back)."""
        async with self.uow() as uow:
            return await uow.outbox.claim_due(self.clock.now() + timedelta(days=1), limit=10_000, lease=timedelta(0),
                                              platforms=["console", "matrix", "teams"])

    async def inbox(self, user: str) -> list[str]:
        return [item.reply.text for item in await self.outbox() if item.recipient == Identity("console", user)]
