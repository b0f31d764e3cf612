"""Teams end to end with Microsoft's own local Teams client, the Microsoft 365 Agents Playground: its page in
Chromium (Playwright), its connector on loopback, meldbot in anonymous mode (tests/support/playground.py).

A melder reports twice in the Playground's personal chat, once by pressing the cards' buttons and once by
typing; both reports reach the AF (a Playground user too) as a notification with the reference number.
Buttons are found by the titles meldbot's own catalogue gives them (the choice's label or its number), so
a change of wording or of the card's layout does not break the test. The Playground sends locale en-US
always: the melder first types `taal nl`, as a Dutch melder on an English Teams would."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from meldbot.core.clock import ManualClock
from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity
from meldbot.dialogs.report import CHOICES, QUESTIONS
from tests.support.playground import AF, MELDER, PlaygroundRig

pytestmark = pytest.mark.slow

NL = texts("nl")
AMS = ZoneInfo("Europe/Amsterdam")
REFERENCE = r"MH-\d{4}-\d{4}"


def next_prompt(q: str | None) -> str:
    """What the bot's answer to the previous question shows: the next question, or the summary."""
    return NL(f"question.{q}") if q else NL("summary.header")


def button_titles(q: str, word: str) -> list[str]:
    """The titles a choice's button may have, best first: as the catalogue builds it, its label, its number."""
    number = CHOICES[q].index(word) + 1
    label = NL(f"choice.{q}.{word}")
    titles = [f"{number}. {label}", label, word, str(number)]
    if NL.has("teams.choice_button"):
        titles.insert(0, NL("teams.choice_button", number=number, label=label))
    return titles


TYPED = {"wat": "Een man schrijft steeds nieuwe vrouwen in op zijn adres en houdt hun paspoorten.",
         "waar": "Kerkstraat 3, Bergeijk", "wanneer": "gisteren", "wie": "onbekend"}
CLICKED = {"soort": "arbeid", "context": "toezicht", "anoniem": "nee"}
TYPED_CHOICES = {"soort": "1", "context": "balie", "anoniem": "ja"}


async def report(rig: PlaygroundRig, steps: list, *, by_buttons: bool, number: int) -> str:
    """One whole report; the reference number the melder is shown. `steps` gets, per answer, how many
    messages and cards the bot answered with."""
    page = rig.page
    await page.say("melden", expect=next_prompt("wat"))
    for i, q in enumerate(QUESTIONS):
        after = QUESTIONS[i + 1] if i + 1 < len(QUESTIONS) else None
        if q in CHOICES and by_buttons:
            await page.click(button_titles(q, CLICKED[q]), expect=next_prompt(after))
        else:
            await page.say(TYPED.get(q) or TYPED_CHOICES[q], expect=next_prompt(after))
        steps.append((after or "summary", len(page.last["replies"]), page.last["cards"]))
    done = NL("submitted", reference=f"MH-2026-{number:04d}")
    if by_buttons:
        replies = await page.click([NL("button.send"), "versturen"], expect=done)
    else:
        replies = await page.say("versturen", expect=done)
    [shown] = {found for text in replies for found in re.findall(REFERENCE, text)}
    return shown


async def wait_for(find, count: int, timeout: float = 20) -> list:
    """What `find()` gives once it has `count` items (the outbox delivers after the turn), within a deadline."""
    async with asyncio.timeout(timeout):
        while len(found := find()) < count:
            await asyncio.sleep(0.1)
    return found


async def test_a_report_by_buttons_and_one_typed_in_the_playground_both_reach_the_af(tmp_path, db_url):
    clock = ManualClock(datetime(2026, 11, 18, 7, 0, tzinfo=AMS))    # before office hours: no reminders
    started = time.monotonic()
    clicked, typed = [], []
    async with PlaygroundRig(tmp_path, db_url, clock) as rig:
        try:
            await rig.page.say("taal nl", expect=NL("language.set"))
            first = await report(rig, clicked, by_buttons=True, number=1)
            second = await report(rig, typed, by_buttons=False, number=2)
            async with rig.app.uow() as uow:
                signals = await uow.signals.of_melder(Identity("teams", MELDER.aad))
            shown = await rig.page.state()
            network = await rig.page.network()
            notices = await wait_for(lambda: rig.playground.delivered_to(AF), count=2)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{await rig.evidence('failure')}") from exc
        await rig.page.screenshot(tmp_path / "done.png")
    assert (first, second) == ("MH-2026-0001", "MH-2026-0002"), rig.logs()
    by_form = sorted((str(s.form), str(s.context), s.anonymous) for s in signals)
    assert by_form == [("arbeid", "toezicht", False), ("seksueel", "balie", True)]
    # The AF heard of both in a 1:1 chat the bot opened with her (proactive; the Playground recorded it).
    notified = [re.findall(REFERENCE, json.dumps(body)) for body in notices]
    assert [sorted(set(n)) for n in notified] == [[first], [second]], (notices, rig.logs())
    # Nothing left the machine: the page's requests elsewhere were aborted and none was answered, the
    # connector and the bot were on loopback, and the sink (every proxy) forwards nothing.
    assert network["escaped"] == [], network
    assert {url for url in rig.playground.urls() if not url.startswith(("/", "http://127.0.0.1:"))} == set()
    # For the log (-s): what each answer brought; issue 19 wants one message, one card, per question.
    print(f"\nplayground: {time.monotonic() - started:.1f} s; (next question, messages, cards) by buttons "
          f"{clicked}, typed {typed}; {len(shown['cards'])} cards on the page; the sink refused "
          f"{sorted({r.split()[1].split('/')[2] if '//' in r else r.split()[1] for r in rig.sink.requests})}; "
          f"the page's requests aborted: {len(network['aborted'])}")
