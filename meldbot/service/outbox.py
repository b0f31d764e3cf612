"""The outbox dispatcher: delivers queued messages through the recipient's platform, with retries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from meldbot.core.answer_first import soon
from meldbot.core.clock import Clock
from meldbot.core.messaging import DeliveryError, Identity, Notifier, NotSendingHere, RecipientAway, SendProgress
from meldbot.core.ports import ClaimLost, OutboxItem, UnitOfWork, UnitOfWorkFactory

# on_trouble(uow, item, reason, now, parked=...): tells the people concerned that a message is late or parked.
Trouble = Callable[..., Awaitable[None]]
# progress(item, lease) -> the row's record of a message sent in parts (meldbot.storage RowProgress).
Progress = Callable[[OutboxItem, timedelta], SendProgress]

log = logging.getLogger("meldbot.outbox")
_LOOK_EVERY = timedelta(minutes=1)
DISPATCH_MIN_GAP_SECONDS = 0.1   # see Dispatcher.min_gap
_RELEASED = "released"      # an outcome: not sent by this process, given back unclaimed


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta = timedelta(seconds=2)
    maximum: timedelta = timedelta(minutes=15)
    max_attempts: int = 20          # about three hours of trying before a row is parked
    away_hold: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(seconds=120)
    # After this many failed attempts (about four minutes) a message to a melder is told to the AF as late.
    warn_after: int = 8
    # A row for a platform switched off in the configuration is parked once it has been due this long:
    # a moment's switch (off, then on again) loses nothing.
    switched_off_after: timedelta = timedelta(hours=1)

    def next_delay(self, attempts: int) -> timedelta:
        return min(self.base * (2 ** max(attempts - 1, 0)), self.maximum)


class Dispatcher:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        *,
        policy: RetryPolicy = RetryPolicy(),
        batch_size: int = 100,
        poll_interval: float = 5.0,
        metrics: Any = None,
        on_trouble: Trouble | None = None,
        switched_off: Collection[str] = (),
        progress: Progress | None = None,
    ) -> None:
        self._uow = uow_factory
        self.notifiers = dict(notifiers)
        self._clock = clock
        self.policy = policy
        self._batch = batch_size
        self._poll = poll_interval
        # Under a burst (the hour after an awareness training: a report every few milliseconds) each kick
        # would start a round of its own, a few transactions for one or two rows, and those rounds took a
        # tenth of the process's time from the turns. Rounds are at least this far apart; a kick in
        # between is served at the end of the gap, with everything queued meanwhile. A quiet process
        # waits for nothing: its round starts at the kick.
        self.min_gap = DISPATCH_MIN_GAP_SECONDS
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self.metrics = metrics
        # async (uow, item, reason, now, *, parked) -> int: tells the people a failing row concerns
        # (meldbot.service.deliveries.DeliveryTrouble), in the transaction that records the failure.
        self.on_trouble = on_trouble
        # Platforms the configuration switched off: no process sends their rows. Only those this process
        # has no notifier for; never a platform that is merely not running here (`meldbot chat` and the
        # CLI run without the platforms a `meldbot run` beside them sends for).
        self.switched_off = tuple(p for p in switched_off if p not in self.notifiers)
        self._switched_off_looked: datetime | None = None
        # For notifiers with `send_parts` (Teams): each part's send recorded in the row, so after a crash
        # any process continues after the parts shown and resends at most the one in doubt.
        self._progress = progress
        self.in_doubt = 0       # rows found with a send cut off by a dying process, since start

    def start(self) -> None:
        self._stopping = False

    def stop(self) -> None:
        """Finish the round under way (its sends recorded), then leave `run`. Cancelling it instead
        could cut a database statement in half and leave the transaction, and SQLite's lock, open."""
        self._stopping = True
        self._wakeup.set()

    async def _stopped_or_forever(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            await self._wakeup.wait()

    def kick(self) -> None:
        """Something was queued: look at the outbox now instead of at the next poll (after the answer of a
        chat turn that queued it, meldbot.core.answer_first)."""
        soon(self._wakeup.set)

    async def wake(self, recipient: Identity) -> None:
        """A person who was away is back: their waiting messages are due now."""
        async with self._uow() as uow:
            await uow.outbox.wake(recipient, self._clock.now())
            await uow.commit()
        self.kick()

    async def deliver_pending(self, *, whole: bool = True) -> int:
        """Deliver everything due now; returns how many messages were delivered. With `whole` false (the
        running dispatcher) a round ends after a batch that was not full: what was queued while it sent is
        for the next round, after the gap (min_gap), instead of a stream of one-row batches."""
        delivered = 0
        async with self._lock:
            try:
                await self._park_switched_off()
            except Exception as exc:  # its own boundary: the deliveries below go ahead regardless
                log.error("parking rows of a switched-off platform failed", extra={"error": type(exc).__name__})
            released: set[str] = set()     # platforms this process stopped sending for during this round
            while not self._stopping:
                platforms = [name for name in self.notifiers if name not in released]
                if not platforms:
                    return delivered
                async with self._uow() as uow:
                    items = await uow.outbox.claim_due(
                        self._clock.now(), limit=self._batch, lease=self.policy.lease, platforms=platforms
                    )
                    await uow.commit()
                if not items:
                    return delivered
                outcomes = [(item, await self._send(item)) for item in items]
                async with self._uow() as uow:
                    now = self._clock.now()
                    done = [item.id for item, outcome in outcomes if outcome is None]
                    if done:
                        await uow.outbox.mark_delivered_many(done, now)
                        delivered += len(done)
                    for item, outcome in outcomes:
                        if outcome == "away":
                            await uow.outbox.hold(item.id, now + self.policy.away_hold)
                        elif outcome == _RELEASED:
                            # Not sent here: back unclaimed, no attempt counted, due at once for the process
                            # that sends for the platform now (parts already shown stay counted in the row).
                            released.add(item.recipient.platform)
                            await uow.outbox.hold(item.id, now)
                        elif isinstance(outcome, DeliveryError):
                            await self._record_failure(uow, item, outcome, now)
                    await uow.commit()
                if self.metrics:
                    for item, outcome in outcomes:
                        if outcome is None:
                            self.metrics.delivered.labels(item.recipient.platform).inc()
                        elif isinstance(outcome, DeliveryError):
                            self.metrics.delivery_failures.labels(item.recipient.platform).inc()
                if not whole and len(items) < self._batch and not released:
                    return delivered
            return delivered

    async def _park_switched_off(self) -> int:
        """Park rows for a switched-off platform once they have been due for `switched_off_after`, so the
        AF they concern hears of it; looked at once a minute at most."""
        now = self._clock.now()
        if not self.switched_off or (self._switched_off_looked and now - self._switched_off_looked < _LOOK_EVERY):
            return 0
        self._switched_off_looked = now
        async with self._uow() as uow:
            # Claimed as of `switched_off_after` ago: only rows due since then, and none that another
            # process (with another configuration) claimed within that time.
            items = await uow.outbox.claim_due(now - self.policy.switched_off_after, limit=self._batch,
                                               lease=timedelta(0), platforms=list(self.switched_off))
            for item in items:
                platform = item.recipient.platform
                reason = f"{platform} is switched off in the configuration ({platform}.enabled = false)"
                await uow.outbox.park(item.id, attempts=item.attempts, at=now, error=reason)
                log.warning("outbox row parked: platform switched off",
                            extra={"outbox_id": item.id, "kind": item.kind, "platform": platform})
                await self._tell(uow, item, reason, now, parked=True)
            await uow.commit()
        return len(items)

    async def _send(self, item: OutboxItem) -> str | None | DeliveryError:
        # The Matrix notifier goes when this process stops holding the stream (run.app.HolderOnly), also in
        # the middle of a batch: the rows sent before still get their outcome recorded.
        notifier = self.notifiers.get(item.recipient.platform)
        if notifier is None:
            return _RELEASED
        send_parts = getattr(notifier, "send_parts", None)
        if item.sending_since is not None:
            # The process that sent it died during a platform call: part `parts_done` may have been shown.
            # The platform cannot be asked, so that one part goes again; the parts before it do not.
            self.in_doubt += 1
            log.warning("outbox row in doubt: its sender stopped during a platform call; sending that part again",
                        extra={"outbox_id": item.id, "kind": item.kind, "part": item.parts_done + 1})
            in_doubt = getattr(self.metrics, "in_doubt", None)
            if in_doubt is not None:
                in_doubt.labels(item.recipient.platform).inc()
        try:
            if send_parts is not None and self._progress is not None:
                await send_parts(item.recipient, item.reply, item.idempotency_key,
                                 self._progress(item, self.policy.lease))
            else:
                await notifier.send(item.recipient, item.reply, item.idempotency_key)
        except RecipientAway:
            return "away"
        except NotSendingHere:
            return _RELEASED
        except ClaimLost:
            # The row's claim ran out during this batch and another process has it: not ours any more.
            # Stopped before the platform call; no outcome recorded, no failure counted.
            return "lost"
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # the error boundary of one delivery: never the message itself in logs
            return DeliveryError(f"unexpected {type(exc).__name__}")
        return None

    async def _record_failure(self, uow: UnitOfWork, item: OutboxItem, error: DeliveryError, now: datetime) -> None:
        attempts = item.attempts + 1
        if error.permanent or attempts >= self.policy.max_attempts:
            await uow.outbox.park(item.id, attempts=attempts, at=now, error=error.reason)
            log.warning("outbox row parked", extra={"outbox_id": item.id, "kind": item.kind, "reason": error.reason})
            await self._tell(uow, item, error.reason, now, parked=True)
        else:
            delay = self.policy.next_delay(attempts)
            await uow.outbox.retry(item.id, attempts=attempts, at=now + delay, error=error.reason)
            log.info(
                "outbox delivery failed, will retry",
                extra={"outbox_id": item.id, "attempt": attempts, "retry_in_s": delay.total_seconds(), "reason": error.reason},
            )
            if attempts == self.policy.warn_after:
                await self._tell(uow, item, error.reason, now, parked=False)

    async def _tell(self, uow: UnitOfWork, item: OutboxItem, reason: str, now: datetime, *, parked: bool) -> None:
        if self.on_trouble is None:
            return
        try:
            await self.on_trouble(uow, item, reason, now, parked=parked)
        except Exception as exc:  # the failure itself is recorded anyway; doctor and the metric show it
            log.error("telling about an undelivered message failed",
                      extra={"outbox_id": item.id, "error": type(exc).__name__})

    async def run(self) -> None:
        """Deliver until stopped: at every kick, and at least every poll interval."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                await self.deliver_pending(whole=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the database restarting; try again at the next poll
                log.error("outbox dispatch round failed", extra={"error": type(exc).__name__})
            # asyncio.timeout, not wait_for: on 3.11 a cancel racing wait_for's timeout can leave the
            # task stuck in "cancelling" (seen here on shutdown).
            try:
                async with asyncio.timeout(self._poll):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            gap = self.min_gap - (loop.time() - started)
            if gap > 0 and not self._stopping:
                try:   # a stop cuts the gap short
                    async with asyncio.timeout(gap):
                        await self._stopped_or_forever()
                except TimeoutError:
                    pass
            self._wakeup.clear()
