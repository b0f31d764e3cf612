"""Retention: closed signals are erased when their period ends; the monitoring counts stay."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from meldbot.core.clock import Clock
from meldbot.core.config import Config
from meldbot.core.ports import UnitOfWork

log = logging.getLogger("meldbot.retention")
PROCESSED_EVENTS_KEPT = timedelta(days=7)
# A redelivered event gets the same answer within this window; later only a note (never a second handling).
PROCESSED_REPLIES_KEPT = timedelta(hours=1)
DELIVERED_MESSAGES_KEPT = timedelta(days=30)
DRAFT_MARKERS_KEPT = timedelta(days=30)


def months_before(moment: datetime, months: int) -> datetime:
    """The same local day `months` earlier (clamped to the month's last day)."""
    year, month = divmod(moment.month - 1 - months, 12)
    year += moment.year
    month += 1
    day = moment.day
    while True:
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            day -= 1


async def erase_expired(uow: UnitOfWork, config: Config, clock: Clock) -> int:
    """Erase closed signals past `retention_closed_months`: content, names, addresses, melder identity,
    notes, matching keys and audit entries go; the signal row stays as one content-free line with the
    facts monitoring needs. Also drops what was only kept for a short while."""
    now = clock.now()
    expired = []
    for meldpunt in config.meldpunten:
        months = config.reminders_for(meldpunt.id).retention_closed_months
        cutoff = months_before(now.astimezone(meldpunt.tz), months)
        expired += await uow.signals.closed_before(meldpunt.id, cutoff)
    # Oldest first over all meldpunten: the order in which a key rotation locks its batches of signals
    # (meldbot.storage.rotation), so the two wait for each other instead of locking each other out.
    for signal_id, reference in sorted(expired):
        await uow.signals.erase(signal_id, reference, now)
    await uow.processed.forget_before(now - PROCESSED_EVENTS_KEPT)
    await uow.processed.forget_replies_before(now - PROCESSED_REPLIES_KEPT)
    await uow.outbox.forget_delivered_before(now - DELIVERED_MESSAGES_KEPT)
    await uow.conversations.forget_markers_before(now - DRAFT_MARKERS_KEPT)
    return len(expired)
