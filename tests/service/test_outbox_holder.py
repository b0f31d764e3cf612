"""Issue 17, H1: a Matrix holder that steps down in the middle of a batch. The rows it sent stay marked as
delivered (another process with another device would show them again), the rest go back unclaimed without
an attempt counted (no retry, no "delivery trouble" notice), for the new holder to send at once."""

from __future__ import annotations

import sqlalchemy as sa

from meldbot.core.messaging import Identity, NotSendingHere, Reply
from meldbot.run.app import HolderOnly
from meldbot.service.outbox import Dispatcher
from meldbot.storage.tables import OutboxRow
from meldbot.storage.uow import UnitOfWorkFactory
from tests.support.outbox import queued


class Leader:
    holding = True


class StepsDownAfterOne:
    """Sends one message, then this process stops holding the Matrix stream."""

    platform = "matrix"

    def __init__(self, leader: Leader) -> None:
        self.leader, self.sent = leader, []

    async def send(self, recipient, reply, key) -> None:
        if not self.leader.holding:
            raise AssertionError("the dispatcher sent through a notifier it no longer has")
        self.sent.append(key)
        self.leader.holding = False


class NotHolding:
    """The adapter's own answer when the stream went to another process between claim and send."""

    platform = "matrix"

    async def send(self, recipient, reply, key) -> None:
        raise NotSendingHere("matrix sync stream held by another process")


async def rows(uow: UnitOfWorkFactory) -> dict[str, tuple]:
    async with uow() as work:
        found = (await work.session.exec(sa.select(OutboxRow.idempotency_key, OutboxRow.delivered_at,
                                                      OutboxRow.attempts, OutboxRow.claimed_until))).all()
    return {key: (delivered is not None, attempts, claimed is not None) for key, delivered, attempts, claimed in found}


async def test_a_holder_stepping_down_mid_batch_records_what_it_sent_and_releases_the_rest(database_url, clock):
    uow = await queued(database_url, clock, 3)
    leader = Leader()
    notifier = StepsDownAfterOne(leader)
    troubles = []

    async def trouble(*args, **kwargs):
        troubles.append(kwargs)

    dispatcher = Dispatcher(uow, {"matrix": notifier}, clock, on_trouble=trouble)
    dispatcher.notifiers = HolderOnly(dispatcher.notifiers, "matrix", leader)
    assert await dispatcher.deliver_pending() == 1
    state = await rows(uow)
    [sent] = notifier.sent
    assert state[sent] == (True, 0, False)                      # recorded: no other device sends it again
    assert sorted(v for k, v in state.items() if k != sent) == [(False, 0, False)] * 2   # back, no attempt
    assert troubles == []

    # The new holder (another process) sends the other two at once, not after a lease.
    successor = Leader()
    other = Dispatcher(uow, {"matrix": StepsDownAfterOne(successor)}, clock)
    successor_notifier = other.notifiers["matrix"]
    successor_notifier.send = _always(successor_notifier)
    assert await other.deliver_pending() == 2
    await uow.db.dispose()


def _always(notifier):
    async def send(recipient, reply, key):
        notifier.sent.append(key)
    return send


async def test_not_holding_releases_the_row_instead_of_counting_a_failed_attempt(database_url, clock):
    uow = await queued(database_url, clock, 2)
    troubles = []

    async def trouble(*args, **kwargs):
        troubles.append(kwargs)

    dispatcher = Dispatcher(uow, {"matrix": NotHolding()}, clock, on_trouble=trouble)
    assert await dispatcher.deliver_pending() == 0          # and it returns: no busy loop over the same rows
    assert sorted((await rows(uow)).values()) == [(False, 0, False)] * 2
    assert troubles == []
    await uow.db.dispose()
