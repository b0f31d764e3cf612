"""A merged duplicate's melder (issue 18, item 6): the feedback sent to them shows in their `mijn meldingen`."""

from __future__ import annotations

from tests.support.chat import ANONYMOUS


async def test_the_melder_of_a_merged_duplicate_sees_the_feedback_in_mijn_meldingen(chat):
    await chat.report("piet")
    await chat.report("klaas", ANONYMOUS)
    await chat.say("af", "samenvoegen 1 2")
    await chat.say("af", "terugkoppelen 1 Dank je, het is doorgegeven aan de politie.")
    assert any("het is doorgegeven" in m and "MH-2026-0002" in m for m in chat.inbox("klaas"))
    mine = await chat.say("klaas", "mijn meldingen")
    assert "MH-2026-0002" in mine and "het is doorgegeven aan de politie" in mine
    assert "Nog geen terugkoppeling" not in mine
    kept = await chat.say("piet", "mijn meldingen")
    assert "het is doorgegeven aan de politie" in kept
    duplicate = await chat.signal(2)
    assert duplicate.melder_informed_at is not None
    # The kept signal's history names both deliveries; the duplicate's its own.
    assert "MH-2026-0002" in await chat.say("af", "toon 1")
