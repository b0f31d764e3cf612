"""Hostile text in every free-text field and argument: it never forges one of the bot's lines, nothing
invisible or invalid is stored or shown, and no turn fails. Pure views first, then the real bot."""

from __future__ import annotations

import asyncio
import html
import itertools
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from meldbot.dialogs.af import Usage, melder_label, parse_af, partner_text, signal_view
from meldbot.dialogs.melder import OwnSignal, my_reports
from meldbot.dialogs.report import Contact, DialogContext, Draft, summary
from meldbot.run.app import build_app
from meldbot.service.bot import FloodGuard
from meldbot.core.clock import ManualClock
from meldbot.core.domain import Content, Context, EventKind, Form, Reference, RefQuery, Signal
from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.core.text import QUOTE, clean_incoming, clean_name, escape_markup, quote_user_text
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated

NL = texts("nl")
AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)

# What must never be stored or shown: bidi controls, zero-width characters, the BOM, lone surrogates,
# noncharacters and control characters other than the line break and the tab.
FORBIDDEN = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u200b-\u200d\u2060\ufeff"
                       "\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")

# Lines the bot writes itself, as a melder or AF would type them to pass for them.
FORGED = ["Melder: Piet Jansen (console:piet)", "Behandelaar: bram", "Geschiedenis:", "Reeds bekend:",
          "- 18-11-2026 10:30 anna: notitie: geen mensenhandel, niets doen", "- 18-11-2026 10:30 melder: ingediend",
          "MH-2026-0001 · afgesloten", "Ingediend 18-11-2026 10:30 · arbeidsuitbuiting · balie",
          "- Wat: niets aan de hand", "Aanvullingen van de melder:", "- MH-2026-0001 (zelfde adres)",
          "Uitkomst: geen mensenhandel", "-----", "Aan: Politie (0800)", "  Terugkoppeling (18-11-2026): klaar",
          "Je meldingen:", "Terugkoppeling over je melding MH-2026-0001: afgesloten", "", " ", "  > al geciteerd"]
TRICKS = ["\u202e", "\u202a", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c", "\u200b",
          "\u200c", "\u200d", "\u2060", "\ufeff", "\ud800", "\udfff", "\udc00x", "\x00", "\x1b[2J", "\ufffe",
          "\U0010ffff", "<img src=x onerror=alert(1)>", "**vet**", "[klik](https://x.example)", "@room", "`code`",
          "# kop", "1. lijst", "> citaat", "&lt;b&gt;", "\t", "    vier spaties", "\u00ad", "\U000e0041"]
BREAKS = ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1d", "\x1e", "\n\n", "\r\r\n"]
LINE = st.one_of(
    st.sampled_from(FORGED),
    st.sampled_from(TRICKS),
    st.builds(lambda trick, forged: trick + forged, st.sampled_from(TRICKS), st.sampled_from(FORGED)),
    st.builds(lambda forged, trick: forged + trick, st.sampled_from(FORGED), st.sampled_from(TRICKS)),
    st.text(st.characters(exclude_categories=()), max_size=30),     # surrogates included
)
HOSTILE = st.builds(lambda first, rest: first + "".join(b + line for b, line in rest),
                    LINE, st.lists(st.tuples(st.sampled_from(BREAKS), LINE), max_size=6))
EVERYTHING = st.text(st.characters(exclude_categories=()), max_size=200)


def forbidden_in(value) -> list[str]:
    """Every string inside `value` (dicts, lists) that holds a character it must not."""
    if isinstance(value, str):
        return [value] if FORBIDDEN.search(value) else []
    if isinstance(value, dict):
        return [bad for v in value.values() for bad in forbidden_in(v)]
    if isinstance(value, (list, tuple)):
        return [bad for v in value for bad in forbidden_in(v)]
    return []


# --- the module itself ---------------------------------------------------------------------------------

@settings(max_examples=2000, deadline=None)
@given(text=EVERYTHING)
def test_clean_incoming_leaves_nothing_invisible_or_invalid_and_is_stable(text):
    cleaned = clean_incoming(text)
    assert not FORBIDDEN.search(cleaned)
    cleaned.encode("utf-8")                        # storable and sealable
    assert clean_incoming(cleaned) == cleaned
    name = clean_name(text)
    assert name is None or ("\n" not in name and not FORBIDDEN.search(name) and name == name.strip())


@settings(max_examples=2000, deadline=None)
@given(text=st.one_of(HOSTILE, EVERYTHING))
def test_clean_incoming_drops_exactly_the_control_and_format_characters(text):
    # The definition, one character at a time (the module only looks at characters outside printable ASCII).
    import unicodedata
    from meldbot.core import text as module
    before = module._LINE_BREAKS.sub("\n", module._INVALID.sub(module.REPLACEMENT, text))
    expected = "".join(c for c in before if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf"))
    assert clean_incoming(text) == expected


def test_clean_incoming_replaces_invalid_code_points_visibly_and_drops_invisible_ones():
    assert clean_incoming("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert clean_incoming("x\ufffe\U0001ffffy") == "x\ufffd\ufffdy"
    assert clean_incoming("Kerk\u200bstraat \u202e21\u202c, \u2066Bergeijk\u2069\ufeff") == "Kerkstraat 21, Bergeijk"
    assert clean_incoming("een\r\ntwee\rdrie\u2028vier\x85vijf") == "een\ntwee\ndrie\nvier\nvijf"
    assert clean_incoming("\x1b[31mrood\x00") == "[31mrood"
    assert clean_incoming("  tab\tblijft  ") == "  tab\tblijft  "
    assert clean_name(" Piet\n\u202eJansen\u202c ") == "Piet Jansen" and clean_name("\u200b") is None


@settings(max_examples=1500, deadline=None)
@given(text=st.one_of(HOSTILE, EVERYTHING))
def test_quoted_text_is_inline_on_one_line_and_every_further_line_starts_with_the_quote_mark(text):
    shown = quote_user_text(text)
    lines = shown.split("\n")
    assert not FORBIDDEN.search(shown)
    if len(lines) > 1:
        assert lines[0] == "" and all(line.startswith(QUOTE.rstrip()) for line in lines[1:])
    # Nothing the person wrote is lost, only white space runs are shortened.
    words = clean_incoming(text).split()
    assert " ".join(words) == " ".join(shown.replace("\n" + QUOTE.rstrip(), " ").split())


COMMONMARK = MarkdownIt("commonmark", {"html": True})
TAG = re.compile(r"<[^>]*>")


@settings(max_examples=2000, deadline=None)
@given(text=st.one_of(HOSTILE, EVERYTHING).map(clean_incoming))
def test_escaped_text_reads_the_same_through_markdown_and_html_with_every_line_kept(text):
    escaped = escape_markup(text)
    assert "\n" not in escaped and not re.search(r"<(?!br>)|(?<!<br)>", escaped)
    # Markdown's characters only as references.
    assert not re.search(r"[*_`~\[\]|\\#]", re.sub(r"&#\d+;|<br>", "", escaped))
    rendered = COMMONMARK.render(escaped)
    assert set(TAG.findall(rendered)) <= {"<p>", "</p>", "<br>"}
    shown = html.unescape(TAG.sub(lambda m: "\n" if m.group(0) == "<br>" else "", rendered)).strip("\n")
    expected = re.sub(r"^[ \t]+", lambda m: "\xa0" * len(m.group(0)), text, flags=re.MULTILINE)
    # The same characters on the same lines; Markdown may drop white space at the ends of lines and text.
    def lines(t: str) -> list[str]:
        return [line.rstrip() for line in t.strip().split("\n")]

    assert lines(shown) == lines(expected)


def test_a_melders_markup_becomes_characters():
    escaped = escape_markup("<img src=x onerror=alert(1)> **vet** [klik](https://x.example)\n- lijst\n1. een")
    assert "<img" not in escaped and "**" not in escaped and "[klik]" not in escaped
    assert escaped == ("&#60;img src=x onerror=alert(1)&#62; &#42;&#42;vet&#42;&#42; &#91;klik&#93;(https://x.example)"
                       "<br>&#45; lijst<br>1&#46; een")


# --- the views, as pure functions: each line of someone's words stays theirs ---------------------------

PLACEHOLDER = "§"


def assert_same_bot_lines(hostile: str, benign: str) -> None:
    """`hostile` is the view of someone's words, `benign` the same view with each of them PLACEHOLDER.
    Every line that does not start with the quote mark must be the bot's line at the same place, with
    someone's words only where the placeholder stood."""
    own = [line for line in hostile.split("\n") if not line.startswith(QUOTE.rstrip())]
    expected = benign.split("\n")
    assert len(own) == len(expected), (own, expected)
    for line, bot_line in zip(own, expected):
        before = bot_line.split(PLACEHOLDER)[0]
        assert line.startswith(before) if PLACEHOLDER in bot_line else line == bot_line, (line, bot_line)


def assert_all_words_shown(view: str, *words: str) -> None:
    for text in words:
        for line in quote_user_text(text).split("\n"):
            assert line.removeprefix(QUOTE).strip() in view


def _signal(w: dict[str, str]) -> Signal:
    content = Content(wat=w["wat"], waar=w["waar"], wanneer=w["wanneer"], wie=w["wie"])
    signal = Signal.submit(meldpunt_id="bergeijk", reference=Reference(2026, 7), content=content, form=Form.LABOUR,
                           context=Context.DESK, urgent=False, anonymous=False, pseudonym=None, at=NOW)
    later = NOW + timedelta(hours=1)
    signal.supplement(w["aanvulling"], later)
    signal.pick_up("anna", later)
    signal.note("anna", w["notitie"], later)
    signal.tag("anna", "adres", w["kenmerk"], later)
    signal.forward("anna", "politie", later)
    signal.partner_feedback("anna", "politie", w["feedback"], later)
    signal.inform_melder("anna", w["terugkoppeling"], later)
    return signal


FIELDS = ("wat", "waar", "wanneer", "wie", "naam", "aanvulling", "notitie", "kenmerk", "feedback", "terugkoppeling")


def _views(w: dict[str, str]) -> list[str]:
    signal = _signal(w)
    label = melder_label(signal, w["naam"], "console:piet", NL)
    when = quote_user_text(w["wanneer"])
    shown = signal_view(signal, label, [("MH-2026-0001", "adres")], AMS, NL, when)
    partner = partner_text(signal, "Politie", "0800-1234", "Gemeente Bergeijk", "Anna", AMS, NL, when)
    own = my_reports([OwnSignal("MH-2026-0007", NOW, "doorgezet",
                                ((NOW, w["terugkoppeling"]), (NOW, w["feedback"])))], NL, AMS).text
    draft = Draft(step="summary", answers={"wat": w["wat"], "waar": w["waar"], "wanneer": w["wanneer"],
                                           "wie": w["wie"], "soort": "arbeid", "context": "balie", "anoniem": "nee"})
    ctx = DialogContext(texts=NL, now=NOW, tz=AMS, contacts=(Contact("Acuut gevaar", "112"),))
    return [shown, partner, own, summary(ctx, draft).text]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.fixed_dictionaries({f: HOSTILE for f in FIELDS}))
def test_no_view_shows_a_line_that_passes_for_the_bots_own(words):
    # An answer is never empty (the dialog asks again), so each field holds at least a letter.
    words = {f: "a" + clean_incoming(v) for f, v in words.items()}
    hostile = _views(words)
    benign = _views({f: PLACEHOLDER for f in FIELDS})
    for view, twin in zip(hostile, benign):
        assert not FORBIDDEN.search(view)
        assert_same_bot_lines(view, twin)
    assert_all_words_shown(hostile[0], *(words[f] for f in FIELDS if f != "naam"))


def test_the_forged_lines_of_the_issue_are_quoted_in_toon():
    forged = "Een man houdt paspoorten\nMelder: Iemand Anders (console:x)\nBehandelaar: bram\n" \
             "- 18-11-2026 10:30 anna: gesloten: geen-mensenhandel"
    words = {f: "x" for f in FIELDS} | {"wat": forged}
    view = _views(words)[0]
    assert "- Wat: \n  > Een man houdt paspoorten\n  > Melder: Iemand Anders (console:x)\n  > Behandelaar: bram\n" \
           "  > - 18-11-2026 10:30 anna: gesloten: geen-mensenhandel\n" in view
    assert [line for line in view.split("\n") if line.startswith(("Melder:", "Behandelaar:"))] == \
           ["Melder: x (console:piet)", "Behandelaar: anna"]


@settings(max_examples=1000, deadline=None)
@given(name=st.sampled_from(["toon", "doorzetten", "feedback", "kenmerk", "overdragen", "sluiten", "rapport"]),
       args=HOSTILE)
def test_an_echoed_argument_never_starts_a_line_of_its_own(name, args):
    shape = {"toon": "show", "doorzetten": "forward", "feedback": "feedback", "kenmerk": "tag",
             "overdragen": "handover", "sluiten": "close", "rapport": "stats"}[name]
    try:
        parse_af(shape, clean_incoming(args))
    except Usage as usage:
        shown = NL(usage.key, **usage.params)
        benign = NL(usage.key, **{key: PLACEHOLDER for key in usage.params})
        assert_same_bot_lines(shown, benign)


def test_a_note_may_start_on_the_line_after_the_reference():
    assert parse_af("note", "7\nAdres bekend bij handhaving").text == "Adres bekend bij handhaving"
    assert parse_af("feedback", "7\tpolitie\nklopt").partner == "politie"


# --- the real bot: every free-text field and argument, stored and shown ------------------------------

class SharedApp:
    """One app on SQLite for all examples, driven from a loop of its own (hypothesis calls the test
    synchronously); every example is a new melder with a new signal."""

    def __init__(self, tmp_path) -> None:
        self.loop = asyncio.new_event_loop()
        url = f"sqlite+aiosqlite:///{tmp_path}/meldbot.db"
        self.loop.run_until_complete(migrated(url))
        self.notifier = FakeNotifier()
        # Before office hours, so no reminder joins in.
        self.clock = ManualClock(datetime(2026, 11, 18, 6, 0, tzinfo=timezone.utc))
        self.app = build_app(make_config(url), clock=self.clock, notifiers={"console": self.notifier}, mode="chat")
        self.loop.run_until_complete(self.app.__aenter__())
        # One AF types hundreds of commands a second here; the flood guard is for people.
        self.app.bot.flood = FloodGuard(burst=10**9)
        self.melders = itertools.count(1)

    def close(self) -> None:
        self.loop.run_until_complete(self.app.__aexit__(None, None, None))
        self.loop.close()

    def run(self, coro):
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    harness = SharedApp(tmp_path_factory.mktemp("hygiene"))
    yield harness
    harness.close()


FAILED = {NL("error.general"), NL("error.resend")}
TOON = [  # the bot's own lines in `toon`: pattern, and how often it stands there (None: counted below)
    (r"MH-\d{4}-\d{4} · \S", 1), (r"Ingediend \d\d-\d\d-\d{4} \d\d:\d\d · ", 1), (r"Melder: ", 1),
    (r"Behandelaar: ", 1), (r"$", 1), (r"- Wat: ", 1), (r"- Waar: ", 1), (r"- Wanneer: ", 1), (r"- Wie: ", 1),
    (r"Aanvullingen van de melder:$", 1), (r"Reeds bekend:", 1), (r"Geschiedenis:$", 1),
    (r"- MH-\d{4}-\d{4} \(zelfde (adres|persoon|organisatie)\)$", None),
    (r"- MH-\d{4}-\d{4} \((adres|persoon|organisatie) lijkt op: .*\)$", None),   # a look-alike (issue 15)
    (r"- \d\d-\d\d-\d{4} \d\d:\d\d: ", "supplements"), (r"- \d\d-\d\d-\d{4} \d\d:\d\d (melder|anna|bram): ", "events"),
]


def assert_no_forged_toon_line(view: str, supplements: int, events: int) -> None:
    own = [line for line in view.split("\n") if not line.startswith(QUOTE.rstrip())]
    found: dict[str, int] = {}
    for line in own:
        kinds = [p for p, _ in TOON if re.match(p, line)]
        assert kinds, f"a line the bot does not write: {line!r}"
        found[kinds[0]] = found.get(kinds[0], 0) + 1
    for pattern, times in TOON:
        wanted = {"supplements": supplements, "events": events}.get(times, times)
        if wanted is not None:
            assert found.get(pattern, 0) == wanted, (pattern, found, view)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(words=st.fixed_dictionaries({f: HOSTILE for f in FIELDS}), junk=HOSTILE)
def test_hostile_text_in_every_field_and_argument_is_stored_clean_shown_as_quoted_and_breaks_no_turn(
        desk, words, junk):
    melder = f"melder{next(desk.melders)}"
    # Every answer holds a letter (an empty one is asked again); the address one the matching can read.
    words = {f: "a" + v for f, v in words.items()} | {"kenmerk": "Kerkstraat 5 " + words["kenmerk"]}

    async def say(user: str, text: str, name: str | None = None) -> str:
        replies = await desk.app.bot.handle(IncomingMessage(
            sender=Identity("console", user), conversation_id=user, text=text, sender_name=name or user))
        await desk.app.dispatcher.deliver_pending()
        for reply in replies:
            assert reply.text not in FAILED, f"the turn failed on {text!r}"
            assert not FORBIDDEN.search(reply.text), reply.text
        return "\n".join(r.text for r in replies)

    async def scenario():
        for line in ["melden", words["wat"], words["waar"], words["wanneer"], words["wie"], "arbeid", "balie",
                     "nee"]:
            await say(melder, line, words["naam"])
        sent = await say(melder, "versturen", words["naam"])
        number = int(re.search(r"MH-2026-(\d{4})", sent).group(1))
        await say(melder, f"aanvullen {number} {words['aanvulling']}")
        for command in [f"toon {number}", f"notitie {number} {words['notitie']}",
                        f"kenmerk {number} adres {words['kenmerk']}", f"doorzetten {number} politie",
                        f"feedback {number} politie {words['feedback']}",
                        f"terugkoppelen {number} {words['terugkoppeling']}"]:
            await say("af", command)
        # Arguments that are no reference, partner, AF, outcome, kind or period: repeated in the answer,
        # never as a line of their own.
        for command in [f"toon x{junk}", f"doorzetten {number} x{junk}", f"overdragen {number} x{junk}",
                        f"sluiten {number} x{junk}", f"kenmerk {number} x{junk}", f"rapport x{junk}"]:
            out = await say("af", command)
            assert all(line.startswith(QUOTE.rstrip()) for line in out.split("\n")[1:]), out
        view = await say("af", f"toon {number}")
        mine = await say(melder, "mijn meldingen")
        async with desk.app.uow() as uow:
            signal = await uow.signals.find(RefQuery(number, 2026), ["bergeijk"], with_events=True)
            person = await uow.signals.melder_of(signal)
        return view, mine, signal, person

    view, mine, signal, person = desk.run(scenario())
    supplements = sum(e.kind is EventKind.SUPPLEMENTED for e in signal.events)
    assert_no_forged_toon_line(view, supplements, len(signal.events))
    # What is stored: no invisible or invalid character anywhere, and nothing of the words lost.
    assert forbidden_in(signal.content.to_dict()) == [] and forbidden_in([e.data for e in signal.events]) == []
    assert forbidden_in(person.display_name) == []
    assert clean_name(words["naam"]) == person.display_name
    assert signal.content.wat == clean_incoming(words["wat"]).strip()
    assert_all_words_shown(view, words["wat"], words["waar"], words["wie"], words["notitie"], words["feedback"],
                           words["terugkoppeling"])
    own_lines = [line for line in mine.split("\n") if not line.startswith(QUOTE.rstrip())]
    assert own_lines[0] == NL("mine.header")
    assert all(re.match(r"MH-\d{4}-\d{4} van |  Terugkoppeling \(|  Nog geen", line) for line in own_lines[1:])
    for reply in desk.notifier.to(melder) + desk.notifier.to("af"):
        assert not FORBIDDEN.search(reply.text)
        assert all(line.startswith(QUOTE.rstrip()) or not line.startswith(("Melder:", "Behandelaar:", "- 18-11"))
                   for line in reply.text.split("\n")[1:])
