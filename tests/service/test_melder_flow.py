"""The melder through the bot with real storage: own signals, adding information, expiry, language."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meldbot.dialogs.report import CHOICES, QUESTIONS, clean
from meldbot.run.app import build_app
from meldbot.core.domain import RefQuery
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.service.services import MAX_SUPPLEMENTS
from tests.support import FakeNotifier, make_config
from tests.support.cli import env_for
from tests.support.chat import SCRIPT, migrated, report_as, say


@pytest.fixture
async def app(sqlite_url, clock):
    await migrated(sqlite_url)
    notifier = FakeNotifier()
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    app.fake = notifier
    async with app:
        yield app


def joined(replies) -> str:
    return "\n".join(r.text for r in replies)


async def test_my_reports_lists_nothing_before_the_first_report(app):
    assert "nog geen meldingen" in joined(await app.bot.handle(say("piet", "mijn meldingen")))


async def test_my_reports_shows_reference_date_status_and_feedback(app, clock):
    await report_as(app, "piet")
    before = joined(await app.bot.handle(say("piet", "mijn meldingen")))
    assert "MH-2026-0001 van 18-11-2026: ontvangen" in before and "Nog geen terugkoppeling" in before
    async with app.uow() as uow:
        signal = await uow.signals.find(RefQuery(1), ["bergeijk"])
        signal.pick_up("anna", clock.now())
        signal.inform_melder("anna", "Het signaal is doorgegeven aan de politie.", clock.now())
        await uow.signals.save(signal, clock.now())
        await uow.commit()
    after = joined(await app.bot.handle(say("piet", "my reports")))
    assert "in behandeling" in after
    assert "Terugkoppeling (18-11-2026): Het signaal is doorgegeven aan de politie." in after


async def test_a_melder_never_sees_someone_elses_reports(app):
    await report_as(app, "piet")
    assert "nog geen meldingen" in joined(await app.bot.handle(say("klaas", "mijn meldingen")))


async def test_aanvullen_adds_to_the_own_signal_and_tells_the_af_without_content(app):
    await report_as(app, "piet")
    await app.dispatcher.deliver_pending()
    reply = joined(await app.bot.handle(say("piet", "aanvullen 1 Het busje was wit met een Pools kenteken")))
    assert "MH-2026-0001" in reply
    await app.dispatcher.deliver_pending()
    to_af = [r.text for r in app.fake.to("af")]
    assert len(to_af) == 2 and "toegevoegd aan MH-2026-0001" in to_af[1]
    assert "busje" not in to_af[1]
    async with app.uow() as uow:
        signal = await uow.signals.find(RefQuery(1), ["bergeijk"], with_events=True)
    assert signal.events[-1].data["text"] == "Het busje was wit met een Pools kenteken"


async def test_aanvullen_past_the_limit_shows_the_melder_a_way_on_and_tells_the_af_without_content(app, clock):
    await report_as(app, "piet")
    for n in range(MAX_SUPPLEMENTS):
        assert "Ik heb je aanvulling" in joined(await app.bot.handle(say("piet", f"aanvullen 1 aanvulling {n}")))
    await app.dispatcher.deliver_pending()
    before = len(app.fake.to("af"))

    refused = joined(await app.bot.handle(say("piet", "aanvullen 1 Er komt morgen een nieuw busje met meisjes")))
    assert f"al {MAX_SUPPLEMENTS} keer" in refused and "MH-2026-0001" in refused
    assert "Typ dan melden" in refused and "Typ contact" in refused          # a way on, not a dead end
    await app.dispatcher.deliver_pending()
    told = [r.text for r in app.fake.to("af")][before:]
    assert len(told) == 1 and "wilde nog iets toevoegen aan MH-2026-0001" in told[0]
    assert "busje" not in told[0] and "terugkoppelen 1" in told[0]

    # Trying again the same day does not flood the AF; the next day they hear it again.
    await app.bot.handle(say("piet", "aanvullen 1 nog een keer"))
    await app.dispatcher.deliver_pending()
    assert len(app.fake.to("af")) == before + 1
    clock.advance(timedelta(days=1))
    await app.bot.handle(say("piet", "aanvullen 1 en nog een keer"))
    await app.dispatcher.deliver_pending()
    assert len(app.fake.to("af")) == before + 2
    async with app.uow() as uow:
        signal = await uow.signals.find(RefQuery(1), ["bergeijk"], with_events=True)
    assert not any("busje" in str(e.data) or "nog een keer" in str(e.data) for e in signal.events)


async def test_aanvullen_on_someone_elses_signal_finds_nothing(app):
    await report_as(app, "piet")
    reply = joined(await app.bot.handle(say("klaas", "aanvullen 1 extra info")))
    assert "geen melding 1 van jou" in reply


@pytest.mark.parametrize("typed", ["aanvullen", "aanvullen 1", "aanvullen abc tekst"])
async def test_aanvullen_without_reference_or_text_explains_how(app, typed):
    await report_as(app, "piet")
    assert "Bijvoorbeeld: aanvullen 7" in joined(await app.bot.handle(say("piet", typed)))


async def test_my_reports_mid_dialog_is_the_answer_to_the_question(app):
    """The chat contract (issue 19): inside the dialog `mijn meldingen` is no command; it answers the question."""
    await app.bot.handle(say("piet", "melden"))
    replies = await app.bot.handle(say("piet", "mijn meldingen"))
    assert "nog geen meldingen" not in joined(replies)
    assert "Vraag 2 van 7" in replies[-1].text


async def test_taal_en_switches_and_is_remembered(app):
    await app.bot.handle(say("piet", "melden"))
    replies = await app.bot.handle(say("piet", "taal en"))
    assert "English" in replies[0].text and "What did you see or hear?" in replies[-1].text
    again = await app.bot.handle(say("piet", "help"))
    assert "Tell what you saw" in again[0].text
    await app.bot.handle(say("piet", "cancel"))
    # Outside the dialog an unknown language is explained (inside it, "taal fr" is an answer).
    unknown = await app.bot.handle(say("piet", "taal fr"))
    assert "nl" in unknown[0].text and "en" in unknown[0].text


async def test_a_draft_untouched_for_24_hours_is_erased_and_the_melder_told(app, clock):
    await app.bot.handle(say("piet", "melden"))
    await app.bot.handle(say("piet", "Een vaag gevoel bij de kapsalon"))
    clock.advance(timedelta(hours=24, minutes=1))
    replies = await app.bot.handle(say("piet", "Kerkstraat 3"))
    assert "gewist" in replies[0].text
    # no question is answered by the old draft's next answer: the short "not understood" names melden
    assert "Typ melden" in replies[-1].text and "Vraag" not in replies[-1].text


async def test_a_draft_of_23_hours_is_kept(app, clock):
    await app.bot.handle(say("piet", "melden"))
    await app.bot.handle(say("piet", "Een vaag gevoel bij de kapsalon"))
    clock.advance(timedelta(hours=23))
    replies = await app.bot.handle(say("piet", "Kerkstraat 3"))
    assert "Wanneer was het?" in replies[-1].text


async def test_the_expiry_job_erases_the_answers_and_the_melder_hears_it_later(app, clock):
    await app.bot.handle(say("piet", "melden"))
    await app.bot.handle(say("piet", "Geheim detail dat weg moet"))
    clock.advance(timedelta(hours=25))
    assert await app.expire_drafts() == 1
    async with app.uow() as uow:
        state, _ = await uow.conversations.load("console", "piet")
    assert "Geheim" not in str(state)
    replies = await app.bot.handle(say("piet", "hallo"))
    assert "gewist" in replies[0].text
    assert await app.expire_drafts() == 0


async def test_a_group_chat_gets_a_pointer_and_nothing_is_kept(app):
    msg = IncomingMessage(sender=Identity("console", "piet"), conversation_id="groep", text="melden", is_private=False)
    replies = await app.bot.handle(msg)
    assert "privégesprek" in replies[0].text
    async with app.uow() as uow:
        assert await uow.conversations.load("console", "groep") is None


# --- properties -----------------------------------------------------------------------------------

any_text = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["melden", "terug", "stop", "spoed", "versturen", "wijzig waar", "wijzig x", "help",
                     "contact", "signalen", "mijn meldingen", "taal en", "taal nl", "aanvullen 1 x", "1", "5", ""]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=3990, max_size=4010),
    st.just("<script>alert(1)</script> **vet** <b>x</b> 😀 \x00\x1b"),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(any_text, min_size=1, max_size=12))
async def test_any_message_sequence_gets_a_reply_and_never_an_error(app, messages):
    user = f"p{abs(hash(tuple(messages)))}"
    for message in messages:
        replies = await app.bot.handle(say(user, message))
        assert replies, message
        assert all("Er ging iets mis" not in r.text for r in replies), message


answer_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=200
).map(clean).filter(lambda s: s and s.casefold() not in {"terug", "back", "stop", "annuleren", "cancel",
                                                              "spoed", "urgent", "help", "contact", "signalen",
                                                              "signs", "versturen", "send", "melden", "report",
                                                              "wijzig", "edit", "mijn meldingen", "my reports",
                                                              "taal", "language", "aanvullen", "add"}
                                     and not s.lstrip("!/ ").casefold().startswith(("taal ", "language ", "aanvullen ", "add ")))


@st.composite
def answer_script(draw):
    answers, typed = {}, []
    for q in QUESTIONS:
        if q in CHOICES:
            index = draw(st.integers(0, len(CHOICES[q]) - 1))
            answers[q] = CHOICES[q][index]
            typed.append(draw(st.sampled_from([str(index + 1), CHOICES[q][index], CHOICES[q][index].upper()])))
        else:
            text = draw(answer_text)
            answers[q] = text
            typed.append(text)
    return answers, typed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=answer_script())
async def test_every_valid_answer_script_submits_exactly_one_signal_with_exactly_those_answers(app, script):
    answers, typed = script
    user = f"m{abs(hash(tuple(typed)))}"
    async with app.uow() as uow:
        before = len(await uow.signals.of_melder(Identity("console", user)))
    for message in ["melden", *typed, "versturen"]:
        await app.bot.handle(say(user, message))
    async with app.uow() as uow:
        mine = await uow.signals.of_melder(Identity("console", user))
    assert len(mine) == before + 1
    signal = mine[-1]
    content = signal.content
    assert (content.wat, content.waar, content.wanneer, content.wie) == (
        answers["wat"], answers["waar"], answers["wanneer"], answers["wie"])
    assert (str(signal.form), str(signal.context), signal.anonymous) == (
        answers["soort"], answers["context"], answers["anoniem"] == "ja")


# --- restart ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_after_a_restart_the_dialog_continues_at_the_same_question(tmp_path):
    def chat(stdin: str) -> str:
        result = subprocess.run([sys.executable, "-m", "meldbot", "chat"], input=stdin, capture_output=True,
                                text=True, timeout=60, cwd=tmp_path, env=env_for(tmp_path))
        assert result.returncode == 0, result.stderr
        return result.stdout

    migrate = subprocess.run([sys.executable, "-m", "meldbot", "migrate"], capture_output=True, text=True,
                             cwd=tmp_path, env=env_for(tmp_path))
    assert migrate.returncode == 0
    first = chat("melden\n" + SCRIPT[1] + "\n" + SCRIPT[2] + "\n:stop\n")
    assert "Vraag 3 van 7" in first
    second = chat("help\ngisteren\n:stop\n")
    assert "Vraag 3 van 7" in second and "Wanneer was het?" in second
    assert "Vraag 4 van 7" in second
