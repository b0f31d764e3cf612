"""Issue 19, item 5: questions that cannot be confused, and "AF" explained where the melder first meets it."""

from __future__ import annotations

from meldbot.core.i18n import texts
from meldbot.dialogs.report import QUESTIONS

EXPLAINED = {"nl": "aandachtsfunctionaris mensenhandel", "en": "officer for human trafficking"}


def test_only_one_question_asks_where_it_happened() -> None:
    # Clerks answered "aan de balie" to "Waar was het?" and to "Waar kwam je het tegen?".
    nl = texts("nl")
    assert nl("question.waar").startswith("Waar gebeurde het?")
    assert nl("question.context").startswith("In welk werk kwam je het tegen?")
    assert [q for q in QUESTIONS if nl(f"question.{q}").lower().startswith("waar")] == ["waar"]
    en = texts("en")
    assert [q for q in QUESTIONS if en(f"question.{q}").lower().startswith("where")] == ["waar"]


def test_the_question_that_first_names_the_af_explains_it() -> None:
    for language, explanation in EXPLAINED.items():
        t = texts(language)
        first = next(q for q in QUESTIONS if "AF" in t(f"question.{q}"))
        assert first == "anoniem" and explanation in t(f"question.{first}"), language


def test_the_urgent_answer_explains_the_af_since_it_may_come_before_any_question() -> None:
    for language, explanation in EXPLAINED.items():
        t = texts(language)
        for key in ("urgent.af_now", "urgent.af_later"):
            assert explanation in t(key, moment="-"), (language, key)
