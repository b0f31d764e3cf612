"""Use cases: each changes the domain and queues its messages in one transaction."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from meldbot.core import keys, similar
from meldbot.core.calendar import WorkCalendar
from meldbot.core.clock import Clock
from meldbot.core.config import AFConfig, Config, MeldpuntConfig
from meldbot.core.domain import Content, Context, EventKind, Form, RefQuery, Signal
from meldbot.core.i18n import Texts, texts
from meldbot.core.keys import OutboxKey
from meldbot.core.messaging import Action, Identity, Platform, Reply
from meldbot.core.ports import Melder, UnitOfWork
from meldbot.dialogs.conversation import ConversationState
from meldbot.dialogs.forms import form_label

PSEUDONYM_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: easy to read aloud
PSEUDONYM_DIGITS = "23456789"                  # no 0 or 1: they look like O and I
# "Melder K7F": letter, digit, letter. 23 * 8 * 23 = 4232 values, so two signals of one meldpunt practically
# never share one, and new_pseudonym avoids the meldpunt's earlier ones.
PSEUDONYM_SPACE = len(PSEUDONYM_LETTERS) ** 2 * len(PSEUDONYM_DIGITS)
_PSEUDONYM_TRIES = 8


def _random_pseudonym() -> str:
    return "Melder " + "".join(secrets.choice(alphabet) for alphabet in
                               (PSEUDONYM_LETTERS, PSEUDONYM_DIGITS, PSEUDONYM_LETTERS))


async def new_pseudonym(uow: UnitOfWork, meldpunt_id: str) -> str:
    """A pseudonym for an anonymous melder's signal, not yet used in the meldpunt when one of a few random
    draws is free (one look-up for all of them); the last draw when the meldpunt has used nearly all."""
    drawn = list(dict.fromkeys(_random_pseudonym() for _ in range(_PSEUDONYM_TRIES)))
    taken = await uow.signals.pseudonyms_taken(meldpunt_id, drawn)
    return next((p for p in drawn if p not in taken), drawn[-1])


@dataclass(frozen=True)
class SubmitSignal:
    meldpunt_id: str
    melder: Identity
    melder_name: str | None
    content: Content
    form: Form
    context: Context
    urgent: bool
    anonymous: bool


def work_calendar(config: Config, meldpunt_id: str) -> WorkCalendar:
    """The working days and office hours of one meldpunt."""
    meldpunt, settings = meldpunt_of(config, meldpunt_id), config.reminders_for(meldpunt_id)
    return WorkCalendar(meldpunt.tz, settings.office_start, settings.office_end, settings.is_closing_day,
                        settings.is_open_day)


def meldpunt_of(config: Config, meldpunt_id: str) -> MeldpuntConfig:
    """The meldpunt a stored row names: it is configured (a meldpunt is never removed while it has rows)."""
    meldpunt = config.meldpunt_by_id(meldpunt_id)
    if meldpunt is None:
        raise KeyError(meldpunt_id)
    return meldpunt


def af_identities(af: AFConfig, platforms: tuple[Platform, ...]) -> list[Identity]:
    """Where an AF can be reached in this deployment: every active platform they have an id on."""
    found = []
    for platform in platforms:
        user_id = getattr(af, platform, "") or ""
        if user_id:
            found.append(Identity(platform, user_id))
    return found


async def language_of(uow: UnitOfWork, config: Config, identity: Identity) -> str:
    return (await uow.people.get(identity)).language or config.language


Compose = Callable[[Texts, AFConfig], Reply]
"""The message for one AF, in their language."""


async def af_messages(uow: UnitOfWork, config: Config, meldpunt: MeldpuntConfig, afs: Iterable[AFConfig],
                      platforms: tuple[Platform, ...], key: OutboxKey, kind: str, compose: Compose, *,
                      skip: Identity | None = None) -> list[dict[str, Any]]:
    """The outbox rows of one content-free message for each AF in `afs`: one per platform they can be
    reached on here (but `skip`), each in that person's language, keyed per AF and platform, and naming
    the signal it is about (retention erases the rows with the signal)."""
    messages: list[dict[str, Any]] = []
    for af in afs:
        for identity in af_identities(af, platforms):
            if identity == skip:
                continue
            t = texts(await language_of(uow, config, identity))
            messages.append(dict(meldpunt_id=meldpunt.id, recipient=identity, reply=compose(t, af),
                                 key=key.for_af(af.name, identity.platform), kind=kind, reference=key.reference))
    return messages


async def notify(uow: UnitOfWork, config: Config, meldpunt: MeldpuntConfig, afs: Iterable[AFConfig],
                 platforms: tuple[Platform, ...], key: OutboxKey, kind: str, compose: Compose, at: datetime, *,
                 skip: Identity | None = None) -> int:
    """Queue a content-free message for each AF in `afs` (see `af_messages`); returns how many rows."""
    messages = await af_messages(uow, config, meldpunt, afs, platforms, key, kind, compose, skip=skip)
    await uow.outbox.add_many(messages, at)
    return len(messages)


def show_action(t: Texts, signal: Signal) -> Action:
    """The button under a message about a signal: `toon <number>`."""
    return Action(t("action.show", reference=signal.reference), f"toon {signal.reference.number}")


def active_afs(meldpunt: MeldpuntConfig) -> list[AFConfig]:
    """Who hears of the meldpunt's signals: every AF but the backups."""
    return [a for a in meldpunt.af if not a.backup]


async def submit_signal(cmd: SubmitSignal, uow: UnitOfWork, config: Config, clock: Clock,
                        platforms: tuple[Platform, ...]) -> Signal:
    meldpunt = meldpunt_of(config, cmd.meldpunt_id)
    now = clock.now()
    # Reads and work first: from next_reference to commit the counter row is locked for every other submitter
    # (of every process), so what can be done before it is done before it.
    for af in meldpunt.af:
        for identity in af_identities(af, platforms) if not af.backup else ():
            await language_of(uow, config, identity)
    # What the answers mention, found once: kept sealed for "reeds bekend", and as keyed hashes to find it by.
    mentions = similar.content_mentions(cmd.content)
    reference = await uow.signals.next_reference(now.astimezone(meldpunt.tz).year)
    pseudonym = None
    if cmd.anonymous:   # after the counter: concurrent submitters see each other's pseudonyms, none is given twice
        pseudonym = await new_pseudonym(uow, meldpunt.id)
    signal = Signal.submit(
        meldpunt_id=meldpunt.id,
        reference=reference,
        content=cmd.content,
        form=cmd.form,
        context=cmd.context,
        urgent=cmd.urgent,
        anonymous=cmd.anonymous,
        pseudonym=pseudonym,
        at=now,
    )
    await uow.signals.add(signal, Melder(cmd.melder, cmd.melder_name), mentions)
    await uow.signals.set_keys(signal, {m.key for m in mentions}, "auto", new=True)
    await uow.audit.append(meldpunt_id=meldpunt.id, signal_id=signal.id, actor_kind="melder",
                           actor=signal.pseudonym or "melder", action="ingediend", at=now)
    text_key = "notify.new_signal_urgent" if signal.urgent else "notify.new_signal"
    await _notify_about(uow, config, meldpunt, signal, text_key, keys.new_signal(reference), now, platforms,
                        only_handler=False, kind="new_signal")
    return signal


async def _notify_about(uow: UnitOfWork, config: Config, meldpunt: MeldpuntConfig, signal: Signal, text_key: str,
                        key: OutboxKey, now: datetime, platforms: tuple[Platform, ...], *, only_handler: bool,
                        kind: str) -> None:
    """Queue a content-free message about `signal` for its handling AF, or for every non-backup AF."""
    reference = signal.reference
    afs = active_afs(meldpunt)
    if only_handler and signal.handler:
        afs = [a for a in meldpunt.af if a.name == signal.handler] or afs

    def compose(t: Texts, af: AFConfig) -> Reply:
        return Reply(t(text_key, reference=reference, form=form_label(t, signal.form), number=reference.number),
                     actions=(show_action(t, signal),), urgent=signal.urgent and kind == "new_signal")

    await notify(uow, config, meldpunt, afs, platforms, key, kind, compose, now)


# A melder may add to one report this many times: the AF's view of the signal stays a readable size.
# More is a conversation the AF should have with the melder.
MAX_SUPPLEMENTS = 20


class TooManySupplements(Exception):
    """The melder has added to this signal MAX_SUPPLEMENTS times already. Raised after the AF was told
    (in the same unit of work): the melder's words are not kept, but that they had more to say is."""

    def __init__(self, signal: Signal) -> None:
        super().__init__(str(signal.reference))
        self.signal = signal


@dataclass(frozen=True)
class SupplementSignal:
    melder: Identity
    query: RefQuery
    text: str


async def supplement_signal(cmd: SupplementSignal, uow: UnitOfWork, config: Config, clock: Clock,
                            platforms: tuple[Platform, ...]) -> Signal | None:
    """The melder adds information to their own signal; the handling AF is told. None: not theirs."""
    signal = await uow.signals.find_for_melder(cmd.query, cmd.melder)
    if signal is None:
        return None
    earlier = await uow.signals.events_of([signal.stored_id], [EventKind.SUPPLEMENTED])
    now = clock.now()
    meldpunt = meldpunt_of(config, signal.meldpunt_id)
    if len(earlier.get(signal.stored_id, [])) >= MAX_SUPPLEMENTS:
        # New information on trafficking may be in it: the AF hears (without the words) that the melder
        # tried, once a day per signal, so a melder who keeps trying does not flood the AF's chat.
        day = now.astimezone(meldpunt.tz).date()
        await _notify_about(uow, config, meldpunt, signal, "notify.supplement_refused",
                            keys.supplement_refused(signal.reference, day), now, platforms,
                            only_handler=True, kind="supplement")
        raise TooManySupplements(signal)
    signal.supplement(cmd.text, now)
    await uow.signals.save(signal, now)
    await uow.audit.append(meldpunt_id=signal.meldpunt_id, signal_id=signal.id, actor_kind="melder",
                           actor=signal.pseudonym or "melder", action="aangevuld", at=now)
    await _notify_about(uow, config, meldpunt, signal, "notify.supplemented",
                        keys.supplemented(signal.reference, now), now, platforms,
                        only_handler=True, kind="supplement")
    return signal


async def expire_drafts(uow: UnitOfWork, config: Config, clock: Clock) -> int:
    """Erase drafts untouched for longer than the meldpunt's `draft_expiry_hours`.

    The answers go; a content-free marker stays so the melder hears about it on their next message.
    """
    now = clock.now()
    shortest = min(config.reminders_for(m.id).draft_expiry_hours for m in config.meldpunten)
    erased = 0
    for platform, conversation_id, meldpunt_id, state in await uow.conversations.untouched_since(
        now - timedelta(hours=shortest)
    ):
        if not ConversationState.from_dict(state).has_draft:
            continue
        hours = config.reminders_for(meldpunt_id).draft_expiry_hours \
            if meldpunt_id and config.meldpunt_by_id(meldpunt_id) else shortest
        # A turn of this conversation on any process goes first (or waits): the draft read next is current.
        await uow.conversations.lock(platform, conversation_id)
        row_state = await uow.conversations.load(platform, conversation_id)
        if row_state is None or now - row_state[1] <= timedelta(hours=hours):
            continue
        await uow.conversations.save(platform, conversation_id, ConversationState(draft_expired=True).to_dict(), now)
        erased += 1
    return erased


async def release_removed_afs(uow: UnitOfWork, config: Config, clock: Clock, platforms: tuple[Platform, ...]) -> int:
    """An AF removed from the configuration loses their signals at start-up: they become unassigned
    (access is by configuration, so it is already revoked) and the remaining AFs are told."""
    now = clock.now()
    released = 0
    for meldpunt in config.meldpunten:
        names = [a.name for a in meldpunt.af]
        for signal in await uow.signals.handled_by_others(meldpunt.id, names):
            removed = signal.handler
            signal.hand_over("systeem", None, now)
            await uow.signals.save(signal, now)
            await uow.audit.append(meldpunt_id=meldpunt.id, signal_id=signal.id, actor_kind="system",
                                   actor="systeem", action="vrijgegeven", at=now, detail=removed)

            def compose(t: Texts, af: AFConfig) -> Reply:   # called at once, in this round of the loop
                return Reply(t("af.removed_unassigned", removed=removed, reference=signal.reference,
                               number=signal.reference.number))

            await notify(uow, config, meldpunt, active_afs(meldpunt), platforms,
                         keys.released(signal.reference, removed), "released", compose, now)
            released += 1
    return released


async def alert_person(uow: UnitOfWork, config: Config, identity: Identity, text_key: str, params: dict[str, Any],
                       key: str, now: datetime, *, kind: str = "platform_alert") -> None:
    """Queue a content-free alert from a platform adapter (e.g. a new device on an AF's account) in the
    person's language, through the outbox like every other message. The same key twice queues it once."""
    meldpunten = [m for m, _ in config.af_for(identity.platform, identity.user_id)] or \
        config.meldpunten_for(identity.platform, identity.user_id)
    meldpunt_id = meldpunten[0].id if meldpunten else config.meldpunten[0].id
    t = texts(await language_of(uow, config, identity))
    await uow.outbox.add(meldpunt_id=meldpunt_id, recipient=identity, reply=Reply(t(text_key, **params), urgent=True),
                         key=key, kind=kind, at=now)
