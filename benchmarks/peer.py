"""Benchmark 4, Peer: meldbot's report dialog against the same dialog built on botbuilder-dialogs.

The peer is the same report dialog (seven questions, summary, send) as a botbuilder WaterfallDialog:
TextPrompt for wat/waar/wanneer/wie, ChoicePrompt for soort, context and anoniem (nee/ja, as in
meldbot; botbuilder 4.17's ConfirmPrompt cannot serve: it has no Dutch boolean model, and its fallback
puts Ja/Nee in a set, so "nee" comes out as yes or no depending on set order), a ChoicePrompt summary
(versturen / wijzig / stop, like meldbot's buttons) and a final step that "sends".
Its dialog stack lives in ConversationState and the melder's profile in UserState, both on MemoryStorage
(which deep-copies on every write; BotState hashes the state with jsonpickle to see if it changed).

It is driven in-process through botbuilder's TestAdapter pipeline: one TurnContext per incoming text
activity, `adapter.run_pipeline(context, bot.on_turn)`, replies collected by the adapter's
`send_activities`. That is `TestAdapter.process_activity` without its template overwrite (which would
put every activity in the one template conversation) and without its lock and timestamp: the least
overhead beside the dialog stack. Activities are built before the clock starts.

Both sides get the same 1,000 scripted conversations (the line sequence of SCRIPT in
tests/support/chat.py: melden, wat, waar, wanneer, wie, soort, context, anoniem, versturen), with the
free texts and the choices varied per conversation from a seed, so neither side can cache.

Figures:
- meldbot's dialog engine per turn / the peer's turn (target <= 0.5). meldbot's engine turn is what
  meldbot/bot.py does around `report.step` without storage: catalogue lookup, `Draft.from_dict`, the
  command parses, the DialogContext, `report.step` (which includes reading `wanneer` with
  meldbot/dialogs/when.py, a cost the peer's TextPrompt does not have), the `submitted` reply, `Draft.to_dict`,
  and a JSON round trip of the conversation state (what storage does to it; the peer's MemoryStorage
  deep-copies in its place).
- meldbot's full durable turn (the real app on SQLite: `app.bot.handle`, one transaction per turn, the
  outbox dispatcher running beside it) / the peer's in-memory turn, untargeted. The durable run takes
  the first 500 of the conversations in full mode (~8 ms a turn; all 1,000 would take the module past
  two minutes on a shared machine), all 50 in quick mode.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import Figure, main

SECTION = "4 Peer"
TURNS_PER_CONVERSATION = 9
NOW = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)   # as tests/conftest.py's clock

# --- the scripted conversations ------------------------------------------------------------------

_WHAT = ["Een man schrijft steeds nieuwe vrouwen in op zijn adres en houdt hun paspoorten.",
         "Aan de balie kwam een vrouw die niet zelf mocht praten; haar begeleider antwoordde voor haar.",
         "Bij een huisbezoek sliepen {n} mensen in één kamer boven een nagelstudio.",
         "Een jongen van ongeveer {n} jaar verkocht drugs en leek bang voor de man in de auto.",
         "Werknemers van een uitzendbureau moeten hun loon afdragen voor huur en vervoer.",
         "Een vrouw vertelde dat ze een schuld van {n}00 euro moet afbetalen voordat ze weg mag."]
_STREETS = ["Kerkstraat", "Dorpsstraat", "Molenweg", "Stationsplein", "Hoofdstraat", "Industrieweg"]
_TOWNS = ["Bergeijk", "Eindhoven", "Veldhoven", "Valkenswaard", "Eersel"]
# Forms the help text names; some go through the hand-written grammar, some through dateparser.
_WHEN = ["gisteren", "gisteravond", "vandaag om {h}:{m:02d}", "maandag", "afgelopen vrijdag",
         "{d} november", "{d}-10-2026 om {h}:{m:02d}", "{k} dagen geleden", "vorige week"]
_WHO = ["onbekend", "een man van rond de {n} met een Pools accent",
        "twee mannen in een witte bestelbus, kenteken {k}-ABC-{n}", "de eigenaar van het bedrijf"]
# Accepted by both sides: the number, the contract word or an alias.
_SOORT = ["1", "2", "3", "4", "5", "seksueel", "arbeid", "crimineel", "onbekend", "labour"]
_CONTEXT = ["1", "2", "3", "4", "5", "balie", "huisbezoek", "toezicht", "vergunning", "anders"]
_ANONIEM = ["nee", "ja"]
# What meldbot stores for each answer above (the check that both sides understood the same).
_SOORT_VALUE = {"1": "seksueel", "2": "arbeid", "3": "crimineel", "4": "orgaan", "5": "onbekend", "labour": "arbeid"}
_CONTEXT_VALUE = {"1": "balie", "2": "huisbezoek", "3": "toezicht", "4": "vergunning", "5": "anders"}


@dataclass(frozen=True)
class Conversation:
    user: str
    lines: tuple[str, ...]
    expected: dict          # the answers both sides must end up with


def conversations(n: int, seed: int = 4) -> list[Conversation]:
    out = []
    for i in range(n):
        rnd = random.Random(seed * 1_000_003 + i)
        num = rnd.randint(2, 60)
        wat = f"{rnd.choice(_WHAT).format(n=num)} (melding {i})"
        waar = f"{rnd.choice(_STREETS)} {rnd.randint(1, 250)}, {rnd.choice(_TOWNS)}"
        wanneer = rnd.choice(_WHEN).format(h=rnd.randint(7, 9), m=rnd.randrange(0, 60, 5),
                                           d=rnd.randint(1, 17), k=rnd.randint(2, 6))
        wie = rnd.choice(_WHO).format(n=rnd.randint(20, 99), k=rnd.randint(10, 99))
        soort, context, anoniem = rnd.choice(_SOORT), rnd.choice(_CONTEXT), rnd.choice(_ANONIEM)
        lines = ("melden", wat, waar, wanneer, wie, soort, context, anoniem, "versturen")
        expected = {"wat": wat, "waar": waar, "wanneer": wanneer, "wie": wie,
                    "soort": _SOORT_VALUE.get(soort, soort), "context": _CONTEXT_VALUE.get(context, context),
                    "anoniem": anoniem}
        out.append(Conversation(f"melder{i:05d}", lines, expected))
    return out


# --- meldbot: the dialog engine without storage ---------------------------------------------------

class MeldbotEngine:
    """What meldbot/bot.py's `_turn` does around `report.step`, minus the database (state in a dict)."""

    def __init__(self) -> None:
        from meldbot.service.bot import Bot
        from meldbot.core.clock import ManualClock
        from tests.support import make_config

        config = make_config("sqlite+aiosqlite:///:memory:")
        self.clock = ManualClock(NOW)
        # Only `_context` is used: no unit of work is ever opened.
        self.bot = Bot(config, uow_factory=None, clock=self.clock, platforms=("console",))
        self.meldpunt = config.meldpunten[0]
        self.language = config.language

    def run(self, convs: list[Conversation]) -> tuple[float, list[dict], str]:
        from meldbot.dialogs import report
        from meldbot.dialogs.commands import AF_ONLY, ANYONE, parse
        from meldbot.core.i18n import texts

        submitted: list[dict] = []
        states: dict[str, str] = {}
        bot, meldpunt, language, now = self.bot, self.meldpunt, self.language, self.clock.now()
        last = ""
        started = time.perf_counter()
        for conv in convs:
            for text in conv.lines:
                stored = states.get(conv.user)
                state = json.loads(stored) if stored else {}
                t = texts(language)
                draft = report.Draft.from_dict(state.get("draft"))
                if not draft.active and parse(text, AF_ONLY) is not None:
                    raise AssertionError(f"scripted line taken as an AF command: {text!r}")
                ctx = bot._context(meldpunt, t, now)
                parse(text, ANYONE)
                step = report.step(draft, text, ctx)
                replies = list(step.replies)
                draft = step.draft
                if step.submit is not None:
                    submitted.append(dict(step.submit.answers))
                    anonymous = step.submit.answers.get("anoniem") == "ja"
                    replies.append(report.submitted(ctx, f"MH-2026-{len(submitted):04d}", anonymous,
                                                    "Pseudoniem" if anonymous else None))
                state["draft"] = draft.to_dict() if draft.active else None
                states[conv.user] = json.dumps(state, ensure_ascii=False)
                last = replies[-1].text
        return time.perf_counter() - started, submitted, last


# --- the peer: botbuilder-dialogs -----------------------------------------------------------------

def botbuilder_available() -> str | None:
    """None when botbuilder-dialogs imports, else why not."""
    try:
        import botbuilder.core  # noqa: F401
        import botbuilder.dialogs  # noqa: F401
    except Exception as exc:  # not installed, or broken beside the project's pins
        return f"{type(exc).__name__}: {exc}"
    return None


def build_peer():
    """The report dialog as a botbuilder WaterfallDialog; returns (bot, adapter)."""
    from botbuilder.core import ConversationState, MemoryStorage, MessageFactory, TurnContext, UserState
    from botbuilder.core.adapters import TestAdapter
    from botbuilder.dialogs import (DialogSet, DialogTurnStatus, WaterfallDialog, WaterfallStepContext,
                                    DialogTurnResult)
    from botbuilder.dialogs.choices import Choice, ListStyle
    from botbuilder.dialogs.prompts import ChoicePrompt, PromptOptions, TextPrompt
    from meldbot.dialogs.report import CHOICE_ALIASES, CHOICES, QUESTIONS
    from meldbot.core.i18n import texts

    t = texts("nl")
    total = len(QUESTIONS)
    # The same Dutch sentences as meldbot, resolved once (meldbot looks them up every turn).
    ask = {q: t("question.progress", number=i, total=total) + "\n" + t(f"question.{q}")
           for i, q in enumerate(QUESTIONS, start=1)}
    labels = {q: t(f"label.{q}") for q in QUESTIONS}
    shown = {(q, w): t(f"choice.{q}.{w}") for q in CHOICES for w in CHOICES[q]}

    def choices(q: str) -> list:
        aliases: dict[str, list[str]] = {}
        for alias, word in CHOICE_ALIASES[q].items():
            aliases.setdefault(word, []).append(alias)
        return [Choice(w, synonyms=[shown[q, w], *aliases.get(w, [])]) for w in CHOICES[q]]

    soort_choices, context_choices, anoniem_choices = choices("soort"), choices("context"), choices("anoniem")
    summary_choices = [Choice("versturen", synonyms=["verstuur", "send"]), Choice("wijzig", synonyms=["edit"]),
                       Choice("stop", synonyms=["annuleren", "cancel"])]
    intro, welcome, cancelled = t("report.intro"), t("welcome", contacts=""), t("cancelled")

    class PeerBot:
        def __init__(self) -> None:
            storage = MemoryStorage()
            self.conversation_state = ConversationState(storage)
            self.user_state = UserState(storage)
            self.profile = self.user_state.create_property("MelderProfile")
            self.dialogs = DialogSet(self.conversation_state.create_property("DialogState"))
            self.dialogs.add(TextPrompt("text"))
            self.dialogs.add(ChoicePrompt("choice", default_locale="nl-nl"))
            self.dialogs.add(WaterfallDialog("report", [
                self.ask_wat, self.ask_waar, self.ask_wanneer, self.ask_wie, self.ask_soort,
                self.ask_context, self.ask_anoniem, self.show_summary, self.finish,
            ]))
            self.finished: list[dict] = []

        async def on_turn(self, context: TurnContext) -> None:
            dc = await self.dialogs.create_context(context)
            result = await dc.continue_dialog()
            if result.status == DialogTurnStatus.Empty:
                if (context.activity.text or "").strip().lower() == "melden":
                    await dc.begin_dialog("report")
                else:
                    await context.send_activity(welcome)
            await self.conversation_state.save_changes(context)
            await self.user_state.save_changes(context)

        @staticmethod
        async def _text(step: WaterfallStepContext, q: str) -> DialogTurnResult:
            return await step.prompt("text", PromptOptions(prompt=MessageFactory.text(ask[q])))

        @staticmethod
        async def _choice(step: WaterfallStepContext, q: str, options: list) -> DialogTurnResult:
            return await step.prompt("choice", PromptOptions(prompt=MessageFactory.text(ask[q]), choices=options,
                                                             retry_prompt=MessageFactory.text(ask[q]),
                                                             style=ListStyle.list_style))

        async def ask_wat(self, step):
            await step.context.send_activity(intro)
            return await self._text(step, "wat")

        async def ask_waar(self, step):
            step.values["wat"] = step.result.strip()
            return await self._text(step, "waar")

        async def ask_wanneer(self, step):
            step.values["waar"] = step.result.strip()
            return await self._text(step, "wanneer")

        async def ask_wie(self, step):
            step.values["wanneer"] = step.result.strip()
            return await self._text(step, "wie")

        async def ask_soort(self, step):
            step.values["wie"] = step.result.strip()
            return await self._choice(step, "soort", soort_choices)

        async def ask_context(self, step):
            step.values["soort"] = step.result.value
            return await self._choice(step, "context", context_choices)

        async def ask_anoniem(self, step):
            step.values["context"] = step.result.value
            return await self._choice(step, "anoniem", anoniem_choices)

        async def show_summary(self, step):
            values = step.values
            values["anoniem"] = step.result.value
            lines = [t("summary.header")]
            for q in QUESTIONS:
                value = values.get(q) or "-"
                lines.append(t("summary.line", label=labels[q], value=shown.get((q, value), value)))
            lines.append(t("summary.footer"))
            return await step.prompt("choice", PromptOptions(prompt=MessageFactory.text("\n".join(lines)),
                                                             choices=summary_choices,
                                                             style=ListStyle.suggested_action))

        async def finish(self, step):
            word = step.result.value
            if word == "versturen":
                answers = {q: step.values[q] for q in QUESTIONS}
                self.finished.append(answers)
                profile = await self.profile.get(step.context, dict)
                profile["sent"] = profile.get("sent", 0) + 1
                await step.context.send_activity(t("submitted", reference=f"MH-2026-{len(self.finished):04d}"))
                return await step.end_dialog(answers)
            if word == "wijzig":   # not in the script: start over with the answers asked again
                return await step.replace_dialog("report")
            await step.context.send_activity(cancelled)
            return await step.end_dialog()

    return PeerBot(), TestAdapter()


def peer_activities(convs: list[Conversation]) -> list[tuple[str, list]]:
    from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount

    bot_account = ChannelAccount(id="meldbot", name="meldbot")
    out = []
    for conv in convs:
        user = ChannelAccount(id=conv.user, name=conv.user)
        conversation = ConversationAccount(id=conv.user, is_group=False)
        out.append((conv.user, [
            Activity(type=ActivityTypes.message, text=line, channel_id="test", service_url="https://test.invalid",
                     from_property=user, recipient=bot_account, conversation=conversation, locale="nl-NL",
                     id=f"{conv.user}-{n}")
            for n, line in enumerate(conv.lines)
        ]))
    return out


async def run_peer(convs: list[Conversation]) -> tuple[float, list[dict], str]:
    from botbuilder.core import TurnContext

    bot, adapter = build_peer()
    batches = peer_activities(convs)
    buffer = adapter.activity_buffer
    on_turn, run_pipeline = bot.on_turn, adapter.run_pipeline
    last = ""
    started = time.perf_counter()
    for _user, activities in batches:
        for activity in activities:
            buffer.clear()
            await run_pipeline(TurnContext(adapter, activity), on_turn)
        last = buffer[-1].text
    elapsed = time.perf_counter() - started
    return elapsed, bot.finished, last


# --- meldbot: the full durable turn on SQLite -----------------------------------------------------

async def run_durable(convs: list[Conversation]) -> tuple[float, int, str]:
    from meldbot.run.app import build_app
    from meldbot.core.clock import ManualClock
    from meldbot.core.messaging import Identity, IncomingMessage
    from benchmarks.common import bench_config
    from tests.support import FakeNotifier
    from tests.support.chat import migrated

    with tempfile.TemporaryDirectory(prefix="meldbot-peer-") as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'meldbot.db'}"
        await migrated(url)
        app = build_app(bench_config(url), clock=ManualClock(NOW), notifiers={"console": FakeNotifier()}, mode="chat")
        messages = [[IncomingMessage(sender=Identity("console", c.user), conversation_id=c.user, text=line,
                                     sender_name=c.user) for line in c.lines] for c in convs]
        async with app:
            await asyncio.sleep(0.5)   # let the start-up catch-up and dateparser's warm-up finish first
            handle = app.bot.handle
            last = ""
            started = time.perf_counter()
            for conversation in messages:
                for msg in conversation:
                    replies = await handle(msg)
                last = replies[-1].text
            elapsed = time.perf_counter() - started
            async with app.uow() as uow:
                count = await uow.signals.count()
    return elapsed, count, last


# --- the measurement ------------------------------------------------------------------------------

def _check(name: str, got: list[dict], convs: list[Conversation]) -> None:
    if len(got) != len(convs):
        raise AssertionError(f"{name}: {len(got)} of {len(convs)} conversations reached the end")
    for answers, conv in zip(got, convs):
        if answers != conv.expected:
            raise AssertionError(f"{name}: {conv.user} ended with {answers}, expected {conv.expected}")


async def measure(quick: bool) -> list[Figure]:
    n = 50 if quick else 1000
    n_durable = 50 if quick else 500
    repetitions = 3
    convs = conversations(n)
    turns = n * TURNS_PER_CONVERSATION

    from meldbot.dialogs.when import warm_up
    warm_up()
    engine = MeldbotEngine()
    engine.run(conversations(20, seed=99))          # warm both sides (imports, regex caches)

    unavailable = botbuilder_available()
    if unavailable is None:
        await run_peer(conversations(20, seed=99))

    meldbot_times, peer_times = [], []
    for _ in range(repetitions):                     # interleaved; best of the repetitions
        gc.collect()
        seconds, submitted, last = engine.run(convs)
        _check("meldbot engine", submitted, convs)
        if "MH-2026-" not in last:
            raise AssertionError(f"meldbot engine: last reply {last!r}")
        meldbot_times.append(seconds)
        if unavailable is None:
            gc.collect()
            seconds, finished, last = await run_peer(convs)
            _check("peer", finished, convs)
            if "MH-2026-" not in last:
                raise AssertionError(f"peer: last reply {last!r}")
            peer_times.append(seconds)

    gc.collect()
    durable_convs = convs[:n_durable]
    durable_seconds, signals, last = await run_durable(durable_convs)
    if signals != n_durable or "MH-2026-" not in last:
        raise AssertionError(f"durable: {signals} signals for {n_durable} conversations; last reply {last!r}")
    durable_turns = n_durable * TURNS_PER_CONVERSATION

    m_us = min(meldbot_times) / turns * 1e6
    m_med = statistics.median(meldbot_times) / turns * 1e6
    durable_ms = durable_seconds / durable_turns * 1e3
    durable_detail = (f"{durable_ms:.2f} ms per durable turn ({n_durable} conversations, {durable_turns} turns, "
                      f"{signals} signals in SQLite)")
    figures = [
        Figure(SECTION, "meldbot dialog engine per turn", m_us, "µs",
               detail=f"best of {repetitions}, median {m_med:.1f} µs; {n} conversations, {turns} turns, "
                      f"{n} submitted; includes from_dict/to_dict + JSON round trip of the state"),
    ]
    if unavailable is not None:
        nan = float("nan")
        figures += [
            Figure(SECTION, "dialog engine per turn, ratio meldbot/botbuilder", nan, "×", target=0.5,
                   detail=f"unavailable: botbuilder-dialogs does not import ({unavailable})"),
            Figure(SECTION, "meldbot full durable turn on SQLite", durable_ms, "ms", detail=durable_detail),
            Figure(SECTION, "full durable turn on SQLite / peer in-memory turn", nan, "×",
                   detail="unavailable: no peer"),
        ]
        return figures

    p_us = min(peer_times) / turns * 1e6
    p_med = statistics.median(peer_times) / turns * 1e6
    figures += [
        Figure(SECTION, "botbuilder-dialogs peer per turn", p_us, "µs",
               detail=f"best of {repetitions}, median {p_med:.1f} µs; {n} conversations, {turns} turns, "
                      f"{n} waterfalls ended; TestAdapter pipeline, MemoryStorage"),
        Figure(SECTION, "dialog engine per turn, ratio meldbot/botbuilder", m_us / p_us, "×", target=0.5,
               detail=f"meldbot {m_us:.1f} µs vs botbuilder {p_us:.1f} µs per turn"),
        Figure(SECTION, "meldbot full durable turn on SQLite", durable_ms, "ms", detail=durable_detail),
        Figure(SECTION, "full durable turn on SQLite / peer in-memory turn", durable_ms * 1000 / p_us, "×",
               detail=f"{durable_ms:.2f} ms vs {p_us / 1000:.3f} ms per turn"),
    ]
    return figures


if __name__ == "__main__":
    main(measure)
