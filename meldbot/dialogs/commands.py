"""The words of the chat contract: normalising what people type and recognising commands."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from meldbot.core.i18n import LANGUAGES

# Contract word (Dutch or English alias) -> command name. Multi-word entries are matched first.
ANYONE: dict[str, str] = {
    "melden": "report", "report": "report",
    "mijn meldingen": "my_reports", "my reports": "my_reports",
    "aanvullen": "supplement", "add": "supplement",
    "signalen": "signs", "signs": "signs",
    "contact": "contact",
    "taal": "language", "language": "language",
    "help": "help",
}
DIALOG: dict[str, str] = {
    "terug": "back", "back": "back",
    "stop": "cancel", "annuleren": "cancel", "cancel": "cancel",
    "versturen": "send", "send": "send",
    "wijzig": "edit", "edit": "edit",
    "spoed": "urgent", "urgent": "urgent",
}
AF_ONLY: dict[str, str] = {
    "lijst": "queue", "queue": "queue",
    "toon": "show", "show": "show",
    "oppakken": "take", "take": "take",
    "notitie": "note", "note": "note",
    "kenmerk": "tag", "tag": "tag",
    "overleggen": "consult", "consult": "consult",
    "doorzetten": "forward", "forward": "forward",
    "feedback": "feedback",
    "vragen": "ask", "ask": "ask",
    "terugkoppelen": "inform", "inform": "inform",
    "sluiten": "close", "close": "close",
    "heropenen": "reopen", "reopen": "reopen",
    "samenvoegen": "merge", "merge": "merge",
    "overdragen": "handover", "handover": "handover",
    "rapport": "stats", "stats": "stats",
}


def normalise(text: str) -> str:
    """Case-insensitive, accent-insensitive, surrounding white space and a leading ! or / ignored."""
    text = text.strip().lstrip("!/").strip()
    if text.isascii():   # nothing to decompose, no accents to drop (most messages: a quicker path)
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def bare(text: str) -> str:
    """A whole message as a command word: normalised, and trailing ! . ? ignored ("Spoed!", "stop.", "help?").
    Only for whole-message commands: the arguments of a command keep their punctuation."""
    return normalise(text).rstrip("!.?\u2026 ").strip()


def asks(text: str) -> bool:
    """The message ends in a question mark: "versturen?", "klopt dat?" ask something, they do not decide."""
    return text.rstrip().endswith(("?", "\uff1f"))


@dataclass(frozen=True)
class Command:
    name: str
    args: str          # the rest as typed: case and accents kept (free text stays the melder's own)
    word: str          # the contract word that was used


def _split_original(text: str, words: int) -> str:
    rest = text.strip().lstrip("!/").strip()
    for _ in range(words):
        parts = rest.split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
    return rest.strip()


def parse(text: str, table: dict[str, str]) -> Command | None:
    """The command `text` starts with, or None. Two-word contract words win over one-word ones."""
    norm = normalise(text)
    if not norm:
        return None
    if bare(text) in table:     # a whole-message command with a trailing "!", "." or "?"
        return Command(table[bare(text)], "", bare(text))
    words = norm.split(" ")
    for size in (2, 1):
        head = " ".join(words[:size])
        if len(words) >= size and head in table:
            return Command(table[head], _split_original(text, size), head)
    return None


# Inside the report dialog only these whole messages are commands (the chat contract), besides `wijzig <vraag>`
# and `taal nl` / `taal en`: everything else is the answer to the current question, also an answer that starts
# with a command word ("taal was een probleem", "mijn meldingen zijn ...", "stop de uitbuiting").
IN_DIALOG: dict[str, str] = DIALOG | {w: name for w, name in ANYONE.items() if name in ("help", "contact", "signs")}


def dialog_command(text: str) -> Command | None:
    """The command the whole message is inside the report dialog, or None: then it is the answer. `wijzig`
    with more words comes back as `edit` with the rest as `args`; the dialog decides whether that names a
    question (else, at a question, the message is an answer). `taal` only with a language it knows. A trailing
    "!", "." or "?" does not change the command ("Spoed!", "stop.", "help?"): the dialog decides what a question
    mark means for a command that cannot be undone (`versturen?`, `stop?`)."""
    norm = bare(text)
    if norm in IN_DIALOG:
        return Command(IN_DIALOG[norm], "", norm)
    head, _, rest = norm.partition(" ")
    if IN_DIALOG.get(head) == "edit" and rest:
        return Command("edit", rest, head)
    if ANYONE.get(head) == "language" and rest in LANGUAGES:
        return Command("language", rest, head)
    return None


def exact(text: str, table: dict[str, str]) -> str | None:
    """The command when the whole message is exactly one contract word (used inside the dialog,
    where everything else is an answer: "stop de uitbuiting" must not cancel the draft)."""
    return table.get(bare(text))


# A typo is suggested only for a word of this many letters or more: "dag" is no `tag`, "ok" no `ook`.
MIN_TYPO_LENGTH = 4


def allowed_distance(word: str) -> int:
    """A small edit distance only (a swapped, missing, extra or wrong letter); two in a long word."""
    return 1 if len(word) <= 5 else 2


def nearest(word: str, table: dict[str, str]) -> tuple[str, str] | None:
    """(table value, contract word) of the one entry of `table` nearest to `word` (already normalised); None
    when `word` is short, none is near, or two different values are equally near (a guess would be
    unpredictable)."""
    if len(word) < MIN_TYPO_LENGTH:
        return None
    limit = allowed_distance(word)
    scored = sorted((OSA.distance(word, w, score_cutoff=limit), w) for w in table)
    best = [(d, w) for d, w in scored if d <= limit and d == scored[0][0]]
    if not best or len({table[w] for _, w in best}) > 1:
        return None
    return table[best[0][1]], best[0][1]
