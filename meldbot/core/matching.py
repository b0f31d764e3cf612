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
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain(text: object) -> str:
    """NFKC, diacritics and control characters removed, dashes unified, white space collapsed."""
    if not isinstance(text, str):
        return ""
    if text.isascii():  # the common case, and the same result: only control characters change
        return _SPACES.sub(" ", _ASCII_CONTROL.sub(" ", text)).strip()
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


# Lowercase words that are never (part of) a name: they end a lowercase organisation or person name and
# keep "zoals bv een busje" or "een jonge vrouw" from becoming one.
_COMMON = frozenset("""
aan achter af al alle alleen alles als altijd andere anders auto autos avond bedrijf begin bij binnen blijkt
boven buiten busje daar daarna dag dagen dan dat de deze die dit doen door dus echter een eerst eigen elke en
enkele er erg ergens eruit gaat gaan geen gegeven geld gewoon gezien gisteren goed graag groot grote had hadden
haar hebben heeft heel hem hen het hier hij hoe hun huis huur iedereen iemand iets ik in is ja jaar je jong
jonge kan kamer kinderen komen komt krijgen krijgt kunnen kwam kwamen laat lang later man mannen maar mag meer
meerdere meisje melding men mensen met mij mijn moet moeten mocht na naar nacht naast namens nee niemand niet
niets nieuw nog nu of ofwel ok om omdat onbekend onder ons ook op oud oude oudere over overdag paar pand per
persoon plek rond samen schuur slapen slecht snel soms staan staat steeds te tegen terwijl toe toen tot twee
uit uur vaak van veel ver vier via vijf voor vorige vrouw vrouwen waar waren was wat we week weer weet weg
wel welke werd werden werk werken werkt werknemers wie wij wil willen woning woont wonen zag zagen ze zegt zei
zelf zes zich zien zij zijn zo zoals zonder zou zouden zullen zeggen drie tien elf twaalf
buurman buurvrouw melder collega vriend vriendin eigenaar baas werkgever uitzendkracht uitzendkrachten
""".split())  # noqa: SIM905
# Capitalised words that start no person's name: places, bodies and the like.
_NOT_NAMES = frozenset("""
politie gemeente arbeidsinspectie inspectie marechaussee kmar ind riec veilig thuis zorg nederland nederlandse
oost west noord zuid brabant centrum station maandag dinsdag woensdag donderdag vrijdag zaterdag zondag januari
februari maart april mei juni juli augustus september oktober november december mh avim ggd nla uwv
""".split())  # noqa: SIM905


# --- addresses ------------------------------------------------------------------------------

_STREET_SUFFIXES = (
    *("straat", "laan", "weg", "plein", "dijk", "kade", "gracht", "singel", "steeg", "pad", "hof", "dreef", "baan"),
    *("markt", "park", "ring", "wal", "erf", "veld", "akker", "hoek", "donk", "dries", "voort", "eind", "einde", "str"),
    *("ln", "dyk"),
)
# Abbreviations and spellings of a suffix, written out in the key ("Kerkstr." -> "kerkstraat").
_SUFFIX_SPELLED = {"str": "straat", "ln": "laan", "dyk": "dijk"}
# A suffix typed as a word of its own joins the word before it ("Dorps straat 12", "Bergeijkse weg 5").
_SPLIT_SUFFIXES = frozenset("straat str laan weg plein dijk kade gracht singel steeg dreef".split())  # noqa: SIM905
_NOT_STREETS = frozenset({"onderweg", "halfweg", "weekeind", "weekeinde"})
_ADDR_JUNK = re.compile(r"[^\w\s.,\-]")
_LETTERS = re.compile(r"[^\W\d_]+")
_HOUSE = r"(?<![0-9])([0-9]{1,5})(?![0-9])(?: ?-? ?(bis|[a-zA-Z])(?![^\W\d_]))?"
_AFTER_STREET = re.compile(r"\.? ?(?:(?:nr|no|nummer)\.? ?)?" + _HOUSE, re.IGNORECASE)
_AFTER_POSTCODE = re.compile(r",? ?(?:(?:nr|no|nummer|huisnummer)\.?,? ?)?" + _HOUSE, re.IGNORECASE)
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
    if w in _NOT_STREETS or not w.endswith(_STREET_SUFFIXES):
        return None
    for suffix in _STREET_SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 2:
            if suffix == "ring" and w[-5] in "aeiouy":
                return None
            spelled = _SUFFIX_SPELLED.get(suffix)
            return w[: -len(suffix)] + spelled if spelled else w
    return None


@dataclass(frozen=True)
class Mention:
    """Where a key was found: the words as written (shown to the AF, never logged) and, for an address,
    the postcode and the place named next to it (folded), which tell two look-alike addresses apart."""

    key: MatchKey
    text: str
    postcode: str | None = None
    town: str | None = None


_TOWN = re.compile(r"(,? ?(?:(?:in|te) )?(?:[1-9][0-9]{3} ?[a-zA-Z]{2}(?![^\W\d_]),? ?)?)([^\W\d_]{3,30})")


def _town(s: str, end: int) -> str | None:
    """The place right after an address: "..., Bergeijk", "... in Eersel", "... 5571 AB Westerhoven"."""
    m = _TOWN.match(s, end)
    if not m:
        return None
    word = m.group(2)
    folded = word.casefold()
    if folded in _COMMON or folded in _FUNCTION_WORDS or folded in _PARTICLES or _street(word):
        return None
    return folded if (m.group(1).strip() or word[0].isupper()) else None


def _address_matches(text: str) -> list[tuple[int, MatchKey]]:
    return [(start, mention.key) for start, mention in _address_mentions(text)]


def _address_mentions(text: str) -> list[tuple[int, Mention]]:
    s = _SPACES.sub(" ", _ADDR_JUNK.sub(" ", _plain(text)))
    streets: list[tuple[int, int, str]] = []  # (start, end, number)
    found: list[tuple[int, Mention]] = []
    street_keys: list[tuple[int, int, MatchKey]] = []
    previous: re.Match[str] | None = None
    for word in _LETTERS.finditer(s):
        start, street = word.start(), _street(word.group())
        if (street is None and previous is not None and word.group().casefold() in _SPLIT_SUFFIXES
                and s[previous.end():start] == " " and previous.group().casefold() not in _COMMON
                and previous.group().casefold() not in _PARTICLES):
            start, street = previous.start(), _street(previous.group() + word.group())
        previous = word
        m = _AFTER_STREET.match(s, word.end()) if street else None
        number = _house_number(m) if m else None
        if m and number:
            streets.append((start, m.end(), number))
            street_keys.append((start, m.end(), MatchKey("adres", f"straat:{street}:{number}")))
    starts = [st[0] for st in streets]
    postcode_of: dict[int, str] = {}
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
            code = f"{pc.group(1)}{letters.lower()}"
            end = m.end() if m and _house_number(m) else pc.end()
            for st in streets:
                if st[2] == number and abs(st[0] - pc.start()) <= 2 * _NEAR:
                    postcode_of[st[0]] = code
            found.append((pc.start(), Mention(MatchKey("adres", f"postcode:{code}:{number}"), s[pc.start():end],
                                              code, _town(s, end))))
    for start, end, key in street_keys:
        found.append((start, Mention(key, s[start:end], postcode_of.get(start), _town(s, end))))
    return sorted(found, key=lambda f: (f[0], f[1].key))


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
    r"(?<![^\W_])(?:[bcn](?:\. ?| )?v\.?|v(?:\. ?)?o(?:\. ?)?f\.?|(stichting|vereniging|cooperatie))(?![^\W_])",
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
_BIJVOORBEELD = re.compile(r"\. ?[^\W\d_A-Z]")


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
    named = lower = 0
    caps = False  # who capitalises a name capitalises all of it: then a lower-case word ends it
    edge = len(seg) if backward else 0
    for m in tokens:
        w = m.group()
        folded = w.casefold()
        gap = seg[m.end() : edge] if backward else seg[edge : m.start()]
        if not _joinable(gap, w if backward else (words[-1] if words else None)):
            break
        if (folded,) in _LEGAL_SEQUENCES or folded in _FUNCTION_WORDS:
            break
        if w[0].isupper() or w[0].isdigit():
            named += any(c.isalpha() for c in w)  # "5570 BV" is a postcode, "4You BV" a name
            caps = True
        elif folded in _PARTICLES:
            pass
        elif folded not in _COMMON and len(folded) >= 2 and lower < 3 and not caps:
            # "schoonmaak zuid bv": people type names in lower case too; common words end the name.
            named += 1
            lower += 1
        else:
            break
        words.append(w)
        edge = m.start() if backward else m.end()
        if len(words) >= 8 or named >= 4:
            break
    while words and words[-1].casefold() in _PARTICLES:  # no particle at the outer edge ...
        words.pop()
    while backward and words and words[0].casefold() in _PARTICLES:  # ... nor right before a legal form
        words.pop(0)
    return (words[::-1] if backward else words) if named else []


def _organisation_keys(text: str) -> set[MatchKey]:
    return {mention.key for mention in _organisation_mentions(text)}


def _organisation_mentions(text: str) -> list[Mention]:
    s = _plain(text)
    found: dict[MatchKey, Mention] = {}
    for m in _LEGAL_FORM.finditer(s):
        if s[m.start() : m.start() + 2] == "bv" and _BIJVOORBEELD.match(s, m.start() + 2):
            continue  # "bv. een busje": bijvoorbeeld
        words = _name_words(s, m.start(), m.end(), backward=False) if m.group(1) else []
        candidates = [words] if words else []
        if not words:
            words = _name_words(s, m.start(), m.end(), backward=True)
            # A capitalised sentence start may sit in front of the name ("Uitzendkracht van Jansen
            # Uitzend BV"): also offer every tail of two or more words, so the real name matches.
            candidates = [words[i:] for i in range(len(words))
                          if (i == 0 or len(words) - i >= 2) and words[i].casefold() not in _PARTICLES]
        for candidate in candidates:
            value = _org_value(" ".join(candidate))
            if value:
                key = MatchKey("organisatie", f"organisatie:{value}")
                written = f"{m.group()} {' '.join(candidate)}" if m.group(1) else f"{' '.join(candidate)} {m.group()}"
                found.setdefault(key, Mention(key, written))
    return list(found.values())


# --- persons in free text -------------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_NAME_PARTICLES = _PARTICLES | frozenset({"vd", "v", "el", "al", "da", "di", "du", "le", "la", "von", "bin", "ben"})
_NAME_CUE = re.compile(r"(?<![^\W_])(?:genaamd|heet|heette|naam is|met de naam|meneer|mevrouw|mevr|dhr|de heer)\.? ",
                       re.IGNORECASE)


def _is_name_word(word: str, *, lower: bool = False) -> bool:
    if not (lower or word[0].isupper()):
        return False
    folded = word.casefold()
    if folded in _COMMON or folded in _NOT_NAMES or folded in _FUNCTION_WORDS or folded in _TITLES:
        return False
    if (folded,) in _LEGAL_SEQUENCES or folded in _PREFIX_FORMS or _street(word):
        return False
    return True


def _person_from(s: str, tokens: list[re.Match[str]]) -> Mention | None:
    while tokens and tokens[-1].group().casefold() in _NAME_PARTICLES:
        tokens = tokens[:-1]
    names = [t for t in tokens if t.group().casefold() not in _NAME_PARTICLES]
    if len(names) < 2 or not any(len(t.group()) > 1 for t in names):
        return None
    value = _person_value(" ".join(t.group() for t in tokens))
    if value is None:
        return None
    return Mention(MatchKey("persoon", f"persoon:{value}"), s[tokens[0].start() : tokens[-1].end()])


def _person_mentions(text: str, whole: bool = False) -> list[Mention]:
    """Names in free text: two or more capitalised words ("Jan de Vries", "J. de Vries"), "de Vries, Jan",
    lower-case names after a cue ("genaamd jan de vries"); with `whole`, an answer that is only a name."""
    s = _plain(text)[:2000]
    tokens = list(_NAME_TOKEN.finditer(s))
    found: list[Mention] = []
    if whole and 2 <= len(tokens) <= 5 and not re.search(r"[^\w\s,.'-]|\d", s) and not _LEGAL_FORM.search(s):
        if all(_is_name_word(t.group(), lower=True) or t.group().casefold() in _NAME_PARTICLES for t in tokens):
            mention = _person_from(s, tokens)
            return [mention] if mention else []
    i = 0
    while i < len(tokens):
        run: list[re.Match[str]] = []
        j = i
        org = False
        while j < len(tokens):
            tok, word = tokens[j], tokens[j].group()
            if _LEGAL_FORM.match(s, tok.start()):
                org = True  # the words before a legal form name an organisation
                break
            if run:
                gap = s[run[-1].end() : tok.start()]
                if gap not in (" ", ". ") or (gap == ". " and len(run[-1].group()) > 1 and
                                               run[-1].group().casefold() not in _TITLES):
                    break
            if word.casefold() in _TITLES or (not run and word.casefold() == "de" and
                                               s[tok.end() : tok.end() + 5].casefold() == " heer"):
                j += 1
                continue  # "Dhr. Jan Bakker", "de heer Jansen": the title is no part of the name
            if not (_is_name_word(word) or (word.casefold() in _NAME_PARTICLES and not word[0].isupper())
                    or (word.casefold() in _NAME_PARTICLES and j + 1 < len(tokens))):
                break
            run.append(tok)
            j += 1
            if len(run) >= 6:
                break
        end = run[-1].end() if run else 0
        after = s[end : end + 12]
        org = org or (bool(run) and bool(_LEGAL_FORM.match(after.lstrip(" "))))
        if run and (org or re.match(r" ?[0-9]", after) or re.search(r"[0-9] ?$", s[: run[0].start()])):
            run = []  # an organisation; a street or postcode ("5571 AB Bergeijk")
        if run:
            names = [t for t in run if t.group().casefold() not in _NAME_PARTICLES]
            if len(names) == 1 and j < len(tokens) and s[end : tokens[j].start()] == ", ":
                # "de Vries, Jan" / "Nowak, Piotr": a surname, a comma and one first name or initial.
                first = tokens[j]
                rest = s[first.end() : first.end() + 5]
                if first.group()[0].isupper() and _is_name_word(first.group()) and re.match(r"(?:$|\.|,| en |\s*$|\. )", rest):
                    run.append(first)
                    j += 1
            mention = _person_from(s, run)
            if mention:
                found.append(mention)
        i = max(j, i + 1)
    for cue in _NAME_CUE.finditer(s):
        lower: list[re.Match[str]] = []
        for tok in tokens:
            if tok.start() < cue.end():
                continue
            gap = s[(lower[-1].end() if lower else cue.end()) : tok.start()]
            if gap.strip() or not (tok.group().casefold() in _NAME_PARTICLES or _is_name_word(tok.group(), lower=True)):
                break
            lower.append(tok)
            if sum(t.group().casefold() not in _NAME_PARTICLES for t in lower) >= 2:
                break
        if lower and not lower[0].group()[0].isupper():
            mention = _person_from(s, lower)
            if mention:
                found.append(mention)
    return found


# --- blocking keys: which other signals are worth comparing ---------------------------------

BLOCK = "blok"


def phonetic(word: str) -> str:
    """A folded word with Dutch spelling variants made equal: ch/g, ck/c/k, x/ks, ph/f, th/t, dt/t,
    ij/ei/y/i, and doubled letters collapsed ("Janssen" = "jansen", "Meijer" = "Meyer")."""
    w = _folded(word)
    for old, new in (("ch", "g"), ("ck", "k"), ("x", "ks"), ("ph", "f"), ("th", "t"), ("dt", "t"), ("ij", "i"),
                     ("ei", "i"), ("y", "i"), ("c", "k")):
        w = w.replace(old, new)
    return _DOUBLES.sub(r"\1", w)


_DOUBLES = re.compile(r"(.)\1+")
_VOWELS = re.compile(r"[aeiou]")


def skeleton(word: str) -> str:
    """The phonetic word without its vowels (but the first letter) and a final s: "Vries", "Vris" -> "vrs"."""
    w = phonetic(word)
    if len(w) >= 5 and w.endswith("s"):
        w = w[:-1]
    return _DOUBLES.sub(r"\1", w[:1] + _VOWELS.sub("", w[1:]))


def street_parts(street: str) -> tuple[str, str]:
    """A folded street word ("dorpsstraat") as (stem, suffix): the linking s dropped, spelling folded."""
    for suffix in _STREET_SUFFIXES:
        if street.endswith(suffix) and len(street) > len(suffix):
            stem = street[: -len(suffix)]
            if len(stem) > 3 and stem.endswith("s"):
                stem = stem[:-1]
            return phonetic(stem), _SUFFIX_SPELLED.get(suffix, "eind" if suffix == "einde" else suffix)
    return phonetic(street), ""


def blocks(keys: Iterable[MatchKey]) -> set[MatchKey]:
    """Coarse keys shared by the variants of an address, person or organisation (stored as keyed hashes
    like the keys themselves): the house number and the street's first letter; the postcode's digits and
    the number; each name word's skeleton; an organisation's skeleton as one word and its longest word's."""
    found: set[MatchKey] = set()
    for key in keys:
        kind, _, rest = key.value.partition(":")
        if kind == "straat":
            street, _, number = rest.rpartition(":")
            digits = number.rstrip("abcdefghijklmnopqrstuvwxyz")
            found.add(MatchKey(BLOCK, f"blok:adres:{digits}:{street[:1]}"))
        elif kind == "postcode":
            code, _, number = rest.partition(":")
            found.add(MatchKey(BLOCK, f"blok:pc:{code[:4]}:{number.rstrip('abcdefghijklmnopqrstuvwxyz')}"))
        elif kind == "persoon":
            for word in rest.split():
                if len(word) > 1 and word not in _NAME_PARTICLES:
                    found.add(MatchKey(BLOCK, f"blok:persoon:{skeleton(word)}"))
        elif kind == "organisatie":
            words = [w for w in rest.split() if w not in ("en", "zn")]
            if words:
                found.add(MatchKey(BLOCK, f"blok:org:{skeleton(''.join(words))}"))
                found.add(MatchKey(BLOCK, f"blok:org:{skeleton(max(words, key=len))}"))
    return found


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


def mentions(text: object, *, name: bool = False) -> list[Mention]:
    """Every address, person and organisation in one answer, with the words as written. `name`: the
    answer may be just a name (the "wie" answer: "jan de vries")."""
    if not isinstance(text, str):
        return []
    found = [m for _, m in _address_mentions(text)] + _organisation_mentions(text)
    org_words = {w for m in found if m.key.kind == "organisatie" for w in m.key.value.split(":", 1)[1].split()}
    for person in _person_mentions(text, whole=name):
        words = set(person.key.value.split(":", 1)[1].split())
        if not words <= org_words:   # "Jansen Uitzend" before a BV is the organisation, not a person
            found.append(person)
    return found


def extract(texts: Iterable[str], names: Iterable[str] = ()) -> set[MatchKey]:
    """Address, person and organisation keys found in free-text answers; `names`: answers that may be
    only a name (the "wie" answer)."""
    if isinstance(texts, str):
        texts = [texts]
    whole = {text for text in names or () if isinstance(text, str)}
    keys: set[MatchKey] = set()
    for text in texts or ():
        if isinstance(text, str):
            keys |= {m.key for m in mentions(text, name=text in whole)}
    return keys
