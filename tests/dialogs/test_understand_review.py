"""What a fresh-eyes review of issue 19's understanding layer found, each as the melder would meet it: a wish to
stay anonymous read as `nee`, a question at the summary that sent the report, "Spoed!" stored as an answer, a
negation that kept its meaning, "12 uur 's nachts" read as noon, Dutch command words in English replies."""

from __future__ import annotations

import pytest

from meldbot.core.i18n import texts
from meldbot.dialogs.report import CHOICES, Draft, step
from tests.support.dialog import ANSWERS, at_summary, ctx, run

TO_ANONIEM = ("melden", "Drie stapelbedden", "Molenweg 8", "gisteren", "onbekend", "2", "toezicht")


def anonymity(text: str, language: str = "nl") -> str | None:
    result = run(*TO_ANONIEM, text, language=language)
    return result.draft.answers.get("anoniem")


# --- 1. a melder who wants to stay anonymous is never read as `nee` ------------------------------------------------

WANTS_ANONYMITY_OR_UNCLEAR = [
    "liever niet, anoniem", "liever niet noemen", "liever niet te noemen", "hoeft niet te noemen",
    "nee hoor, liever niet noemen", "nee dank je, liever niet noemen", "nee want ik wil anoniem blijven",
    "nee want anoniem", "hoeft niet want ik wil anoniem", "nee want mijn naam mag niet bij",
    "nee want ik wil niet dat ze mijn naam weten", "liever niet want dan weten ze wie ik ben", "liever niet",
    "liever niet voor de af", "geen probleem", "rather not", "I'd rather not be named", "no, keep me anonymous",
    "nee, want ik woon in de buurt", "no, I want to stay anonymous", "liever niet, dank je", "nee?",
]


@pytest.mark.parametrize("text", WANTS_ANONYMITY_OR_UNCLEAR)
def test_a_melder_who_may_want_to_stay_anonymous_is_never_read_as_nee(text):
    assert anonymity(text) != "nee"


@pytest.mark.parametrize("text", ["liever niet, anoniem", "liever niet noemen", "liever niet te noemen",
                                  "hoeft niet te noemen", "I'd rather not be named", "keep me anonymous",
                                  "de AF mag mijn naam niet zien", "mijn naam mag niet", "Liever niet. Anoniem."])
def test_an_unambiguous_wish_to_stay_anonymous_is_ja(text):
    assert anonymity(text) == "ja"


@pytest.mark.parametrize("text", ["ja want mijn naam mag erbij", "ja want het maakt niet uit", "ja, want ik wil niet anoniem"])
def test_a_yes_with_a_reason_that_contradicts_it_is_no_answer(text):
    assert anonymity(text) is None


@pytest.mark.parametrize("text", ["nee", "1", "nee hoor", "niet anoniem", "mijn naam mag erbij",
                                  "ik hoef niet anoniem te blijven", "nee, niet nodig"])
def test_a_plain_no_is_still_nee(text):
    assert anonymity(text) == "nee"


def test_liever_niet_is_asked_again_in_one_short_line_with_both_choices():
    [reply] = run(*TO_ANONIEM, "liever niet").replies
    assert reply.text == "Ik weet niet zeker wat je bedoelt. Wil je anoniem blijven? Typ ja of nee."
    assert [c.word for c in reply.choices] == ["nee", "ja"]
    [english] = run(*TO_ANONIEM, "rather not", language="en").replies
    assert "Type yes or no." in english.text and [c.word for c in english.choices] == ["no", "yes"]


def test_a_question_at_the_anonymity_question_is_explained_not_taken():
    result = run(*TO_ANONIEM, "anoniem?")
    assert "anoniem" not in result.draft.answers
    assert result.replies[0].text == texts("nl")("help.question.anoniem")


# --- 2. a question at the summary sends nothing --------------------------------------------------------------------

@pytest.mark.parametrize("text", ["klopt dat?", "is het goed?", "is het goed zo?", "goed zo?", "ok?", "ja?", "stuur?",
                                  "go?", "versturen?", "send?", "Versturen?"])
def test_a_question_at_the_summary_does_not_send(text):
    result = step(at_summary(), text, ctx())
    assert result.submit is None and result.draft.step == "summary"


@pytest.mark.parametrize("text", ["ja, dank je", "versturen.", "Versturen!", "ja klopt."])
def test_a_yes_with_thanks_or_a_full_stop_still_sends(text):
    """The contract: an everyday yes at "Klopt dit?" sends. Thanks beside it change nothing; a "?" does."""
    assert step(at_summary(), text, ctx()).submit is not None


def test_a_question_mark_after_an_offer_is_no_yes():
    offered = step(at_summary(), "versturne", ctx())
    assert offered.draft.offer == "versturen"
    assert step(offered.draft, "ja?", ctx()).submit is None


# --- 3. whole-message commands ignore trailing punctuation ---------------------------------------------------------

def test_spoed_with_an_exclamation_mark_inside_the_dialog_is_urgent_not_the_answer():
    result = run("melden", "Spoed!")
    assert result.draft.urgent and "wat" not in result.draft.answers
    assert "112" in result.replies[0].text


@pytest.mark.parametrize("text", ["stop.", "Stop!", " annuleren. "])
def test_stop_with_a_full_stop_cancels(text):
    result = run("melden", "Drie stapelbedden", text)
    assert result.erased and not result.draft.active


def test_help_with_a_question_mark_is_help_and_the_question_comes_again():
    result = run("melden", "help?")
    assert "wat" not in result.draft.answers and result.draft.step == "wat"
    assert result.replies[0].text == texts("nl")("help.question.wat")


def test_stop_with_a_question_mark_erases_nothing_but_offers_it():
    result = run("melden", "Drie stapelbedden", "stop?")
    assert not result.erased and result.draft.step == "waar" and result.draft.offer == "stop"
    assert run("melden", "Drie stapelbedden", "stop?", "ja").erased


@pytest.mark.parametrize("text,urgent", [("Spoed!", True), ("melden.", False), ("Melden!", False)])
def test_outside_the_dialog_a_command_with_punctuation_is_that_command(text, urgent):
    result = run(text)
    assert result.draft.step == "wat" and result.draft.urgent is urgent


# --- 5. negations and a yes with more ------------------------------------------------------------------------------

@pytest.mark.parametrize("q,text", [("soort", "zonder drugs"), ("context", "zonder controle"), ("soort", "arbeid nee"),
                                    ("soort", "without drugs"), ("soort", "arbeid, nee"), ("context", "balie niet")])
def test_a_negation_takes_the_reading_away(q, text):
    result = step(Draft(step=q), text, ctx())
    assert q not in result.draft.answers


def test_a_yes_with_another_form_after_bedoel_je_is_asked_again():
    offered = run("melden", *list(ANSWERS.values())[:4], "arbied")
    assert offered.draft.offer == "arbeid"
    result = step(offered.draft, "ja, maar ook seksueel", ctx())
    assert "soort" not in result.draft.answers and result.draft.offer == "arbeid"
    assert result.replies[0].text.startswith("Bedoel je arbeid")


# --- 6. midnight ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["12 uur 's nachts", "gisteren 12 uur 's nachts", "gisternacht om 12 uur",
                                  "gisteren om 12 uur 's avonds"])
def test_twelve_at_night_is_midnight_after_yesterday_and_the_summary_says_so(text):
    """NOW is Wednesday 18 November 10:30: "gisteren 12 uur 's nachts" is the night between Tuesday and Wednesday,
    00:00 on Wednesday, never noon; the summary shows the reading so the melder can correct it."""
    result = run("melden", "Drie stapelbedden", "Molenweg 8", text, "onbekend", "2", "toezicht", "nee")
    assert result.draft.when_iso == "2026-11-18T00:00:00+01:00" and result.draft.when_assumed
    assert "Ik lees: woensdag 18 november om 00.00 uur" in result.replies[-1].text


def test_twelve_in_the_afternoon_stays_noon():
    result = run("melden", "x", "y", "gisteren om 12 uur 's middags")
    assert result.draft.when_iso == "2026-11-17T12:00:00+01:00"


# --- 7. English replies show English words, and those words are accepted -------------------------------------------

def test_english_suggestions_show_the_english_word_the_bot_accepts():
    en = texts("en")
    soort = run("report", "x", "y", "yesterday", "unknown", "arbied", language="en").replies[0]
    assert soort.text.startswith("Did you mean labour (labour exploitation)?")
    assert "arbeid" not in soort.text and "arbeid" not in soort.actions[0].label
    summary = step(at_summary(), "versturne", ctx("en")).replies[0]
    assert summary.text.startswith("Did you mean send?") and "versturen" not in summary.text
    anon = run(*TO_ANONIEM, "anonim", language="en").replies[0]
    assert "Then type yes." in anon.text
    wrong = run(*TO_ANONIEM[:5], "zeven", language="en").replies[0]
    assert wrong.text == en("error.choice", options="1 sexual, 2 labour, 3 criminal, 4 organ, 5 unknown")


@pytest.mark.parametrize("q", list(CHOICES))
def test_every_english_choice_word_shown_is_accepted_typed(q):
    question = step(Draft(step=q), "help", ctx("en")).replies[-1]
    for choice in question.choices:
        typed = step(Draft(step=q), choice.word, ctx("en")).draft.answers.get(q)
        assert typed == CHOICES[q][choice.number - 1], choice.word


def test_the_form_unknown_reads_as_form_in_english():
    assert texts("en")("form.onbekend") == "form not yet known"
