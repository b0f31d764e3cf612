"""Issue 20: the papers for the privacy officer and the AF read at B1, and the privacy paper's retention periods
are the code's.

How a doc is measured: Flesch-Douma (textstat's Flesch reading ease for "nl", the measure of
tests/support/readability.py), over the prose as a reader meets it:
- fenced code blocks go (commands and configuration are copied, not read);
- inline code spans go (`retention_closed_months`, `toon 7`: names, not words of the sentence);
- a link keeps its text, not its address;
- headings, list items and each table cell count as one sentence each (a full stop is added when the line
  has none): a table is read cell by cell, like a list;
- a table's separator row (| --- | --- |) and the Markdown marks (#, -, 1., **, *) go.
The old docs/privacy.md scored 56.7 by this measure (48.3 over its raw Markdown); B1 is 60 or more.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import textstat

from tests.support import ROOT

textstat.set_lang("nl")

DOCS = ROOT / "docs"
B1 = 60

_FENCE = re.compile(r"```.*?```", re.S)
_SEPARATOR = re.compile(r"\|?[\s:|-]*-[\s:|-]*\|?")
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_BARE_LINK = re.compile(r"<https?://[^>]*>")
_MARK = re.compile(r"^(?:#+|[-*]|\d+\.)\s+")


def prose(markdown: str) -> str:
    """The sentences of a Markdown doc as the reader meets them, one a line (see the module's docstring)."""
    sentences = []
    for line in _FENCE.sub("", markdown).splitlines():
        line = line.strip()
        if not line or _SEPARATOR.fullmatch(line):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")] if line.startswith("|") else [line]
        for cell in cells:
            cell = _BARE_LINK.sub("", _LINK.sub(r"\1", _CODE.sub("", cell)))
            cell = _MARK.sub("", cell).replace("**", "").replace("*", "").strip()
            if re.search(r"\w", cell):
                sentences.append(cell if cell[-1] in ".!?:;" else cell + ".")
    return "\n".join(sentences)


def flesch_douma(markdown: str) -> float:
    return float(textstat.flesch_reading_ease(prose(markdown)))


# Two paragraphs of the old docs/privacy.md (issue 20 rewrote it): the measure must not pass them.
OLD_PRIVACY = """## Doel
Medewerkers van de gemeente kunnen signalen van mensenhandel laagdrempelig melden bij de
aandachtsfunctionaris mensenhandel (AF), zoals het beleidsplan (meldroute, paragraaf 3.1) voorschrijft.
De AF legt het signaal vast, gaat na wat al bekend is, zet het door naar ketenpartners, vraagt om
terugkoppeling en informeert de melder. Daarnaast: anonieme cijfers voor monitoring.

## Grondslag
Taak van algemeen belang (AVG art. 6 lid 1 sub e): de gemeente moet mensenhandel signaleren en een
aandachtsfunctionaris hebben (landelijke aanpak mensenhandel, gemeentelijk beleidsplan). Signalen
kunnen gegevens over strafbare feiten bevatten (AVG art. 10, UAVG art. 32/33): de verwerking blijft
beperkt tot vastleggen en doorgeleiden naar bevoegde partners (politie, zorgcoördinator, NLA, …).
De gemeente stelt de grondslag definitief vast; deze tekst is een hulpmiddel.
"""


def test_the_prose_leaves_out_code_addresses_and_table_marks():
    markdown = ("# Kop\n\nTyp `toon 7` en lees [de handleiding](handleiding-af.md).\n\n"
                "| wat | hoe lang |\n| --- | --- |\n| concept | 24 uur |\n\n```toml\nlanguage = \"nl\"\n```\n")
    assert prose(markdown).splitlines() == ["Kop.", "Typ  en lees de handleiding.", "wat.", "hoe lang.",
                                            "concept.", "24 uur."]


def test_the_measure_fails_the_old_privacy_text():
    assert flesch_douma(OLD_PRIVACY) < B1


@pytest.mark.parametrize("name", ["privacy.md", "handleiding-af.md", "eerste-uur.md"])
def test_the_doc_reads_at_b1(name, capsys):
    score = flesch_douma((DOCS / name).read_text(encoding="utf-8"))
    with capsys.disabled():
        print(f"\n[readability] docs/{name} Flesch-Douma {score:.1f}")
    assert score >= B1, score


# --- Retention periods: a period written just before a setting's name in docs/privacy.md is that setting's value.

_UNITS = {"maand": "months", "maanden": "months", "uur": "hours", "uren": "hours", "dag": "days", "dagen": "days",
          "week": "weeks", "weken": "weeks", "minuut": "minutes", "minuten": "minutes", "seconde": "seconds",
          "seconden": "seconds"}
_PERIOD = re.compile(r"\b(\d+)\s+(" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")\b")
_NAME = re.compile(r"`(?:\[\w+\]\s+)?([A-Za-z_]+)`")
# How far a period may stand before the name it belongs to: "24 maanden na sluiten | `retention_closed_months`".
_NEAR = 40
# What the doc must tie to a period: every retention period of the code.
REQUIRED = {"retention_closed_months", "draft_expiry_hours", "PROCESSED_EVENTS_KEPT", "PROCESSED_REPLIES_KEPT",
            "DELIVERED_MESSAGES_KEPT", "DRAFT_MARKERS_KEPT"}


def code_periods() -> dict[str, tuple[str, float]]:
    """Every period the doc may name, as (unit, amount): the [reminders] defaults whose name ends in a unit,
    the timedelta constants of meldbot/service/retention.py, and how often a changed configuration is seen."""
    from meldbot.core.config import RemindersConfig
    from meldbot.run import reload
    from meldbot.service import retention

    found: dict[str, tuple[str, float]] = {}
    for name, field in RemindersConfig.model_fields.items():
        unit = name.rsplit("_", 1)[-1]
        if (unit in ("months", "hours", "days", "weeks") and not name.endswith("working_days")
                and isinstance(field.default, int)):   # not office_hours, closing_days (a time range, dates)
            found[name] = (unit, field.default)
    for name, value in vars(retention).items():
        if name.isupper() and isinstance(value, timedelta):
            found[name] = ("seconds", value.total_seconds())
    found["CHECK_SECONDS"] = ("seconds", reload.CHECK_SECONDS)
    return found


def _blocks(markdown: str) -> list[str]:
    """Paragraphs and list items joined into one line each; a table row stays a block of its own."""
    blocks, current = [], []
    for line in _FENCE.sub("", markdown).splitlines():
        stripped = line.strip()
        starts_new = not stripped or stripped.startswith(("|", "#", "- ")) or re.match(r"\d+\. ", stripped)
        if starts_new and current:
            blocks.append(" ".join(current))
            current = []
        if stripped.startswith("|"):
            blocks.append(stripped)
        elif stripped:
            current.append(stripped)
    if current:
        blocks.append(" ".join(current))
    return blocks


def doc_periods(markdown: str, names: set[str]) -> list[tuple[str, int, str, str]]:
    """(name, amount, Dutch unit, the text) for every period written just before one of `names`."""
    found = []
    for block in _blocks(markdown):
        for name_match in _NAME.finditer(block):
            if name_match.group(1) not in names:
                continue
            before = [p for p in _PERIOD.finditer(block, 0, name_match.start())
                      if name_match.start() - p.end() <= _NEAR and "`" not in block[p.end():name_match.start()]]
            if before:
                period = before[-1]
                found.append((name_match.group(1), int(period.group(1)), period.group(2), block))
    return found


def _same(amount: int, dutch_unit: str, code: tuple[str, float]) -> bool:
    unit, value = code
    if _UNITS[dutch_unit] == "months" or unit == "months":
        return _UNITS[dutch_unit] == unit and amount == value
    doc = timedelta(**{_UNITS[dutch_unit]: amount}).total_seconds()
    return doc == (timedelta(**{unit: value}).total_seconds())


def test_the_check_reads_a_period_before_its_setting():
    code = {"draft_expiry_hours": ("hours", 24), "PROCESSED_REPLIES_KEPT": ("seconds", 3600.0)}
    markdown = "| concept | 24 uur niet aangeraakt | `draft_expiry_hours` |\n| antwoord | 2 uur | `PROCESSED_REPLIES_KEPT` |\n"
    found = {name: _same(amount, unit, code[name]) for name, amount, unit, _ in doc_periods(markdown, set(code))}
    assert found == {"draft_expiry_hours": True, "PROCESSED_REPLIES_KEPT": False}
    # A period far from the name, or with another name between, is not the name's.
    far = "Na 24 maanden gebeurt er van alles, en veel meer dan in één korte zin past (`retention_closed_months`)."
    assert doc_periods(far, {"retention_closed_months"}) == []


def test_every_period_the_privacy_doc_ties_to_a_setting_is_the_codes():
    code = code_periods()
    assert REQUIRED <= set(code), REQUIRED - set(code)
    found = doc_periods((DOCS / "privacy.md").read_text(encoding="utf-8"), set(code))
    wrong = [(name, f"{amount} {unit}", code[name], text) for name, amount, unit, text in found
             if not _same(amount, unit, code[name])]
    assert not wrong, wrong
    missing = REQUIRED - {name for name, *_ in found}
    assert not missing, f"docs/privacy.md names no period for {sorted(missing)}"


def test_the_privacy_doc_names_every_retention_constant_of_the_code():
    """A new period in meldbot/service/retention.py must reach the privacy officer's paper too."""
    from meldbot.service import retention

    constants = {name for name, value in vars(retention).items() if name.isupper() and isinstance(value, timedelta)}
    assert constants <= REQUIRED, f"add to docs/privacy.md and REQUIRED: {sorted(constants - REQUIRED)}"
