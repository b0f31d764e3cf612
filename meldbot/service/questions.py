"""The AF's follow-up questions (`vragen`) seen from the melder's side: which question waits for an answer,
and the answer stored on the signal, with the AF told without its content.

An open question is read from the signal's own history (asked, not answered since), so it needs nothing
stored beside it: it reaches the melder on any platform and survives a restart; it goes with the signal
when retention erases it."""

from __future__ import annotations

from datetime import datetime

from meldbot.core import keys
from meldbot.core.clock import Clock
from meldbot.core.config import AFConfig, Config
from meldbot.core.domain import Event, EventKind, RefQuery, Signal
from meldbot.core.i18n import Texts
from meldbot.core.messaging import Identity, Platform, Reply
from meldbot.core.ports import UnitOfWork
from meldbot.service.services import active_afs, meldpunt_of, notify, show_action

QUESTION_KINDS = [EventKind.QUESTION_ASKED, EventKind.QUESTION_ANSWERED]


def _open(events: list[Event]) -> bool:
    """Whether the last question in these events (questions and answers only) waits for an answer."""
    return bool(events) and events[-1].kind is EventKind.QUESTION_ASKED


async def open_questions(uow: UnitOfWork, melder: Identity) -> list[Signal]:
    """The melder's signals with a question of the AF they have not answered yet, oldest signal first."""
    signals = [s for s in await uow.signals.of_melder(melder) if s.erased_at is None]
    if not signals:
        return []
    events = await uow.signals.events_of([s.stored_id for s in signals], QUESTION_KINDS)
    return [s for s in signals if _open(events.get(s.stored_id, []))]


async def open_question_on(uow: UnitOfWork, melder: Identity, query: RefQuery) -> Signal | None:
    """The melder's own signal `query`, if a question of the AF on it waits for an answer."""
    signal = await uow.signals.find_for_melder(query, melder)
    if signal is None or signal.erased_at is not None:
        return None
    events = await uow.signals.events_of([signal.stored_id], QUESTION_KINDS)
    return signal if _open(events.get(signal.stored_id, [])) else None


async def answer_question(uow: UnitOfWork, config: Config, clock: Clock, platforms: tuple[Platform, ...],
                          signal: Signal, text: str) -> Signal:
    """Store the melder's answer on `signal` (sealed, as an event), audit it without the words, and tell the
    AF who asked, without the words: they read it with `toon`."""
    now = clock.now()
    query = RefQuery(signal.reference.number, signal.reference.year)
    full = await uow.signals.find(query, [signal.meldpunt_id], with_events=True)
    if full is None:   # found a moment ago in this same transaction
        raise LookupError(str(signal.reference))
    answer = full.answer_question(text, now)
    await uow.signals.save(full, now)
    await uow.audit.append(meldpunt_id=full.meldpunt_id, signal_id=full.id, actor_kind="melder",
                           actor=full.pseudonym or "melder", action="beantwoord", at=now)
    await _tell_asker(uow, config, platforms, full, str(answer.data.get("asked_by") or ""), now)
    return full


async def _tell_asker(uow: UnitOfWork, config: Config, platforms: tuple[Platform, ...], signal: Signal,
                      asked_by: str, now: datetime) -> None:
    """The AF who asked hears of the answer; if they are no longer configured, the handler, else every AF."""
    meldpunt = meldpunt_of(config, signal.meldpunt_id)
    afs = [a for a in meldpunt.af if a.name in (asked_by, signal.handler)]
    afs = [a for a in afs if a.name == asked_by] or afs or active_afs(meldpunt)

    def compose(t: Texts, af: AFConfig) -> Reply:
        return Reply(t("notify.answered", reference=signal.reference, number=signal.reference.number),
                     actions=(show_action(t, signal),))

    await notify(uow, config, meldpunt, afs, platforms, keys.answered(signal.reference, now), "answer", compose, now)
