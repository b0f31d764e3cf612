"""Match keys for "reeds bekend": normalised addresses, persons and organisations (pure, stdlib only).

Matching is exact equality of the normalised `MatchKey.value` (storage keeps an HMAC of it), so this
module owns which spellings count as "the same" and which near-misses stay apart. Decisions:

* Everything: NFKC, diacritics removed, case-folded, punctuation and repeated white space ignored.
  Never raises; all regexes use bounded quantifiers, so work is linear in the input length.
* Addresses: "straat:<street>:<number>" and "postcode:<pc>:<number>". A street is the single word that
  ends in a Dutch street suffix (≥ 2 letters before it), directly followed by a house number; only that
  last word is kept ("Burgemeester Aartsstraat 5" -> "aartsstraat"), "str." becomes "straat".
  House number: 1-99999 plus an optional single letter or "bis" ("12 A", "12-a" -> "12a"); ranges
  ("12-14") keep the first number; floors ("12-II", "12 hoog", "12 1hg", "12-I") are dropped.
  A postcode takes the number right after it, else the nearest street+number within 40 characters
  (before, then after). "-ring" needs a consonant before it (Westring, not ervaring). "2023 is" is no
  postcode: spaced lowercase letters that form a common Dutch word are rejected.
* Persons: the letter tokens, titles dropped, sorted and joined ("jansen piet"); word order and
  "Achternaam, Voornaam" therefore do not matter. Initials stay initials ("p jansen" != "jansen piet").
* Organisations: words in order with the legal form (BV, N.V., VOF, CV, Stichting, Vereniging,
  Coöperatie, U.A.) removed; articles are kept ("Stichting De Brug" -> "de brug" != "brug").
  In free text: 1-4 capitalised/number words (lowercase particles like "van", "de" allowed inside)
  right before a legal form, or right after Stichting/Vereniging/Coöperatie; capitalised function
  words ("In", "Bij", "Via") end the name, other sentence-initial words are a known limitation.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("adres", "persoon", "organisatie")
_KIND_ALIASES = dict(
    zip(KINDS, KINDS), address="adres", person="persoon", organisation="organisatie", organization="organisatie"
)


@dataclass(frozen=True, order=True)
class MatchKey:
    kind: str  # one of KINDS
    value: str  # normalised, e.g. "straat:kerkstraat:12a", "persoon:jansen piet"


# --- text folding ---------------------------------------------------------------------------

_SPACES = re.compile(r" {2,}")


def _plain(text: object) -> str:
    """NFKC, diacritics and control characters removed, dashes unified, white space collapsed."""
    if not isinstance(text, str):
        return ""
    out = []
    for ch in unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text)):
        cat = unicodedata.category(ch)
        if cat in ("Mn", "Me"):
            continue
        if cat == "Cc" or cat[0] == "Z":
            out.append(" ")
        elif cat == "Pd":
            out.append("-")
        elif cat[0] != "C":
            out.append(ch)
    return _SPACES.sub(" ", unicodedata.normalize("NFC", "".join(out))).strip()


def _folded(text: object) -> str:
    return _plain(_plain(text).casefold())


# --- addresses ------------------------------------------------------------------------------

_STREET_SUFFIXES = (
    *("straat", "laan", "weg", "plein", "dijk", "kade", "gracht", "singel", "steeg", "pad", "hof", "dreef", "baan"),
    *("markt", "park", "ring", "wal", "erf", "veld", "akker", "hoek", "donk", "dries", "voort", "eind", "einde", "str"),
)
_NOT_STREETS = frozenset({"onderweg", "halfweg", "weekeind", "weekeinde"})
_ADDR_JUNK = re.compile(r"[^\w\s.,\-]")
_LETTERS = re.compile(r"[^\W\d_]+")
_HOUSE = r"(?<![0-9])([0-9]{1,5})(?![0-9])(?: ?-? ?(bis|[a-zA-Z])(?![^\W\d_]))?"
_AFTER_STREET = re.compile(r"\.? ?(?:(?:nr|no|nummer)\.? ?)?" + _HOUSE, re.IGNORECASE)
_AFTER_POSTCODE = re.compile(r" ?(?:(?:nr|no)\.? ?)?" + _HOUSE, re.IGNORECASE)
_POSTCODE = re.compile(r"(?<![^\W_])([1-9][0-9]{3})( ?)([a-zA-Z]{2})(?![^\W\d_])")
_PC_FORBIDDEN = frozenset({"sa", "sd", "ss"})
# Lowercase two-letter Dutch words that follow a year or amount far more often than a postcode.
_PC_WORDS = frozenset("al as de en er he ik in is je na nu of om op te uw we ze zo".split())  # noqa: SIM905
_NEAR = 40


def _house_number(m: re.Match[str]) -> str | None:
    number = int(m.group(1))
    if not 1 <= number <= 99999:
        return None
    suffix = (m.group(2) or "").lower()
    return f"{number}{'' if suffix == 'i' else suffix}"  # "12-I" is a floor, not a house letter


def _street(word: str) -> str | None:
    w = word.lower()
    if w in _NOT_STREETS:
        return None
    for suffix in _STREET_SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 2:
            if suffix == "ring" and w[-5] in "aeiouy":
                return None
            return w[:-3] + "straat" if suffix == "str" else w
    return None


def _address_matches(text: str) -> list[tuple[int, MatchKey]]:
    s = _SPACES.sub(" ", _ADDR_JUNK.sub(" ", _plain(text)))
    streets: list[tuple[int, int, str]] = []  # (start, end, number)
    found: list[tuple[int, MatchKey]] = []
    for word in _LETTERS.finditer(s):
        street = _street(word.group())
        m = _AFTER_STREET.match(s, word.end()) if street else None
        number = _house_number(m) if m else None
        if m and number:
            streets.append((word.start(), m.end(), number))
            found.append((word.start(), MatchKey("adres", f"straat:{street}:{number}")))
    starts = [st[0] for st in streets]
    for pc in _POSTCODE.finditer(s):
        letters = pc.group(3)
        if letters.lower() in _PC_FORBIDDEN or (pc.group(2) and letters.islower() and letters in _PC_WORDS):
            continue
        m = _AFTER_POSTCODE.match(s, pc.end())
        number = _house_number(m) if m else None
        if not number:
            i = bisect_right(starts, pc.start())
            before = streets[i - 1] if i and pc.start() - streets[i - 1][1] <= _NEAR else None
            after = streets[i] if i < len(streets) and streets[i][0] - pc.end() <= _NEAR else None
            number = (before or after or (0, 0, None))[2]
        if number:
            found.append((pc.start(), MatchKey("adres", f"postcode:{pc.group(1)}{letters.lower()}:{number}")))
    return sorted(found)


def address_keys(text: str) -> set[MatchKey]:
    """All address keys in a text: street+number and postcode+number."""
    return {key for _, key in _address_matches(text)}


# --- persons --------------------------------------------------------------------------------

_TITLES = frozenset({"dhr", "hr", "heer", "mevr", "mw", "mevrouw", "meneer", "mr", "dr", "drs", "ir", "ing", "prof"})


def _person_value(text: str) -> str | None:
    tokens = _LETTERS.findall(_folded(text).removeprefix("persoon:"))
    kept: list[str] = []
    for tok in tokens:
        if tok in _TITLES:
            if tok == "heer" and kept and kept[-1] == "de":  # "de heer Jansen"
                kept.pop()
            continue
        kept.append(tok)
    if sum(map(len, kept)) < 2:
        return None
    return " ".join(sorted(kept))


# --- organisations --------------------------------------------------------------------------

_PREFIX_FORMS = ("stichting", "vereniging", "cooperatie")
_LEGAL_SEQUENCES = frozenset(
    [(form,) for form in ("bv", "nv", "cv", "vof", "ua", *_PREFIX_FORMS)]
    + [("b", "v"), ("n", "v"), ("c", "v"), ("u", "a"), ("v", "o", "f")]
)
_LEGAL_FORM = re.compile(
    r"(?<![^\W_])(?:[bcn](?:\. ?)?v\.?|v(?:\. ?)?o(?:\. ?)?f\.?|(stichting|vereniging|cooperatie))(?![^\W_])",
    re.IGNORECASE,
)
_ALNUM = re.compile(r"[^\W_]+")
_PARTICLES = frozenset({"van", "de", "der", "den", "het", "t", "ten", "ter", "te"})
# Capitalised at the start of a sentence, never the start of a name.
_FUNCTION_WORDS = frozenset(
    "bij daar dat deze die dit een en er gisteren hier hij ik in maar met naar ook op toen vandaag via voor"  # noqa: SIM905
    " volgens was we wij ze zij".split()
)
_WINDOW = 200


def _org_value(text: str) -> str | None:
    out: list[str] = []
    for tok in _ALNUM.findall(_folded(text).removeprefix("organisatie:")):
        out.append(tok)
        for n in (1, 2, 3):  # a stack, so a removal cannot leave a legal form behind
            if tuple(out[-n:]) in _LEGAL_SEQUENCES:
                del out[-n:]
                break
    if sum(map(len, out)) < 2:
        return None
    return " ".join(out)


def _joinable(gap: str, left: str | None) -> bool:
    g = gap.strip()
    return g in ("", "-", "&", "'") or (g == "." and left is not None and len(left) == 1)


def _name_words(s: str, start: int, end: int, backward: bool) -> list[str]:
    """The capitalised words directly before `start` (backward) or after `end` (forward)."""
    seg = s[max(0, start - _WINDOW) : start] if backward else s[end : end + _WINDOW]
    tokens = list(_ALNUM.finditer(seg))
    if backward:
        tokens.reverse()
    words: list[str] = []
    caps = 0
    edge = len(seg) if backward else 0
    for m in tokens:
        w = m.group()
        gap = seg[m.end() : edge] if backward else seg[edge : m.start()]
        if not _joinable(gap, w if backward else (words[-1] if words else None)):
            break
        if (w.casefold(),) in _LEGAL_SEQUENCES or w.casefold() in _FUNCTION_WORDS:
            break
        if w[0].isupper() or w[0].isdigit():
            caps += any(c.isupper() for c in w)
        elif w.casefold() not in _PARTICLES:
            break
        words.append(w)
        edge = m.start() if backward else m.end()
        if len(words) >= 8 or caps >= 4:
            break
    while words and words[-1].islower():  # no particle at the outer edge ...
        words.pop()
    while backward and words and words[0].islower():  # ... nor right before a legal form
        words.pop(0)
    return (words[::-1] if backward else words) if caps else []


def _organisation_keys(text: str) -> set[MatchKey]:
    s = _plain(text)
    keys = set()
    for m in _LEGAL_FORM.finditer(s):
        words = _name_words(s, m.start(), m.end(), backward=False) if m.group(1) else []
        candidates = [words] if words else []
        if not words:
            words = _name_words(s, m.start(), m.end(), backward=True)
            # A capitalised sentence start may sit in front of the name ("Uitzendkracht van Jansen
            # Uitzend BV"): also offer every tail of two or more words, so the real name matches.
            candidates = [words[i:] for i in range(len(words))
                          if (i == 0 or len(words) - i >= 2) and not words[i].islower()]
        for candidate in candidates:
            value = _org_value(" ".join(candidate))
            if value:
                keys.add(MatchKey("organisatie", f"organisatie:{value}"))
    return keys


# --- public API -----------------------------------------------------------------------------


def normalise(kind: str, text: str) -> MatchKey | None:
    """The key for a value the AF typed explicitly; None if nothing usable."""
    canonical = _KIND_ALIASES.get(kind.strip().casefold()) if isinstance(kind, str) else None
    if canonical == "adres":
        found = [key for _, key in _address_matches(text)]
        postcodes = [key for key in found if key.value.startswith("postcode:")]
        best = postcodes or found
        return best[0] if best else None
    if canonical == "persoon":
        value = _person_value(text)
        return MatchKey("persoon", f"persoon:{value}") if value else None
    if canonical == "organisatie":
        value = _org_value(text)
        return MatchKey("organisatie", f"organisatie:{value}") if value else None
    return None


def extract(texts: Iterable[str]) -> set[MatchKey]:
    """Address and organisation keys found in free-text answers (never persons)."""
    if isinstance(texts, str):
        texts = [texts]
    keys: set[MatchKey] = set()
    for text in texts or ():
        if isinstance(text, str):
            keys |= address_keys(text) | _organisation_keys(text)
    return keys
