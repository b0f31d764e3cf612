"""Issue 17, H2: a new holder's catch-up pages a room up to its end, also past what used to be the cap of
20 pages; when it cannot (the homeserver refuses, or a room never ends) it says so in the log, without ids."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from nio import RoomMessagesError

from meldbot.adapters.matrix import sync as sync_module
from meldbot.adapters.matrix.common import AddressBook, JsonFile
from meldbot.adapters.matrix.sync import Inbound
from meldbot.core.i18n import texts

ROOM = "!kamer:gemeente.example"


class Paging:
    """room_messages over `pages` pages of 100 events; `refuse_from`: that page on is refused."""

    user_id = "@meldbot:gemeente.example"

    def __init__(self, pages: int, refuse_from: int | None = None) -> None:
        self.pages, self.refuse_from, self.asked = pages, refuse_from, 0

    async def room_messages(self, room_id, start, direction, limit):
        self.asked += 1
        page = int(start[1:])
        if self.refuse_from is not None and page >= self.refuse_from:
            return RoomMessagesError("M_FORBIDDEN", "403")
        if page >= self.pages:
            return SimpleNamespace(chunk=[], end=None)
        events = [SimpleNamespace(event_id=f"$e{page}_{n}") for n in range(100)]
        return SimpleNamespace(chunk=events, end=f"p{page + 1}")


def inbound(client, tmp_path) -> tuple[Inbound, list]:
    book = AddressBook(SimpleNamespace(meldpunten=[]))
    received: list = []
    found = Inbound(client, handle=None, sender=None, direct=None, devices=None, book=book, texts=texts("nl"),
                    token_file=JsonFile(tmp_path / "sync-token.json"), retry_cap=0.001, poll_ms=0,
                    pointer_interval=600.0, key_wait=1.0)

    async def room_events(room_id, events, gap, caught_up=False):
        received.extend(events)

    found._room_events = room_events
    return found, received


async def test_catch_up_pages_past_twenty_pages_to_the_end_of_the_room(tmp_path, caplog):
    client = Paging(pages=45)
    catching, received = inbound(client, tmp_path)
    with caplog.at_level(logging.INFO, logger="meldbot"):
        await catching._catch_up(ROOM, "p0")
    assert len(received) == 4500 and received[-1].event_id == "$e44_99"   # the newest events too
    assert "events may be missing" not in caplog.text


async def test_a_catch_up_that_cannot_reach_the_end_says_events_may_be_missing(tmp_path, caplog, monkeypatch):
    catching, received = inbound(Paging(pages=45, refuse_from=30), tmp_path)
    with caplog.at_level(logging.INFO, logger="meldbot"):
        await catching._catch_up(ROOM, "p0")
    assert len(received) == 3000
    [record] = [r for r in caplog.records if "events may be missing" in r.getMessage()]
    assert ROOM not in caplog.text and "$e" not in caplog.text

    caplog.clear()
    monkeypatch.setattr(sync_module, "CATCH_UP_PAGES", 10, raising=False)
    catching, received = inbound(Paging(pages=45), tmp_path)
    with caplog.at_level(logging.INFO, logger="meldbot"):
        await catching._catch_up(ROOM, "p0")
    assert "events may be missing" in caplog.text


class Leadership:
    """The leader as the adapter sees it: holding, a watch event, stop()."""

    def __init__(self, holding: bool) -> None:
        self.holding, self.stopped = holding, False
        self._event = None

    def watch(self):
        import asyncio

        self._event = self._event or asyncio.Event()
        return self._event

    async def stop(self) -> None:
        self.holding, self.stopped = False, True


async def _ended_sync_loop(leadership) -> None:
    """MatrixAdapter._run where the sync loop ends by itself (the access token is no longer valid)."""
    from meldbot.adapters.matrix.adapter import MatrixAdapter

    adapter = MatrixAdapter.__new__(MatrixAdapter)

    async def nothing(*args, **kwargs) -> None:
        return None

    adapter.direct = SimpleNamespace(load=nothing)
    adapter.leadership = leadership
    adapter._hold = nothing
    adapter.inbound = SimpleNamespace(run=nothing)
    adapter._step_down = nothing
    await adapter._run(session=None, logged_in=True)


async def test_a_holder_whose_sync_loop_ended_gives_the_stream_up(caplog):
    """Review M4: a holder whose Matrix side is dead kept the advisory lock, so no process took over."""
    holder = Leadership(holding=True)
    with caplog.at_level(logging.INFO, logger="meldbot"):
        await _ended_sync_loop(holder)
    assert holder.stopped and "giving the stream up" in caplog.text
    standby = Leadership(holding=False)   # a standby's light sync ending holds nothing to give up
    await _ended_sync_loop(standby)
    assert not standby.stopped
