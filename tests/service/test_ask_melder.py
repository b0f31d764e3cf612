"""`vragen <ref> <tekst>` (`ask`): the AF asks the melder a follow-up question through the bot (issue 18, item 5).

GlobaLeaks and SecureDrop let the handler ask the reporter, an anonymous one too; so does meldbot now."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meldbot.core.domain import EventKind, Status
from meldbot.core.messaging import Identity, IncomingMessage
from tests.support.chat import ANONYMOUS, NAMED

QUESTION = "Welke kleur had het busje?"


def kinds(signal) -> list[EventKind]:
    return [e.kind for e in signal.events]


async def test_the_af_asks_and_the_next_free_message_of_the_melder_is_the_answer(chat):
    await chat.report("piet")
    out = await chat.say("af", f"vragen 1 {QUESTION}")
    assert "MH-2026-0001" in out and "vraag" in out.lower()
    [to_melder] = chat.inbox("piet")
    assert "MH-2026-0001" in to_melder and QUESTION in to_melder and "aanvullen 1" in to_melder

    confirmed = await chat.say("piet", "Het busje was wit, met een deuk.")
    assert "antwoord" in confirmed and "MH-2026-0001" in confirmed
    signal = await chat.signal(1)
    assert kinds(signal)[-2:] == [EventKind.QUESTION_ASKED, EventKind.QUESTION_ANSWERED]
    assert signal.events[-2].data["text"] == QUESTION and signal.events[-2].actor == "anna"
    assert signal.events[-1].data["text"] == "Het busje was wit, met een deuk." and signal.events[-1].actor == "melder"

    # The AF hears of it without the content, and reads it with toon.
    told = [m for m in chat.inbox("af") if "beantwoord" in m]
    assert len(told) == 1 and "MH-2026-0001" in told[0] and "wit" not in told[0]
    view = await chat.say("af", "toon 1")
    assert QUESTION in view and "Het busje was wit, met een deuk." in view

    # The audit trail has both, without the words.
    audit = await chat.audit(1)
    actions = [e.action for e in audit]
    assert "gevraagd" in actions and "beantwoord" in actions
    assert not any("busje" in (e.detail or "") or "wit" in (e.detail or "") for e in audit)

    # After the answer, normal behaviour resumes: a free message gets the welcome again.
    assert "Typ melden" in await chat.say("piet", "hallo")
    assert kinds(await chat.signal(1)).count(EventKind.QUESTION_ANSWERED) == 1


async def test_an_anonymous_melder_is_asked_and_answers_and_stays_anonymous(chat):
    secret = "geheime.collega"
    await chat.report(secret, ANONYMOUS, name="Geheime Collega")
    out = await chat.say("af", f"vragen 1 {QUESTION}")
    assert "Melder " in out and secret not in out and "Geheime" not in out
    assert any(QUESTION in m for m in chat.inbox(secret))
    await chat.say(secret, "Rood.")
    signal = await chat.signal(1)
    assert kinds(signal)[-1] is EventKind.QUESTION_ANSWERED and signal.events[-1].data["text"] == "Rood."
    seen = "\n".join([*chat.inbox("af"), await chat.say("af", "toon 1"),
                      *[f"{e.actor} {e.action} {e.detail}" for e in await chat.audit(1)]])
    assert "beantwoord" in seen and secret not in seen and "Geheime" not in seen


async def test_aanvullen_with_the_reference_also_answers(chat):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    out = await chat.say("piet", "aanvullen 1 Het was wit.")
    assert "antwoord" in out
    signal = await chat.signal(1)
    assert kinds(signal)[-1] is EventKind.QUESTION_ANSWERED and EventKind.SUPPLEMENTED not in kinds(signal)
    assert any("beantwoord" in m for m in chat.inbox("af"))
    # Answered: a later free message is no answer, a later aanvullen an ordinary supplement.
    assert "Typ melden" in await chat.say("piet", "nog iets")
    await chat.say("piet", "aanvullen 1 Er stond ook een tweede busje.")
    assert kinds(await chat.signal(1))[-1] is EventKind.SUPPLEMENTED


async def test_the_answer_goes_to_the_signal_the_question_was_about(chat):
    await chat.report("piet")
    await chat.report("piet", ANONYMOUS)
    await chat.say("af", "vragen 2 Hoeveel bedden stonden er?")
    assert "MH-2026-0002" in await chat.say("piet", "Twaalf.")
    assert EventKind.QUESTION_ANSWERED not in kinds(await chat.signal(1))
    assert kinds(await chat.signal(2))[-1] is EventKind.QUESTION_ANSWERED


async def test_a_report_under_way_keeps_its_answers_and_the_question_waits(chat):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    # The melder starts a new report: their answers to its questions are not swallowed by the AF's question.
    await chat.say("piet", "melden")
    out = await chat.say("piet", "Weer een busje met mensen erin")
    assert "Vraag 2 van 7" in out
    assert EventKind.QUESTION_ANSWERED not in kinds(await chat.signal(1))
    await chat.say("piet", "stop")
    # With the report stopped, the next free message answers the question.
    assert "MH-2026-0001" in await chat.say("piet", "Wit.")
    assert kinds(await chat.signal(1))[-1] is EventKind.QUESTION_ANSWERED


async def test_a_message_that_starts_with_a_command_word_is_still_the_answer(chat):
    await chat.report("piet")
    await chat.say("af", "vragen 1 Hoe kwam je met hem in contact?")
    out = await chat.say("piet", "Contact was via zijn werkgever.")
    assert "antwoord" in out
    assert (await chat.signal(1)).events[-1].data["text"] == "Contact was via zijn werkgever."


async def test_commands_still_work_while_a_question_is_open(chat):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    assert "MH-2026-0001" in await chat.say("piet", "mijn meldingen")
    assert "Dit kan ik" in await chat.say("piet", "help")
    assert EventKind.QUESTION_ANSWERED not in kinds(await chat.signal(1))


async def test_two_open_questions_the_melder_is_asked_which_and_nothing_is_guessed(chat):
    await chat.report("piet")
    await chat.report("piet", NAMED)
    await chat.say("af", "vragen 1 Welke kleur?")
    await chat.say("af", "vragen 2 Hoe laat?")
    out = await chat.say("piet", "Wit.")
    assert "MH-2026-0001" in out and "MH-2026-0002" in out and "aanvullen" in out
    assert EventKind.QUESTION_ANSWERED not in kinds(await chat.signal(1)) + kinds(await chat.signal(2))
    await chat.say("piet", "aanvullen 2 Om acht uur.")
    assert kinds(await chat.signal(2))[-1] is EventKind.QUESTION_ANSWERED
    # One question left open: the next free message answers it.
    await chat.say("piet", "Wit.")
    assert kinds(await chat.signal(1))[-1] is EventKind.QUESTION_ANSWERED


async def test_a_closed_signal_cannot_get_a_question(chat):
    await chat.report("piet")
    await chat.say("af", "sluiten 1 afgerond")
    out = await chat.say("af", f"vragen 1 {QUESTION}")
    assert "afgesloten" in out and "heropenen" in out
    assert chat.inbox("piet") == []
    assert EventKind.QUESTION_ASKED not in kinds(await chat.signal(1))


async def test_an_answer_after_closing_is_still_kept(chat):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    await chat.say("af", "sluiten 1 onvoldoende-info")
    await chat.say("piet", "Wit.")
    signal = await chat.signal(1)
    assert signal.status is Status.CLOSED and kinds(signal)[-1] is EventKind.QUESTION_ANSWERED


async def test_vragen_needs_a_reference_and_a_question(chat):
    await chat.report("piet")
    assert "Bijvoorbeeld: vragen 7" in await chat.say("af", "vragen 1")
    assert "Bijvoorbeeld: vragen 7" in await chat.say("af", "vragen")
    assert "Bijvoorbeeld: vragen 7" in await chat.say("af", "ask 1")     # the English word is known too


async def test_anyone_else_asking_is_refused(chat):
    await chat.report("piet")
    assert "Dit is een commando voor de AF" in await chat.say("klaas", f"vragen 1 {QUESTION}")
    assert chat.inbox("piet") == []


async def test_the_asking_af_picks_up_a_signal_nobody_handles(chat):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    assert (await chat.signal(1)).handler == "anna"


# --- review fixes: what counts as the answer ------------------------------------------------------

async def test_an_answer_that_starts_with_an_af_command_word_is_the_answer_not_a_refusal(chat):
    await chat.report("piet")
    await chat.say("af", "vragen 1 Wie was er nog meer?")
    out = await chat.say("piet", "Toon de Vries, de eigenaar.")
    assert "Dit is een commando voor de AF" not in out and "antwoord" in out and "MH-2026-0001" in out
    await chat.say("af", "vragen 1 Heb je al iets gehoord?")
    out = await chat.say("piet", "Feedback heb ik niet.")
    assert "Dit is een commando voor de AF" not in out and "antwoord" in out
    answers = [e.data["text"] for e in (await chat.signal(1)).events if e.kind is EventKind.QUESTION_ANSWERED]
    assert answers == ["Toon de Vries, de eigenaar.", "Feedback heb ik niet."]
    assert not any(e.action.startswith("geweigerd") for e in await chat.audit(1))
    # Without an open question the same words are still refused.
    assert "Dit is een commando voor de AF" in await chat.say("piet", "Toon de Vries, de eigenaar.")


@pytest.mark.parametrize("typo, meant", [("mijn meldngen", "mijn meldingen"), ("hlep", "help"),
                                         ("Contcat", "contact"), ("my reprots", "my reports")])
async def test_a_typo_of_a_melder_command_is_no_answer_and_the_question_waits(chat, typo, meant):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    [reply] = await chat.replies("piet", typo)
    assert "Bedoel je" in reply.text or "Did you mean" in reply.text
    assert meant in reply.text and "aanvullen 1" in reply.text
    assert [a.command for a in reply.actions] == [meant]
    assert EventKind.QUESTION_ANSWERED not in kinds(await chat.signal(1))
    assert "MH-2026-0001" in await chat.say("piet", "Wit.")
    assert (await chat.signal(1)).events[-1].data["text"] == "Wit."


@pytest.mark.parametrize("answer", ["ja", "nee", "Nee.", "weet ik niet", "geen idee", "wit", "taxi", "zaal",
                                    "hulp nodig"])
async def test_everyday_short_replies_are_answers(chat, answer):
    await chat.report("piet")
    await chat.say("af", "vragen 1 Was er nog iemand bij?")
    out = await chat.say("piet", answer)
    assert "Bedoel je" not in out and "antwoord" in out
    assert (await chat.signal(1)).events[-1].data["text"] == answer


@pytest.mark.parametrize("by_job", [False, True])
async def test_after_an_expired_draft_the_next_message_is_no_answer_and_the_question_waits(chat, clock, by_job):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    await chat.say("piet", "melden")
    await chat.say("piet", "Een vaag gevoel bij de kapsalon")
    clock.advance(timedelta(hours=24, minutes=1))
    if by_job:
        assert await chat.app.expire_drafts() == 1
    out = await chat.say("piet", "Kerkstraat 3")
    assert "gewist" in out and "antwoord" not in out
    assert EventKind.QUESTION_ANSWERED not in kinds(await chat.signal(1))
    # The question still waits: the next free message answers it.
    assert "MH-2026-0001" in await chat.say("piet", "Wit.")
    assert (await chat.signal(1)).events[-1].data["text"] == "Wit."


async def test_an_answer_with_a_picture_keeps_the_words_and_says_the_picture_is_not_kept(chat):
    await chat.report("piet")
    await chat.say("af", f"vragen 1 {QUESTION}")
    replies = await chat.app.bot.handle(IncomingMessage(sender=Identity("console", "piet"), conversation_id="piet",
                                                        text="Wit, zie de foto.", sender_name="Piet",
                                                        has_attachment=True))
    out = "\n".join(r.text for r in replies)
    assert "MH-2026-0001" in out and "foto of bestand heb ik niet bewaard" in out
    assert (await chat.signal(1)).events[-1].data["text"] == "Wit, zie de foto."


async def test_the_melder_of_a_merged_duplicate_cannot_be_asked_its_signal_stays_closed(chat):
    await chat.report("piet")
    await chat.report("klaas", ANONYMOUS)
    await chat.say("af", "samenvoegen 1 2")
    # The AF is sent to the kept signal, not told to reopen what cannot be reopened.
    merged = "MH-2026-0002 is samengevoegd met MH-2026-0001. Werk verder in MH-2026-0001."
    assert merged in await chat.say("af", f"vragen 2 {QUESTION}")
    assert merged in await chat.say("af", "heropenen 2")
    assert (await chat.signal(2)).status is Status.CLOSED
    assert merged in await chat.say("af", f"vragen 2 {QUESTION}")
    assert not any(QUESTION in m for m in chat.inbox("klaas"))
    # `vragen` on the signal that was kept reaches its own melder only.
    await chat.say("af", f"vragen 1 {QUESTION}")
    assert any(QUESTION in m for m in chat.inbox("piet")) and not any(QUESTION in m for m in chat.inbox("klaas"))
