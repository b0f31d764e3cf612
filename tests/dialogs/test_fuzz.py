"""Hostile input against every parser: nothing escapes, every message gets an answer."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meldbot.dialogs.af import SHAPES, Usage, parse_af
from meldbot.dialogs.commands import AF_ONLY, ANYONE, DIALOG, exact, normalise, parse
from meldbot.dialogs.report import QUESTIONS, Contact, DialogContext, Draft, step
from meldbot.core import matching
from meldbot.core.domain import RefQuery
from meldbot.core.i18n import texts

HOSTILE = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=5000),
    st.builds(lambda w, rest: f"{w} {rest}", st.sampled_from(sorted(ANYONE | DIALOG | AF_ONLY)), st.text()),
    st.sampled_from(["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "@room", "\x00\x1b[2J",
                     "toon MH-2026-99999999999999", "overdragen alle", "kenmerk 1 adres", "‮ toon 1", "🙂" * 500]),
)
CTX = DialogContext(texts=texts("nl"), now=datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc),
                    tz=ZoneInfo("Europe/Amsterdam"), contacts=(Contact("Acuut gevaar", "112"),))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE)
def test_command_parsers_never_raise(text):
    normalise(text)
    for table in (ANYONE, DIALOG, AF_ONLY):
        parse(text, table)
        exact(text, table)
    RefQuery.parse(text)
    command = parse(text, AF_ONLY)
    if command is not None:
        try:
            parse_af(command.name, command.args)
        except Usage:
            pass
    for name in SHAPES:
        try:
            parse_af(name, text)
        except Usage:
            pass
    for kind in ("adres", "persoon", "organisatie", text[:20]):
        matching.normalise(kind, text)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(step_name=st.sampled_from([None, *QUESTIONS, "summary"]), text=HOSTILE, attachment=st.booleans())
def test_the_dialog_answers_every_message_in_every_state(step_name, text, attachment):
    draft = Draft(step=step_name, answers={q: "1" for q in QUESTIONS})
    result = step(draft, text, CTX, has_attachment=attachment)
    assert result.replies or result.submit is not None
    assert all(r.text for r in result.replies)
