"""Fuzzy "reeds bekend": whether two signals name the same address, person or organisation (pure).

The exact keys of meldbot.core.matching find the spellings that normalise alike; this module compares what
two signals mention after the storage unsealed both in memory (the candidates come from blocking keys, see
`matching.blocks`), and says why: the same key ("zelfde adres") or a look-alike ("lijkt op: Dorpsstraat 12a").
Decisions (tested on tests/data/reeds_bekend_pairs.tsv):

* One word may differ by one missing or doubled letter (rapidfuzz Indel distance 1) when it is long enough
  to survive that: 6+ letters, or 5 when the letter is a vowel inside the word ("Vries"/"Vris", not
  "Anna"/"Hanna"; a street's stem: any letter but the first, "Rozenstraat"/"Rozestraat", not
  "Heistraat"/"Heilstraat"); the first letter always agrees. Dutch spelling variants are equal first
  (ch/g, ck/c/k, x/ks, ij/ei/y, doubled letters; `matching.phonetic`). A letter for another letter is no
  slip ("Berkenlaan"/"Beukenlaan", "Haverstraat"/"Havenstraat" stay apart).
* Addresses: the house number and its letter must be equal ("12" is not "12b"); the street's suffix must
  agree (Kerkstraat is not Kerkweg), its stem may slip once, and the linking s does not count. Two postcodes
  decide alone (one postcode is one street in one place); without them, two places named after the
  address that differ keep them apart, also when the keys are equal.
* Persons: the name words apart from particles (de, van, der ...) in any order; at most one word slips,
  an initial matches a first name ("A. de Vries" ~ "Anna de Vries"), and a name with an extra word
  ("Kamerverhuurder Tom Donkers") matches when all words of the shorter one (two or more) match.
* Organisations: the name without its legal form in any order, spaces ignored ("Horecagroep" =
  "Horeca Groep"), "en"/"&" ignored; one word may slip as above.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from dataclasses import dataclass
from functools import cached_property

from rapidfuzz.distance import Indel

from meldbot.core import matching
from meldbot.core.domain import Content
from meldbot.core.matching import MatchKey, Mention

_VOWELS = frozenset("aeiou")
_CONNECTORS = frozenset({"en", "zn"})


@dataclass(frozen=True)
class Profile:
    """What one signal mentions: its answers' addresses, persons and organisations, and the AF's kenmerken."""

    mentions: tuple[Mention, ...]

    @cached_property
    def features(self) -> tuple[object, ...]:
        """Per mention what the comparison reads of it (an address's parts, a name's phonetic words), worked
        out once: `toon` compares one profile with up to 40 others."""
        return tuple(_FEATURES[m.key.kind](m) for m in self.mentions)


@dataclass(frozen=True)
class Reason:
    """Why another signal is "reeds bekend": `same` (equal key) or like `text` (the other signal's words)."""

    kind: str
    same: bool
    text: str


def answer_mentions(texts: Iterable[str], names: Iterable[str] = ()) -> tuple[Mention, ...]:
    """What the answers mention. `names`: the answers that may be only a name (wie). A signal's answers do not
    change after sending: the storage keeps this, sealed, and gives it back for each candidate."""
    whole = {t for t in names if isinstance(t, str)}
    found: list[Mention] = []
    for text in texts:
        found += matching.mentions(text, name=text in whole)
    return tuple(found)


def content_mentions(content: Content) -> tuple[Mention, ...]:
    return answer_mentions(content.texts(), names=[content.wie])


def with_tags(mentions: Iterable[Mention], tags: Iterable[tuple[str, str]] = ()) -> Profile:
    """A profile from what the answers mention and the AF's kenmerken (kind, value)."""
    found = list(mentions)
    for kind, value in tags:
        key = matching.normalise(kind, value)
        if key is not None:
            found.append(Mention(key, value.strip()))
    return Profile(tuple(found))


def profile(texts: Iterable[str], names: Iterable[str] = (), tags: Iterable[tuple[str, str]] = ()) -> Profile:
    """`texts`: the answers; `names`: the answers that may be only a name (wie); `tags`: (kind, value) kenmerken."""
    return with_tags(answer_mentions(texts, names), tags)


def dump_mentions(mentions: Iterable[Mention]) -> str:
    """JSON of mentions, to be sealed: the words as written are in it."""
    return json.dumps([[m.key.kind, m.key.value, m.text, m.postcode, m.town] for m in mentions],
                      ensure_ascii=False, separators=(",", ":"))


def load_mentions(text: str) -> tuple[Mention, ...]:
    return tuple(Mention(MatchKey(kind, value), words, postcode, town)
                 for kind, value, words, postcode, town in json.loads(text))


# --- words ----------------------------------------------------------------------------------


def _slip(a: str, b: str, *, stem: bool = False) -> bool:
    """One missing or doubled letter between two phonetic words, where a word is long enough for it.
    `stem`: a street's stem, which the suffix continues, so its last letter is inside the word too."""
    if a == b:
        return True
    if not a or not b or a[0] != b[0] or Indel.distance(a, b) != 1:
        return False
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    if len(longer) >= 6:
        return True
    if len(longer) != 5:
        return False
    i = next((k for k in range(len(shorter)) if longer[k] != shorter[k]), len(shorter))
    return 0 < i < len(longer) - (0 if stem else 1) and (stem or longer[i] in _VOWELS)


def _words_match(mine: list[str], theirs: list[str]) -> tuple[bool, int]:
    """Pairs every word of the shorter list with a different word of the other: (all paired, slips used)."""
    short, long = (mine, theirs) if len(mine) <= len(theirs) else (theirs, mine)
    free = list(long)
    slips = 0
    for word in sorted(short, key=len, reverse=True):
        if word in free:
            free.remove(word)
            continue
        initial = next((w for w in free if (len(word) == 1 or len(w) == 1) and w[0] == word[0]), None)
        if initial is not None:
            free.remove(initial)
            continue
        slipped = next((w for w in free if _slip(word, w)), None)
        if slipped is None:
            return False, slips
        free.remove(slipped)
        slips += 1
    return True, slips


# --- per kind -------------------------------------------------------------------------------


def _address(m: Mention) -> tuple[str, str, str, str] | None:
    """(stem, suffix, number, letter) of a street address; ("", "", number, letter) of a postcode one."""
    kind, _, rest = m.key.value.partition(":")
    place, _, number = rest.rpartition(":")
    digits = number.rstrip("abcdefghijklmnopqrstuvwxyz")
    letter = number[len(digits):]
    if kind == "straat":
        stem, suffix = matching.street_parts(place)
        return stem, suffix, digits, letter
    return "", "", digits, letter


def _same_address(a: Mention, pa: Any, b: Mention, pb: Any) -> bool:
    if pa is None or pb is None or pa[2:] != pb[2:]:
        return False
    if a.postcode and b.postcode:
        return a.postcode == b.postcode   # a postcode belongs to one street in one place
    if a.town and b.town and a.town != b.town:
        return False
    if a.key == b.key:
        return True
    if not pa[0] or not pb[0] or pa[1] != pb[1]:
        return False
    return _slip(pa[0], pb[0], stem=True) or (len(pa[0]) == len(pb[0]) >= 5 and sorted(pa[0]) == sorted(pb[0])
                                   and sum(x != y for x, y in zip(pa[0], pb[0], strict=True)) == 2)


def _name_words(m: Mention) -> list[str]:
    words = m.key.value.split(":", 1)[1].split()
    return [matching.phonetic(w) for w in words if w not in matching._NAME_PARTICLES or len(words) < 2]


def _same_person(a: Mention, mine: Any, b: Mention, theirs: Any) -> bool:
    if a.key == b.key:
        return True
    if min(len(mine), len(theirs)) < 2 or not any(len(w) > 1 for w in mine) or not any(len(w) > 1 for w in theirs):
        return False
    paired, slips = _words_match(mine, theirs)
    return paired and slips <= 1


def _org_words(m: Mention) -> list[str]:
    return [matching.phonetic(w) for w in m.key.value.split(":", 1)[1].split() if w not in _CONNECTORS]


def _same_organisation(a: Mention, mine: Any, b: Mention, theirs: Any) -> bool:
    if a.key == b.key:
        return True
    if not mine or not theirs:
        return False
    if "".join(mine) == "".join(theirs):
        return True
    if len(mine) != len(theirs):
        return False
    paired, slips = _words_match(mine, theirs)
    return paired and slips <= 1


_SAME: dict[str, Callable[[Mention, Any, Mention, Any], bool]] = {
    "adres": _same_address, "persoon": _same_person, "organisatie": _same_organisation}
_FEATURES: dict[str, Callable[[Mention], object]] = {
    "adres": _address, "persoon": _name_words, "organisatie": _org_words}


def compare(mine: Profile, theirs: Profile) -> list[Reason]:
    """At most one reason per kind, an equal key first; an address key that a postcode or a place contradicts
    ("Dorpsstraat 12, Bergeijk" / "Dorpsstraat 12, Eersel") gives none."""
    found: dict[str, Reason] = {}
    for a, fa in zip(mine.mentions, mine.features):
        kind = a.key.kind
        if kind in found and found[kind].same:
            continue
        for b, fb in zip(theirs.mentions, theirs.features):
            if b.key.kind != kind or not _SAME[kind](a, fa, b, fb):
                continue
            same = a.key == b.key
            if same or kind not in found:
                found[kind] = Reason(kind, same, b.text)
            if same:
                break
    return [found[kind] for kind in matching.KINDS if kind in found]
