"""meldbot.core.answer_first: a wake-up asked for during a turn runs once, after the turn's answer (also when
the answer failed); outside a turn at once."""

from __future__ import annotations

import asyncio

import pytest

from meldbot.core.answer_first import answer_first, soon


def test_outside_a_turn_it_runs_at_once():
    ran = []
    soon(lambda: ran.append(1))
    assert ran == [1]


def test_inside_a_turn_it_runs_once_when_the_turn_ends():
    ran: list[str] = []
    wake = lambda: ran.append("wake")  # noqa: E731
    with answer_first():
        soon(wake)
        soon(wake)                      # twice asked, once run
        ran.append("answer")
    assert ran == ["answer", "wake"]
    soon(wake)                          # the block is over: at once again
    assert ran == ["answer", "wake", "wake"]


def test_a_failed_answer_still_wakes():
    ran = []
    with pytest.raises(RuntimeError), answer_first():
        soon(lambda: ran.append("wake"))
        raise RuntimeError("connector down")
    assert ran == ["wake"]


async def test_turns_side_by_side_hold_only_their_own():
    ran: list[str] = []
    first_in, release = asyncio.Event(), asyncio.Event()

    async def turn(name: str, wait: bool) -> None:
        with answer_first():
            soon(lambda: ran.append(name))
            if wait:
                first_in.set()
                await release.wait()
        ran.append(f"{name} answered")

    slow = asyncio.create_task(turn("slow", True))
    await first_in.wait()
    await turn("quick", False)
    assert ran == ["quick", "quick answered"]
    release.set()
    await slow
    assert ran == ["quick", "quick answered", "slow", "slow answered"]


async def test_a_task_started_in_a_turn_wakes_at_once_after_the_turn():
    ran: list[str] = []
    go = asyncio.Event()

    async def later() -> None:
        await go.wait()
        soon(lambda: ran.append("from the task"))

    with answer_first():
        task = asyncio.create_task(later())    # copies the turn's context
    go.set()
    await task
    assert ran == ["from the task"]


async def test_a_turn_in_a_task_of_its_own_holds_until_its_answer_was_sent_elsewhere():
    """The Teams adapter starts a turn as its request comes in (a task) and sends its answer later, from the
    SDK's turn: the wake-ups the turn asks for wait for that release, not for the task's end, and the code that
    started the task is not held itself."""
    from meldbot.core.answer_first import held_in_task

    ran: list[str] = []

    async def turn() -> str:
        soon(lambda: ran.append("wake"))
        return "answer"

    task, held = held_in_task(lambda: asyncio.create_task(turn()))
    soon(lambda: ran.append("caller"))          # the starter's own context: at once
    assert await task == "answer" and ran == ["caller"]
    ran.append("sent")
    held.release()
    held.release()                              # once
    assert ran == ["caller", "sent", "wake"]
