"""Issue 19, item 1: the dialog meets people halfway (labels, everyday yes and no, openers, "Bedoel je ...?")
without becoming unpredictable: what was valid before means what it meant, free text is never second-guessed,
and a short reply instead of the whole welcome again."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meldbot.core.calendar import WorkCalendar
from meldbot.core.domain import Content, Context, Form, Reference, Signal
from meldbot.core.i18n import LANGUAGES, keys, texts
from meldbot.dialogs.af import partner_text, signal_view
from meldbot.dialogs.commands import ANYONE, DIALOG, IN_DIALOG, dialog_command
from meldbot.dialogs.report import CHOICE_ALIASES, CHOICES, QUESTIONS, Draft, clean, step
from meldbot.core.ports import SignalFacts
from meldbot.service.monitoring import figures, parse_period, report_text
from tests.support.dialog import ANSWERS, at_summary, ctx, run
from tests.support.readability import flesch_douma

NL = texts("nl")

# --- what was valid before means what it meant ----------------------------------------------------------------


def _old_valid(q: str) -> list[tuple[str, str]]:
    """Every answer the exact rule accepted at `q`, in the forms people type them, with what it stored."""
    forms: list[tuple[str, str]] = []
    for number, word in enumerate(CHOICES[q], start=1):
        for typed in (str(number), f"{number}.", f"{number})", f" {number} ", f"/{number}"):
            forms.append((typed, word))
        for typed in (word, word.upper(), word.title(), f"!{word}", f"{word}."):
            forms.append((typed, word))
    for alias, word in CHOICE_ALIASES[q].items():
        forms += [(alias, word), (alias.upper(), word)]
    return forms


@pytest.mark.parametrize("q", ["soort", "context", "anoniem"])
def test_every_answer_the_exact_rule_accepted_stores_the_same_choice(q):
    for typed, word in _old_valid(q):
        result = step(Draft(step=q), typed, ctx())
        assert result.draft.answers.get(q) == word, typed


@pytest.mark.parametrize("q", ["soort", "context", "anoniem"])
def test_numbers_outside_the_list_are_still_refused(q):
    for typed in ("0", str(len(CHOICES[q]) + 1), "12", "-1"):
        result = step(Draft(step=q), typed, ctx())
        assert q not in result.draft.answers and result.draft.step == q, typed


@pytest.mark.parametrize("where", [*QUESTIONS, "summary"])
def test_every_command_of_the_dialog_does_what_it_did(where):
    """Whole-message commands keep their meaning at every question and at the summary, with or without a
    "Bedoel je ...?" before them."""
    draft = at_summary() if where == "summary" else Draft(step=where, answers=dict(ANSWERS))
    offered = Draft(**{**draft.__dict__, "offer": "stop"})
    for word, name in IN_DIALOG.items():
        plain, after_offer = step(draft, word, ctx()), step(offered, word, ctx())
        assert (plain.draft.step, plain.erased, plain.submit is not None) == (
            after_offer.draft.step, after_offer.erased, after_offer.submit is not None), word
        if name == "cancel":
            assert plain.erased
        elif name == "send" and where == "summary":
            assert plain.submit is not None
        elif name == "urgent":
            assert plain.draft == Draft(**{**draft.__dict__, "urgent": True})
        elif name == "back":
            assert plain.draft.step == (QUESTIONS[-1] if where == "summary" else
                                        QUESTIONS[max(QUESTIONS.index(where) - 1, 0)])
        else:   # help, contact, signalen, wijzig without a question, versturen before the summary
            assert plain.draft == draft, word
    for q in QUESTIONS:
        assert step(draft, f"wijzig {q}", ctx()).draft.step == q


@pytest.mark.parametrize("word, name", sorted((ANYONE | DIALOG).items()))
def test_every_contract_word_outside_a_report_does_what_it_did(word, name):
    result = run(word)
    if name in ("report", "urgent"):
        assert result.draft.step == "wat" and result.draft.urgent == (name == "urgent")
    else:
        assert result.draft.step is None
        assert "Bedoel je" not in result.replies[0].text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=st.sampled_from(["wat", "waar", "wie"]),
       text=st.one_of(st.text(max_size=80), st.sampled_from(
           ["anuleren", "terg", "versturne", "arbied", "ja graag", "nee hoor", "ik wil iets melden", "meldne",
            "taal was een probleem", "mijn meldingen zijn weg", "ok", "klopt", "laat maar", "stop de uitbuiting"])))
def test_a_free_text_question_takes_any_text_as_it_is_and_never_asks_bedoel_je(q, text):
    result = step(Draft(step=q), text, ctx())
    if dialog_command(text) is not None or not clean(text):
        return
    assert result.draft.answers[q] == clean(text)
    assert not any("Bedoel je" in r.text for r in result.replies)


# --- the labels the bot shows, everyday words, "Bedoel je ...?" ---------------------------------------------------

@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("q", ["soort", "context", "anoniem"])
def test_every_label_the_choice_list_shows_is_accepted_in_both_languages(q, language):
    t = texts(language)
    for word in CHOICES[q]:
        label = t(f"choice.{q}.{word}")
        assert step(Draft(step=q), label, ctx(language)).draft.answers.get(q) == word, label
        # as the text fallback shows a choice: "2 arbeid (arbeidsuitbuiting)"
        shown = f"{CHOICES[q].index(word) + 1} {word} ({label})"
        assert step(Draft(step=q), shown, ctx(language)).draft.answers.get(q) == word, shown


def test_a_typo_gets_bedoel_je_with_a_button_and_a_yes_takes_it():
    asked = step(Draft(step="soort"), "arbied", ctx())
    assert "soort" not in asked.draft.answers and asked.draft.offer == "arbeid"
    (reply,) = asked.replies
    assert reply.text.startswith("Bedoel je arbeid (arbeidsuitbuiting)?")
    assert [a.command for a in reply.actions] == ["arbeid"]
    for yes in ("ja", "Ja graag", "jazeker", "ok", "oké"):
        taken = step(asked.draft, yes, ctx())
        assert taken.draft.answers["soort"] == "arbeid" and taken.draft.step == "context", yes
        assert taken.draft.offer is None


def test_after_bedoel_je_anything_else_is_read_as_a_new_answer():
    asked = step(Draft(step="soort"), "arbied", ctx()).draft
    other = step(asked, "crimineel", ctx())
    assert other.draft.answers["soort"] == "crimineel" and other.draft.offer is None
    nonsense = step(asked, "kapsalon", ctx())
    assert "soort" not in nonsense.draft.answers and nonsense.draft.offer is None
    assert "Dat antwoord ken ik niet" in nonsense.replies[0].text


def test_the_offer_survives_the_stored_form_of_the_draft():
    asked = step(Draft(step="soort"), "arbied", ctx()).draft
    assert Draft.from_dict(asked.to_dict()) == asked
    assert "offer" not in Draft(step="soort").to_dict()


@pytest.mark.parametrize("typed", ["na", "ja", "ka", "nu", "ne", "jo"])
def test_short_words_get_no_guess_at_the_anonymity_question(typed):
    result = step(Draft(step="anoniem"), typed, ctx())
    if typed == "ja":
        assert result.draft.answers["anoniem"] == "ja"
    else:
        assert "anoniem" not in result.draft.answers and "Bedoel je" not in result.replies[0].text


@pytest.mark.parametrize("typed, stored", [
    ("ja graag, ik wil anoniem blijven", "ja"), ("ja graag", "ja"), ("jazeker", "ja"), ("ja hoor", "ja"),
    ("prima", "ja"), ("ok", "ja"), ("oké", "ja"), ("liever anoniem", "ja"), ("mijn naam liever niet", "ja"),
    ("nee hoor", "nee"), ("nee dank je", "nee"), ("niet anoniem", "nee"),
    ("ik wil liever niet anoniem blijven", "nee"), ("mijn naam mag erbij", "nee"),
])
def test_everyday_yes_and_no_answer_the_anonymity_question_as_it_is_asked(typed, stored):
    """ "Wil je anoniem blijven voor de AF?": yes is anonymous, "niet anoniem" shows the name ("liever niet" may
    mean either, and is asked again: see test_understand_review.py)."""
    assert step(Draft(step="anoniem"), typed, ctx()).draft.answers["anoniem"] == stored


@pytest.mark.parametrize("typed", ["nee, ik wil anoniem blijven", "ja, mijn naam mag erbij", "maakt niet uit",
                                   "misschien", "wat is een schuilnaam?", "liever niet"])
def test_a_contradiction_or_a_doubt_about_anonymity_is_asked_again(typed):
    result = step(Draft(step="anoniem"), typed, ctx())
    assert "anoniem" not in result.draft.answers and result.draft.step == "anoniem"


def test_a_typo_at_the_anonymity_question_names_the_word_to_type_and_keeps_ja_its_meaning():
    """At the yes/no question `ja` is an answer itself, so "Bedoel je nee?" cannot be accepted with a yes."""
    asked = step(Draft(step="anoniem"), "anonim", ctx())
    assert asked.draft.offer is None
    assert asked.replies[0].text == "Bedoel je ja (ja, de AF ziet alleen een schuilnaam)? Typ dan ja."
    assert [a.command for a in asked.replies[0].actions] == ["ja"]


@pytest.mark.parametrize("typed", ["verstuur", "versturen", "ok", "oké", "klopt", "ja klopt, verstuur maar",
                                   "Ja, alles klopt.", "akkoord"])
def test_the_summary_is_sent_with_everyday_words(typed):
    assert step(at_summary(), typed, ctx()).submit is not None


@pytest.mark.parametrize("typed", ["ok dan", "klopt, maar de straat is fout", "nog niet versturen", "verstuur niet",
                                   "wacht even", "ja, maar"])
def test_a_doubt_or_negation_at_the_summary_sends_nothing(typed):
    result = step(at_summary(), typed, ctx())
    assert result.submit is None and not result.erased and result.draft.step == "summary"


def test_nee_at_the_summary_asks_which_question_and_verander_waar_is_wijzig_waar():
    assert step(at_summary(), "klopt niet", ctx()).replies[0].text.startswith("Welke vraag")
    assert step(at_summary(), "verander waar", ctx()).draft.step == "waar"


def test_cancelling_in_other_words_is_only_offered_and_says_what_it_does():
    asked = step(at_summary(), "laat maar", ctx())
    assert not asked.erased and asked.draft.offer == "stop"
    assert "wis ik je antwoorden" in asked.replies[0].text
    assert step(asked.draft, "ja", ctx()).erased
    assert step(asked.draft, "nee", ctx()).draft.step == "summary"


# --- outside a report ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["ik wil iets melden", "ik heb een signaal", "ik wil een melding doen", "meldne",
                                   "Hallo, ik wil iets melden"])
def test_natural_openers_and_a_typo_of_melden_start_a_report(typed):
    result = run(typed)
    assert result.draft.step == "wat" and "Vraag 1 van 7" in result.replies[-1].text


@pytest.mark.parametrize("typed", ["ik wil niets melden", "geen melding", "xyz"])
def test_unknown_text_outside_a_report_gets_two_short_lines_not_the_welcome(typed):
    (reply,) = run(typed).replies
    assert len(reply.text.splitlines()) == 2
    # The contract's first message: `melden`, 112 and the police number that is open now (ctx: Wednesday 10:00).
    assert "Typ melden" in reply.text and "Bel 112" in reply.text
    police = next(c for c in ctx().contacts if c.number != "112")
    assert f"{police.label}: {police.number}" in reply.text
    assert [a.command for a in reply.actions] == ["melden"]


@pytest.mark.parametrize("typed", ["hoi", "Goedemorgen", "goedemorgen, hoe werkt dit?", ""])
def test_a_greeting_still_gets_the_whole_welcome(typed):
    assert run(typed).replies[0].text.startswith("Hallo!")


def test_a_typo_of_another_command_outside_a_report_is_offered_with_a_button():
    (reply,) = run("mijn meldngen").replies
    assert reply.text.startswith("Bedoel je mijn meldingen?")
    assert [a.command for a in reply.actions] == ["mijn meldingen"]


# --- what people read ------------------------------------------------------------------------------------------

def test_the_new_sentences_exist_in_both_languages_and_read_at_b1():
    ours = sorted(k for k in keys("nl") if k.startswith("understand.") or k.startswith("form."))
    assert ours and set(ours) <= keys("en")
    assert flesch_douma([NL(k, word="arbeid", label="arbeidsuitbuiting", police="", number="088-9630320",
                            yes="ja", no="nee")
                         for k in ours]) >= 60


# --- soort nog onbekend ----------------------------------------------------------------------------------------

AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


def _unknown_form() -> Signal:
    content = Content(wat="Drie stapelbedden", waar="Molenweg 8", wanneer="gisteren", wie="onbekend")
    return Signal.submit(meldpunt_id="bergeijk", reference=Reference(2026, 7), content=content, form=Form.UNKNOWN,
                         context=Context.DESK, urgent=False, anonymous=False, pseudonym=None, at=NOW)


@pytest.mark.parametrize("language, label", [("nl", "soort nog onbekend"), ("en", "form not yet known")])
def test_a_signal_of_unknown_form_reads_soort_nog_onbekend_for_the_af_and_the_partner(language, label):
    """The melder chose "weet ik niet"; the signal's form is not "weet ik niet" but not yet known."""
    t, signal = texts(language), _unknown_form()
    shown = signal_view(signal, "Piet", [], AMS, t, "gisteren")
    letter = partner_text(signal, "Politie", "0800", "Gemeente Bergeijk", "Anna", AMS, t, "gisteren")
    for text in (shown, letter):
        assert label in text and t("choice.soort.onbekend") not in text


def test_the_figures_name_the_unknown_form_soort_nog_onbekend():
    cal = WorkCalendar(AMS, time(8, 30), time(17, 0), lambda d: False)
    facts = [SignalFacts("bergeijk", datetime(2026, 3, 2, 10, tzinfo=AMS), "onbekend", "balie", (), None, None, None)
             for _ in range(2)]
    period = parse_period("2026", date(2026, 11, 23))
    assert period is not None
    text = report_text(figures(facts, period, lambda _: cal), NL)
    assert "  soort nog onbekend: 2" in text and "weet ik niet" not in text
