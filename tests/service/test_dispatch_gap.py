"""Under a burst the dispatcher's rounds are at least `min_gap` apart (each kick its own round took a tenth of the
process's time from the chat turns, benchmarks/burst.py); a quiet process still starts its round at the kick."""

from __future__ import annotations

import asyncio

from meldbot.service.outbox import Dispatcher


class Rounds(Dispatcher):
    """A dispatcher whose rounds only note when they start; `busy` rounds find new work queued at once."""

    def __init__(self, clock) -> None:
        super().__init__(None, {}, clock, poll_interval=60)
        self.starts: list[float] = []
        self.busy = True

    async def deliver_pending(self) -> int:
        self.starts.append(asyncio.get_running_loop().time())
        if self.busy:
            self.kick()          # a report was queued while this round ran
        return 0


async def until(condition, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_rounds_under_a_burst_keep_the_gap_and_a_quiet_kick_is_served_at_once(clock):
    dispatcher = Rounds(clock)
    dispatcher.min_gap = 0.03
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: len(dispatcher.starts) >= 8)
        gaps = [b - a for a, b in zip(dispatcher.starts, dispatcher.starts[1:])]
        assert min(gaps) >= dispatcher.min_gap * 0.95, gaps     # kicked at once every time, yet spaced

        dispatcher.busy = False
        seen = len(dispatcher.starts)
        await until(lambda: len(dispatcher.starts) == seen + 1)  # the round that was already due
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        await until(lambda: loop.time() - quiet_since > 3 * dispatcher.min_gap)
        kicked = loop.time()
        dispatcher.kick()
        await until(lambda: len(dispatcher.starts) == seen + 2)
        assert dispatcher.starts[-1] - kicked < dispatcher.min_gap   # nothing to wait for after a quiet spell
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 5)
