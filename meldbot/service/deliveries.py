"""When a message cannot be delivered: who hears of it, in which words, and what the history shows.

Nothing fails silently. A message the outbox parks (or, for a message to a melder, one that keeps failing)
is told, content-free and through the outbox, to the AF it concerns:
- a message to a melder (`terugkoppelen`): the AF who sent it (else the handling AF, else every AF);
- a message to an AF (a new signal, a reminder, an overview, ...): that AF cannot be told on the platform
  that failed, so the AF's other platforms and the meldpunt's other AFs hear of it;
- a failure notice itself that fails: only `meldbot doctor`, `meldbot outbox list` and the metric
  `meldbot_outbox_parked` (no notices about notices).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, tzinfo

from meldbot.core import keys
from meldbot.core.config import AFConfig, Config, MeldpuntConfig
from meldbot.core.domain import RefQuery
from meldbot.core.i18n import Texts
from meldbot.core.keys import reference_in  # doctor and `outbox list` read it from here too
from meldbot.core.messaging import Action, Platform, Reply
from meldbot.core.ports import OutboxItem, OutboxState, UnitOfWork
from meldbot.service.services import active_afs, notify

log = logging.getLogger("meldbot.deliveries")

NOTICE_KIND = "delivery_notice"
# Outbox kinds whose recipient is a melder, with the AF who caused them named in the key's third part.
MELDER_KINDS = ("inform", "ask")

# The first match wins: the platforms' reasons (content-free, English) as a few causes in plain words.
_CAUSES = (
    ("switched_off", ("switched off in the configuration",)),
    ("too_large", ("M_TOO_LARGE", "too large", "(413)")),
    ("login", ("(401)", "token", "not configured")),
    ("not_installed", ("not installed", "403 on create")),
    ("no_user", ("no such matrix user",)),
    ("tenant", ("no tenant", "tenant id")),
    ("keys", ("keys of the AF",)),
    ("room_gone", ("M_FORBIDDEN", "M_NOT_FOUND")),
    ("refused", ("refused", "M_BAD_JSON", "M_NOT_JSON", "M_INVALID_PARAM", "serviceUrl")),
    ("unreachable", ("unreachable", "not connected", "not started", "connection", "rate limited", "not synced",
                     "not sendable", "connector error", "timeout", "homeserver said")),
)


def cause(reason: str | None) -> str:
    text = (reason or "").casefold()
    for name, marks in _CAUSES:
        if any(mark.casefold() in text for mark in marks):
            return name
    return "other"


def plain_reason(t: Texts, reason: str | None) -> str:
    return t(f"delivery.reason.{cause(reason)}")


def _local(moment: datetime, tz: tzinfo | None) -> datetime:
    return moment.astimezone(tz) if tz else moment.astimezone()


def status_text(t: Texts, state: OutboxState | None, tz: tzinfo | None, since: datetime | None = None) -> str:
    """One row's delivery as the AF reads it in the history: delivered when, waiting, or failed and why.
    `state` None means the row is gone: only delivered rows are forgotten (after 30 days)."""
    if state is None:
        return t("delivery.status.delivered_earlier")
    if state.delivered_at is not None:
        at = _local(state.delivered_at, tz)
        if since is not None and _local(since, tz).date() == at.date():
            return t("delivery.status.delivered", time=at.strftime("%H:%M"))
        return t("delivery.status.delivered_on", date=at.strftime("%d-%m-%Y"), time=at.strftime("%H:%M"))
    if state.parked_at is not None:
        return t("delivery.status.failed", reason=plain_reason(t, state.last_error))
    if state.attempts:
        return t("delivery.status.retrying", reason=plain_reason(t, state.last_error))
    return t("delivery.status.queued")


class DeliveryTrouble:
    """The dispatcher's hook for a failing row, run in the transaction that records the failure."""

    def __init__(self, config: Config, platforms: tuple[Platform, ...]) -> None:
        self.config = config
        self.platforms = platforms

    async def __call__(self, uow: UnitOfWork, item: OutboxItem, reason: str, now: datetime, *, parked: bool) -> int:
        """Queue the notices about `item`; returns how many. `parked` False: it keeps failing (melder only)."""
        if item.kind == NOTICE_KIND:
            return 0   # the administrator sees it (doctor, outbox list, metric); no notice about a notice
        meldpunt = self.config.meldpunt_by_id(item.meldpunt_id)
        if meldpunt is None:
            return 0
        as_af = [af for m, af in self.config.af_for(item.recipient.platform, item.recipient.user_id)
                 if m.id == meldpunt.id]
        reference = reference_in(item.idempotency_key)
        if as_af and item.kind not in MELDER_KINDS:
            if not parked:
                return 0   # an AF's own messages are told once they are parked, not while retrying
            return await self._about_af_message(uow, meldpunt, as_af[0], item, reason, reference, now)
        return await self._about_melder_message(uow, meldpunt, item, reason, reference, now, parked)

    async def _key(self, uow: UnitOfWork, item: OutboxItem, parked: bool) -> keys.OutboxKey:
        """Keys for one telling: once per parking (a re-sent row parked again is told again) and per warning.
        The round is counted from the notices already queued, so a repeated transaction makes the same keys.
        A key names the signal's reference as well, so retention erases the notice with the signal even
        when the message it was about is gone (meldbot.storage.repositories.outbox OutboxRepository.forget_signal)."""
        reference = reference_in(item.idempotency_key)
        prefix = keys.notice_prefix(item.id, reference, parked)
        round_ = await uow.outbox.count_keyed(prefix) + 1
        return keys.notice(prefix, round_, reference)

    async def _about_melder_message(self, uow: UnitOfWork, meldpunt: MeldpuntConfig, item: OutboxItem, reason: str,
                                    reference: str | None, now: datetime, parked: bool) -> int:
        afs: list[AFConfig] = []
        sender = keys.sender_in(item.idempotency_key)
        named = meldpunt.af_by_name(sender) if sender else None
        if named:
            afs = [named]
        if not afs and reference:
            query = RefQuery.parse(reference)
            signal = await uow.signals.find(query, [meldpunt.id]) if query else None
            handler = meldpunt.af_by_name(signal.handler) if signal is not None and signal.handler else None
            if handler:
                afs = [handler]
        afs = afs or active_afs(meldpunt)
        query = RefQuery.parse(reference) if reference else None
        number = query.number if query else None

        def compose(t: Texts, af: AFConfig) -> Reply:
            what = t(f"delivery.what_melder.{item.kind}") if t.has(f"delivery.what_melder.{item.kind}") \
                else t("delivery.what_melder.other")
            params = dict(what=what, reference=reference or "-", reason=plain_reason(t, reason), id=item.id,
                          number=number or "<nummer>")
            if parked:
                text = t("delivery.melder_failed", **params, todo=self._todo(t, reason, params))
            else:
                text = t("delivery.melder_late", **params)
            actions = (Action(t("action.show", reference=reference), f"toon {number}"),) if number else ()
            return Reply(text, actions=actions)

        told = await notify(uow, self.config, meldpunt, afs, self.platforms, await self._key(uow, item, parked),
                            NOTICE_KIND, compose, now)
        log.warning("undelivered message told to the AF", extra={"outbox_id": item.id, "kind": item.kind,
                                                                 "parked": parked, "notices": told})
        return told

    def _todo(self, t: Texts, reason: str | None, params: dict[str, object]) -> str:
        specific = f"delivery.todo.{cause(reason)}"
        return t(specific, **params) if t.has(specific) else t("delivery.todo.other", **params)

    async def _about_af_message(self, uow: UnitOfWork, meldpunt: MeldpuntConfig, af: AFConfig, item: OutboxItem,
                                reason: str, reference: str | None, now: datetime) -> int:
        failed = item.recipient
        others = [a for a in meldpunt.af if a.name != af.name]
        colleagues = [a for a in others if not a.backup] or others

        def compose(t: Texts, target: AFConfig) -> Reply:
            what = t(f"delivery.what_af.{item.kind}") if t.has(f"delivery.what_af.{item.kind}") \
                else t("delivery.what_af.other")
            about = t("delivery.about", reference=reference) if reference else ""
            params = dict(af=af.name, platform=failed.platform, what=what, about=about,
                          reason=plain_reason(t, reason), id=item.id)
            name = "delivery.af_failed_you" if target is af else "delivery.af_failed_other"
            return Reply(t(name, **params))

        # Not on the platform that failed for this person.
        told = await notify(uow, self.config, meldpunt, [af, *colleagues], self.platforms,
                            await self._key(uow, item, True), NOTICE_KIND, compose, now, skip=failed)
        log.warning("undelivered message to an AF told to the other AFs",
                    extra={"outbox_id": item.id, "kind": item.kind, "notices": told})
        return told
