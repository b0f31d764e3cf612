"""Reminders: what is due is derived from the signals in the database; a unique key per slot makes
each go out once, across restarts, missed runs and several bot processes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from typing import Any

from meldbot.core import keys
from meldbot.core.calendar import WorkCalendar
from meldbot.core.clock import Clock
from meldbot.core.config import AFConfig, Config, MeldpuntConfig, RemindersConfig
from meldbot.core.domain import Signal, Status
from meldbot.core.i18n import Texts
from meldbot.core.messaging import Action, Platform, Reply
from meldbot.core.ports import UnitOfWork, UnitOfWorkFactory
from meldbot.service.services import active_afs, af_messages, notify, show_action, work_calendar

log = logging.getLogger("meldbot.reminders")
MAX_SLOTS = 10_000


@dataclass(frozen=True)
class Due:
    kind: str              # oppakken | spoed | partner:<key> (partner: an older row's one series) | melder | overzicht
    slot: int              # 0 for the first reminder, 1 for the first repeat, ...
    due_at: datetime       # when this slot fell due
    next_at: datetime      # when the next slot falls due
    since: datetime        # what is overdue since (for the text)
    reason: str = ""       # catalogue key detail


Step = Callable[[datetime], datetime]
# One reminder series: (kind, first due, step to the next, overdue since, reason).
Series = tuple[str, datetime, Step, datetime, str]


def _latest(first: datetime, step: Step, now: datetime) -> tuple[int, datetime, datetime] | None:
    """The last slot due at or before `now`: (slot, its due time, the next slot's due time)."""
    if first > now:
        return None
    slot, due = 0, first
    nxt = step(due)
    while nxt <= now and slot < MAX_SLOTS:
        slot, due = slot + 1, nxt
        nxt = step(due)
    return slot, due, nxt


def first_due(kind_first: datetime, step: Step, now: datetime) -> tuple[int, datetime, datetime] | None:
    return _latest(kind_first, step, now)


def schedule(signal: Signal, settings: RemindersConfig, cal: WorkCalendar) -> list[Series]:
    """The reminder series that apply to `signal` now: (kind, first due, step, overdue since, reason)."""
    series: list[Series] = []
    if signal.merged_into or signal.erased_at:
        return series
    open_ = signal.status is not Status.CLOSED
    if open_ and signal.handler is None:
        if signal.urgent:
            hours = timedelta(hours=settings.urgent_repeat_hours)
            series.append(("spoed", cal.next_office_moment(signal.created_at + hours),
                           lambda d: cal.next_office_moment(d + hours), signal.created_at, ""))
        else:
            series.append(("oppakken", cal.add_working_days(signal.created_at, settings.pick_up_after_working_days),
                           lambda d: cal.add_working_days(d, 1), signal.created_at, ""))
    week = timedelta(days=settings.partner_feedback_repeat_days)
    if open_ and signal.partner_log_exact:
        # One series per partner passed to, from the day it was passed to them, until their own feedback.
        for partner, since in signal.waiting_partners().items():
            series.append((f"partner:{partner}", cal.add_working_days(since, settings.partner_feedback_after_working_days),
                           lambda d: cal.next_office_moment(d + week), since, partner))
    elif open_ and signal.forwarded_at and signal.partner_feedback_at is None:
        # A row from before the partner log, read without its history: one series for all its partners, under
        # the claim keys it had (partner:<reference>:<slot>), so no slot is sent twice.
        series.append(("partner", cal.add_working_days(signal.forwarded_at, settings.partner_feedback_after_working_days),
                       lambda d: cal.next_office_moment(d + week), signal.forwarded_at, ", ".join(signal.partners)))
    candidates: list[tuple[datetime, datetime, str]] = []
    for anchor in (signal.last_partner_feedback_at, signal.closed_at):
        if anchor and (signal.melder_last_informed_at is None or signal.melder_last_informed_at < anchor):
            candidates.append((cal.add_working_days(anchor, settings.melder_feedback_after_working_days), anchor, "news"))
    if signal.melder_informed_at is None:
        silence = cal.next_office_moment(signal.created_at + timedelta(weeks=settings.melder_silence_weeks))
        candidates.append((silence, signal.created_at, "silence"))
    if candidates:
        first, since, reason = min(candidates, key=lambda c: c[0])
        series.append(("melder", first, lambda d: cal.next_office_moment(d + timedelta(days=7)), since, reason))
    return series


def due_now(signal: Signal, settings: RemindersConfig, cal: WorkCalendar, now: datetime) -> list[Due]:
    found = []
    for kind, first, step, since, reason in schedule(signal, settings, cal):
        latest = _latest(first, step, now)
        if latest is not None:
            found.append(Due(kind, latest[0], latest[1], latest[2], since, reason))
    return found


def upcoming(signal: Signal, settings: RemindersConfig, cal: WorkCalendar, now: datetime) -> list[Due]:
    """For `meldbot reminders`: the next due moment of every series (past-due ones included)."""
    found = []
    for kind, first, step, since, reason in schedule(signal, settings, cal):
        latest = _latest(first, step, now)
        if latest is None:
            found.append(Due(kind, -1, first, first, since, reason))
        else:
            found.append(Due(kind, latest[0], latest[1], latest[2], since, reason))
    return found


class Reminders:
    """The scheduler's job: claim what is due and queue the messages, in one transaction per meldpunt."""

    def __init__(self, uow_factory: UnitOfWorkFactory, config: Config, clock: Clock,
                 platforms: tuple[Platform, ...]) -> None:
        self._uow = uow_factory
        self.config = config
        self.clock = clock
        self.platforms = platforms

    async def sweep(self) -> int:
        sent = 0
        for meldpunt in self.config.meldpunten:
            async with self._uow() as uow:
                sent += await self._sweep_meldpunt(uow, meldpunt)
                await uow.commit()
        return sent

    async def _sweep_meldpunt(self, uow: UnitOfWork, meldpunt: MeldpuntConfig) -> int:
        now = self.clock.now()
        cal = work_calendar(self.config, meldpunt.id)
        if not cal.is_office_time(now):
            return 0
        settings = self.config.reminders_for(meldpunt.id)
        sent = 0
        due_items = [(keys.reminder_claim(due.kind, signal.reference, due.slot), signal, due)
                     for signal in await uow.signals.reminder_candidates(meldpunt.id, lock=True)
                     for due in due_now(signal, settings, cal, now)]
        due_items = await _without_joint_sent(uow, due_items)
        # One statement claims them all; a key another process (or an earlier sweep) has is skipped.
        claimed = await uow.reminders.claim_many([(k, meldpunt.id, s.id, d) for k, s, d in due_items], now)
        messages: list[dict[str, Any]] = []
        for key, signal, due in due_items:
            if key in claimed:
                messages.extend(await self._messages(meldpunt, signal, due, key, uow))
                sent += 1
        await uow.outbox.add_many(messages, now)
        sent += await self._overview(uow, meldpunt, cal, settings, now)
        return sent

    def _recipients(self, meldpunt: MeldpuntConfig, signal: Signal, due: Due) -> list[AFConfig]:
        if due.kind in ("oppakken", "spoed"):
            # Escalation: from the third reminder on, the backup AF is told as well.
            return [a for a in meldpunt.af if not a.backup or due.slot >= 2]
        handler = meldpunt.af_by_name(signal.handler) if signal.handler else None
        return [handler] if handler else active_afs(meldpunt)

    async def _messages(self, meldpunt: MeldpuntConfig, signal: Signal, due: Due, key: str,
                        uow: UnitOfWork) -> list[dict[str, Any]]:
        since = due.since.astimezone(meldpunt.tz).strftime("%d-%m-%Y")
        name = f"reminder.melder_{due.reason}" if due.kind == "melder" else f"reminder.{due.kind}"
        if due.kind.startswith("partner:"):
            name = "reminder.partner_one"

        def compose(t: Texts, af: AFConfig) -> Reply:
            text = t(name, reference=signal.reference, number=signal.reference.number, since=since,
                     partners=due.reason, partner=due.reason, times=due.slot + 1)
            return Reply(text, actions=(show_action(t, signal),), urgent=due.kind == "spoed")

        # Queued by the caller, all of a sweep in one statement. The unit of work reads each AF's
        # settings once, however many reminders they get.
        return await af_messages(uow, self.config, meldpunt, self._recipients(meldpunt, signal, due), self.platforms,
                                 keys.reminder(key, signal.reference), "reminder", compose)

    async def _overview(self, uow: UnitOfWork, meldpunt: MeldpuntConfig, cal: WorkCalendar,
                        settings: RemindersConfig, now: datetime) -> int:
        local = now.astimezone(meldpunt.tz)
        first = cal.first_working_day_of_week(local.date())
        if first is None or local.date() < first:
            return 0
        due_at = datetime.combine(first, settings.weekly_overview_at, tzinfo=meldpunt.tz)
        if now < due_at:
            return 0
        iso = local.isocalendar()
        signals = await uow.signals.open_signals([meldpunt.id])
        overdue = sum(1 for s in signals for d in due_now(s, settings, cal, now))
        sent = 0
        unassigned = sum(1 for s in signals if s.handler is None)
        # Per partner: how many open signals wait for its feedback (configuration order, then any others).
        waiting: dict[str, int] = {p.key: 0 for p in meldpunt.partners}
        for s in signals:
            for partner in s.waiting_partners():
                waiting[partner] = waiting.get(partner, 0) + 1

        def compose(t: Texts, af: AFConfig) -> Reply:
            mine = sum(1 for s in signals if s.handler == af.name)
            lines = [t("reminder.overview", week=iso.week, open=len(signals), mine=mine,
                       unassigned=unassigned, overdue=overdue)]
            if any(waiting.values()):
                lines.append(t("reminder.overview_waiting"))
                lines += [t("reminder.overview_partner", partner=_partner_name(meldpunt, key), count=count)
                          for key, count in waiting.items() if count]
            return Reply("\n".join(lines), actions=(Action(t("reminder.overview_action"), "lijst"),))

        for af in meldpunt.af:
            key = keys.overview_claim(meldpunt.id, af.name, iso.year, iso.week)
            dummy = Due("overzicht", 0, due_at, due_at + timedelta(weeks=1), due_at)
            if not await uow.reminders.claim(key, meldpunt.id, None, dummy, now):
                continue
            await notify(uow, self.config, meldpunt, [af], self.platforms, keys.overview(key), "overview", compose, now)
            sent += 1
        return sent


async def _without_joint_sent(uow: UnitOfWork,
                             items: list[tuple[str, Signal, Due]]) -> list[tuple[str, Signal, Due]]:
    """Leave out a partner's slot that the joint series already covered: an older row was chased under
    partner:<reference>:<slot>, for all its partners at once, until its partner log was stored; a slot of a
    partner's own series due at or before the last joint slot sent went out then (one query for the sweep)."""
    ids = [signal.id for _, signal, due in items if due.kind.startswith("partner:") and signal.id is not None]
    joint = await uow.reminders.joint_partner_due(ids) if ids else {}
    if not joint:
        return items
    return [(key, signal, due) for key, signal, due in items
            if not (due.kind.startswith("partner:") and signal.id in joint and due.due_at <= joint[signal.id])]


def _partner_name(meldpunt: MeldpuntConfig, key: str) -> str:
    partner = meldpunt.partner(key)
    return partner.name if partner else key
