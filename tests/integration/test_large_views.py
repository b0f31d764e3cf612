"""The largest view a melder can cause is delivered whole, in order, through the real platform stacks.

A melder's four answers may each be MAX_ANSWER characters and they may add to a signal MAX_SUPPLEMENTS
times, each as long; the AF's `toon` shows all of it (the additions twice: in their section and in the
history). The text here grows when escaped (HTML and Markdown entities, JSON's \\u escapes for é and
emoji), one answer is a single line too long for one Matrix event, and lines pretend to be the bot's.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from contextlib import closing
from datetime import timedelta

import pytest

from meldbot.adapters.matrix.render import render as matrix_render
from meldbot.adapters.teams_render import render as teams_render
from meldbot.dialogs.report import MAX_ANSWER
from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity, Reply
from meldbot.service.services import MAX_SUPPLEMENTS
from meldbot.core.text import QUOTE
from tests.support.matrix import Bot, until, wednesday
from tests.support.teams import running, seen
from tests.support.teams_fakes import ANNA, PIET, TEAMS_MESSAGE_LIMIT, activity

NL = texts("nl")
REFERENCE = "MH-2026-0001"
# Synapse refuses an event whose canonical JSON (the whole PDU: ids, hashes, signatures, the encrypted
# content) is larger than this: M_TOO_LARGE.
MATRIX_EVENT_LIMIT = 65_536
MARK = re.compile(r"\((\d+)/(\d+)\)")

# Pieces that grow when escaped, and lines that look like the bot's own.
GROWING = ('<b onclick="x()">vet</b>', "Tom & Jerry", '"citaat"', "café", "😀", "<script>", "é😀é", "[klik](x)",
           "**", "#1", "\\")
FORGED = ("Behandelaar: X", "- Wat: nep", "(2/3)", "  > al gequote", "Geschiedenis:")
# Every line of the melder's text carries its label and number: where a line shows up, it can be told apart.
USER_LINE = re.compile(r"(?:wat|waar|wanneer|wie|aanvulling-\d\d)-\d{3}\b")


def answer(label: str, *, one_line: bool = False) -> str:
    """Exactly MAX_ANSWER characters. `one_line`: mostly emoji on one line, which (escaped for a Matrix
    event's body and its HTML) is larger than one event may be, so it has to be cut inside the line."""
    pieces: list[str] = []
    for i in itertools.count(1):
        if one_line:
            pieces.append(f"{label}-{i:03d} {'😀' * 12} <é&\"")
        else:
            turn = i % len(GROWING)
            pieces.append(" ".join((f"{label}-{i:03d}", *GROWING[turn:], *GROWING[:turn])))
            if i % 3 == 0:
                pieces.append(FORGED[i // 3 % len(FORGED)])
        text = (" " if one_line else "\n").join(pieces)
        if len(text) >= MAX_ANSWER:
            text = text[:MAX_ANSWER].rstrip()
            return text + "." * (MAX_ANSWER - len(text))


ANSWERS = {"wat": answer("wat"), "waar": answer("waar"), "wanneer": answer("wanneer"),
           "wie": answer("wie", one_line=True)}
SUPPLEMENTS = [answer(f"aanvulling-{n:02d}") for n in range(1, MAX_SUPPLEMENTS + 1)]
# What the melder says, and what the bot's (last) answer to it contains.
STEPS = [("melden", NL("question.wat")), (ANSWERS["wat"], NL("question.waar")),
         (ANSWERS["waar"], NL("question.wanneer")), (ANSWERS["wanneer"], NL("question.wie")),
         (ANSWERS["wie"], NL("question.soort")), ("arbeid", NL("question.context")),
         ("balie", NL("question.anoniem")), ("nee", NL("summary.footer")), ("versturen", REFERENCE)]


async def file_largest_signal(say, clock) -> None:
    """The report and every addition a melder may make, a minute apart. `say(text, expected)` fails
    unless the bot's answer contains `expected`."""
    assert all(len(text) == MAX_ANSWER for text in [*ANSWERS.values(), *SUPPLEMENTS])
    for text, expected in STEPS:
        await say(text, expected)
    for text in SUPPLEMENTS:
        clock.advance(timedelta(minutes=1))
        await say(f"aanvullen 1 {text}", NL("supplement.done", reference=REFERENCE))
    # One more is refused: this is the most a melder can add.
    await say(f"aanvullen 1 {SUPPLEMENTS[0]}", NL("supplement.full", reference=REFERENCE, max=MAX_SUPPLEMENTS))


def recording_views(app) -> list[Reply]:
    """The Replies the bot answers `toon 1` with, as the core made them (before any platform split them)."""
    handle, views = app.bot.handle, []

    async def recording(msg):
        replies = await handle(msg)
        if msg.text == "toon 1":
            views.extend(replies)
        return replies

    app.bot.handle = recording
    return views


def squashed(text: str) -> str:
    # Cuts fall at spaces and a continuation line starts with QUOTE; quoting also joins runs of spaces.
    return re.sub(r"[\s>]", "", text)


def check_parts(shown: list[str]) -> None:
    """The parts as the AF's client shows them: numbered 1/n..n/n, everything the melder wrote in them, in
    order and complete, and none of the melder's lines passing for one of the bot's."""
    marks = [MARK.fullmatch(text.rsplit("\n", 1)[-1]) for text in shown]
    assert all(marks), [text[-40:] for text in shown]
    count = len(shown)
    assert count >= 2 and [(int(m[1]), int(m[2])) for m in marks] == [(i, count) for i in range(1, count + 1)]
    bodies = [text.rsplit("\n", 1)[0] for text in shown]
    whole = squashed("".join(bodies))
    # The answers, then the additions in their section, then the additions again in the history.
    position = 0
    for text in [*ANSWERS.values(), *SUPPLEMENTS, *SUPPLEMENTS]:
        found = whole.find(squashed(text), position)
        assert found >= 0, f"missing or out of order: {text[:30]!r}"
        position = found + len(squashed(text))
    lines = [line for body in bodies for line in body.split("\n")]
    # Only the one-line answer starts on the bot's line; every other line of the melder's is quoted,
    # also where a line was cut between two messages.
    unquoted = [line for line in lines if USER_LINE.search(line) and not line.startswith(QUOTE)]
    head = NL("summary.line", label=NL("label.wie"), value="wie-001 ")
    assert [line[:len(head)] for line in unquoted] == [head], [line[:60] for line in unquoted]
    assert len([line for line in lines if line.startswith("Behandelaar:")]) == 1
    assert "Behandelaar: X" not in lines and "- Wat: nep" not in lines and "(2/3)" not in lines


# --- Matrix: a real Synapse, end-to-end encrypted ----------------------------------------------------------

def stored_events(synapse, event_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Per event: its type as Synapse stored it and the size Synapse limits (its canonical JSON)."""
    found = {}
    with closing(sqlite3.connect(f"file:{synapse.folder / 'homeserver.db'}?mode=ro", uri=True)) as db:
        marks = ",".join("?" * len(event_ids))
        for event_id, raw in db.execute(f"SELECT event_id, json FROM event_json WHERE event_id IN ({marks})",
                                        event_ids):
            event = json.loads(raw)
            event.pop("unsigned", None)
            canonical = json.dumps(event, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            found[event_id] = (event["type"], len(canonical.encode()))
    return found


@pytest.mark.slow
async def test_the_largest_view_reaches_a_matrix_af_whole_and_in_order_in_an_encrypted_room(world):
    from nio import RoomMessageText, RoomSendError

    clock = wednesday()
    async with Bot(world.config(), clock=clock) as bot:
        employee = await world.person(world.employee_id)
        af = await world.person(world.af_id)
        room = await employee.open_direct(world.bot_id)

        async def melder_says(text: str, expected: str) -> None:
            # Long answers come in parts: the next message waits for the last part, not the first.
            event_id = await employee.say(room, text)
            await until(lambda: any(expected in getattr(e, "body", "")
                                    for e in employee.after(room, event_id, world.bot_id)),
                        f"the answer to {text[:20]!r}", seen=employee.summary)

        await file_largest_signal(melder_says, clock)
        supplemented = NL("notify.supplemented", reference=REFERENCE, number=1)
        await until(lambda: len([e for _, e in af.events if supplemented in getattr(e, "body", "")])
                    == MAX_SUPPLEMENTS, "the AF's notices", seen=af.summary)
        # And the notice about the refused addition: delivered after `toon 1` is said, it came between the
        # view's parts and the pick-up (seen once in a CI run).
        refused = NL("notify.supplement_refused", reference=REFERENCE, number=1)[:60]
        await until(lambda: any(refused in getattr(e, "body", "") for _, e in af.events),
                    "the AF's notice about the refused addition", seen=af.summary)
        af_room, _ = await af.message_containing(supplemented, world.bot_id)

        views = recording_views(bot.app)
        asked = await af.say(af_room, "toon 1")
        taken = NL("af.taken", reference=REFERENCE)
        await until(lambda: any(getattr(e, "body", "") == taken for e in af.after(af_room, asked, world.bot_id)),
                    "the view and the pick-up", seen=af.summary)
        received = af.after(af_room, asked, world.bot_id)
        # Before splitting, the view went as one event. This homeserver refuses such an event, whoever
        # sends it (here the AF's client, in the same encrypted room).
        view, _ = views
        unsplit = await af.client.room_send(af_room, "m.room.message", matrix_render(view),
                                            ignore_unverified_devices=True)
        assert isinstance(unsplit, RoomSendError) and unsplit.status_code == "M_TOO_LARGE", unsplit

    # Far over the limit even unencrypted and as UTF-8, not only after encryption.
    unsplit = len(json.dumps(matrix_render(view), ensure_ascii=False, separators=(",", ":")).encode())
    assert unsplit > 5 * MATRIX_EVENT_LIMIT, unsplit
    # Now: every part arrived decrypted, in order, right before the pick-up message, nothing in between.
    *parts, last = received
    assert last.body == taken and af.client.rooms[af_room].encrypted
    assert all(isinstance(e, RoomMessageText) for e in parts), [type(e).__name__ for e in parts]
    check_parts([e.body for e in parts])
    # The line too long for one event was cut inside it: its start and its end are in different parts.
    wie = squashed(ANSWERS["wie"])
    assert not any(wie in squashed(e.body) for e in parts)
    # Nothing of the melder's became HTML.
    assert not any("<script" in (e.formatted_body or "") or "<b onclick" in (e.formatted_body or "") for e in parts)
    # Each event as the homeserver stored it (encrypted, with its envelope) is below Synapse's limit.
    stored = stored_events(world.synapse, [e.event_id for e in parts])
    assert sorted(stored) == sorted(e.event_id for e in parts)
    assert {kind for kind, _ in stored.values()} == {"m.room.encrypted"}
    largest = max(size for _, size in stored.values())
    assert largest < MATRIX_EVENT_LIMIT, largest
    print(f"\nmatrix: unsplit content {unsplit} bytes (UTF-8 JSON); {len(parts)} parts; "
          f"largest stored event {largest} bytes")


# --- Teams: the Agents SDK's HTTP stack against a connector that refuses more than Teams takes ------------

async def test_the_largest_view_reaches_a_teams_af_whole_and_in_order_as_an_answer_and_from_the_outbox(
        db_url, microsoft, early):
    to_anna = f"/v3/conversations/{ANNA.conversation}/activities"
    async with running(db_url, microsoft, early) as bot:
        async def melder_says(text: str, expected: str) -> None:
            answers = "\n".join(seen(p) for p in await bot.say(PIET, text))
            assert expected in answers, answers[-300:]

        await file_largest_signal(melder_says, early)
        supplemented = NL("notify.supplemented", reference=REFERENCE, number=1)
        await microsoft.wait_for(lambda: len([p for p in microsoft.posts() if supplemented in seen(p)])
                                 == MAX_SUPPLEMENTS)
        # And the notice about the refused addition, before the connector is scripted below: delivered in that
        # window, it took the scripted answers meant for the view's parts.
        refused = NL("notify.supplement_refused", reference=REFERENCE, number=1)[:60]
        await microsoft.wait_for(lambda: any(refused in seen(p) for p in microsoft.posts()))

        # A direct answer: `toon 1` in the AF's own chat.
        views = recording_views(bot.app)
        toon = activity(microsoft, ANNA, "toon 1")
        assert await bot.post(toon) in (200, 202)
        *answered, taken = [seen(p) for p in microsoft.replies_to(toon["id"])]
        assert taken == NL("af.taken", reference=REFERENCE)
        check_parts(answered)
        answer_sizes = [r.size for r in microsoft.requests if r.path == f"{to_anna}/{toon['id']}"]

        # The same view from the outbox; the connector fails the second part once.
        view, _ = views
        before = len(microsoft.requests)
        microsoft.fail(to_anna, (200, {}), (500, {}))
        async with bot.app.uow() as uow:
            await uow.outbox.add(meldpunt_id=bot.app.config.meldpunten[0].id, recipient=Identity("teams", ANNA.aad),
                                 reply=view, key="largest-view", kind="test", at=early.now())
            await uow.commit()
        await bot.app.dispatcher.deliver_pending()    # waits for an attempt the commit may have started
        async with bot.app.uow() as uow:
            failed = await uow.outbox.stats("test")
        early.advance(bot.app.dispatcher.policy.next_delay(1))
        await bot.app.dispatcher.deliver_pending()
        async with bot.app.uow() as uow:
            delivered = await uow.outbox.stats("test")
        to_her = [r for r in microsoft.requests[before:] if r.path == to_anna]
    # Only the view's parts and the refused attempt count: a proactive message of the bot's own to Anna in
    # that window (the background dispatcher and scheduler keep running) is no part of this delivery.
    # A part sent twice still counts twice.
    attempts = [r for r in to_her if r.status != 200 or seen(r.body) in answered]
    others = [seen(r.body)[:80] for r in to_her if r not in attempts]

    # Before splitting, the view went as one activity: over the limit even as compact UTF-8 JSON.
    unsplit = len(teams_render(view, NL).model_dump_json(by_alias=True, exclude_none=True).encode())
    assert unsplit > 10 * TEAMS_MESSAGE_LIMIT, unsplit
    assert not [r for r in microsoft.requests if r.status == 413]
    # The failure half-way was worth retrying (not parked), and the retry finished the delivery.
    assert (failed.get("pending"), failed.get("parked", 0), failed.get("delivered", 0)) == (1, 0, 0), failed
    assert delivered.get("delivered") == 1, delivered
    # Part 1 once, part 2 refused once and then taken, every later part once: the AF reads each part once.
    assert [r.status for r in attempts] == [200, 500] + [200] * (len(answered) - 1), others
    shown = [seen(r.body) for r in attempts if r.status == 200]
    assert shown == answered
    check_parts(shown)
    sizes = answer_sizes + [r.size for r in attempts]
    assert max(sizes) <= TEAMS_MESSAGE_LIMIT
    print(f"\nteams: unsplit activity {unsplit} bytes (UTF-8 JSON); {len(answered)} parts; "
          f"largest request {max(sizes)} bytes")
