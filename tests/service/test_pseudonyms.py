"""Pseudonyms of anonymous melders (issue 18, item 6): easy to say ("Melder K7F": letter, digit, letter, no
look-alikes), from thousands of values, and not shared by two signals of one meldpunt."""

from __future__ import annotations

import re

import pytest

from meldbot.service import services
from tests.service.office import Office

SAYABLE = re.compile(r"^Melder [A-HJ-NP-Z][2-9][A-HJ-NP-Z]$")


def test_the_space_holds_thousands_of_values() -> None:
    from meldbot.service.services import PSEUDONYM_SPACE

    assert PSEUDONYM_SPACE >= 3000


async def test_pseudonyms_are_sayable_and_stored(office: Office) -> None:
    pseudonyms = [(await office.submit(f"m{i}", anonymous=True)).pseudonym for i in range(60)]
    assert all(p is not None and SAYABLE.match(p) for p in pseudonyms), pseudonyms
    assert len(set(pseudonyms)) == len(pseudonyms)
    stored = (await office.signal(60, events=False)).pseudonym
    assert stored == pseudonyms[-1] and len(stored) <= 32


async def test_anonymous_signals_of_one_meldpunt_never_share_a_pseudonym(office: Office,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The random draws are fixed: the new signal's first and last draws are pseudonyms the meldpunt used
    already, so only the check against the earlier ones gives the free one in between."""
    draws = iter(["Melder K7F"] * 8 + ["Melder P3X"] * 8 + ["Melder K7F", "Melder A2B"] + ["Melder P3X"] * 6)
    monkeypatch.setattr(services, "_random_pseudonym", lambda: next(draws))
    first = await office.submit("m1", anonymous=True)
    second = await office.submit("m2", anonymous=True)
    third = await office.submit("m3", anonymous=True)
    assert (first.pseudonym, second.pseudonym) == ("Melder K7F", "Melder P3X")
    assert third.pseudonym == "Melder A2B"
    assert (await office.signal(3, events=False)).pseudonym == "Melder A2B"
