"""Use cases: each changes the domain and queues its messages in one transaction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from meldbot.clock import Clock
from meldbot.domain import Content, Context, Form, Signal
from meldbot.i18n import texts
from meldbot.messaging import Action, Identity, Reply
from storage.uow import Melder

PSEUDONYM_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: easy to read aloud


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


def af_identities(af, platforms: tuple[str, ...]) -> list[Identity]:
    """Where an AF can be reached in this deployment: every active platform they have an id on."""
    found = []
    for platform in platforms:
        user_id = getattr(af, platform, "") or ""
        if user_id:
            found.append(Identity(platform, user_id))
    return found


async def language_of(uow, config, identity: Identity) -> str:
    return (await uow.people.get(identity)).language or config.language


async def submit_signal(cmd: SubmitSignal, uow, config, clock: Clock, platforms: tuple[str, ...]) -> Signal:
    meldpunt = config.meldpunt_by_id(cmd.meldpunt_id)
    now = clock.now()
    reference = await uow.signals.next_reference(now.astimezone(meldpunt.tz).year)
    pseudonym = None
    if cmd.anonymous:
        pseudonym = f"Melder {secrets.choice(PSEUDONYM_LETTERS)}{secrets.randbelow(9) + 1}"
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
    await uow.signals.add(signal, Melder(cmd.melder, cmd.melder_name))
    for af in meldpunt.af:
        if af.backup:
            continue
        for identity in af_identities(af, platforms):
            t = texts(await language_of(uow, config, identity))
            key = "notify.new_signal_urgent" if signal.urgent else "notify.new_signal"
            reply = Reply(
                t(key, reference=reference, form=t(f"choice.soort.{signal.form}"), number=reference.number),
                actions=(Action(t("action.show", reference=reference), f"toon {reference.number}"),),
                urgent=signal.urgent,
            )
            await uow.outbox.add(
                meldpunt_id=meldpunt.id,
                recipient=identity,
                reply=reply,
                key=f"new-signal:{reference}:{af.name}:{identity.platform}",
                kind="new_signal",
                at=now,
            )
    return signal
