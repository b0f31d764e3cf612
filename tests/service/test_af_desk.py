"""The AF's queue in chat: every command of the contract, on SQLite and on real PostgreSQL."""

from __future__ import annotations

import pytest

from meldbot.run.app import build_app
from meldbot.core.domain import Status
from tests.support import FakeNotifier, make_config
from tests.support.chat import ANONYMOUS, Chat, migrated


async def test_lijst_shows_open_signals_with_age_status_handler_and_next_step(chat, clock):
    await chat.report("piet")
    out = await chat.say("af", "lijst")
    assert "MH-2026-0001" in out and "ontvangen" in out and "niemand" in out and "oppakken" in out
    assert "paspoorten" not in out


async def test_toon_shows_content_history_and_picks_up(chat):
    await chat.report("piet", name="Piet de Melder")
    out = await chat.say("af", "toon 1")
    assert "Een man houdt de paspoorten" in out and "Kerkstraat 12a" in out
    assert "Piet de Melder (console:piet)" in out
    assert "Geschiedenis" in out and "ingediend" in out
    assert "Je behandelt nu MH-2026-0001" in out
    signal = await chat.signal(1)
    assert signal.handler == "anna" and signal.status is Status.IN_PROGRESS
    assert [e.action for e in await chat.audit(1)][-2:] == ["opgepakt", "gelezen"]


async def test_toon_accepts_the_full_reference_and_shows_reeds_bekend(chat):
    await chat.report("piet")
    await chat.report("klaas", ANONYMOUS)
    out = await chat.say("af", "toon MH-2026-0002")
    assert "MH-2026-0001 (zelfde adres)" in out


async def test_an_unknown_reference_is_answered_clearly(chat):
    assert "vind ik niet" in await chat.say("af", "toon 99")
    assert "geen nummer" in await chat.say("af", "toon abc")


@pytest.mark.parametrize("command", ["toon", "oppakken", "notitie 1", "kenmerk 1 adres", "overleggen 1",
                                     "doorzetten 1", "feedback 1 politie", "terugkoppelen 1", "sluiten 1",
                                     "heropenen", "samenvoegen 1", "overdragen 1", "notitie"])
async def test_missing_arguments_get_the_usage(chat, command):
    await chat.report("piet")
    assert "Typ:" in await chat.say("af", command)


async def test_oppakken_takes_over_and_tells_the_previous_af(chat, database_url, clock):
    await chat.report("piet")
    await chat.say("af", "toon 1")
    # Bram is a backup AF; he may still take a signal over.
    out = await chat.say("af2", "oppakken 1")
    assert "Je behandelt nu" in out
    assert any("bram heeft MH-2026-0001 van je overgenomen" in m for m in chat.inbox("af"))
    assert "al" in await chat.say("af2", "oppakken 1")


async def test_notitie_is_kept_and_never_shown_to_the_melder(chat):
    await chat.report("piet")
    assert "Notitie opgeslagen" in await chat.say("af", "notitie 1 Adres bekend bij handhaving sinds 2024")
    assert "Adres bekend bij handhaving" in await chat.say("af", "toon 1")
    assert "Adres bekend bij handhaving" not in await chat.say("piet", "mijn meldingen")


async def test_kenmerk_adds_a_key_and_reports_matches(chat):
    await chat.report("piet")
    await chat.report("klaas", ["melden", "iets", "ergens", "vandaag", "De Vries, Anna", "5", "anders", "nee",
                                "versturen"])
    assert "Nog geen andere" in await chat.say("af", "kenmerk 2 persoon Anna de Vries")
    assert "Reeds bekend bij: MH-2026-0002" in await chat.say("af", "kenmerk 1 persoon De Vries, Anna")
    assert "Typ: kenmerk" in await chat.say("af", "kenmerk 1 kleur rood")


async def test_doorzetten_gives_a_text_without_the_melder_or_the_notes(chat):
    await chat.report("piet", name="Piet de Melder")
    await chat.say("af", "notitie 1 Interne notitie: buurman is wethouder")
    out = await chat.say("af", "doorzetten 1 avim")
    assert "Politie, team AVIM" in out and "088-9630320" in out
    assert "Een man houdt de paspoorten" in out
    assert "Piet de Melder" not in out and "console:piet" not in out and "wethouder" not in out
    signal = await chat.signal(1)
    assert signal.status is Status.FORWARDED and signal.partners == ("politie",)
    await chat.say("af", "doorzetten 1 nla")
    assert (await chat.signal(1)).partners == ("politie", "nla")
    assert "ken ik niet" in await chat.say("af", "doorzetten 1 brandweer")


async def test_overleggen_records_a_consultation_without_passing_on(chat):
    await chat.report("piet")
    assert "overlegt" in await chat.say("af", "overleggen 1 zorg")
    signal = await chat.signal(1)
    assert signal.status is Status.IN_PROGRESS and signal.partners == ()
    assert signal.events[-1].data == {"partner": "zorgcoordinator"}


async def test_feedback_and_terugkoppelen_reach_the_melder_privately(chat):
    await chat.report("piet")
    await chat.say("af", "doorzetten 1 politie")
    assert "opgeslagen" in await chat.say("af", "feedback 1 politie Onderzoek loopt, geen details")
    assert "wordt bezorgd" in await chat.say("af", "terugkoppelen 1 Je signaal is opgepakt door de politie.")
    assert chat.inbox("piet") == ["Terugkoppeling over je melding MH-2026-0001: Je signaal is opgepakt door de politie."]
    mine = await chat.say("piet", "mijn meldingen")
    assert "Je signaal is opgepakt" in mine and "Onderzoek loopt" not in mine


async def test_sluiten_makes_the_signal_read_only_except_terugkoppelen_and_heropenen(chat):
    await chat.report("piet")
    assert "Die uitkomst ken ik niet" in await chat.say("af", "sluiten 1 klaar")
    assert "afgesloten: geen mensenhandel" in await chat.say("af", "sluiten 1 geen-mensenhandel")
    assert "afgesloten" in await chat.say("af", "notitie 1 nog iets")
    assert "afgesloten" in await chat.say("af", "doorzetten 1 politie")
    assert "afgesloten" in await chat.say("af", "sluiten 1 afgerond")
    assert "wordt bezorgd" in await chat.say("af", "terugkoppelen 1 Bedankt, we hebben ernaar gekeken.")
    assert len(chat.inbox("piet")) == 1
    assert "heropend" in await chat.say("af", "heropenen 1")
    assert "niet afgesloten" in await chat.say("af", "heropenen 1")
    assert (await chat.signal(1)).status is Status.IN_PROGRESS


async def test_samenvoegen_keeps_both_melders_reachable(chat):
    await chat.report("piet")
    await chat.report("klaas", ANONYMOUS)
    assert "samengevoegd" in await chat.say("af", "samenvoegen 1 2")
    assert (await chat.signal(2)).status is Status.CLOSED
    await chat.say("af", "terugkoppelen 1 Doorgegeven aan de politie.")
    assert chat.inbox("piet") == ["Terugkoppeling over je melding MH-2026-0001: Doorgegeven aan de politie."]
    assert chat.inbox("klaas") == ["Terugkoppeling over je melding MH-2026-0002: Doorgegeven aan de politie."]
    assert "dezelfde" in await chat.say("af", "samenvoegen 1 1")


async def test_overdragen_one_and_all_tells_the_new_af(chat):
    await chat.report("piet")
    await chat.report("klaas", ANONYMOUS)
    await chat.say("af", "toon 1")
    await chat.say("af", "toon 2")
    assert "overgedragen aan bram" in await chat.say("af", "overdragen 1 bram")
    assert (await chat.signal(1)).handler == "bram"
    assert "1 melding(en) overgedragen aan bram: MH-2026-0002" in await chat.say("af", "overdragen alle bram")
    assert sum("aan jou overgedragen" in m for m in chat.inbox("af2")) == 2
    assert "ken ik niet" in await chat.say("af", "overdragen 1 zorro")


@pytest.mark.parametrize("command", ["lijst", "toon 1", "oppakken 1", "notitie 1 x", "kenmerk 1 adres Dorp 1",
                                     "overleggen 1 politie", "doorzetten 1 politie", "feedback 1 politie x",
                                     "terugkoppelen 1 x", "sluiten 1 afgerond", "heropenen 1", "samenvoegen 1 2",
                                     "overdragen alle anna", "rapport"])
async def test_anyone_else_is_refused_and_the_attempt_is_audited(chat, command):
    await chat.report("piet")
    out = await chat.say("klaas", command)
    assert "Dit is een commando voor de AF" in out
    assert "paspoorten" not in out
    from sqlmodel import select
    from meldbot.storage.tables import AuditRow

    async with chat.app.uow() as uow:
        rows = (await uow.session.exec(select(AuditRow).where(AuditRow.action.like("geweigerd:%")))).all()
        assert len(rows) == 1 and uow.sealer.open(rows[0].actor_sealed) == "console:klaas"
    assert (await chat.signal(1)).handler is None


async def test_an_anonymous_melder_is_invisible_to_the_af_yet_reachable(chat):
    secret_id, secret_name = "geheime.collega", "Geheime Collega"
    await chat.report(secret_id, ANONYMOUS, name=secret_name)
    seen = [*chat.inbox("af")]
    seen.append(await chat.say("af", "lijst"))
    seen.append(await chat.say("af", "toon 1"))
    seen.append(await chat.say("af", "doorzetten 1 politie"))
    seen.append(await chat.say("af", "rapport"))
    seen += [f"{e.actor} {e.action} {e.detail}" for e in await chat.audit(1)]
    everything = "\n".join(seen)
    assert "Melder " in everything and "(anoniem)" in everything
    assert secret_id not in everything and secret_name not in everything and "Geheime" not in everything
    await chat.say("af", "terugkoppelen 1 Dank je, het is doorgezet.")
    assert chat.inbox(secret_id) == ["Terugkoppeling over je melding MH-2026-0001: Dank je, het is doorgezet."]


async def test_a_removed_af_loses_signals_at_the_next_start_and_the_others_are_told(database_url, clock, tmp_path):
    await migrated(database_url)
    extra = {"MELDBOT_MELDPUNT__0__AF__1__BACKUP": "false"}
    notifier = FakeNotifier()
    app = build_app(make_config(database_url, **extra), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        chat = Chat(app, notifier)
        await chat.report("piet")
        await chat.say("af2", "toon 1")
        assert (await chat.signal(1)).handler == "bram"
    # Bram leaves: the configuration now lists only Anna.
    without_bram = tmp_path / "zonder-bram.toml"
    from tests.support import EXAMPLE

    text = EXAMPLE.read_text(encoding="utf-8")
    bram = '  [[meldpunt.af]]\n  name = "bram"'
    start = text.index(bram)
    end = text.index("\n\n", start)
    without_bram.write_text(text[:start] + text[end + 2:], encoding="utf-8")
    from meldbot.core.config import load_config

    config = load_config(without_bram, {"MELDBOT_STORAGE__URL": database_url})
    notifier2 = FakeNotifier()
    app2 = build_app(config, clock=clock, notifiers={"console": notifier2}, mode="chat")
    async with app2:
        chat2 = Chat(app2, notifier2)
        await app2.dispatcher.deliver_pending()
        assert (await chat2.signal(1)).handler is None
        assert any("bram staat niet meer" in m for m in chat2.inbox("af"))
        assert "Dit is een commando voor de AF" in await chat2.say("af2", "toon 1")
        assert "Je behandelt nu" in await chat2.say("af", "toon 1")


async def test_rapport_gives_figures_and_a_chart(chat):
    await chat.report("piet")
    await chat.report("klaas", ANONYMOUS)
    await chat.say("af", "doorzetten 1 politie")
    replies = await chat.replies("af", "rapport 2026-11")
    assert "Cijfers 2026-11: 2 melding(en)" in replies[0].text and "politie: 1" in replies[0].text
    assert replies[0].image[:8] == b"\x89PNG\r\n\x1a\n"
    assert "geen periode" in (await chat.replies("af", "rapport 2026-13"))[0].text


@pytest.mark.slow
def test_the_anonymous_regional_export_holds_no_personal_data(tmp_path):
    import asyncio
    import subprocess
    import sys

    from meldbot.core.clock import ManualClock
    from datetime import datetime, timezone
    from tests.support.cli import env_for

    url = f"sqlite+aiosqlite:///{tmp_path}/meldbot.db"

    async def seed():
        await migrated(url)
        clock = ManualClock(datetime.now(timezone.utc))
        notifier = FakeNotifier()
        app = build_app(make_config(url), clock=clock, notifiers={"console": notifier}, mode="chat")
        async with app:
            chat = Chat(app, notifier)
            for i in range(6):
                await chat.report(f"melder{i}", name=f"Naam{i} Achternaam")
            await chat.say("af", "doorzetten 1 politie")
    asyncio.run(seed())
    env = env_for(tmp_path, MELDBOT_STORAGE__URL=url)
    for fmt in ("csv", "json"):
        out = subprocess.run([sys.executable, "-m", "meldbot", "report", "--anonymous", "--format", fmt],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "6" in out.stdout
        for secret in ("Naam", "melder0", "melder5", "paspoorten", "Kerkstraat", "Jansen", "MH-"):
            assert secret not in out.stdout
