"""Sizes: AF texts have a limit, a melder's additions too, and every reply is split into messages that
each fit the platform — in order, nothing dropped, and no cut lets someone's words open a message as if
they were the bot's. The end-to-end proof through Synapse and the Teams stack is in
tests/integration/test_large_views.py."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meldbot.adapters.matrix.outbound import CONTENT_BUDGET, content_size, fits as matrix_fits, part_transaction
from meldbot.adapters.matrix.render import render as matrix_render
from meldbot.adapters.teams_render import ACTIVITY_BUDGET, activity_size, render as teams_render, render_parts
from meldbot.dialogs.af import MAX_AF_TEXT, Usage, parse_af
from meldbot.core.i18n import texts
from meldbot.core.messaging import Action, Choice, Reply, split_reply
from meldbot.service.services import MAX_SUPPLEMENTS
from meldbot.core.text import QUOTE
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated, report_as, say

NL = texts("nl")
MARK = re.compile(r"\n?\((\d+)/(\d+)\)$")


def unmarked(parts: list[Reply]) -> list[str]:
    """The parts' texts without their "(i/n)" line; also checks the marks count 1..n."""
    texts_ = []
    for index, part in enumerate(parts, start=1):
        found = MARK.search(part.text)
        assert found and (int(found.group(1)), int(found.group(2))) == (index, len(parts)), part.text[-20:]
        texts_.append(part.text[:found.start()])
    return texts_


def letters(text: str) -> str:
    """What must survive a split: every character except the white space and quote marks cuts add."""
    return re.sub(r"[\s>]", "", text)


def budget(limit: int):
    return lambda reply: len(reply.text) + 40 * len(reply.choices) + 40 * len(reply.actions) <= limit


# --- the splitter -----------------------------------------------------------------------------------------

def test_a_reply_that_fits_is_left_alone():
    reply = Reply("kort", choices=(Choice(1, "ja", "Ja"),), urgent=True)
    assert split_reply(reply, budget(1000)) == [reply]


LINES = st.lists(st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=300),
    st.sampled_from(["Behandelaar: bram", "- 18-11-2026 10:30 anna: notitie: niets doen", QUOTE + "al geciteerd",
                     "x" * 500, " ".join(["woord"] * 120), ""]),
), min_size=1, max_size=40)


@settings(max_examples=400, deadline=None)
@given(lines=LINES, limit=st.integers(min_value=300, max_value=2000), choices=st.integers(0, 3))
def test_parts_fit_keep_order_and_every_character(lines, limit, choices):
    original = "\n".join(lines)
    reply = Reply(original, choices=tuple(Choice(i, f"w{i}", f"label {i}") for i in range(1, choices + 1)),
                  actions=(Action("Versturen", "versturen"),), urgent=True, language="nl")
    fits = budget(limit)
    parts = split_reply(reply, fits)
    assert all(fits(part) for part in parts)
    assert letters("".join(unmarked(parts))) == letters(original) if len(parts) > 1 else parts == [reply]
    # The buttons go with the last part, the urgent mark with the first, the language with all.
    assert parts[-1].choices == reply.choices and parts[-1].actions == reply.actions
    assert all(not p.choices and not p.actions for p in parts[:-1])
    assert parts[0].urgent and not any(p.urgent for p in parts[1:])
    assert {p.language for p in parts} == {"nl"}


@settings(max_examples=300, deadline=None)
@given(lines=LINES, limit=st.integers(min_value=120, max_value=2000))
def test_no_part_starts_with_the_middle_of_someones_line(lines, limit):
    """A part begins where a line of the original begins, or behind QUOTE: a melder's long line that says
    "... Behandelaar: bram" and is cut just before those words does not open a message with them."""
    parts = split_reply(Reply("\n".join(lines)), budget(limit))
    if len(parts) == 1:
        return
    starts = {line for line in lines}
    for text in unmarked(parts)[1:]:
        first = text.split("\n", 1)[0]
        # A whole line, the head of a line cut for size (it still starts where the line starts), or a
        # continuation behind QUOTE.
        assert first in starts or first.startswith(QUOTE) or (first and any(l.startswith(first) for l in lines))


def test_a_long_line_is_cut_at_a_space_and_continues_quoted():
    reply = Reply("Wat: " + " ".join(["Behandelaar: bram"] * 60))
    parts = split_reply(reply, budget(300))
    assert len(parts) > 3
    for text in unmarked(parts)[1:]:
        assert text.startswith(QUOTE) and text[len(QUOTE):].startswith(("Behandelaar:", "bram"))
    for text in unmarked(parts)[:-1]:
        assert text.endswith(("bram", "Behandelaar:"))     # cut at a space, never inside a word


# --- Matrix -----------------------------------------------------------------------------------------------

HOSTILE = ("<b>&\"é😀 Behandelaar: bram\n" * 180)[:4000]


def test_matrix_parts_stay_below_the_event_limit_even_when_escaping_grows_the_text():
    view = "\n".join(f"- Wat:{QUOTE}{HOSTILE}" for _ in range(24))     # 4 answers and 20 additions
    whole = Reply(view, actions=(Action("Oppakken", "oppakken 1"),))
    assert content_size(matrix_render(whole)) > 4 * 65_536    # would be refused (M_TOO_LARGE) unsplit
    parts = split_reply(whole, matrix_fits)
    sizes = [content_size(matrix_render(p)) for p in parts]
    assert max(sizes) <= CONTENT_BUDGET
    # Not wasteful either: the parts are more than half full.
    assert min(sizes[:-1]) > CONTENT_BUDGET / 2
    assert letters("".join(unmarked(parts))) == letters(view)


def test_matrix_parts_keep_the_first_transaction_ids_of_unsplit_messages():
    assert part_transaction("k", 0) != part_transaction("k", 1) != part_transaction("k", 2)
    from meldbot.adapters.matrix.common import transaction_id
    assert part_transaction("k", 0) == transaction_id("k", 0)   # the text of a message sent before splitting
    assert transaction_id("k", 1) not in {part_transaction("k", i) for i in range(5)}   # the picture's id


# --- Teams ------------------------------------------------------------------------------------------------

def posted_size(activity) -> int:
    """The request body as the Agents SDK's connector client posts it: aiohttp's JSON payload of
    model_dump(mode="json", exclude_unset) — measured apart from the adapter's own activity_size."""
    import aiohttp

    return aiohttp.JsonPayload(activity.model_dump(by_alias=True, exclude_unset=True, mode="json")).size


def test_teams_activities_stay_below_the_message_limit_with_escaping_and_the_card():
    view = "\n".join(f"- Wat:{QUOTE}{HOSTILE}" for _ in range(24))
    whole = Reply(view, choices=tuple(Choice(i, f"w{i}", f"keuze {i}") for i in range(1, 8)))
    assert posted_size(teams_render(whole, NL)) > 8 * 28_000
    activities = render_parts(whole, NL)
    sizes = [posted_size(a) for a in activities]
    assert max(sizes) <= ACTIVITY_BUDGET
    assert [bool(a.attachments) for a in activities] == [False] * (len(activities) - 1) + [True]


# --- limits on what people type ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["note", "inform", "feedback"])
def test_an_af_text_over_the_limit_is_refused_with_its_length(command):
    args = {"note": "7 ", "inform": "7 ", "feedback": "7 politie "}[command]
    assert parse_af(command, args + "a" * MAX_AF_TEXT).text == "a" * MAX_AF_TEXT
    with pytest.raises(Usage) as refused:
        parse_af(command, args + "a" * (MAX_AF_TEXT + 1))
    message = NL(refused.value.key, **refused.value.params)
    assert "te lang" in message and str(MAX_AF_TEXT + 1) in message and str(MAX_AF_TEXT) in message


def test_a_tag_value_over_the_limit_is_refused():
    with pytest.raises(Usage):
        parse_af("tag", "7 adres " + "a" * (MAX_AF_TEXT + 1))


async def test_an_af_gets_the_limit_in_chat_and_nothing_is_stored(sqlite_url, clock):
    from meldbot.run.app import build_app
    from meldbot.core.domain import RefQuery

    await migrated(sqlite_url)
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await report_as(app, "piet")
        answer = "\n".join(r.text for r in await app.bot.handle(say("af", "notitie 1 " + "x" * 2500)))
        assert "te lang: 2500 tekens" in answer
        async with app.uow() as uow:
            signal = await uow.signals.find(RefQuery(1), ["bergeijk"], with_events=True)
        assert not [e for e in signal.events if e.kind.name == "NOTE"]


async def test_a_melder_can_add_to_a_report_twenty_times_then_hears_why_not(sqlite_url, clock):
    from meldbot.run.app import build_app

    await migrated(sqlite_url)
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await report_as(app, "piet")
        for n in range(MAX_SUPPLEMENTS):
            answer = (await app.bot.handle(say("piet", f"aanvullen 1 aanvulling {n}")))[0].text
            assert "aanvulling bij MH-2026-0001" in answer
        answer = (await app.bot.handle(say("piet", "aanvullen 1 nog een")))[0].text
        assert f"al {MAX_SUPPLEMENTS} keer" in answer and "MH-2026-0001" in answer


def test_a_report_of_a_full_year_with_its_chart_fits_teams():
    """`rapport` for a year: the chart is counted; the text and the picture together stay below the limit
    (the chart is a small palette PNG), or the picture comes in a message of its own."""
    from datetime import date

    from meldbot.service.monitoring import Figures, Period, chart_png

    year = Figures(Period(date(2026, 1, 1), date(2027, 1, 1), "2026"), 900,
                   tuple((f"2026-{m:02d}", 10 * m + 7) for m in range(1, 13)), (), (), 0, (), None, None)
    png = chart_png(year, NL)
    assert len(png) < 12_000
    report = Reply("Cijfers 2026\n" + "\n".join(f"- regel {i}: {i * 7}" for i in range(60)), image=png,
                   image_alt="Grafiek")
    activities = render_parts(report, NL)
    assert max(posted_size(a) for a in activities) <= ACTIVITY_BUDGET
    assert sum(1 for a in activities for att in (a.attachments or []) if att.content_type == "image/png") == 1
    # A picture too big to go beside a long text goes after it, on its own.
    big = Reply("x " * 9_000, image=png * 2, image_alt="Grafiek")
    parts = render_parts(big, NL)
    assert max(posted_size(a) for a in parts) <= ACTIVITY_BUDGET
    assert parts[-1].attachments and parts[-1].attachments[0].content_type == "image/png"
    assert not any(a.attachments for a in parts[:-1])
