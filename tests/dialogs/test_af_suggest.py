"""The nearest AF command for a typo, and usage hints in plain words (issue 18, item 4). No I/O."""

from __future__ import annotations

import pytest

from meldbot.core import i18n
from meldbot.dialogs import af
from meldbot.dialogs.af import SHAPES


@pytest.mark.parametrize("typed, expected, read_only", [
    ("lijts", "lijst", True),
    ("Lijts", "lijst", True),
    ("toom 3", "toon 3", True),
    ("toom MH-2026-0003", "toon MH-2026-0003", True),
    ("shwo 3", "show 3", True),
    ("raport", "rapport", True),
    ("hlep", "help", True),
    ("doorzeten 3 politie", "doorzetten 3 politie", False),
    ("notitle 3 Het adres is bekend", "notitie 3 Het adres is bekend", False),
    ("sluten 3 afgerond", "sluiten 3 afgerond", False),
    ("vargen 3 Welke kleur?", "vragen 3 Welke kleur?", False),
])
def test_a_small_typo_gets_the_nearest_command(typed, expected, read_only):
    found = af.suggest(typed)
    assert found is not None and found.text == expected and found.read_only is read_only


@pytest.mark.parametrize("typed", [
    "hallo", "ik heb een vraag", "toen ik daar was", "tak 3", "xyz", "", "lijst", "toon 3", "melden", "ok",
    "dank je wel", "taal en", "stop", "dag", "dag 3", "aks 3",
])
def test_no_suggestion_far_from_a_command_or_for_a_command_itself(typed):
    assert af.suggest(typed) is None


def test_the_suggestion_keeps_what_was_typed_after_the_command():
    found = af.suggest("notitle 3 Adres Bekend\nbij handhaving")
    assert found is not None and found.text == "notitie 3 Adres Bekend\nbij handhaving"


@pytest.mark.parametrize("language, example", [("nl", "Bijvoorbeeld: toon 7"), ("en", "For example: show 7")])
def test_a_read_only_suggestion_without_its_reference_says_how_to_type_it_and_has_no_button(language, example):
    # A button that sends a bare "toon" would only get the usage text back.
    found = af.suggest("toen")
    assert found is not None and found.name == "show" and found.text == "toon"
    reply = af.suggestion_reply(found, i18n.texts(language))
    assert reply.actions == () and example in reply.text
    # With the reference typed, the button sends the whole command; `lijst` needs none.
    assert [a.command for a in af.suggestion_reply(af.suggest("toen 3"), i18n.texts(language)).actions] == ["toon 3"]
    assert [a.command for a in af.suggestion_reply(af.suggest("lijts"), i18n.texts(language)).actions] == ["lijst"]


@pytest.mark.parametrize("language", ["nl", "en"])
def test_usage_hints_are_plain_words_with_an_example(language):
    t = i18n.texts(language)
    example = "Bijvoorbeeld" if language == "nl" else "For example"
    for name in SHAPES:
        text = t(f"af.usage.{name}")
        assert "|" not in text and "<" not in text, name
        if SHAPES[name]:
            assert example in text, name
    assert "|" not in t("af.bad_tag") and example in t("af.bad_tag")


@pytest.mark.parametrize("language", ["nl", "en"])
def test_every_af_command_has_a_help_line_and_an_explanation(language):
    keys = i18n.keys(language)
    for name in SHAPES:
        assert f"af.help.line.{name}" in keys and f"af.help.explain.{name}" in keys, name
