"""Two `meldbot run` processes with Teams on, behind a (simulated) load balancer, on one private PostgreSQL
database per test (issue 17): any process takes any activity; a conversation's turns never race; the same
activity on both processes gets one answer; kill -9 of one process loses and doubles nothing.

The processes are real (tests/support/replicas.py): their own interpreter, engine, pool and in-process
locks; only the database is shared. Microsoft's side is the loopback FakeMicrosoft."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import aiohttp

from meldbot.core.i18n import texts
from tests.support.chat import migrated
from tests.support.cli import SCRIPT
from tests.support.replicas import REFERENCE, melder, replicas, stored
from tests.support.teams_fakes import activity

NL = texts("nl")
ERRORS = (NL("error.resend").split(".")[0], NL("error.general").split(".")[0])
CONVERSATIONS = 40
# Each text is a fine answer to "wat" and to "waar": whichever turn goes first fills `wat`.
FIRST = "Bij de Molenweg {i} wonen veel mensen in een klein huis"
SECOND = "Kerkstraat {i}, Bergeijk: er slapen mensen in de schuur"
QUESTION = {"waar": "Waar gebeurde het?", "wanneer": "Wanneer was het?", "wie": "Wie waren erbij?"}


def erring(shown: list[str]) -> list[str]:
    return [s for s in shown if any(e in s for e in ERRORS)]


async def started(teams, users) -> None:
    """Each employee has started a report (on the first process) and has written to the second one before
    (`help`, which changes nothing): both processes know the conversation, so neither spends the next turn
    storing its address first, and the two turns that follow really run at the same moment."""
    await asyncio.gather(*(teams.say(teams[1], user, "help") for user in users))
    await asyncio.gather(*(teams.say(teams[0], user, "melden") for user in users))


async def test_a_full_report_whose_messages_alternate_between_two_processes(postgres_database, microsoft, tmp_path):
    await migrated(postgres_database)
    user = melder(1)
    async with replicas(2, postgres_database, microsoft, tmp_path) as teams:
        answers = []
        for step, line in enumerate(SCRIPT):
            answers.append(await teams.say(teams[step % 2], user, line))
        state = await stored(postgres_database, [user.conversation])
        assert teams.errors() == {}
    assert all(answers) and not erring([s for a in answers for s in a])
    assert "Wat zag of hoorde je?" in "\n".join(answers[0]) and "Waar gebeurde het?" in "\n".join(answers[1])
    reference = REFERENCE.findall("\n".join(answers[-1]))
    assert len(reference) == 1
    [signal] = state.signals
    assert str(signal.reference) == reference[0]
    assert signal.content.wat == SCRIPT[1] and signal.content.waar == SCRIPT[2] and signal.content.wie == SCRIPT[4]
    assert state.drafts[user.conversation] is None          # the report is sent: no draft left


async def test_two_messages_of_one_conversation_on_two_processes_at_once_each_get_their_own_field(
        postgres_database, microsoft, tmp_path):
    """Finding: "in 40 of 40 conversations one answer was lost"."""
    await migrated(postgres_database)
    users = [melder(i) for i in range(CONVERSATIONS)]
    async with replicas(2, postgres_database, microsoft, tmp_path) as teams:
        one, two = teams[0], teams[1]
        await started(teams, users)
        pairs = [(activity(microsoft, user, FIRST.format(i=i)), activity(microsoft, user, SECOND.format(i=i)))
                 for i, user in enumerate(users)]
        statuses = await asyncio.gather(*(asyncio.gather(teams.post(one, a), teams.post(two, b)) for a, b in pairs))
        assert all(status in (200, 202) for pair in statuses for status in pair)
        state = await stored(postgres_database, [u.conversation for u in users])
        assert teams.errors() == {}
    lost = []
    for i, (user, (first, second)) in enumerate(zip(users, pairs)):
        draft = (state.drafts[user.conversation] or {}).get("draft") or {}
        answers = draft.get("answers", {})
        if {answers.get("wat"), answers.get("waar")} != {FIRST.format(i=i), SECOND.format(i=i)}:
            lost.append(user.slug)
            continue
        assert draft["step"] == "wanneer"
        # In order: the turn that filled `wat` asked for `waar`, the other one for `wanneer`.
        shown = {first["text"]: "\n".join(teams.shown(first["id"])),
                 second["text"]: "\n".join(teams.shown(second["id"]))}
        assert QUESTION["waar"] in shown[answers["wat"]] and QUESTION["wanneer"] in shown[answers["waar"]]
        assert not erring(list(shown.values()))
    assert lost == [], f"{len(lost)} of {CONVERSATIONS} conversations lost an answer"


async def test_the_same_activity_on_both_processes_gets_one_answer_and_moves_the_dialog_one_step(
        postgres_database, microsoft, tmp_path):
    """Finding: one real answer plus "Je laatste bericht kon ik niet opslaan... stuur het nog een keer"."""
    await migrated(postgres_database)
    users = [melder(i) for i in range(12)]
    async with replicas(2, postgres_database, microsoft, tmp_path) as teams:
        await started(teams, users)
        bodies = [activity(microsoft, user, FIRST.format(i=i)) for i, user in enumerate(users)]
        await asyncio.gather(*(asyncio.gather(teams.post(teams[0], b), teams.post(teams[1], b)) for b in bodies))
        state = await stored(postgres_database, [u.conversation for u in users])
        assert teams.errors() == {}
    for i, (user, body) in enumerate(zip(users, bodies)):
        shown = teams.shown(body["id"])
        assert not erring(shown), user.slug
        # Both processes answered, with the same replies (the second one's are the stored ones).
        assert shown and set(Counter(shown).values()) == {2}, (user.slug, shown)
        assert QUESTION["waar"] in "\n".join(shown)
        draft = state.drafts[user.conversation]["draft"]
        assert draft["step"] == "waar" and draft["answers"] == {"wat": FIRST.format(i=i)}, user.slug


async def test_kill_9_of_one_process_mid_traffic_loses_and_doubles_nothing(postgres_database, microsoft, tmp_path):
    """20 employees each make a report; their messages alternate between the processes. When a third of the
    turns is done, one process is killed (kill -9). The load balancer sends what failed there to the other
    process again, as Teams redelivers an activity it got no answer for: the same activity id."""
    await migrated(postgres_database)
    users = [melder(i) for i in range(20)]
    script = [[line if step != 1 else f"Melding {i}: {line}" for step, line in enumerate(SCRIPT)]
              for i in range(len(users))]
    done = itertools.count(1)
    kill_at = len(users) * len(SCRIPT) // 3
    async with replicas(2, postgres_database, microsoft, tmp_path) as teams:
        survivor, victim = teams[0], teams[1]
        redelivered = Counter()
        in_flight = Counter()
        killed = []

        async def kill_while_busy() -> None:
            """Kill the victim at a moment it has requests in flight (two, so that it cannot have answered
            them all already), so that the kill really cuts traffic on a slow or a fast machine alike."""
            async with asyncio.timeout(30):
                while in_flight[victim.name] < 2:
                    await asyncio.sleep(0.002)
            victim.kill()

        async def deliver(step: int, body: dict) -> None:
            target = teams[step % 2]
            for attempt in range(3):
                if not target.alive():
                    target = survivor
                in_flight[target.name] += 1
                try:
                    if await teams.post(target, body) in (200, 202):
                        break
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass                     # the process died under this request: Teams delivers again
                finally:
                    in_flight[target.name] -= 1
                redelivered[target.name] += 1
                target = survivor
            else:
                raise AssertionError("not answered in three deliveries")
            if next(done) == kill_at:
                killed.append(asyncio.create_task(kill_while_busy()))

        async def report(i: int) -> list[dict]:
            bodies = [activity(microsoft, users[i], line) for line in script[i]]
            for step, body in enumerate(bodies):
                await deliver(i + step, body)
            return bodies

        sent = await asyncio.wait_for(asyncio.gather(*(report(i) for i in range(len(users)))), 60)
        await asyncio.gather(*killed)
        state = await stored(postgres_database, [u.conversation for u in users])
        assert not victim.alive() and survivor.alive()
        assert survivor.errors() == []
    given = teams.references()
    in_database = [str(s.reference) for s in state.signals]
    # Every reference given out exists; nothing doubled: one signal per report, no reference twice.
    assert given <= set(in_database), given - set(in_database)
    assert len(in_database) == len(set(in_database)) == len(users)
    assert sorted(s.content.wat for s in state.signals) == sorted(s[1] for s in script)
    # Every employee was told their reference (the reply to `versturen`, from either process).
    for bodies in sent:
        told = REFERENCE.findall("\n".join(teams.shown(bodies[-1]["id"])))
        assert told and set(told) <= given
    assert all(draft is None for draft in state.drafts.values())
    assert redelivered[victim.name] >= 1, "the kill cut no request: it was not mid-traffic"
