"""The AF's use cases: the meldroute steps b-f handled in chat, each in one transaction with its audit."""

from __future__ import annotations

import getpass
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from meldbot.dialogs.af import OUTCOMES, AfCommand, Usage, melder_label, partner_text, queue_view, signal_view
from meldbot.core import keys, matching
from meldbot.core.clock import Clock
from meldbot.core.config import AFConfig, Config, MeldpuntConfig, PartnerConfig
from meldbot.core.domain import EventKind, InvalidTransition, Outcome, PartnerNotInvolved, Signal, SignalClosed, Status
from meldbot.core.i18n import Texts, texts
from meldbot.core.messaging import Identity, Platform, Reply
from meldbot.core.ports import UnitOfWork
from meldbot.service.known import known
from meldbot.service.services import language_of, notify, show_action, work_calendar
from meldbot.core.text import quote_user_text


@dataclass(frozen=True)
class Seat:
    """One AF as one meldpunt knows them."""

    meldpunt: MeldpuntConfig
    af: AFConfig


def console_operator() -> str:
    """Who runs the terminal: MELDBOT_OPERATOR, which deploy/meldbot-beheer sets to the login behind sudo or
    runuser (the process itself runs as the service user), else the process's own user."""
    return os.environ.get("MELDBOT_OPERATOR") or getpass.getuser()


class Desk:
    """Handles one AF command. Methods are named after the command; each returns the replies."""

    def __init__(self, uow: UnitOfWork, config: Config, clock: Clock, platforms: tuple[Platform, ...],
                 identity: Identity, seats: list[Seat], t: Texts) -> None:
        self.uow, self.config, self.clock, self.platforms = uow, config, clock, platforms
        self.identity = identity
        self.seats = {s.meldpunt.id: s for s in seats}
        self.t = t
        self.now: datetime = clock.now()

    async def run(self, command: AfCommand) -> list[Reply]:
        try:
            handler: Callable[[AfCommand], Awaitable[list[Reply]]] = getattr(self, command.name)
            return await handler(command)
        except Usage as usage:
            return [Reply(self.t(usage.key, **usage.params))]
        except SignalClosed as closed:
            if closed.merged_into:
                return [Reply(self.t("af.merged_read_only", reference=closed, into=closed.merged_into))]
            return [Reply(self.t("af.closed_read_only"))]
        except InvalidTransition as exc:
            return [Reply(self.t("af.wrong_state", status=self.t(f"af.status.{exc.current}")))]

    # --- helpers ---------------------------------------------------------------------------------

    def _name(self, signal: Signal) -> str:
        return self.seats[signal.meldpunt_id].af.name

    def _meldpunt(self, signal: Signal) -> MeldpuntConfig:
        return self.seats[signal.meldpunt_id].meldpunt

    async def _signal(self, command: AfCommand, index: int = 0, *, events: bool = False) -> Signal:
        query = command.refs[index]
        signal = await self.uow.signals.find(query, list(self.seats), with_events=events)
        if signal is None:
            raise Usage("af.unknown", reference=str(query.number) if query.year is None else f"MH-{query.year}-{query.number:04d}")
        if signal.erased_at is not None:
            raise Usage("af.erased", reference=str(signal.reference),
                        date=signal.erased_at.astimezone(self._meldpunt(signal).tz).strftime("%d-%m-%Y"))
        return signal

    def _actor(self, name: str) -> str:
        """The AF's name, and for the terminal also who sat at it: `meldbot chat` on a real database is a
        read by whoever has the server and the key, not by the AF (docs/privacy.md), and the audit says so."""
        if self.identity.platform != "console":
            return name
        return f"{name} (console:{console_operator()})"

    async def _audit(self, signal: Signal, action: str, detail: str | None = None) -> None:
        await self.uow.audit.append(meldpunt_id=signal.meldpunt_id, signal_id=signal.id, actor_kind="af",
                                    actor=self._actor(self._name(signal)), action=action, at=self.now, detail=detail)

    async def _save(self, signal: Signal, action: str, detail: str | None = None) -> None:
        await self.uow.signals.save(signal, self.now)
        await self._audit(signal, action, detail)

    async def _tell_af(self, signal: Signal, af_name: str, text_key: str, kind: str, **params: Any) -> None:
        """A content-free message about `signal` for another AF, through the outbox."""
        meldpunt = self._meldpunt(signal)
        af = meldpunt.af_by_name(af_name)
        if af is None:
            return

        def compose(t: Texts, af: AFConfig) -> Reply:
            return Reply(t(text_key, reference=signal.reference, number=signal.reference.number, **params),
                         actions=(show_action(t, signal),))

        await notify(self.uow, self.config, meldpunt, [af], self.platforms, keys.told(kind, signal.reference, self.now),
                     kind, compose, self.now)

    def _when(self, signal: Signal) -> str:
        c = signal.content
        if not c.wanneer_iso:
            return quote_user_text(c.wanneer)
        moment = datetime.fromisoformat(c.wanneer_iso).astimezone(self._meldpunt(signal).tz)
        return self.t("summary.when_understood", raw=quote_user_text(c.wanneer), date=moment.strftime("%d-%m-%Y"))

    def _partner(self, signal: Signal, name: str) -> PartnerConfig:
        partner = self._meldpunt(signal).partner(name)
        if partner is None:
            keys = ", ".join(p.key for p in self._meldpunt(signal).partners)
            raise Usage("af.unknown_partner", partner=name, partners=keys)
        return partner

    def _ok(self, key: str, signal: Signal, **params: Any) -> list[Reply]:
        return [Reply(self.t(key, reference=signal.reference, number=signal.reference.number, **params))]

    # --- commands --------------------------------------------------------------------------------

    async def queue(self, command: AfCommand) -> list[Reply]:
        signals = await self.uow.signals.open_signals(list(self.seats))
        # An AF of several gemeenten reads which gemeente each signal belongs to.
        gemeenten = {m: seat.meldpunt.name for m, seat in self.seats.items()} if len(self.seats) > 1 else {}
        view = queue_view(signals, self.now, self.t, gemeenten)
        for signal in signals:   # the list names them, their status and handler: a read, in their audit trail
            await self._audit(signal, "lijst-bekeken")
        return [Reply(view)]

    async def show(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command, events=True)
        replies: list[Reply] = []
        if signal.handler is None and signal.status is not Status.CLOSED:
            signal.pick_up(self._name(signal), self.now)
            await self.uow.signals.save(signal, self.now)
            await self._audit(signal, "opgepakt")
            replies.append(Reply(self.t("af.taken", reference=signal.reference)))
        melder = await self.uow.signals.melder_of(signal)
        label = melder_label(signal, melder.display_name, str(melder.identity), self.t)
        matches = [(k.reference, k.kind, k.like or "") for k in await known(self.uow, signal)]
        await self._audit(signal, "gelezen")
        view = signal_view(signal, label, matches, self._meldpunt(signal).tz, self.t, self._when(signal),
                           deliveries=await self._deliveries(signal))
        return [Reply(view), *replies]

    async def _deliveries(self, signal: Signal) -> dict[int, str]:
        """Per `terugkoppelen` and `vragen` event (by its place in the history): whether the melder got it,
        and when."""
        from meldbot.service.deliveries import status_text

        informed = [(i, e) for i, e in enumerate(signal.events)
                    if e.kind in (EventKind.MELDER_INFORMED, EventKind.QUESTION_ASKED) and e.data.get("outbox")]
        if not informed:
            return {}
        states = await self.uow.outbox.states([key for _, e in informed for key in e.data["outbox"]])
        tz = self._meldpunt(signal).tz
        found = {}
        for index, event in informed:
            sent: list[str] = event.data["outbox"]
            if len(sent) == 1:
                found[index] = status_text(self.t, states.get(sent[0]), tz, event.at)
            else:   # merged signals: one message per melder, named by their own signal
                found[index] = "; ".join(f"{keys.reference_in(key)}: {status_text(self.t, states.get(key), tz, event.at)}"
                                         for key in sent)
        return found

    async def take(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command)
        me = self._name(signal)
        if signal.handler == me:
            return self._ok("af.already_yours", signal)
        previous = signal.pick_up(me, self.now)
        await self._save(signal, "opgepakt")
        if previous:
            await self._tell_af(signal, previous, "af.taken_from_you", "taken-over", by=me)
        return self._ok("af.taken", signal)

    async def note(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command)
        signal.note(self._name(signal), command.text, self.now)
        await self._save(signal, "notitie")
        return self._ok("af.noted", signal)

    async def tag(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command)
        key = matching.normalise(command.word, command.text)
        if key is None:
            raise Usage("af.bad_tag")
        signal.tag(self._name(signal), key.kind, command.text, self.now)
        await self.uow.signals.set_keys(signal, {key}, "kenmerk")
        await self._save(signal, "kenmerk")
        await self.uow.flush()
        matches = [str(ref) for ref, kind in await self.uow.signals.matches(signal) if kind == key.kind]
        if matches:
            return self._ok("af.tagged_known", signal, kind=self.t(f"af.kind.{key.kind}"), matches=", ".join(matches))
        return self._ok("af.tagged", signal, kind=self.t(f"af.kind.{key.kind}"))

    async def consult(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command, events=True)   # the history: an older row's exact partner log
        partner = self._partner(signal, command.partner)
        signal.consult(self._name(signal), partner.key, self.now)
        await self._save(signal, "overlegd", partner.key)
        return self._ok("af.consulted", signal, partner=partner.name, contact=partner.contact or "-")

    async def forward(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command, events=True)
        partner = self._partner(signal, command.partner)
        me = self._name(signal)
        signal.forward(me, partner.key, self.now)
        await self._save(signal, "doorgezet", partner.key)
        af = self.seats[signal.meldpunt_id].af    # the AF who forwards it (named `me`)
        text = partner_text(signal, partner.name, partner.contact, self._meldpunt(signal).name,
                            af.display_name or af.name, self._meldpunt(signal).tz, self.t, self._when(signal))
        return [*self._ok("af.forwarded", signal, partner=partner.name), Reply(text)]

    async def feedback(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command, events=True)   # the history: who it was passed to or discussed with
        partner = self._partner(signal, command.partner)
        try:
            signal.partner_feedback(self._name(signal), partner.key, command.text, self.now)
        except PartnerNotInvolved as refused:
            if not refused.involved:
                raise Usage("af.feedback_no_partners", reference=str(signal.reference), partner=partner.key,
                            number=signal.reference.number) from None
            raise Usage("af.feedback_not_involved", reference=str(signal.reference), partner=partner.key,
                        partners=", ".join(refused.involved), number=signal.reference.number) from None
        await self._save(signal, "feedback", partner.key)
        return self._ok("af.feedback_recorded", signal, partner=partner.name)

    async def inform(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command)
        me = self._name(signal)
        recipients = [signal] + await self.uow.signals.merged_into(signal)
        # The key names the AF who sent it: if it cannot be delivered, they are the one to hear of it.
        sent = [keys.inform(own.reference, me, self.now) for own in recipients]
        signal.inform_melder(me, command.text, self.now, outbox=sent)
        await self._save(signal, "teruggekoppeld")
        for duplicate, key in zip(recipients[1:], sent[1:]):
            # A merged duplicate's melder gets it too: their own signal says so (`mijn meldingen`, `toon`).
            duplicate.inform_melder(me, command.text, self.now, outbox=[key])
            await self._save(duplicate, "teruggekoppeld", str(signal.reference))
        for own, key in zip(recipients, sent):
            melder = await self.uow.signals.melder_of(own)
            t = texts(await language_of(self.uow, self.config, melder.identity))
            await self.uow.outbox.add(
                meldpunt_id=own.meldpunt_id, recipient=melder.identity,
                reply=Reply(t("af.to_melder", reference=own.reference, text=quote_user_text(command.text))),
                key=key, kind="inform", at=self.now, reference=str(own.reference))
        who = signal.pseudonym if signal.anonymous else self.t("af.the_melder")
        # Queued, not yet delivered: `toon` shows when it arrived, and a failure is told in this chat.
        return self._ok("af.informed", signal, melder=who, count=len(recipients))

    async def ask(self, command: AfCommand) -> list[Reply]:
        """A follow-up question to the melder of this signal, and only theirs. A merged duplicate's melder
        cannot be asked: their signal is closed and cannot be reopened (`terugkoppelen` on the kept signal
        does reach them). The answer comes back through the melder's turn."""
        signal = await self._signal(command)
        me = self._name(signal)
        # The key names the AF who asked: if it cannot be delivered, they are the one to hear of it.
        key = keys.ask(signal.reference, me, self.now)
        signal.ask_melder(me, command.text, self.now, outbox=[key])
        await self._save(signal, "gevraagd")
        melder = await self.uow.signals.melder_of(signal)
        t = texts(await language_of(self.uow, self.config, melder.identity))
        text = t("af.ask.to_melder", reference=signal.reference, number=signal.reference.number,
                 text=quote_user_text(command.text))
        if signal.anonymous:
            text += "\n" + t("af.ask.to_melder_anonymous")
        await self.uow.outbox.add(meldpunt_id=signal.meldpunt_id, recipient=melder.identity, reply=Reply(text),
                                  key=key, kind="ask", at=self.now, reference=str(signal.reference))
        who = signal.pseudonym if signal.anonymous else self.t("af.the_melder")
        return self._ok("af.ask.sent", signal, melder=who)

    async def close(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command)
        outcome = OUTCOMES.get(command.word.casefold())
        if outcome is None:
            raise Usage("af.unknown_outcome", outcomes=", ".join(o.value for o in Outcome))
        if signal.status is Status.CLOSED:
            raise SignalClosed(str(signal.reference), signal.merged_into)
        signal.close(self._name(signal), outcome, self.now)
        await self._save(signal, "gesloten", outcome.value)
        return self._ok("af.closed", signal, outcome=self.t(f"af.outcome.{outcome.value}"))

    async def reopen(self, command: AfCommand) -> list[Reply]:
        signal = await self._signal(command)
        if signal.status is not Status.CLOSED:
            raise Usage("af.not_closed", reference=str(signal.reference))
        signal.reopen(self._name(signal), self.now)
        await self._save(signal, "heropend")
        return self._ok("af.reopened", signal)

    async def merge(self, command: AfCommand) -> list[Reply]:
        keep = await self._signal(command, 0)
        duplicate = await self._signal(command, 1)
        if keep.id == duplicate.id:
            raise Usage("af.merge_same")
        if keep.meldpunt_id != duplicate.meldpunt_id:
            raise Usage("af.merge_other_meldpunt")
        keep._require_open()
        keep.absorb(self._name(keep), duplicate, self.now)
        await self._save(keep, "samengevoegd", str(duplicate.reference))
        await self._save(duplicate, "samengevoegd", str(keep.reference))
        return self._ok("af.merged", keep, duplicate=duplicate.reference)

    async def handover(self, command: AfCommand) -> list[Reply]:
        target_name = command.word.casefold()
        if command.all:
            moved = []
            for seat in self.seats.values():
                target = seat.meldpunt.af_by_name(target_name)
                if target is None:
                    continue
                for signal in await self.uow.signals.open_signals([seat.meldpunt.id]):
                    if signal.handler == seat.af.name and target.name != seat.af.name:
                        signal.hand_over(seat.af.name, target.name, self.now)
                        await self._save(signal, "overgedragen", target.name)
                        await self._tell_af(signal, target.name, "af.handed_to_you", "handover", by=seat.af.name)
                        moved.append(str(signal.reference))
            if not any(s.meldpunt.af_by_name(target_name) for s in self.seats.values()):
                raise Usage("af.unknown_af", name=command.word, names=self._af_names())
            return [Reply(self.t("af.handed_all", count=len(moved), to=target_name,
                                 references=", ".join(moved) or "-"))]
        signal = await self._signal(command)
        signal._require_open()
        target = self._meldpunt(signal).af_by_name(target_name)
        if target is None:
            raise Usage("af.unknown_af", name=command.word, names=self._af_names())
        signal.hand_over(self._name(signal), target.name, self.now)
        await self._save(signal, "overgedragen", target.name)
        if target.name != self._name(signal):
            await self._tell_af(signal, target.name, "af.handed_to_you", "handover", by=self._name(signal))
        return self._ok("af.handed", signal, to=target.name)

    def _af_names(self) -> str:
        return ", ".join(sorted({a.name for s in self.seats.values() for a in s.meldpunt.af}))

    async def stats(self, command: AfCommand) -> list[Reply]:
        from meldbot.service import monitoring

        today = self.now.astimezone(next(iter(self.seats.values())).meldpunt.tz).date()
        period = monitoring.parse_period(command.word, today)
        if period is None:
            raise Usage("af.bad_period", period=command.word)
        facts = await self.uow.signals.facts(list(self.seats))
        figures = monitoring.figures(facts, period, lambda m: work_calendar(self.config, m))
        text = monitoring.report_text(figures, self.t)
        png = monitoring.chart_png(figures, self.t)
        for seat in self.seats.values():
            await self.uow.audit.append(meldpunt_id=seat.meldpunt.id, signal_id=None, actor_kind="af",
                                        actor=self._actor(seat.af.name), action="rapport", at=self.now,
                                        detail=period.label)
        return [Reply(text, image=png, image_alt=self.t("af.chart_alt", period=period.label))]
