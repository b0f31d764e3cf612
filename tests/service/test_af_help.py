"""The AF's help in chat and the "Bedoel je ...?" for a typo in an AF command (issue 18, item 4)."""

from __future__ import annotations

import pytest

from meldbot.core.domain import EventKind, Status


async def test_help_for_an_af_lists_the_af_commands_and_says_melder_commands_work_too(chat):
    out = await chat.say("af", "help")
    for word in ("lijst", "toon", "oppakken", "notitie", "kenmerk", "overleggen", "doorzetten", "feedback",
                 "vragen", "terugkoppelen", "sluiten", "heropenen", "samenvoegen", "overdragen", "rapport"):
        assert word in out, word
    assert "help doorzetten" in out
    assert "melden" in out and "mijn meldingen" in out


async def test_help_for_a_melder_is_still_the_melder_help(chat):
    out = await chat.say("piet", "help")
    assert "melden" in out and "mijn meldingen" in out
    assert "doorzetten" not in out and "oppakken" not in out


async def test_an_af_gets_help_in_english_with_the_english_words(chat):
    await chat.say("af", "taal en")
    out = await chat.say("af", "help")
    assert "queue" in out and "forward" in out and "ask" in out and "help forward" in out


@pytest.mark.parametrize("asked", ["help doorzetten", "help forward", "/help Doorzetten", "help doorzeten"])
async def test_help_with_a_command_explains_it_with_an_example_in_dutch_and_english_words(chat, asked):
    out = await chat.say("af", asked)
    assert "partner" in out
    assert "Bijvoorbeeld: doorzetten 7 politie" in out


async def test_help_vragen_explains_the_follow_up_question(chat):
    out = await chat.say("af", "help vragen")
    assert "Bijvoorbeeld: vragen 7" in out and "anoniem" in out


async def test_help_with_an_unknown_word_says_so_and_lists_the_commands(chat):
    out = await chat.say("af", "help fietsen")
    assert "ken ik niet" in out and "doorzetten" in out


async def test_help_inside_a_report_still_helps_with_the_current_question(chat):
    await chat.say("af", "melden")
    out = await chat.say("af", "help")
    assert "Vertel wat je zag" in out and "doorzetten" not in out


async def test_a_typo_in_a_read_only_command_gets_a_suggestion_with_a_button(chat):
    await chat.report("piet")
    [reply] = await chat.replies("af", "lijts")
    assert "Bedoel je" in reply.text and "lijst" in reply.text
    assert [a.command for a in reply.actions] == ["lijst"]
    [reply] = await chat.replies("af", "toom 1")
    assert "Bedoel je" in reply.text and "toon 1" in reply.text
    assert [a.command for a in reply.actions] == ["toon 1"]
    assert (await chat.signal(1)).handler is None     # nothing happened yet


async def test_a_typo_in_a_command_that_changes_data_is_never_run_and_gets_no_button(chat):
    await chat.report("piet")
    [reply] = await chat.replies("af", "doorzeten 1 politie")
    assert "Bedoel je" in reply.text and "doorzetten 1 politie" in reply.text
    assert reply.actions == ()
    signal = await chat.signal(1)
    assert signal.status is Status.RECEIVED and signal.partners == ()
    assert [e.kind for e in signal.events] == [EventKind.SUBMITTED]


async def test_a_typo_without_arguments_gets_the_command_and_how_to_type_it(chat):
    out = await chat.say("af", "doorzeten")
    assert "Bedoel je" in out and "doorzetten" in out and "Bijvoorbeeld: doorzetten 7 politie" in out


@pytest.mark.parametrize("text", ["hallo", "goedemorgen, hoe werkt dit?", "toen ik daar was zag ik veel mensen",
                                  "xyz"])
async def test_something_far_from_any_command_gets_no_suggestion(chat, text):
    out = await chat.say("af", text)
    assert "Bedoel je" not in out
    assert "Typ melden" in out   # the welcome, as before


async def test_a_melder_with_a_typo_of_an_af_command_learns_no_af_commands(chat):
    out = await chat.say("piet", "lijts")
    assert "Bedoel je" not in out and "lijst" not in out


async def test_a_three_letter_word_gets_no_suggestion_and_a_bare_toon_no_button(chat):
    await chat.report("piet")
    assert "Bedoel je" not in await chat.say("af", "dag")
    [reply] = await chat.replies("af", "toen")
    assert "Bedoel je" in reply.text and "Bijvoorbeeld: toon 7" in reply.text and reply.actions == ()
    assert (await chat.signal(1)).handler is None
