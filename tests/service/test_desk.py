"""The AF desk (meldbot.service.desk): each command's change, its audit entries and the messages it queues.

The same behaviours through the whole bot, on SQLite and PostgreSQL, are in tests/service/test_af_desk.py."""

from __future__ import annotations

from meldbot.core.domain import EventKind, Status
from meldbot.core.messaging import Identity
from meldbot.service.desk import console_operator
from tests.service.office import OTHER, Office


async def test_toon_shows_the_report_picks_it_up_and_audits_the_read(office: Office) -> None:
    await office.submit("piet")
    out = await office.af("af", "toon 1")
    assert "Een man houdt de paspoorten" in out and "Kerkstraat 12a" in out
    assert "Piet (console:piet)" in out
    assert "Je behandelt nu MH-2026-0001" in out
    signal = await office.signal(1)
    assert signal.handler == "anna" and signal.status is Status.IN_PROGRESS
    assert await office.actions(1) == ["ingediend", "opgepakt", "gelezen"]
    assert [(e.actor, e.action) for e in await office.audit(1)][-1] == (f"anna (console:{console_operator()})",
                                                                          "gelezen")


async def test_a_read_in_the_terminal_names_who_sat_at_it_and_a_chat_read_names_only_the_af(
        office: Office, monkeypatch) -> None:
    """`meldbot chat --beheer` on a real database is root with the key, not the AF in a chat (docs/privacy.md)."""
    await office.submit("piet")
    monkeypatch.setenv("MELDBOT_OPERATOR", "beheerder")
    await office.af("af", "toon 1")
    await office.af("af", "toon 1", platform="matrix")
    assert [(e.actor_kind, e.actor, e.action) for e in await office.audit(1)][-2:] == [
        ("af", "anna (console:beheerder)", "gelezen"), ("af", "anna", "gelezen")]


async def test_an_unknown_reference_is_answered_and_changes_nothing(office: Office) -> None:
    await office.submit("piet")
    assert "vind ik niet" in await office.af("af", "toon 99")
    assert await office.actions(1) == ["ingediend"]


async def test_oppakken_takes_over_and_queues_a_notice_for_the_previous_af(office: Office) -> None:
    await office.submit("piet")
    await office.af("af", "toon 1")
    before = len(await office.outbox())
    assert "Je behandelt nu" in await office.af("af2", "oppakken 1")
    notices = (await office.outbox())[before:]
    assert [(n.recipient, n.kind, n.reply.text) for n in notices] == [
        (Identity("console", "af"), "taken-over", "bram heeft MH-2026-0001 van je overgenomen.")]
    assert notices[0].idempotency_key.startswith("taken-over:MH-2026-0001:anna:console:")
    assert notices[0].reply.actions[0].command == "toon 1"
    assert "al" in await office.af("af2", "oppakken 1")
    assert len(await office.outbox()) == before + 1
    assert (await office.signal(1)).handler == "bram"


async def test_notitie_is_kept_in_the_history_and_never_queued_for_anyone(office: Office) -> None:
    await office.submit("piet")
    before = await office.outbox()
    assert "Notitie opgeslagen" in await office.af("af", "notitie 1 Adres bekend bij handhaving sinds 2024")
    signal = await office.signal(1)
    assert signal.events[-1].kind is EventKind.NOTE
    assert signal.events[-1].data == {"text": "Adres bekend bij handhaving sinds 2024"}
    assert await office.actions(1) == ["ingediend", "notitie"]
    assert await office.outbox() == before


async def test_doorzetten_gives_a_text_without_the_melder_or_the_notes(office: Office) -> None:
    await office.submit("piet")
    await office.af("af", "notitie 1 Interne notitie: buurman is wethouder")
    out = await office.af("af", "doorzetten 1 avim")
    assert "Politie, team AVIM" in out and "Een man houdt de paspoorten" in out
    assert "console:piet" not in out and "wethouder" not in out
    signal = await office.signal(1)
    assert signal.status is Status.FORWARDED and signal.partners == ("politie",)
    await office.af("af", "doorzetten 1 nla")
    assert (await office.signal(1)).partners == ("politie", "nla")
    assert "ken ik niet" in await office.af("af", "doorzetten 1 brandweer")
    assert (await office.audit(1))[-1].detail == "nla"


async def test_feedback_is_recorded_and_terugkoppelen_queues_the_message_for_the_melder(office: Office) -> None:
    await office.submit("piet")
    await office.af("af", "doorzetten 1 politie")
    assert "opgeslagen" in await office.af("af", "feedback 1 politie Onderzoek loopt, geen details")
    assert "wordt bezorgd" in await office.af("af", "terugkoppelen 1 Je signaal is opgepakt door de politie.")
    assert await office.inbox("piet") == [
        "Terugkoppeling over je melding MH-2026-0001: Je signaal is opgepakt door de politie."]
    (message,) = [m for m in await office.outbox() if m.kind == "inform"]
    informed = (await office.signal(1)).events[-1]
    assert informed.kind is EventKind.MELDER_INFORMED and informed.data["outbox"] == [message.idempotency_key]
    assert await office.actions(1) == ["ingediend", "doorgezet", "feedback", "teruggekoppeld"]


async def test_sluiten_makes_the_signal_read_only_except_terugkoppelen_and_heropenen(office: Office) -> None:
    await office.submit("piet")
    assert "Die uitkomst ken ik niet" in await office.af("af", "sluiten 1 klaar")
    assert "afgesloten: geen mensenhandel" in await office.af("af", "sluiten 1 geen-mensenhandel")
    assert "afgesloten" in await office.af("af", "notitie 1 nog iets")
    assert "afgesloten" in await office.af("af", "sluiten 1 afgerond")
    assert "wordt bezorgd" in await office.af("af", "terugkoppelen 1 Bedankt, we hebben ernaar gekeken.")
    assert len(await office.inbox("piet")) == 1
    assert "heropend" in await office.af("af", "heropenen 1")
    assert "niet afgesloten" in await office.af("af", "heropenen 1")
    assert (await office.signal(1)).status is Status.IN_PROGRESS
    assert await office.actions(1) == ["ingediend", "gesloten", "teruggekoppeld", "heropend"]


async def test_samenvoegen_then_terugkoppelen_reaches_both_melders(office: Office) -> None:
    await office.submit("piet")
    await office.submit("klaas", OTHER, anonymous=True)
    assert "samengevoegd" in await office.af("af", "samenvoegen 1 2")
    duplicate = await office.signal(2)
    assert duplicate.status is Status.CLOSED and duplicate.merged_into == "MH-2026-0001"
    await office.af("af", "terugkoppelen 1 Doorgegeven aan de politie.")
    assert await office.inbox("piet") == ["Terugkoppeling over je melding MH-2026-0001: Doorgegeven aan de politie."]
    assert await office.inbox("klaas") == ["Terugkoppeling over je melding MH-2026-0002: Doorgegeven aan de politie."]
    assert "dezelfde" in await office.af("af", "samenvoegen 1 1")


async def test_overdragen_one_and_all_tells_the_new_af(office: Office) -> None:
    await office.submit("piet")
    await office.submit("klaas", OTHER)
    await office.af("af", "toon 1")
    await office.af("af", "toon 2")
    assert "overgedragen aan bram" in await office.af("af", "overdragen 1 bram")
    assert (await office.signal(1)).handler == "bram"
    assert "1 melding(en) overgedragen aan bram: MH-2026-0002" in await office.af("af", "overdragen alle bram")
    handovers = [m for m in await office.outbox() if m.kind == "handover"]
    assert [m.recipient for m in handovers] == [Identity("console", "af2")] * 2
    assert all("aan jou overgedragen" in m.reply.text for m in handovers)
    assert "ken ik niet" in await office.af("af", "overdragen 1 zorro")


async def test_kenmerk_adds_a_key_and_reports_matches(office: Office) -> None:
    await office.submit("piet")
    await office.submit("klaas", OTHER)
    assert "Nog geen andere" in await office.af("af", "kenmerk 2 persoon Anna de Vries")
    assert "Reeds bekend bij: MH-2026-0002" in await office.af("af", "kenmerk 1 persoon De Vries, Anna")
    assert "Typ: kenmerk" in await office.af("af", "kenmerk 1 kleur rood")
    # The address both reports name was found at submission: `toon` shows it as already known.
    assert "MH-2026-0001 (zelfde adres)" in await office.af("af", "toon 2")
