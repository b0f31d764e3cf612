"""Under a burst the dispatcher's rounds are at least `min_gap` apart (each kick its own round took a tenth of the
process's time from the chat turns, benchmarks/burst.py); a quiet process still starts its round at the kick."""

from __future__ import annotations

import asyncio

from meldbot.core.messaging import Identity, Reply
from meldbot.service.outbox import Dispatcher
from tests.support.matrix import until
from tests.support.outbox import queued


class Rounds(Dispatcher):
    """A dispatcher whose rounds only note when they start; `busy` rounds find new work queued at once."""

    def __init__(self, clock) -> None:
        super().__init__(None, {}, clock, poll_interval=60)
        self.starts: list[float] = []
        self.busy = True

    async def deliver_pending(self, *, whole: bool = True) -> int:
        self.starts.append(asyncio.get_running_loop().time())
        if self.busy:
            self.kick()          # a report was queued while this round ran
        return 0


async def test_rounds_under_a_burst_keep_the_gap_and_a_quiet_kick_is_served_at_once(clock):
    dispatcher = Rounds(clock)
    # Long enough that "no wait" and "waited the gap" stay apart on a loaded machine.
    dispatcher.min_gap = 0.3
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: len(dispatcher.starts) >= 4, "four rounds")
        gaps = [b - a for a, b in zip(dispatcher.starts, dispatcher.starts[1:])]
        assert min(gaps) >= dispatcher.min_gap * 0.95, gaps     # kicked at once every time, yet spaced

        dispatcher.busy = False
        seen = len(dispatcher.starts)
        await until(lambda: len(dispatcher.starts) == seen + 1, "the round already due")
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        await until(lambda: loop.time() - quiet_since > 1.2 * dispatcher.min_gap, "a quiet spell")
        kicked = loop.time()
        dispatcher.kick()
        await until(lambda: len(dispatcher.starts) == seen + 2, "the kicked round")
        assert dispatcher.starts[-1] - kicked < dispatcher.min_gap   # nothing to wait for after a quiet spell
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 5)


class QueuesMoreWhileSending:
    """Each send happens while another report is queued (the burst): a new row for the next round."""

    platform = "matrix"

    def __init__(self, uow, clock, more: int) -> None:
        self.uow, self.clock, self.more, self.sent = uow, clock, more, []

    async def send(self, recipient, reply, key) -> None:
        self.sent.append(key)
        if self.more > 0:
            self.more -= 1
            async with self.uow() as work:
                await work.outbox.add(meldpunt_id="bergeijk", recipient=Identity("matrix", "@af:example.org"),
                                      reply=Reply("nog een"), key=f"more{self.more}", kind="inform",
                                      at=self.clock.now())
                await work.commit()


async def test_the_running_dispatcher_ends_a_round_after_a_partial_batch(database_url, clock):
    uow = await queued(database_url, clock, 3)
    notifier = QueuesMoreWhileSending(uow, clock, more=5)
    dispatcher = Dispatcher(uow, {"matrix": notifier}, clock)
    # A round of the running dispatcher: the 3 that were due, not the rows queued while it sent them.
    assert await dispatcher.deliver_pending(whole=False) == 3
    # Called as a whole (the CLI, a drain): on until nothing is due, rows queued meanwhile included.
    assert await dispatcher.deliver_pending() == 5
    assert len(notifier.sent) == 8
