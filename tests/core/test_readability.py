"""Issue 18, item 7: what the AF reads in chat is at B1 level, Flesch-Douma 60 or more, like the melder's texts.
Wave 1's AF catalogue scored 53.7 by this measure (tests/support/readability.py), the melder's 84.0."""

from __future__ import annotations

from meldbot.core import i18n
from meldbot.core.i18n import texts
from tests.support.readability import flesch_douma

NL = texts("nl")
# What an AF reads in the chat: the desk's answers and views, reminders and notices of new signals.
AF_CHAT = ("af.", "reminder.", "notify.")
# What the melder reads: the dialog and its answers.
MELDER = ("question.", "help.", "welcome", "submitted", "mine.", "supplement.", "choice.", "summary.", "status.",
          "error.", "contact", "cancelled", "draft_expired", "not_yet", "edit", "back", "answer.", "attachment.",
          "urgent.", "report.")


def _entries(prefixes: tuple[str, ...]) -> list[str]:
    return [NL(key) for key in sorted(i18n.keys("nl")) if key.startswith(prefixes)]


def test_the_measure_tells_plain_dutch_from_official_dutch() -> None:
    plain = ["Je melding is binnen. De AF leest hem vandaag. Dank je wel."]
    official = ["Indien u de hiervoor genoemde verantwoordelijkheidsverdeling ten aanzien van de "
                "signaleringsprocedure onvoldoende geïnformeerd acht, dient u contact op te nemen met de "
                "aandachtsfunctionaris mensenhandel van uw gemeentelijke organisatie."]
    assert flesch_douma(plain) >= 80
    assert flesch_douma(official) < 30


def test_the_af_catalogue_reads_at_b1(capsys) -> None:
    score = flesch_douma(_entries(("af.",)))
    with capsys.disabled():
        print(f"\n[readability] nl-af Flesch-Douma {score:.1f}")
    assert score >= 60, score


def test_everything_an_af_reads_in_chat_reads_at_b1() -> None:
    assert flesch_douma(_entries(AF_CHAT)) >= 60


def test_the_melder_texts_stay_plain() -> None:
    assert flesch_douma(_entries(MELDER)) >= 75


def test_every_question_reads_at_b1_on_its_own() -> None:
    """Issue 19, item 5: a melder meets one question at a time, so each one reads at B1 by itself."""
    scores = {key: flesch_douma([NL(key)]) for key in sorted(i18n.keys("nl")) if key.startswith("question.")}
    assert all(score >= 60 for score in scores.values()), scores


def test_the_urgent_answer_reads_at_b1() -> None:
    assert flesch_douma(_entries(("urgent.", "report."))) >= 60
