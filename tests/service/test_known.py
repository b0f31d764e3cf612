""""Reeds bekend" in the AF's `toon` view: other signals of the meldpunt about the same address, person or
organisation, also when the melder typed a variant, and why each one is shown."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from meldbot.core import similar
from meldbot.core.domain import Content, RefQuery
from meldbot.storage.tables import SignalRow
from tests.service.office import Office


# The storage's own columns: on the SQL unit of work only.
SQL_ONLY = pytest.mark.parametrize("storage", ["sqlite"], indirect=True)


def _content(wat: str = "Een man houdt de paspoorten van zes vrouwen", waar: str = "onbekend",
             wie: str = "onbekend") -> Content:
    return Content(wat=wat, waar=waar, wanneer="gisteren", wie=wie)


def _known(view: str) -> str:
    """The "reeds bekend" part of a `toon` view."""
    return view.split("Reeds bekend", 1)[1].split("Geschiedenis:", 1)[0]


async def test_an_address_with_one_s_missing_and_a_spaced_house_letter_is_already_known(office: Office) -> None:
    await office.submit("piet", _content(waar="Dorpsstraat 12a, Bergeijk"))
    await office.submit("klaas", _content(waar="dorpstraat 12 A"))
    known = _known(await office.af("af", "toon 2"))
    assert "MH-2026-0001" in known
    assert "lijkt op: Dorpsstraat 12a" in known


async def test_a_lower_case_organisation_is_already_known(office: Office) -> None:
    await office.submit("piet", _content(wie="Schoonmaak Zuid B.V."))
    await office.submit("klaas", _content(wat="Ze werken voor schoonmaak zuid bv en krijgen geen loonstrook"))
    known = _known(await office.af("af", "toon 2"))
    assert "MH-2026-0001 (zelfde organisatie)" in known


async def test_a_person_the_melder_named_is_already_known_without_a_kenmerk(office: Office) -> None:
    await office.submit("piet", _content(wat="Een man genaamd Jan de Vries regelt het werk en de woning"))
    await office.submit("klaas", _content(wie="de Vries, Jan"))
    known = _known(await office.af("af", "toon 2"))
    assert "MH-2026-0001 (zelfde persoon)" in known


async def test_a_spelling_slip_in_a_name_is_shown_as_looking_alike(office: Office) -> None:
    await office.submit("piet", _content(wie="Piotr Nowak"))
    await office.submit("klaas", _content(wie="Piotr Nowack"))
    known = _known(await office.af("af", "toon 2"))
    assert "MH-2026-0001" in known and "lijkt op: Piotr Nowak" in known


async def test_look_alikes_stay_apart(office: Office) -> None:
    await office.submit("piet", _content(waar="Dorpsstraat 12, Bergeijk", wie="Jan de Vries"))
    await office.submit("klaas", _content(waar="Dorpsstraat 21, Bergeijk", wie="Jan de Vos"))
    await office.submit("kees", _content(waar="Dorpsstraat 12b"))
    await office.submit("anna", _content(waar="Dorpsstraat 12, Eersel"))
    for number in (2, 3, 4):
        view = await office.af("af", f"toon {number}")
        assert "Reeds bekend: geen andere melding" in view, (number, view)


async def test_an_exact_match_still_says_same_address(office: Office) -> None:
    await office.submit("piet", _content(waar="Kerkstraat 12a, Bergeijk"))
    await office.submit("klaas", _content(waar="kerkstraat 12 A"))
    assert "MH-2026-0001 (zelfde adres)" in _known(await office.af("af", "toon 2"))


@SQL_ONLY
async def test_toon_reads_what_the_candidates_mention_from_the_sealed_column_not_from_their_answers(
        office: Office, monkeypatch) -> None:
    """Their answers are read once, at sending; `toon` unseals what they mention (the growth benchmark's cost)."""
    await office.submit("piet", _content(waar="Dorpsstraat 12a, Bergeijk"))
    await office.submit("klaas", _content(waar="dorpstraat 12 A"))
    read: list[str] = []
    original = similar.content_mentions
    monkeypatch.setattr(similar, "content_mentions", lambda content: read.append(content.waar) or original(content))
    known = _known(await office.af("af", "toon 2"))
    assert "lijkt op: Dorpsstraat 12a" in known
    assert "Dorpsstraat 12a, Bergeijk" not in read


@SQL_ONLY
async def test_a_signal_from_before_the_mentions_column_is_read_from_its_answers(office: Office) -> None:
    await office.submit("piet", _content(waar="Dorpsstraat 12a, Bergeijk"))
    await office.submit("klaas", _content(waar="dorpstraat 12 A"))
    async with office.uow() as uow:     # as revision 0011 leaves a row that was there before it
        await uow.session.exec(sa.update(SignalRow).where(SignalRow.ref_number == 1).values(mentions_sealed=None))
        await uow.commit()
    assert "lijkt op: Dorpsstraat 12a" in _known(await office.af("af", "toon 2"))


@SQL_ONLY
async def test_what_a_signal_mentions_is_sealed_and_erased_with_its_content(office: Office) -> None:
    await office.submit("piet", _content(waar="Dorpsstraat 12a, Bergeijk"))
    async with office.uow() as uow:
        sealed = (await uow.session.exec(sa.select(SignalRow.mentions_sealed))).scalar_one()
        assert "Dorpsstraat" not in sealed and "dorpsstraat" not in sealed
        assert "Dorpsstraat 12a" in uow.sealer.open(sealed)
        signal = await uow.signals.find(RefQuery(1), ["bergeijk"])
        await uow.signals.erase(signal.id, str(signal.reference), office.clock.now())
        await uow.commit()
        assert (await uow.session.exec(sa.select(SignalRow.mentions_sealed))).scalar_one() is None


async def test_a_look_alike_address_is_not_crowded_out_by_signals_that_only_share_common_names(
        office: Office) -> None:
    """Finding (growth benchmark, 100k and 1M signals): the candidates were the 40 signals sharing the most
    keys, so dozens that share two common name blocks pushed out the one look-alike address that shares a
    single, rare block. A key shared by few signals now weighs more than one shared by many."""
    await office.submit("piet", _content(waar="Dorpsstraat 12a, Bergeijk"))
    for _ in range(45):
        await office.submit("kees", _content(wie="Jan Bakker en Piet Jansen"))
    await office.submit("klaas", _content(waar="dorpstraat 12 A", wie="Jan Jansen"))
    known = _known(await office.af("af", "toon 47"))
    assert "MH-2026-0001" in known and "lijkt op: Dorpsstraat 12a" in known, known
