"""Every Adaptive Card the bot can send to Teams is valid: against the Adaptive Cards 1.5 JSON schema
(tests/data/adaptive-card-1.5.schema.json, from github.com/microsoft/AdaptiveCards schemas/1.5.0) and
against what Teams shows (six buttons in a row; it hides the rest behind "..."). The cards come from the
whole app driven as people use it: a melder through every question, the summary and `wijzig`, typos,
the gemeente question, an AF's commands, reminders and the weekly overview."""

from __future__ import annotations

import functools
import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from meldbot.adapters.teams_render import (ACTIVITY_BUDGET, CARD_TYPE, MAX_BUTTONS, SUBMIT_KEY, activity_size,
                                           render, render_parts)
from meldbot.core.clock import ManualClock
from meldbot.core.i18n import texts
from meldbot.core.messaging import Action, Choice, Fact, Reply
from tests.support import EXAMPLE, FakeNotifier, make_config, run_sync
from tests.support.chat import SCRIPT, migrated, msg
from tests.support.configs import eersel

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "adaptive-card-1.5.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft6Validator(SCHEMA)
NL = texts("nl")


def _action_rows(element: Any) -> list[list[dict]]:
    """Every list of actions in a card, nested ones (ActionSets, containers, shown cards) included."""
    rows: list[list[dict]] = []
    if isinstance(element, dict):
        if isinstance(element.get("actions"), list):
            rows.append(element["actions"])
        for value in element.values():
            rows += _action_rows(value)
    elif isinstance(element, list):
        for value in element:
            rows += _action_rows(value)
    return rows


def problems(card: dict) -> list[str]:
    """Why Teams would not show this card as meant; empty when it is fine."""
    found = [f"schema: {error.message[:200]} at {list(error.absolute_path)}" for error in VALIDATOR.iter_errors(card)]
    if card.get("version") != "1.5":
        found.append(f"version {card.get('version')!r}, not 1.5")
    for row in _action_rows(card):
        if len(row) > MAX_BUTTONS:
            found.append(f"TooManyActions: {len(row)} in one row, Teams shows {MAX_BUTTONS}")
    inputs = {e.get("id") for e in card.get("body", []) if str(e.get("type", "")).startswith("Input.")}
    for row in _action_rows(card):
        for action in row:
            if action.get("type") == "Action.Submit" and SUBMIT_KEY not in action.get("data", {}) \
                    and SUBMIT_KEY not in inputs:
                found.append(f"button {action.get('title')!r} sends nothing the bot reads")
    for block in card.get("body", []):
        if block.get("type") == "TextBlock" and ("<" in block["text"] or "\n" in block["text"]):
            found.append(f"TextBlock with markup or a line break: {block['text'][:60]!r}")
    if not card.get("fallbackText"):
        found.append("no fallbackText for clients without cards")
    return found


def cards_of(reply: Reply) -> list[dict]:
    t = texts(reply.language or "nl")
    activities = render_parts(reply, t)
    assert all(activity_size(a) <= ACTIVITY_BUDGET for a in activities)
    return [att.content for a in activities for att in a.attachments or [] if att.content_type == CARD_TYPE]


# --- gathering what the bot sends -------------------------------------------------------------------------

MELDER = [
    "hallo", "meldne", "melden", "help",
    "Een man schrijft steeds nieuwe vrouwen in op zijn adres en houdt hun **paspoorten** <img src=x>.",
    "wijzig", "wijzig wat", "Een man houdt de paspoorten van zes vrouwen.\nZe werken in de kas.",
    "Kerkstraat 3, Bergeijk", "gisteren rond 3 uur", "onbekend", "arbied", "ja", "1", "balie", "misschien", "nee",
    "wijzig", "wijzig soort", "2", "spoed", "help", "iets anders", "versturen",
    "mijn meldingen", "aanvullen 1 Ze spraken alleen Roemeens", "contact", "signalen", "taal en", "melden", "stop",
    "taal nl",
]
AF = [
    "help", "lijts", "lijst", "tonn 1", "toon 1", "oppakken 1", "notitie 1 Adres bekend", "kenmerk 1 adres Kerkstraat 3",
    "overleggen 1 politie", "doorzetten 1 politie", "feedback 1 politie Onderzoek loopt", "vragen 1 Hoe oud waren ze?",
    "terugkoppelen 1 Dank je, we pakken het op", "toon 1", "sluiten 1 afgehandeld", "heropenen 1", "samenvoegen 1 2",
    "overdragen alle bram", "rapport", "rapport jaar", "toon 99", "onzin",
]


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


async def _gather(directory: Path) -> list[Reply]:
    from meldbot.core.config import load_config
    from meldbot.run.app import build_app

    seen: list[Reply] = []
    url = f"sqlite+aiosqlite:///{directory}/meldbot.db"
    await migrated(url)
    clock = ManualClock(_at(2026, 11, 18, 9, 30))                      # Wednesday, office hours
    notifier = FakeNotifier()
    app = build_app(make_config(url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        async def say(user: str, line: str) -> None:
            seen.extend(await app.bot.handle(msg(user, line)))
            await app.dispatcher.deliver_pending()

        for line in MELDER:
            await say("piet", line)
        for line in ["spoed", *SCRIPT[1:]]:                            # a second, urgent report
            await say("klaas", line)
        for line in AF:
            await say("af", line)
        await say("piet", "1")                                         # the question the AF asked, answered
        for days in (1, 2, 5, 8):                                      # reminders and the weekly overview
            clock.set(_at(2026, 11, 18, 9, 31) + timedelta(days=days))
            await app.reminders.sweep()
            await app.dispatcher.deliver_pending()
        seen += [reply for _, reply, _ in notifier.shown]
    # The gemeente question: a person two gemeenten could belong to.
    config_file = directory / "twee.toml"
    config_file.write_text(EXAMPLE.read_text(encoding="utf-8") + eersel("af-eersel"), encoding="utf-8")
    config = load_config(config_file, {"MELDBOT_STORAGE__URL": url, "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true"})
    app = build_app(config, clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        for line in ["melden", "zeven", "2"]:
            seen.extend(await app.bot.handle(msg("nieuw", line)))
    return seen


@functools.cache
def gathered() -> tuple[Reply, ...]:
    with tempfile.TemporaryDirectory() as directory:
        return tuple(run_sync(_gather(Path(directory))))


def _distinct(cards: list[dict]) -> list[dict]:
    unique = {json.dumps(card, sort_keys=True): card for card in cards}
    return list(unique.values())


# --- the tests --------------------------------------------------------------------------------------------

def test_every_card_the_bot_sends_is_valid_and_within_teams_limits():
    replies = gathered()
    cards = _distinct([card for reply in replies for card in cards_of(reply)])
    invalid = {json.dumps(card)[:300]: problems(card) for card in cards if problems(card)}
    assert invalid == {}
    # What the scripts reach: every question, the summary, `wijzig`, the gemeente question, typo help,
    # the AF's buttons and the reminders. Fewer would mean the gathering stopped early.
    kinds = {"choices": 0, "facts": 0, "rows": 0, "drop-down": 0}
    for card in cards:
        kinds["facts"] += any(b["type"] == "FactSet" for b in card["body"])
        kinds["rows"] += any(b["type"] == "ActionSet" for b in card["body"])
        kinds["drop-down"] += any(b["type"] == "Input.ChoiceSet" for b in card["body"])
        kinds["choices"] += any(b["type"] == "TextBlock" and b.get("isSubtle") for b in card["body"])
    assert kinds["facts"] >= 2 and kinds["rows"] >= 1 and kinds["choices"] >= 4, kinds
    assert len(cards) >= 20, len(cards)
    # Replies without buttons are plain messages; a chart is a picture beside them.
    assert any(reply.image for reply in replies)
    for reply in replies:
        if reply.image and not (reply.choices or reply.actions):
            [activity] = render_parts(reply, NL)[-1:]
            assert activity.attachments and activity.attachments[0].content_type == "image/png"


def test_the_summary_is_one_card_with_the_answers_as_facts_and_its_three_buttons():
    [summary, *_] = [r for r in gathered() if r.facts and r.language in (None, "nl")]
    activity = render(summary, NL)
    assert activity.text is None                                     # one bubble: the card says it all
    [attachment] = activity.attachments
    card = attachment.content
    assert problems(card) == []
    [facts] = [b for b in card["body"] if b["type"] == "FactSet"]
    assert [f["title"] for f in facts["facts"]] == [NL(f"label.{q}") for q in
                                                    ("wat", "waar", "wanneer", "wie", "soort", "context", "anoniem")]
    # The melder's markup stays characters: escaped for Teams' Markdown, no <br> (a card shows it as is).
    assert "<img" not in json.dumps(card) and "**" not in json.dumps(card)
    assert [a["data"][SUBMIT_KEY] for a in card["actions"]] == ["versturen", "wijzig", "stop"]
    # The fallback for clients without cards is short plain text: what to type, none of the melder's answers.
    assert "Kerkstraat 3" not in card["fallbackText"] and "versturen" in card["fallbackText"]


def test_a_question_is_one_card_with_the_question_and_its_choices_as_buttons():
    reply = Reply("Vraag 5 van 7\nWelke soort?", choices=(Choice(1, "seksueel", "seksuele uitbuiting"),
                                                        Choice(2, "arbeid", "arbeidsuitbuiting")))
    activity = render(reply, NL)
    assert activity.text is None and activity.text_format == "markdown"
    card = activity.attachments[0].content
    assert [b["text"] for b in card["body"]] == ["Vraag 5 van 7", "Welke soort?", NL("teams.card.choose")]
    assert [(a["title"], a["data"]) for a in card["actions"]] == [
        ("1. seksuele uitbuiting", {SUBMIT_KEY: "seksueel"}), ("2. arbeidsuitbuiting", {SUBMIT_KEY: "arbeid"})]
    assert card["fallbackText"] == "Vraag 5 van 7\nWelke soort?\n1. seksueel — seksuele uitbuiting\n" \
                                   "2. arbeid — arbeidsuitbuiting"


def test_seven_buttons_go_in_two_rows_and_nothing_says_tap():
    edit = Reply("Welke vraag?", actions=tuple(Action(f"Vraag {i}", f"wijzig {i}") for i in range(1, 8)))
    card = render(edit, NL).attachments[0].content
    assert problems(card) == []
    rows = [b["actions"] for b in card["body"] if b["type"] == "ActionSet"] + [card["actions"]]
    assert [len(row) for row in rows] == [4, 3]
    assert [a["data"][SUBMIT_KEY] for row in rows for a in row] == [f"wijzig {i}" for i in range(1, 8)]
    for language in ("nl", "en"):
        assert "tik" not in json.dumps(render(edit, texts(language)).model_dump(mode="json")).lower().split()


def test_the_check_refuses_a_card_with_seven_actions_or_an_unknown_element():
    """The validation can fail: what the bot sent before (seven buttons) and a misspelt element."""
    good = render(Reply("Welke vraag?", actions=(Action("Wat", "wijzig wat"),)), NL).attachments[0].content
    assert problems(good) == []
    seven = {**good, "actions": [{"type": "Action.Submit", "title": str(i), "data": {SUBMIT_KEY: str(i)}}
                                 for i in range(7)]}
    assert any("TooManyActions" in p for p in problems(seven))
    bogus = {**good, "body": [{"type": "TextBlok", "text": "x"}]}
    assert any(p.startswith("schema:") for p in problems(bogus))
    wrong = {**good, "body": [{"type": "TextBlock", "text": "x", "wrap": "ja"}]}
    assert any(p.startswith("schema:") for p in problems(wrong))
    nested = {**good, "body": [{"type": "ActionSet", "actions": seven["actions"]}]}
    assert any("TooManyActions" in p for p in problems(nested))


def test_more_than_six_choices_become_a_drop_down_with_one_button():
    many = tuple(Choice(i, f"gemeente{i}", f"Gemeente {i}") for i in range(1, 10))
    card = render(Reply("Welke gemeente?", choices=many), NL).attachments[0].content
    assert problems(card) == []
    [choice_set] = [b for b in card["body"] if b["type"] == "Input.ChoiceSet"]
    assert choice_set["id"] == SUBMIT_KEY and len(choice_set["choices"]) == 9 and len(card["actions"]) == 1


def test_a_melders_markup_in_a_fact_or_a_line_stays_characters():
    hostile = "<img src=x onerror=alert(1)> **vet** [klik](https://x.example)"
    reply = Reply(f"Dit is je melding:\n- Wat: {hostile}\nKlopt dit?", actions=(Action("Versturen", "versturen"),),
                  facts=(Fact("Wat", hostile),), facts_lines=(1, 2))
    card = render(reply, NL).attachments[0].content
    text = json.dumps(card)
    assert "<img" not in text and "**" not in text and "[klik]" not in text
    assert [b["text"] for b in card["body"] if b["type"] == "TextBlock"] == ["Dit is je melding:", "Klopt dit?"]
    assert card["body"][1]["facts"][0]["value"].startswith("&#60;img")


def test_an_urgent_card_still_raises_the_alert():
    activity = render(Reply("Spoed", actions=(Action("Toon", "toon 1"),), urgent=True), NL)
    assert activity.channel_data == {"notification": {"alert": True}}


@pytest.mark.parametrize("stored", [
    '{"text": "Herinnering", "choices": [], "actions": [{"label": "Toon", "command": "toon 1"}], '
    '"image_alt": "", "urgent": false, "language": "nl"}',
    '{"text": "oud"}',
])
def test_an_outbox_row_stored_before_facts_existed_still_loads(stored):
    reply = Reply.from_json(stored)
    assert reply.facts == () and reply.facts_lines == (0, 0)
    assert Reply.from_json(reply.to_json()) == reply


def test_facts_survive_the_outbox():
    reply = Reply("Kop\n- Wat: x\nVoet", facts=(Fact("Wat", "x"),), facts_lines=(1, 2))
    assert Reply.from_json(reply.to_json()) == reply


def test_no_sentence_speaks_of_tapping_as_if_everyone_were_on_a_phone():
    """Teams runs on desktops too: "Tik op de knop" (phone wording) was in the cards and the AF's suggestions."""
    import re

    from meldbot.core.i18n import _catalogue

    for language, word in (("nl", r"\btik\b|\btikken\b"), ("en", r"\btap\b")):
        bad = [k for k, v in _catalogue(language).items() if re.search(word, v, re.IGNORECASE)]
        assert not bad, bad


def _long_summary() -> Reply:
    """The summary the dialog makes after three answers of 4,000 characters (the most an answer may be)."""
    from tests.support.dialog import ctx, run

    long = ("Er kwamen steeds andere mannen binnen en de vrouwen spraken geen Nederlands. " * 60)[:4000]
    result = run("melden", long, long, "gisteren", long, "1", "1", "ja")
    assert result.draft.step == "summary"
    return result.replies[-1]


def test_the_fallback_text_is_short_plain_text_and_does_not_repeat_the_answers():
    """fallbackText repeated the whole text escaped as Markdown ("&#45; Wat: &#91;klik&#93;...<br>"): twice the size
    of the card, and unreadable where a client shows it as text."""
    reply = _long_summary()
    card = render(reply, NL).attachments[0].content
    fallback = card["fallbackText"]
    assert len(fallback) < 1000
    assert "&#" not in fallback and "<br>" not in fallback
    assert "Er kwamen steeds" not in fallback
    assert NL("summary.header") in fallback and "versturen" in fallback


def test_a_summary_with_three_answers_of_4000_characters_stays_one_card_with_its_facts():
    reply = _long_summary()
    parts = render_parts(reply, NL)
    assert len(parts) == 1
    [activity] = parts
    assert activity_size(activity) <= ACTIVITY_BUDGET
    card = activity.attachments[0].content
    assert problems(card) == []
    [facts] = [b for b in card["body"] if b["type"] == "FactSet"]
    assert len(facts["facts"]) == 7


def test_no_markup_from_anyone_reaches_the_fallback_text():
    hostile = "<img src=x onerror=alert(1)> **vet** [klik](https://x.example) `code` _schuin_ \x07&lt;"
    reply = Reply(f"Bedoel je {hostile}?", choices=(Choice(1, "x", hostile),), actions=(Action(hostile, hostile),))
    fallback = render(reply, NL).attachments[0].content["fallbackText"]
    for bad in "<>[]*_`&\x07":
        assert bad not in fallback, bad
    assert "klik" in fallback      # the words stay, only the markup characters go


def test_a_gemeente_choice_that_sends_its_number_reads_as_number_and_name_in_the_fallback():
    reply = Reply("Bij welke gemeente werk je?", choices=(Choice(1, "1", "Gemeente Bergeijk"),
                                                         Choice(2, "2", "Gemeente Eersel")))
    fallback = render(reply, NL).attachments[0].content["fallbackText"]
    assert fallback.split("\n")[1:] == ["1. Gemeente Bergeijk", "2. Gemeente Eersel"]
