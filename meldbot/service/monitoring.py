"""Monitoring figures from content-free facts: text and chart for the AF, anonymous export for the region."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from meldbot.core.calendar import WorkCalendar
from meldbot.core.i18n import Texts
from meldbot.core.ports import SignalFacts  # noqa: F401  (monitoring works on these; tests import them here)
from meldbot.service.disclosure import Relations, suppress
from meldbot.dialogs.forms import form_label

FORMS = ("seksueel", "arbeid", "crimineel", "orgaan", "onbekend")
CONTEXTS = ("balie", "huisbezoek", "toezicht", "vergunning", "anders")
SMALL = 5                 # counts 1..SMALL-1 are suppressed in the anonymous export, and medians of fewer cases
TOTAL_ROW = "totaal"      # the meldpunt column of the rows over all meldpunten together



@dataclass(frozen=True)
class Period:
    start: date      # inclusive
    end: date        # exclusive
    label: str       # "2026", "2026-11", "2026-Q4"

    def months(self) -> tuple[tuple[int, int], ...]:
        """(year, month) of every month that starts inside the period, in order."""
        out, y, m = [], self.start.year, self.start.month
        while date(y, m, 1) < self.end:
            out.append((y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return tuple(out)


def _month_start_after(y: int, m: int) -> date:
    return date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)


def _year(y: int) -> Period:
    return Period(date(y, 1, 1), date(y + 1, 1, 1), str(y))


def parse_period(text: str, today: date) -> Period | None:
    """What the AF typed after `cijfers`: "" (this year), "2026", "2026-11" or "2026-1", "2026-Q4",
    "2026-q4" or Dutch "2026-K4" (kwartaal). None for anything else."""
    text = text.strip().upper()
    if not text:
        return _year(today.year)
    m = re.fullmatch(r"([0-9]{4})(?:-([0-9]{1,2})|-([QK])([0-9]))?", text)
    if not m:
        return None
    y = int(m[1])
    if not 1 <= y <= 9998:
        return None
    if m[2] is not None:
        month = int(m[2])
        if not 1 <= month <= 12:
            return None
        return Period(date(y, month, 1), _month_start_after(y, month), f"{y}-{month:02d}")
    if m[3] is not None:
        q = int(m[4])
        if not 1 <= q <= 4:
            return None
        return Period(date(y, 3 * q - 2, 1), _month_start_after(y, 3 * q), f"{y}-Q{q}")
    return _year(y)


@dataclass(frozen=True)
class Figures:
    period: Period
    total: int
    per_month: tuple[tuple[str, int], ...]      # ("2026-01", n) for every month of the period, zeros included
    per_form: tuple[tuple[str, int], ...]       # every form in FORMS order, zeros included
    per_context: tuple[tuple[str, int], ...]    # every context in CONTEXTS order, zeros included
    passed_on: int                              # signals with at least one partner
    per_partner: tuple[tuple[str, int], ...]    # partner key -> signals passed to it; count desc, then key
    median_days_to_partner_feedback: float | None   # working days forwarded_at -> partner_feedback_at
    median_days_to_melder_informed: float | None    # working days created_at -> melder_informed_at
    partner_feedback_cases: int = 0             # how many signals each median is based on
    melder_informed_cases: int = 0


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def figures(facts: Iterable[SignalFacts], period: Period, calendars: Callable[[str], WorkCalendar]) -> Figures:
    """The figures of the signals created in `period`, by the local date in their meldpunt's time zone."""
    cals: dict[str, WorkCalendar] = {}

    def cal(meldpunt_id: str) -> WorkCalendar:
        if meldpunt_id not in cals:
            cals[meldpunt_id] = calendars(meldpunt_id)
        return cals[meldpunt_id]

    chosen: list[tuple[SignalFacts, date]] = []
    for fact in facts:
        local = fact.created_at.astimezone(cal(fact.meldpunt_id).tz).date()
        if period.start <= local < period.end:
            chosen.append((fact, local))

    months = Counter((d.year, d.month) for _, d in chosen)
    forms = Counter(f.form for f, _ in chosen)
    contexts = Counter(f.context for f, _ in chosen)
    partners = Counter(p for f, _ in chosen for p in set(f.partners))
    to_feedback = [cal(f.meldpunt_id).working_days_between(f.forwarded_at, f.partner_feedback_at)
                   for f, _ in chosen if f.forwarded_at is not None and f.partner_feedback_at is not None]
    to_informed = [cal(f.meldpunt_id).working_days_between(f.created_at, f.melder_informed_at)
                   for f, _ in chosen if f.melder_informed_at is not None]
    return Figures(
        period=period,
        total=len(chosen),
        per_month=tuple((f"{y}-{m:02d}", months[(y, m)]) for y, m in period.months()),
        per_form=tuple((k, forms[k]) for k in FORMS),
        per_context=tuple((k, contexts[k]) for k in CONTEXTS),
        passed_on=sum(1 for f, _ in chosen if f.partners),
        per_partner=tuple(sorted(partners.items(), key=lambda kv: (-kv[1], kv[0]))),
        median_days_to_partner_feedback=_median(to_feedback),
        median_days_to_melder_informed=_median(to_informed),
        partner_feedback_cases=len(to_feedback),
        melder_informed_cases=len(to_informed),
    )


# -- for the AF: text and chart -------------------------------------------------------------------

def _plain(value: int | float) -> str:
    """12 -> "12", 3.0 -> "3", 3.5 -> "3.5" (a median of whole days ends in .0 or .5)."""
    return str(value) if isinstance(value, int) else f"{value:.1f}".removesuffix(".0")


def _number(value: float, t: Texts) -> str:
    return _plain(value).replace(".", t("rapport.decimal_sign"))


def _month_name(key: str, t: Texts, catalogue_key: str = "rapport.month") -> str:
    year, month = key.split("-")
    return f"{t(f'{catalogue_key}.{int(month)}')} {year}"


def report_text(f: Figures, t: Texts) -> str:
    """The figures as plain text for the AF's chat, in the language of `t`."""
    lines = [t("rapport.title", period=f.period.label, total=f.total)]
    if f.total == 0:
        lines.append(t("rapport.empty"))
        return "\n".join(lines)
    lines.append("")
    lines.append(t("rapport.per_month"))
    lines += [f"  {_month_name(m, t)}: {n}" for m, n in f.per_month]
    lines.append("")
    lines.append(t("rapport.per_form"))
    lines += [f"  {form_label(t, k)}: {n}" for k, n in f.per_form]
    lines.append("")
    lines.append(t("rapport.per_context"))
    lines += [f"  {t(f'choice.context.{k}')}: {n}" for k, n in f.per_context]
    lines.append("")
    lines.append(t("rapport.passed_on", count=f.passed_on, total=f.total))
    if f.per_partner:
        lines.append(t("rapport.per_partner"))
        lines += [f"  {k}: {n}" for k, n in f.per_partner]
    lines.append("")
    if f.median_days_to_partner_feedback is None:
        lines.append(t("rapport.partner_feedback_unknown"))
    else:
        lines.append(t("rapport.partner_feedback", days=_number(f.median_days_to_partner_feedback, t),
                       cases=f.partner_feedback_cases))
    if f.median_days_to_melder_informed is None:
        lines.append(t("rapport.melder_informed_unknown"))
    else:
        lines.append(t("rapport.melder_informed", days=_number(f.median_days_to_melder_informed, t),
                       cases=f.melder_informed_cases))
    return "\n".join(lines)


def chart_png(f: Figures, t: Texts, *, width_px: int = 800, height_px: int = 400) -> bytes:
    """Signals per month as bars, a PNG of exactly width_px x height_px. Agg through the object API:
    no pyplot, so no global state and safe in a server."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    counts = [n for _, n in f.per_month]
    if len(f.per_month) > 1:
        labels = [t(f"rapport.month_short.{int(m[5:])}") for m, _ in f.per_month]
    else:
        labels = [_month_name(m, t) for m, _ in f.per_month]
    bars = axes.bar(range(len(counts)), counts, color="#1f5f99", width=0.7)
    axes.bar_label(bars, labels=[str(n) if n else "" for n in counts], padding=2)
    axes.set_xticks(range(len(counts)), labels)
    if len(counts) < 3:                     # one month should not fill the whole width
        axes.set_xlim(-1.5, len(counts) + 0.5)
    axes.set_ylim(0, max([1, *counts]) * 1.15)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(t("rapport.chart_title", period=f.period.label))
    axes.set_xlabel(t("rapport.chart_x"))
    axes.set_ylabel(t("rapport.chart_y"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # a very small picture cannot fit everything; draw it anyway
        figure.tight_layout()
    buffer = io.BytesIO()
    canvas.print_png(buffer, metadata={"Software": None})
    return _small_png(buffer.getvalue())


def _small_png(png: bytes, colors: int = 32) -> bytes:
    """The chart with a palette of 32 colours: it looks the same (one bar colour, grey text) and is about
    a quarter of the size, so it fits in one Teams message (about 28 KB, base64 included)."""
    from PIL import Image   # matplotlib's own dependency

    picture = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colors)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


# -- for the ketenregisseur: anonymous export -------------------------------------------------------

# One row of the export: meldpunt, dimensie, sleutel, the value shown (None: empty or suppressed), suppressed.
Row = tuple[str, str, str, "int | float | None", bool]
HIDDEN = "x"              # a suppressed count in the csv (CBS's sign for "geheim"), whatever its size
PROTECTION = 3            # a hidden count may, by the published figures, be this much more than it is (and >= SMALL)
_SPLITS = ("maand", "soort", "context")     # each splits a meldpunt's total over its keys


def _median_row(meldpunt: str, key: str, median: float | None, cases: int) -> Row:
    # A median of few signals says too much about them: below SMALL cases it is suppressed like a count.
    hidden = 0 < cases < SMALL
    return (meldpunt, "mediaan_werkdagen", key, None if hidden else median, hidden)


def _counts(f: Figures) -> list[tuple[str, str, int]]:
    """(dimensie, sleutel, n) of every count row, in the order of the export."""
    out = [("totaal", "meldingen", f.total)]
    out += [("maand", m, n) for m, n in f.per_month]
    out += [("soort", k, n) for k, n in f.per_form]
    out += [("context", k, n) for k, n in f.per_context]
    out.append(("doorgezet", "meldingen", f.passed_on))
    out += [("partner", k, n) for k, n in f.per_partner]
    return out


@dataclass(frozen=True)
class _Table:
    """Every count of the export (zeros of partners not shown included) and what a reader knows ties them."""
    cells: tuple[tuple[str, str, str], ...]
    values: tuple[int, ...]
    relations: Relations


def _table(parts: list[tuple[str, Figures]]) -> _Table:
    index: dict[tuple[str, str, str], int] = {}
    values: list[int] = []

    def cell(key: tuple[str, str, str], n: int = 0) -> int:
        if key not in index:
            index[key] = len(values)
            values.append(n)
        return index[key]

    for meldpunt, f in parts:
        for dimension, key, n in _counts(f):
            cell((meldpunt, dimension, key), n)
    partners = sorted({k for _, f in parts for k, _ in f.per_partner})
    equal: list[dict[int, int]] = []
    at_most: list[dict[int, int]] = []
    lower: dict[int, int] = {}
    for meldpunt, f in parts:
        total = cell((meldpunt, "totaal", "meldingen"))
        for dimension in _SPLITS:
            # Every signal has one month, one form and one context: the cells add up to the total. Should
            # an unknown form or context ever be stored, they add up to less (and the reader knows only that).
            split = {index[c]: 1 for c in index if c[0] == meldpunt and c[1] == dimension}
            relation = {**split, total: -1}
            (equal if sum(values[i] for i in split) == values[total] else at_most).append(relation)
        passed = cell((meldpunt, "doorgezet", "meldingen"))
        at_most.append({passed: 1, total: -1})
        per_partner = [cell((meldpunt, "partner", k)) for k in partners]
        at_most += [{p: 1, passed: -1} for p in per_partner]          # passed to k <= passed on
        if per_partner:                                                # passed on <= sum over partners
            at_most.append({passed: 1, **{p: -1 for p in per_partner}})
        # A median that is shown rests on SMALL or more signals: the reader knows the count is at least that.
        if f.partner_feedback_cases >= SMALL:
            lower[passed] = SMALL
        if f.melder_informed_cases >= SMALL:
            lower[total] = SMALL
    overall = parts[-1][0]
    for (meldpunt, dimension, key), i in list(index.items()):
        if meldpunt == overall:           # every count over all meldpunten is the sum of theirs
            equal.append({i: -1, **{cell((m, dimension, key)): 1 for m, _ in parts[:-1]}})
    return _Table(tuple(index), tuple(values), Relations(equal=equal, at_most=at_most, lower=lower))


def export_anonymous(facts_by_meldpunt: Mapping[str, Iterable[SignalFacts]], period: Period,
                     calendars: Callable[[str], WorkCalendar], fmt: str, *, protection: int = PROTECTION) -> str:
    """Figures per meldpunt and over all of them ("totaal") for the ketenregisseur.

    Counts only: no free text, no references, no dates finer than a month. Every count 1..4 is
    suppressed, and so are as many further counts as needed (the cheapest, by value) so that no
    suppressed count can be worked out from the published counts and totals: by them, each may be at
    least `protection` more than it is, and at least 5 (see meldbot/service/disclosure.py). A suppressed
    count is "x" in csv, null with "suppressed": true in json; 0 is always shown and is a real 0.
    A median is given only when it rests on 5 or more signals; on 1..4 it is suppressed ("<5" in csv),
    on none it is empty (csv) or null.
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r}: use csv or json")
    if TOTAL_ROW in facts_by_meldpunt:
        raise ValueError(f"a meldpunt may not be called {TOTAL_ROW!r}")
    everything: list[SignalFacts] = []
    parts: list[tuple[str, Figures]] = []
    for meldpunt, facts in facts_by_meldpunt.items():
        facts = list(facts)
        everything += facts
        parts.append((meldpunt, figures(facts, period, calendars)))
    parts.append((TOTAL_ROW, figures(everything, period, calendars)))
    table = _table(parts)
    hidden = suppress(table.values, table.relations, small=SMALL, protection=protection).hidden
    position = {c: i for i, c in enumerate(table.cells)}

    rows: list[Row] = []
    for meldpunt, f in parts:
        for dimension, key, n in _counts(f):
            secret = position[(meldpunt, dimension, key)] in hidden
            rows.append((meldpunt, dimension, key, None if secret else n, secret))
        rows.append(_median_row(meldpunt, "tot_terugkoppeling_partner", f.median_days_to_partner_feedback,
                                f.partner_feedback_cases))
        rows.append(_median_row(meldpunt, "tot_melder_geinformeerd", f.median_days_to_melder_informed,
                                f.melder_informed_cases))

    if fmt == "json":
        return json.dumps({
            "periode": period.label,
            "rijen": [{"meldpunt": m, "dimensie": d, "sleutel": k, "aantal": v, "suppressed": h}
                      for m, d, k, v, h in rows],
        }, ensure_ascii=False, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["meldpunt", "dimensie", "sleutel", "aantal"])
    for m, d, k, v, h in rows:
        marker = f"<{SMALL}" if d == "mediaan_werkdagen" else HIDDEN
        writer.writerow([m, d, k, marker if h else "" if v is None else _plain(v)])
    return out.getvalue()
