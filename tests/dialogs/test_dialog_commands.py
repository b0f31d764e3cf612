"""Inside the report dialog only the contract's whole-message commands are commands (issue 19, item 2);
`wijzig <vraag>` works at any question and returns to the question the melder was at."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from meldbot.dialogs.commands import dialog_command
from meldbot.dialogs.report import QUESTIONS, Draft, step
from tests.support.dialog import ANSWERS, at_summary, ctx, run


def at(q: str) -> Draft:
    """The draft at question `q`, every question before it answered."""
    draft = run("melden", *[ANSWERS[p] for p in QUESTIONS[:QUESTIONS.index(q)]]).draft
    assert draft.step == q
    return draft


@pytest.mark.parametrize("typed", ["wijzig waar", "Wijzig  Waar", "/wijzig waar", "edit where", "wijzig 2"])
def test_wijzig_at_a_question_asks_that_question_then_returns_to_the_question_the_melder_was_at(typed):
    editing = step(at("wie"), typed, ctx())
    assert editing.draft.step == "waar" and editing.draft.answers["waar"] == ANSWERS["waar"]
    assert "Vraag 2 van 7" in editing.replies[-1].text
    back = step(editing.draft, "Kerkstraat 1", ctx())
    assert back.draft.step == "wie" and "Vraag 4 van 7" in back.replies[-1].text
    assert back.draft.answers["waar"] == "Kerkstraat 1" and "wie" not in back.draft.answers
    # and from there on as before: the next question follows
    assert step(back.draft, "onbekend", ctx()).draft.step == "soort"


def test_wijzig_at_a_question_is_never_stored_as_the_answer():
    result = step(at("wanneer"), "wijzig waar", ctx())
    assert "wanneer" not in result.draft.answers
    assert result.draft.answers["waar"] == ANSWERS["waar"]


def test_terug_while_changing_an_earlier_answer_returns_to_the_question_the_melder_was_at():
    editing = step(at("soort"), "wijzig wat", ctx()).draft
    back = step(editing, "terug", ctx())
    assert back.draft.step == "soort" and back.draft.answers["wat"] == ANSWERS["wat"]


def test_wijzig_twice_still_returns_to_the_question_the_melder_was_at():
    first = step(at("context"), "wijzig wat", ctx()).draft
    second = step(first, "wijzig waar", ctx()).draft
    assert second.step == "waar"
    assert step(second, "Molenweg 9", ctx()).draft.step == "context"


def test_wijzig_from_the_summary_still_returns_to_the_summary():
    editing = step(at_summary(), "wijzig waar", ctx()).draft
    assert step(editing, "Molenweg 9", ctx()).draft.step == "summary"


def test_wijzig_alone_at_a_question_lists_the_questions_and_keeps_the_question():
    result = step(at("wie"), "wijzig", ctx())
    assert result.draft == at("wie")
    assert [a.command for a in result.replies[0].actions] == [f"wijzig {q}" for q in QUESTIONS]


@pytest.mark.parametrize("typed", ["wijzig de sloten van de deur", "taal was een probleem, ze spraken alleen Roemeens",
                                   "taal", "mijn meldingen", "mijn meldingen zijn bij de politie", "aanvullen 3 wit busje",
                                   "melden", "help mij", "contact met de eigenaar was lastig", "signalen van dwang",
                                   "spoed was er niet", "terug naar huis gestuurd"])
def test_anything_else_typed_at_a_question_is_the_answer(typed):
    result = step(at("wat"), typed, ctx())
    assert result.draft.answers["wat"] == typed and result.draft.step == "waar"


@pytest.mark.parametrize("typed, name", [
    ("terug", "back"), ("Back", "back"), ("stop", "cancel"), ("annuleren", "cancel"), ("cancel", "cancel"),
    ("versturen", "send"), ("send", "send"), ("wijzig waar", "edit"), ("edit", "edit"), ("spoed", "urgent"),
    ("urgent", "urgent"), ("help", "help"), ("contact", "contact"), ("signalen", "signs"), ("signs", "signs"),
    ("taal nl", "language"), ("taal en", "language"), ("language en", "language"), ("!Taal EN", "language"),
])
def test_the_contract_lists_these_whole_messages_as_commands_inside_the_dialog(typed, name):
    found = dialog_command(typed)
    assert found is not None and found.name == name


@pytest.mark.parametrize("typed", ["taal", "taal fr", "taal was een probleem", "mijn meldingen", "my reports",
                                   "aanvullen 3 wit", "add 3 x", "melden", "report", "help mij", "stop ermee",
                                   "versturen graag nu"])
def test_nothing_else_is_a_command_inside_the_dialog(typed):
    assert dialog_command(typed) is None


def test_the_question_to_return_to_survives_a_round_trip_through_the_stored_form():
    editing = step(at("wie"), "wijzig waar", ctx()).draft
    assert Draft.from_dict(editing.to_dict()) == editing
    # a draft stored before this field existed reads as returning to the summary
    old = {k: v for k, v in editing.to_dict().items() if k != "resume"}
    assert Draft.from_dict(old).step == "waar"


def test_the_command_waiting_for_the_gemeente_question_survives_a_round_trip():
    from meldbot.dialogs.conversation import ConversationState

    state = ConversationState.from_dict({"draft": None, "choose_meldpunt": True, "pending": "melden"})
    assert state.pending == "melden" and ConversationState.from_dict(state.to_dict()) == state
    assert state.to_dict() == {"draft": None, "choose_meldpunt": True, "pending": "melden"}
    assert ConversationState.from_dict({"choose_meldpunt": True}).pending is None


def _normalised_slowly(text: str) -> str:
    """normalise without its quick path for ASCII text: every message decomposed and its accents dropped."""
    import unicodedata

    text = text.strip().lstrip("!/").strip()
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


@given(st.one_of(st.text(), st.text(alphabet=st.characters(max_codepoint=127)),
                 st.sampled_from(["  !Versturen ", "/STOP", "Taal EN", "Wijzig\twaar", "Café", "ß", "K\u0130"])))
def test_normalise_gives_on_any_text_what_the_full_unicode_path_gives(text):
    """The quick path for ASCII messages (a turn's CPU: benchmarks/README.md) changes no outcome."""
    from meldbot.dialogs.commands import normalise

    assert normalise(text) == _normalised_slowly(text)
