"""meldbot.core.similar on a labelled set of realistic Dutch variants (tests/data/reeds_bekend_pairs.tsv).

The set was written by hand before the matcher: positives are variants people type for one address, person or
organisation; negatives are look-alikes that are not the same (Dorpsstraat 12 / 21 / 12b, another town,
Jan de Vries / Jan de Vos, Schoonmaak Zuid / Noord). A pair counts as found when the matcher gives a reason
of the pair's kind. The floors are what the matcher reached when it was written, rounded down."""

from __future__ import annotations

import csv
from collections import Counter

from meldbot.core import similar
from tests.support import ROOT

PAIRS = ROOT / "tests" / "data" / "reeds_bekend_pairs.tsv"
PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.9


def _rows() -> list[dict[str, str]]:
    with PAIRS.open(encoding="utf-8") as f:
        return list(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"))


def _profile(field: str, text: str) -> similar.Profile:
    return similar.profile([text], names=[text] if field == "wie" else [])


def _found(row: dict[str, str]) -> bool:
    reasons = similar.compare(_profile(row["field_a"], row["text_a"]), _profile(row["field_b"], row["text_b"]))
    return any(r.kind == row["kind"] for r in reasons)


def test_the_labelled_set_is_large_and_balanced_enough() -> None:
    rows = _rows()
    counts = Counter((r["label"], r["kind"]) for r in rows)
    assert len(rows) >= 200
    assert all(counts[(label, kind)] >= 20 for label in ("same", "different")
               for kind in ("adres", "persoon", "organisatie")), counts


def test_precision_and_recall_on_the_labelled_pairs() -> None:
    tally: Counter[tuple[str, str]] = Counter()
    misses = []
    for row in _rows():
        found = _found(row)
        outcome = {(True, "same"): "tp", (True, "different"): "fp", (False, "same"): "fn",
                   (False, "different"): "tn"}[(found, row["label"])]
        tally[(row["kind"], outcome)] += 1
        tally[("all", outcome)] += 1
        if outcome in ("fp", "fn"):
            misses.append(f"{outcome} {row['kind']}: {row['text_a']!r} / {row['text_b']!r}")
    lines = []
    for kind in ("adres", "persoon", "organisatie", "all"):
        tp, fp, fn = tally[(kind, "tp")], tally[(kind, "fp")], tally[(kind, "fn")]
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        lines.append(f"{kind}: precision {precision:.3f}, recall {recall:.3f} "
                     f"(tp {tp}, fp {fp}, fn {fn}, tn {tally[(kind, 'tn')]})")
    print("\n" + "\n".join(lines + misses))
    tp, fp, fn = tally[("all", "tp")], tally[("all", "fp")], tally[("all", "fn")]
    assert tp / (tp + fp) >= PRECISION_FLOOR, lines + misses
    assert tp / (tp + fn) >= RECALL_FLOOR, lines + misses
