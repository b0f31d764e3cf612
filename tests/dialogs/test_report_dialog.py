"""The report dialog as a pure function: every transition and every error path."""

from __future__ import annotations

import pytest

from meldbot.dialogs.report import (
    CHOICES, MAX_ANSWER, QUESTIONS, Draft, Step, step,
)
from tests.support.dialog import ANSWERS, at_summary, ctx, run


def text_of(result: Step) -> str:
    return "\n".join(r.text for r in result.replies)


def test_any_first_message_gets_the_welcome_naming_melden_112_and_avim():
    result = run("hoi")
    assert not result.draft.active
    out = text_of(result)
    assert "melden" in out and "112" in out and "088-9630320" in out


def test_melden_asks_the_first_question():
    result = run("melden")
    assert result.draft.step == "wat"
    assert "Wat zag of hoorde je?" in text_of(result)


def test_the_questions_come_in_the_contract_order():
    draft = run("melden").draft
    seen = [draft.step]
    for q in QUESTIONS:
        draft = step(draft, ANSWERS[q], ctx()).draft
        seen.append(draft.step)
    assert seen == list(QUESTIONS) + ["summary"]


@pytest.mark.parametrize("q", ["soort", "context", "anoniem"])
def test_choices_are_offered_with_number_and_word(q):
    draft = Draft(step=q)
    result = step(draft, "help", ctx())
    reply = result.replies[-1]
    assert [c.word for c in reply.choices] == list(CHOICES[q])
    assert [c.number for c in reply.choices] == list(range(1, len(CHOICES[q]) + 1))


@pytest.mark.parametrize("q, typed, stored", [
    ("soort", "1", "seksueel"), ("soort", "Arbeid", "arbeid"), ("soort", " 3. ", "crimineel"),
    ("soort", "orgaan", "orgaan"), ("soort", "5", "onbekend"), ("soort", "labour", "arbeid"),
    ("context", "1", "balie"), ("context", "HUISBEZOEK", "huisbezoek"), ("context", "3", "toezicht"),
    ("context", "vergunning", "vergunning"), ("context", "5", "anders"),
    ("anoniem", "1", "nee"), ("anoniem", "ja", "ja"), ("anoniem", "2", "ja"), ("anoniem", "yes", "ja"),
])
def test_a_choice_is_answered_by_number_or_word(q, typed, stored):
    result = step(Draft(step=q), typed, ctx())
    assert result.draft.answers[q] == stored


@pytest.mark.parametrize("q, typed", [("soort", "6"), ("soort", "0"), ("context", "kantoor")])
def test_an_unknown_choice_is_refused_and_the_question_asked_again(q, typed):
    result = step(Draft(step=q), typed, ctx())
    assert result.draft.step == q and q not in result.draft.answers
    assert "Dat antwoord ken ik niet" in result.replies[0].text
    assert result.replies[-1].choices


@pytest.mark.parametrize("typed", ["misschien", "3", "liever niet"])
def test_an_unknown_answer_to_the_anonymity_question_is_asked_again_in_one_line_with_both_choices(typed):
    """Never a guess there: one short line that says what to type, with the two choices."""
    result = step(Draft(step="anoniem"), typed, ctx())
    assert result.draft.step == "anoniem" and "anoniem" not in result.draft.answers
    [reply] = result.replies
    assert "Wil je anoniem blijven? Typ ja of nee." in reply.text and len(reply.choices) == 2


@pytest.mark.parametrize("typed", ["", "   ", "\x00\x07", "\n\t"])
def test_an_empty_answer_is_refused(typed):
    result = step(Draft(step="wat"), typed, ctx())
    assert result.draft.step == "wat" and "wat" not in result.draft.answers
    assert "leeg" in result.replies[0].text


def test_an_answer_over_4000_characters_is_refused_and_one_of_4000_is_taken():
    long = step(Draft(step="wat"), "x" * (MAX_ANSWER + 1), ctx())
    assert long.draft.step == "wat" and "te lang" in long.replies[0].text
    exact = step(Draft(step="wat"), "x" * MAX_ANSWER, ctx())
    assert exact.draft.step == "waar" and len(exact.draft.answers["wat"]) == MAX_ANSWER


def test_terug_goes_to_the_previous_question_keeping_the_answers():
    result = run("melden", "iets gezien", "Molenweg 8", "terug")
    assert result.draft.step == "waar"
    assert result.draft.answers == {"wat": "iets gezien", "waar": "Molenweg 8"}


def test_terug_at_the_first_question_stays_there():
    result = run("melden", "terug")
    assert result.draft.step == "wat" and "eerste vraag" in text_of(result)


def test_terug_at_the_summary_goes_to_the_last_question():
    result = step(at_summary(), "terug", ctx())
    assert result.draft.step == "anoniem"


@pytest.mark.parametrize("word", ["stop", "annuleren", "cancel", "STOP"])
def test_stop_erases_the_draft(word):
    result = run("melden", "iets gezien", word)
    assert not result.draft.active and result.draft.answers == {} and result.erased
    assert "niets verstuurd" in text_of(result)


def test_stop_at_the_summary_erases_the_draft_too():
    result = step(at_summary(), "stop", ctx())
    assert not result.draft.active and result.submit is None and result.erased


def test_a_sentence_starting_with_stop_is_an_answer_not_a_cancel():
    result = run("melden", "stop met uitbuiten zei hij")
    assert result.draft.answers["wat"] == "stop met uitbuiten zei hij"


@pytest.mark.parametrize("where", ["idle", "question", "summary"])
def test_spoed_shows_the_numbers_and_marks_urgent_anywhere(where):
    draft = {"idle": Draft(), "question": run("melden").draft, "summary": at_summary()}[where]
    result = step(draft, "spoed", ctx())
    assert result.draft.urgent and result.draft.active
    assert "112" in result.replies[0].text and "088-9630320" in result.replies[0].text
    assert result.replies[0].urgent


def test_spoed_keeps_the_current_question():
    result = run("melden", "iets gezien", "spoed")
    assert result.draft.step == "waar"
    assert "Waar gebeurde het?" in result.replies[-1].text


@pytest.mark.parametrize("word, expect", [("help", "adres"), ("contact", "112"), ("signalen", "paspoort")])
def test_help_contact_and_signalen_are_answered_then_the_question_again(word, expect):
    result = run("melden", "iets gezien", word)
    assert result.draft.step == "waar" and "waar" not in result.draft.answers
    assert expect in result.replies[0].text
    assert "Waar gebeurde het?" in result.replies[-1].text


def test_help_is_specific_to_each_question():
    helps = {step(Draft(step=q), "help", ctx()).replies[0].text for q in QUESTIONS}
    assert len(helps) == len(QUESTIONS)


def test_versturen_at_the_summary_submits_exactly_the_answers():
    result = step(at_summary(), "versturen", ctx())
    assert result.submit is not None and not result.draft.active
    submitted = result.submit.answers
    assert submitted == {**ANSWERS, "soort": "arbeid"}


def test_versturen_before_the_summary_is_not_taken_as_an_answer():
    result = run("melden", "versturen")
    assert result.submit is None and result.draft.step == "wat" and "wat" not in result.draft.answers


@pytest.mark.parametrize("typed, q", [("wijzig waar", "waar"), ("wijzig Wanneer", "wanneer"), ("edit where", "waar"),
                                      ("/wijzig soort", "soort")])
def test_wijzig_asks_that_question_again_and_returns_to_the_summary(typed, q):
    editing = step(at_summary(), typed, ctx())
    assert editing.draft.step == q
    new_answer = {"waar": "Kerkstraat 1", "wanneer": "eergisteren", "soort": "1"}[q]
    back = step(editing.draft, new_answer, ctx())
    assert back.draft.step == "summary"
    assert back.draft.answers["wat"] == ANSWERS["wat"]
    assert "Dit is je melding" in back.replies[-1].text


def test_wijzig_with_an_unknown_question_names_the_valid_ones():
    result = step(at_summary(), "wijzig kleur", ctx())
    assert result.draft.step == "summary"
    assert "wat, waar, wanneer, wie, soort, context, anoniem" in result.replies[0].text


def test_other_text_at_the_summary_explains_how_to_go_on():
    result = step(at_summary(), "ok dan", ctx())
    assert result.draft.step == "summary" and result.submit is None
    assert "versturen" in result.replies[0].text


def test_the_summary_shows_how_the_date_was_understood():
    summary = step(at_summary(), "terug", ctx())
    result = step(summary.draft, "2", ctx())
    assert "gisteren (17-11-2026)" in result.replies[-1].text


def test_a_nonsense_date_is_kept_as_text_without_a_date():
    result = step(Draft(step="wanneer"), "toen de maan blauw was", ctx())
    assert result.draft.answers["wanneer"] == "toen de maan blauw was"
    assert result.draft.when_iso is None


def test_a_picture_is_not_stored_and_the_melder_is_asked_to_describe_it():
    result = step(Draft(step="wat"), "", ctx(), has_attachment=True)
    assert result.draft.step == "wat" and "wat" not in result.draft.answers
    assert "Beschrijf in woorden" in result.replies[0].text


def test_a_picture_with_a_caption_keeps_only_the_words():
    result = step(Draft(step="wat"), "kijk deze foto", ctx(), has_attachment=True)
    assert result.draft.answers["wat"] == "kijk deze foto"
    assert "niet bewaard" in result.replies[0].text


def test_control_characters_are_removed_from_answers():
    result = step(Draft(step="wat"), "een\x00 man\x1b[31m", ctx())
    assert result.draft.answers["wat"] == "een man[31m"


def test_english_has_the_same_flow_with_english_words():
    result = run("report", "saw something", "back", language="en")
    assert result.draft.step == "wat"
    assert "What did you see or hear?" in result.replies[-1].text


def test_the_draft_survives_a_round_trip_through_its_stored_form():
    draft = step(at_summary(), "wijzig waar", ctx()).draft
    assert Draft.from_dict(draft.to_dict()) == draft


def test_a_corrupt_stored_step_starts_over_instead_of_crashing():
    assert Draft.from_dict({"step": "bestaat-niet", "answers": {}}).active is False


def test_the_summary_offers_send_edit_and_cancel_buttons_that_type_the_words():
    result = step(at_summary(), "terug", ctx())
    summary = step(result.draft, "1", ctx()).replies[-1]
    assert [a.command for a in summary.actions] == ["versturen", "wijzig", "stop"]
    which = step(at_summary(), "wijzig", ctx())
    assert which.draft.step == "summary" and "Welke vraag" in which.replies[0].text
    assert [a.command for a in which.replies[0].actions] == [f"wijzig {q}" for q in QUESTIONS]
    assert step(which.draft, "wijzig 2", ctx()).draft.step == "waar"
