"""Flesch-Douma, the Dutch Flesch reading ease (206.835 - 0.93 words per sentence - 77 syllables per word), over
catalogue sentences as a reader meets them. textstat computes it for "nl" (syllables by pyphen's Dutch
hyphenation). B1 level, the house style's bar, is 60 or more.

A catalogue entry is prepared as it reads: placeholders (a reference, a name, a number) are left out, since they
are no words of ours; code marks go; each line is a sentence (lists and command lines end without a full stop).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import textstat

textstat.set_lang("nl")

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def as_read(entry: str) -> str:
    text = _PLACEHOLDER.sub("", entry).replace("`", "")
    lines = [line.strip(" -*•\t") for line in text.splitlines()]
    return "\n".join(line if line[-1] in ".!?:" else line + "." for line in lines if line)


def flesch_douma(entries: Iterable[str]) -> float:
    """The score of the entries read one after the other."""
    text = "\n".join(t for t in (as_read(e) for e in entries) if t)
    return float(textstat.flesch_reading_ease(text))
