"""The chat contract inside the report dialog, through the whole bot (issue 19, item 2): only the listed whole
messages are commands; everything else is the answer to the current question. And with several gemeenten, the
first message after the gemeente question continues what the melder asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from meldbot.core.config import load_config
from meldbot.core.domain import RefQuery
from meldbot.core.messaging import Identity
from tests.support import EXAMPLE, FakeNotifier
from tests.support.chat import Chat, migrated
from tests.support.configs import eersel, gemeente

INDICATOR = "taal was een probleem, ze spraken alleen Roemeens"
REST = ["Kerkstraat 3, Bergeijk", "gisteren", "onbekend", "2", "balie", "nee"]


async def _mine(chat: Chat, user: str) -> list:
    async with chat.app.uow() as uow:
        return await uow.signals.of_melder(Identity("console", user))


async def _language(chat: Chat, user: str) -> str | None:
    async with chat.app.uow() as uow:
        return (await uow.people.get(Identity("console", user))).language


async def test_an_answer_that_starts_with_taal_is_the_answer_not_the_language_command(chat):
    await chat.say("piet", "melden")
    out = await chat.say("piet", INDICATOR)
    assert "Vraag 2 van 7" in out
    for line in REST:
        await chat.say("piet", line)
    await chat.say("piet", "versturen")
    [signal] = await _mine(chat, "piet")
    assert signal.content.wat == INDICATOR
    assert await _language(chat, "piet") is None


async def test_taal_en_as_the_whole_message_still_switches_inside_the_dialog(chat):
    await chat.say("piet", "melden")
    out = await chat.say("piet", "taal en")
    assert "Question 1 of 7" in out
    assert await _language(chat, "piet") == "en"


async def test_the_answers_to_taal_en_are_marked_english(chat):
    # The answers' language decides the labels of buttons and cards (Teams): read after the change is stored.
    replies = await chat.replies("piet", "taal en")
    assert replies and {r.language for r in replies} == {"en"}
    assert {r.language for r in await chat.replies("piet", "help")} == {"en"}


@pytest.mark.parametrize("typed", ["mijn meldingen", "My reports", "mijn meldingen zijn allemaal bij de politie"])
async def test_mijn_meldingen_inside_the_dialog_is_the_answer(chat, typed):
    """Not among the contract's in-dialog commands: the answer to the current question."""
    await chat.report("piet")
    await chat.say("piet", "melden")
    out = await chat.say("piet", typed)
    assert "MH-2026-0001" not in out and "Vraag 2 van 7" in out
    for line in REST:
        await chat.say("piet", line)
    await chat.say("piet", "versturen")
    assert (await _mine(chat, "piet"))[-1].content.wat == typed


async def test_aanvullen_inside_the_dialog_is_the_answer_and_adds_nothing(chat):
    await chat.report("piet")
    before = len((await chat.signal(1)).events)
    await chat.say("piet", "melden")
    await chat.say("piet", "Weer een busje")
    out = await chat.say("piet", "aanvullen 1 het busje was wit")
    assert "Vraag 3 van 7" in out
    assert len((await chat.signal(1)).events) == before
    for line in REST[1:]:
        await chat.say("piet", line)
    await chat.say("piet", "versturen")
    assert (await _mine(chat, "piet"))[-1].content.waar == "aanvullen 1 het busje was wit"


async def test_wijzig_at_a_question_answers_that_question_again_then_back_to_where_the_melder_was(chat):
    await chat.say("piet", "melden")
    for line in ["Stapelbedden", "Kerkstraat 3", "gisteren"]:
        await chat.say("piet", line)
    out = await chat.say("piet", "wijzig waar")                     # at question 4 (wie)
    assert "Vraag 2 van 7" in out
    out = await chat.say("piet", "Molenweg 8")
    assert "Vraag 4 van 7" in out
    for line in REST[2:]:
        await chat.say("piet", line)
    await chat.say("piet", "versturen")
    [signal] = await _mine(chat, "piet")
    assert signal.content.waar == "Molenweg 8" and signal.content.wie == "onbekend"


# --- several gemeenten -----------------------------------------------------------------------------

EERSEL = eersel("af-eersel")


@asynccontextmanager
async def _chat_with(extra: str, database_url: str, clock, tmp_path: Path) -> AsyncIterator[Chat]:
    """The whole app in chat mode on the example configuration with `extra` gemeenten appended."""
    from meldbot.run.app import build_app

    path = tmp_path / "gemeenten.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + extra, encoding="utf-8")
    config = load_config(path, {"MELDBOT_STORAGE__URL": database_url,
                                "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true"})
    await migrated(database_url)
    notifier = FakeNotifier()
    app = build_app(config, clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        yield Chat(app, notifier)


@pytest.fixture
async def two(database_url: str, clock, tmp_path: Path) -> Any:
    async with _chat_with(EERSEL, database_url, clock, tmp_path) as chat:
        yield chat


async def test_with_several_gemeenten_melden_goes_on_after_the_gemeente_is_chosen(two):
    asked = await two.say("piet", "melden")
    assert "gemeente" in asked and "Vraag 1 van 7" not in asked
    out = await two.say("piet", "2")
    assert "Gemeente Eersel" in out and "Vraag 1 van 7" in out
    await two.say("piet", "Stapelbedden")
    for line in REST:
        await two.say("piet", line)
    out = await two.say("piet", "versturen")
    assert "MH-2026-0001" in out
    [signal] = await _mine(two, "piet")
    assert signal.meldpunt_id == "eersel" and signal.content.wat == "Stapelbedden"


async def test_with_several_gemeenten_a_wrong_number_keeps_what_was_asked_for(two):
    await two.say("piet", "spoed")
    assert "Kies een nummer" in await two.say("piet", "zeven")
    out = await two.say("piet", "1")
    assert "112" in out and "Vraag 1 van 7" in out


async def test_with_several_gemeenten_mijn_meldingen_goes_on_after_the_gemeente_is_chosen(two):
    await two.say("piet", "mijn meldingen")
    assert "nog geen meldingen" in await two.say("piet", "1")


async def test_with_several_gemeenten_the_answer_itself_is_not_taken_as_a_command(two):
    """After the choice, only what was asked for goes on: the number is not a second message."""
    await two.say("piet", "hallo")
    out = await two.say("piet", "1")
    assert "Typ melden" in out
    async with two.app.uow() as uow:
        assert await uow.signals.find(RefQuery(1), ["bergeijk", "eersel"]) is None


async def test_with_several_gemeenten_an_opener_goes_on_and_the_gemeente_may_be_named(two):
    """Everyday words at both steps: "ik wil iets melden" is kept while the gemeente is asked, and the
    gemeente's name counts like its number."""
    asked = await two.say("piet", "ik wil iets melden")
    assert "gemeente" in asked and "Vraag 1 van 7" not in asked
    out = await two.say("piet", "ik werk bij Eersel")
    assert "Gemeente Eersel" in out and "Vraag 1 van 7" in out
    async with two.app.uow() as uow:
        assert (await uow.people.get(Identity("console", "piet"))).meldpunt_id == "eersel"


@pytest.fixture
async def three(database_url: str, clock, tmp_path: Path) -> Any:
    """Three gemeenten whose ids are no words of their names: "ehv" for Eindhoven, and "team-2" (a digit) as
    the third option."""
    extra = (gemeente("ehv", "Gemeente Eindhoven", "eindhoven.nl", "af-ehv", af_name="af-eindhoven",
                      af_display="AF Gemeente Eindhoven")
             + gemeente("team-2", "Gemeente Veldhoven", "veldhoven.nl", "af-veldhoven", af_name="af-veldhoven",
                        af_display="AF Gemeente Veldhoven"))
    async with _chat_with(extra, database_url, clock, tmp_path) as chat:
        yield chat


@pytest.mark.parametrize("label,meldpunt_id", [("Gemeente Eindhoven", "ehv"), ("Gemeente Veldhoven", "team-2")])
async def test_a_gemeente_button_picks_that_gemeente_whatever_its_id(three, label, meldpunt_id):
    """A button sends what its choice says (Teams: the card's value); it sent the gemeente's id, which the answer
    is not read by: "ehv" was not understood, "team-2" picked the second gemeente."""
    [asked] = await three.replies("piet", "melden")
    [button] = [c for c in asked.choices if c.label == label]
    out = await three.say("piet", button.word)
    assert label in out and "Vraag 1 van 7" in out
    async with three.app.uow() as uow:
        assert (await uow.people.get(Identity("console", "piet"))).meldpunt_id == meldpunt_id
