"""Issue 19, item 1, measured: the understanding sets in tests/data/understanding/ (at least 150 realistic messages
per question) read by the dialog as it is and by the old exact rule. Prints the share understood before and after
(`python -m tests.dialogs.test_understand_sets` prints the table alone); asserts a floor and that nothing the sets
mark "-" (must not guess) gets a meaning.

Scoring per line: right when the reading is the expected one (a typo read at once as the word it is a typo of
counts as right too); wrong when the reading is a meaning other than the expected one. A "Bedoel je ...?" where a
meaning was expected is neither.

How independent each measure is, honestly:
- the main sets (`soort.tsv` ...) were written together with the rules: they are tuned, their score says little
  about messages nobody thought of;
- the holdout sets (`holdout-*.tsv`) were written after the first version of the rules and not tuned on then;
  the review of issue 19 changed two holdout lines on purpose ("anoniem?" is a question now, no answer) and added
  one phrase that a holdout line uses ("liever geen naam noemen", `ja` before "noemen" stopped being a filler);
- the adversarial sets (`adversarial-anoniem.tsv`, 98 ways to say or doubt anonymity; `adversarial-summary.tsv`,
  24 questions and yeses at the summary) were written after the review, BEFORE the rules were changed, as a third
  measure. Before the fix the dialog read adversarial-anoniem 32.7% right with 32 wrong readings (29 of them a
  `nee` where the melder wanted anonymity or was unsure), adversarial-summary 33.3% right with 16 reports sent on a
  question. The rules were then changed knowing these lines, so their after-score is tuned too; the before-score
  is the independent one.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from meldbot.dialogs import understand
from meldbot.dialogs.commands import ANYONE, DIALOG, Command, normalise
from meldbot.dialogs.report import QUESTIONS, Draft, step
from tests.support.dialog import at_summary, ctx

DATA = Path(__file__).parents[1] / "data" / "understanding"
SETS = ("soort", "context", "anoniem", "summary", "idle", "gemeente")
ADVERSARIAL = ("anoniem", "summary")
GEMEENTEN = ("Gemeente Bergeijk", "Gemeente Eersel", "Gemeente Valkenswaard")
FLOOR = 0.9

# --- the old rules, as they were before issue 19 (copied: the code they measure no longer reads this way) -------

OLD_CHOICES = {
    "soort": ("seksueel", "arbeid", "crimineel", "orgaan", "onbekend"),
    "context": ("balie", "huisbezoek", "toezicht", "vergunning", "anders"),
    "anoniem": ("nee", "ja"),
}
OLD_ALIASES = {
    "soort": {"sexual": "seksueel", "labour": "arbeid", "labor": "arbeid", "criminal": "crimineel",
              "organ": "orgaan", "unknown": "onbekend", "weet ik niet": "onbekend", "dont know": "onbekend"},
    "context": {"desk": "balie", "home visit": "huisbezoek", "inspection": "toezicht", "controle": "toezicht",
                "permit": "vergunning", "aanvraag": "vergunning", "other": "anders"},
    "anoniem": {"no": "nee", "yes": "ja"},
}
OLD_EDIT_ALIASES = {"what": "wat", "where": "waar", "when": "wanneer", "who": "wie", "form": "soort", "kind": "soort",
                    "type": "soort", "anonymous": "anoniem"}


def old_choice(q: str, text: str) -> str | None:
    """report._choice before issue 19: the number, the word, or an English alias, exactly."""
    norm = normalise(text).rstrip(".)")
    options = OLD_CHOICES[q]
    if norm.isdigit() and 1 <= int(norm) <= len(options):
        return options[int(norm) - 1]
    if norm in options:
        return norm
    return OLD_ALIASES[q].get(norm)


def old_dialog_command(text: str) -> tuple[str, str] | None:
    """commands.dialog_command before issue 19's review: (name, args), punctuation not ignored."""
    norm = normalise(text)
    table = {**DIALOG, "help": "help", "contact": "contact", "signalen": "signs", "signs": "signs"}
    if norm in table:
        return table[norm], ""
    head, _, rest = norm.partition(" ")
    if table.get(head) == "edit" and rest:
        return "edit", rest
    return None


def old_summary(text: str) -> str:
    found = old_dialog_command(text)
    if found is None:
        return "-"
    command = Command(found[0], found[1], "")
    dutch = {"send": "versturen", "cancel": "stop", "back": "terug", "urgent": "spoed", "help": "help",
             "contact": "contact", "signs": "signalen"}
    if command.name == "edit":
        if not command.args:
            return "wijzig"
        target = OLD_EDIT_ALIASES.get(command.args, command.args)
        if target.isdigit() and 1 <= int(target) <= len(QUESTIONS):
            target = QUESTIONS[int(target) - 1]
        return f"wijzig {target}" if target in QUESTIONS else "-"
    return dutch.get(command.name, "-")


def old_idle(text: str) -> str:
    """Before issue 19 every other message got the welcome: that is "not understood" and a greeting at once."""
    word = ANYONE.get(normalise(text)) or DIALOG.get(normalise(text))
    return {"report": "melden", "urgent": "spoed", "help": "help", "contact": "contact",
            "signs": "signalen"}.get(word or "", "hallo|-")


def old_gemeente(text: str) -> str:
    answer = text.strip()
    return answer if answer.isdigit() and 1 <= int(answer) <= len(GEMEENTEN) else "-"


# --- the dialog as it is -----------------------------------------------------------------------------------------

def _offered(replies: tuple) -> str | None:
    first = replies[0] if replies else None
    if first is not None and first.text.startswith(("Bedoel je", "Did you mean")) and first.actions:
        return "?" + first.actions[0].command
    return None


def new_choice(q: str, text: str) -> str:
    result = step(Draft(step=q), text, ctx())
    if q in result.draft.answers:
        return result.draft.answers[q]
    return _offered(result.replies) or "-"


_SUMMARY = None


def new_summary(text: str) -> str:
    global _SUMMARY
    if _SUMMARY is None:
        _SUMMARY = at_summary()
    draft = _SUMMARY
    result = step(draft, text, ctx())
    if result.submit is not None:
        return "versturen"
    if result.erased:
        return "stop"
    if result.draft.urgent and not draft.urgent:
        return "spoed"
    if result.draft.editing:
        return f"wijzig {result.draft.step}"
    if result.draft.step == QUESTIONS[-1]:
        return "terug"
    offered = _offered(result.replies)
    if offered:
        return offered
    text_out = result.replies[0].text if result.replies else ""
    if text_out.startswith("Welke vraag"):
        return "wijzig"
    return "-"


def new_idle(text: str) -> str:
    result = step(Draft(), text, ctx())
    if result.draft.step is not None:
        return "spoed" if result.draft.urgent else "melden"
    offered = _offered(result.replies)
    if offered:
        return offered
    out = result.replies[0].text
    if out.startswith("Hallo!"):
        return "hallo"
    if out.startswith("Dit kan ik"):
        return "help"
    if out.startswith("Belangrijke nummers"):
        return "contact"
    if out.startswith("Signalen van mensenhandel"):
        return "signalen"
    return "-"


def new_gemeente(text: str) -> str:
    reading = understand.meldpunt(text, GEMEENTEN)
    return reading.word or (f"?{reading.near}" if reading.near else "-")


READERS: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {
    "soort": (lambda t: old_choice("soort", t) or "-", lambda t: new_choice("soort", t)),
    "context": (lambda t: old_choice("context", t) or "-", lambda t: new_choice("context", t)),
    "anoniem": (lambda t: old_choice("anoniem", t) or "-", lambda t: new_choice("anoniem", t)),
    "summary": (old_summary, new_summary),
    "idle": (old_idle, new_idle),
    "gemeente": (old_gemeente, new_gemeente),
}


@dataclass(frozen=True)
class Score:
    total: int
    right: int
    wrong: list[tuple[str, str, str]]      # (message, expected, read)

    @property
    def share(self) -> float:
        return self.right / self.total


def rows(name: str) -> list[tuple[str, str]]:
    """A set by name: `soort`, or `holdout-soort` (40 more messages written after the rules, never tuned on)."""
    with (DATA / f"{name}.tsv").open(encoding="utf-8", newline="") as f:
        return [(r["message"], r["expected"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def judge(expected: str, read: str) -> tuple[bool, bool]:
    """(right, wrong) for one line."""
    options = read.split("|")     # the old welcome was both "not understood" and the answer to a greeting
    meant = expected.lstrip("?")
    right = expected in options or (expected.startswith("?") and meant in options)
    meanings = [o for o in options if o != "-" and not o.startswith("?")]
    wrong = not right and bool(meanings) and all(m != meant for m in meanings)
    return right, wrong


def score(name: str, reader: Callable[[str], str]) -> Score:
    right, wrong, data = 0, [], rows(name)
    for message, expected in data:
        read = reader(message)
        ok, bad = judge(expected, read)
        right += ok
        if bad:
            wrong.append((message, expected, read))
    return Score(len(data), right, wrong)


def score_set(name: str) -> tuple[Score, Score]:
    """(old, new) for a set; a holdout or adversarial set is read like the set it belongs to."""
    old_reader, new_reader = READERS[name.removeprefix("holdout-").removeprefix("adversarial-")]
    return score(name, old_reader), score(name, new_reader)


def table() -> str:
    lines = [f"{'set':<22}{'lines':>6}{'before':>9}{'after':>9}{'wrong after':>13}"]
    for name in [*SETS, *(f"holdout-{s}" for s in SETS), *(f"adversarial-{s}" for s in ADVERSARIAL)]:
        old, new = score_set(name)
        lines.append(f"{name:<22}{new.total:>6}{old.share:>9.1%}{new.share:>9.1%}{len(new.wrong):>13}")
    return "\n".join(lines)


@pytest.mark.parametrize("name", SETS)
def test_every_set_has_at_least_150_realistic_messages_with_must_not_guess_lines(name):
    data = rows(name)
    assert len(data) >= 150
    assert sum(expected == "-" for _, expected in data) >= 25
    assert len({m for m, _ in data}) == len(data)


@pytest.mark.parametrize("name", SETS)
def test_the_dialog_understands_nine_in_ten_and_guesses_no_meaning(name, capsys):
    old, new = (score(name, reader) for reader in READERS[name])
    with capsys.disabled():
        print(f"\n[understanding] {name}: {old.share:.1%} before, {new.share:.1%} after ({new.total} messages)")
    assert new.wrong == []
    assert new.share >= FLOOR, [(m, e, r) for m, e in rows(name) if not judge(e, r := READERS[name][1](m))[0]]


@pytest.mark.parametrize("name", SETS)
def test_on_messages_the_rules_were_not_written_for_it_still_sends_and_hides_nothing_by_guessing(name, capsys):
    """The holdout sets: a lower floor, and no wrong reading where it cannot be undone (sent, anonymity) or
    changes what is stored (form, context, gemeente). Outside a report a wrong reading only starts a report or
    shows the help, which the melder sees at once."""
    old, new = score_set(f"holdout-{name}")
    with capsys.disabled():
        print(f"\n[understanding] holdout-{name}: {old.share:.1%} before, {new.share:.1%} after ({new.total})")
    assert new.share >= 0.8
    assert name == "idle" or new.wrong == []


@pytest.mark.parametrize("name", SETS)
def test_the_old_exact_rule_understood_every_line_it_read_the_same_way(name):
    """Whatever the old rule read as a meaning, the dialog still reads as that meaning."""
    old_reader, new_reader = READERS[name]
    for message, _ in rows(name):
        old = old_reader(message)
        if old not in ("-", "hallo|-"):
            assert new_reader(message) == old, message


if __name__ == "__main__":
    print(table())


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_the_adversarial_set_gets_no_wrong_reading_and_anonymity_is_never_read_as_nee(name, capsys):
    """A wrong `nee` at the anonymity question shows the melder's name to the AF; a wrong `versturen` sends. Every
    line of these sets is one where either would be wrong."""
    old, new = score_set(f"adversarial-{name}")
    with capsys.disabled():
        print(f"\n[understanding] adversarial-{name}: {old.share:.1%} before, {new.share:.1%} after ({new.total})")
    assert len(rows(f"adversarial-{name}")) >= (60 if name == "anoniem" else 20)
    assert new.wrong == []
    if name == "anoniem":
        assert all(e != "nee" for _, e in rows("adversarial-anoniem"))
