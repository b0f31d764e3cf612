"""A chat turn's own answer goes out before the background work it started.

A turn that queues messages (`versturen` queues the AF's notice) wakes the outbox at its commit. The
outbox then reads the database and calls the platform while the turn is still sending its answer, in the
same process: the person waited for both (measured: `versturen` answered a third later on PostgreSQL,
benchmarks/README.md). An adapter runs the turn and its answer `with answer_first():`; a wake-up asked for
meanwhile (`soon`) runs when the block ends, answered or failed. Outside such a block `soon` runs at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")


class _Held:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.closed = False

    def release(self) -> None:
        """The turn has answered (or failed): what waited runs now, once; later wake-ups run at once."""
        if self.closed:
            return
        self.closed = True
        for callback in self.callbacks:
            callback()


_HELD: ContextVar[_Held | None] = ContextVar("meldbot_answer_first", default=None)


def soon(callback: Callable[[], None]) -> None:
    """Run `callback` now, or, inside `answer_first()`, once when the turn has answered. (A task started inside
    the block sees it too; after the block has ended it runs its callbacks at once.)"""
    held = _HELD.get()
    if held is None or held.closed:
        callback()
    elif callback not in held.callbacks:
        held.callbacks.append(callback)


@contextmanager
def answer_first() -> Iterator[None]:
    held = _Held()
    token = _HELD.set(held)
    try:
        yield
    finally:
        _HELD.reset(token)
        held.release()


def held_in_task(start: Callable[[], T]) -> tuple[T, _Held]:
    """`start()` (which creates the turn's task) with wake-ups held for that task until `release()` of what
    comes back, for a turn answered by code outside the task. The caller's own context is left as it was."""
    held = _Held()
    token = _HELD.set(held)
    try:
        return start(), held
    finally:
        _HELD.reset(token)
