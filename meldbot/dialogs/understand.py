"""What people mean when they do not type the contract's words: the labels the bot shows, everyday yes and no,
natural openers and small typos. Every reading is a rewrite to a contract message ("arbeidsuitbuiting" ->
`arbeid`, "ja klopt, verstuur maar" -> `versturen`), so the dialog behind it stays the one in the state table.

Predictable on purpose:
- the exact rule runs first (in report.py); a message it accepts is never read here;
- a free-text question is never read here (any text is its answer);
- one message, one meaning: two readings in one message ("seksueel of arbeid", "nee, ik wil anoniem blijven")
  or a negation the tables do not cover ("geen arbeid") is no reading, and the question is asked again;
- "Bedoel je ...?" only when exactly one meaning is within a small edit distance, never for short words;
- punctuation ends a phrase: "liever niet, anoniem" is "liever niet" and "anoniem", not "liever niet anoniem";
- a message ending in "?" asks something: at the summary and the anonymity question it is no answer;
- at the anonymity question a wrong `nee` shows the melder's name to the AF, the one error that cannot be undone:
  what may mean either ("liever niet", "geen probleem") is asked again, and so is a `nee` with an explanation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from rapidfuzz.distance import OSA

from meldbot.core.i18n import LANGUAGES, texts
from meldbot.dialogs.commands import ANYONE, DIALOG, IN_DIALOG, MIN_TYPO_LENGTH, allowed_distance, asks, normalise


@dataclass(frozen=True)
class Reading:
    """`word`: the contract message the text means. `near`: not sure, but the text is a small typo of this one
    contract message only ("Bedoel je ...?"). Neither: not understood."""

    word: str | None = None
    near: str | None = None


NOTHING = Reading()
FILLER = ""  # a phrase that carries no meaning of its own ("ik denk", "graag", "uitbuiting")
# A phrase that is near an answer but is none: the message gets no reading ("zwart werk" is no form).
NO_READING = "!"
# A weak yes ("prima", "graag", "is goed") means yes alone, and nothing beside another answer ("nee, is goed").
WEAK = "~"
# A phrase that may mean either answer ("liever niet": rather not be named, or rather not be anonymous?): alone or
# beside `nee` no reading; beside a plain other answer ("liever niet, anoniem") that answer.
UNSURE = "?"
# Words that turn a meaning around when no phrase covers them: "geen arbeid", "niet versturen", "zonder drugs",
# "arbeid nee".
NEGATIONS = frozenset({"niet", "geen", "niets", "nooit", "zonder", "nee", "neen", "not", "dont", "never", "nothing",
                       "without", "no", "nope"})
# Where a message is made of clauses ("liever niet, anoniem"), the place a punctuation mark stood.
BOUNDARY = ","
# Longer messages are explanations: they are read for the words in them, but get no "Bedoel je ...?".
MAX_TOKENS_NEAR = 12
_LONGEST = 12


def tokens(text: str, *, boundaries: bool = False) -> list[str]:
    """The words of a message: normalised (case, accents, a leading ! or /), punctuation as spaces, "don't" as
    "dont", a letter typed three times or more as two ("jaaa", "neeee"). `boundaries`: a punctuation mark
    between words (, . ; : ! ? brackets, a dash between spaces) becomes a BOUNDARY word, which no phrase spans."""
    norm = normalise(text).replace("'", "").replace("\u2019", "")
    norm = re.sub(r"(?<!\w)-(?=\d)", " minus ", norm)   # "-1" is no option number
    if boundaries:
        norm = re.sub(r"[.,;:!?()\[\]{}\"/|\u2026]+|\s[-\u2013\u2014]+\s", f" {BOUNDARY} ", norm)
        norm = re.sub(r"[^\w,]+", " ", norm)
    else:
        norm = re.sub(r"[^\w]+", " ", norm)
    norm = re.sub(r"(\w)\1{2,}", r"\1\1", norm)
    words: list[str] = []
    for w in norm.split():
        if w != BOUNDARY or (words and words[-1] != BOUNDARY):
            words.append(w)
    while words and words[-1] == BOUNDARY:
        words.pop()
    return words


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w != BOUNDARY]


def _table(*groups: tuple[str, tuple[str, ...]]) -> dict[str, str]:
    """phrase -> meaning; a phrase with punctuation ("ja, de AF ziet ...") also as typed without it."""
    table: dict[str, str] = {}
    for meaning, phrases in groups:
        for phrase in phrases:
            table[" ".join(tokens(phrase))] = meaning
            table[" ".join(tokens(phrase, boundaries=True))] = meaning
    return table


# Said around an answer, without meaning of its own.
_FILLERS = (FILLER, (
    "ik", "denk", "ik denk", "denk ik", "ik gok", "gok ik", "volgens mij", "het", "is", "was", "het is", "het was",
    "dat", "dit", "het gaat om", "gaat om", "waarschijnlijk", "misschien", "vermoedelijk", "lijkt", "lijkt mij",
    "lijkt me", "mij", "me", "op", "optie", "nummer", "nr", "keuze", "antwoord", "de", "een", "graag", "alsjeblieft",
    "aub", "a u b", "svp", "hoor", "toch", "wel", "dan", "eh", "uh", "ehm", "nou", "zou", "zeggen", "ik zou zeggen",
    "maar", "en", "i think", "i", "think", "it", "its", "is it", "please", "the", "probably", "maybe", "option",
    "number", "uitbuiting", "exploitation", "vorm", "soort", "van", "er", "sprake", "er is sprake van",
))


def _scan(words: Sequence[str], table: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(meanings, words no phrase covers): the longest phrase wins at each place ("liever niet anoniem" before
    "liever niet")."""
    meanings: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == BOUNDARY:
            i += 1
            continue
        for size in range(min(_LONGEST, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + size])
            if phrase in table:
                if table[phrase]:
                    meanings.append(table[phrase])
                i += size
                break
        else:
            rest.append(words[i])
            i += 1
    return meanings, rest


def _near_meanings(word: str, table: Mapping[str, str]) -> set[str]:
    """Every meaning (FILLER included) of a one-word phrase within the allowed edit distance of `word`."""
    if len(word) < MIN_TYPO_LENGTH or word.isdigit():
        return set()
    limit = allowed_distance(word)
    return {meaning for phrase, meaning in table.items()
            if " " not in phrase and len(phrase) >= MIN_TYPO_LENGTH
            and OSA.distance(word, phrase, score_cutoff=limit) <= limit}


def _read(words: list[str], table: Mapping[str, str], *, unknown_ok: bool,
          numbers: Sequence[str] = (), near_words: Mapping[str, str] | None = None) -> Reading:
    """The one meaning `words` carry by `table`, or the one meaning they are a small typo of.

    `unknown_ok`: words no phrase covers may stand beside the meaning ("arbeid, ze werkten 14 uur per dag");
    otherwise every word must be covered. `numbers`: the options a bare number picks ("optie 2"), counted only
    when nothing else is unknown. `near_words`: contract messages a one-word message may be a typo of."""
    if not _content(words):
        return NOTHING
    meanings, rest = _scan(words, table)
    if any(w in NEGATIONS for w in rest):
        return NOTHING
    if UNSURE in meanings:
        # "liever niet" alone, or beside `nee`: no reading; beside a plain `ja` ("liever niet, anoniem"): `ja`. Only
        # towards `ja`: a wrong `ja` hides a name the AF can still ask for through the bot; a wrong `nee` shows it.
        others = {m for m in meanings if m != UNSURE and not m.endswith(WEAK)}
        if others != {"ja"}:
            return NOTHING
        meanings = [m for m in meanings if m in others]
    numbered = [w for w in rest if w.isdigit()]
    if len(numbered) == 1 and len(rest) == 1 and 1 <= int(numbered[0]) <= len(numbers):
        meanings.append(numbers[int(numbered[0]) - 1])    # "optie 2", "2 arbeid"
        rest = []
    elif numbered and not unknown_ok:
        return NOTHING                                      # otherwise a number is part of the explanation
    near: set[str] = set()
    unknown: list[str] = []
    tokens_ok = len(_content(words)) <= MAX_TOKENS_NEAR
    for w in rest:
        found = _near_meanings(w, table) if tokens_ok else set()
        if found == {FILLER}:
            continue               # "uitbuting": a typo of a word that means nothing here
        found.discard(FILLER)
        if len(found) == 1:
            near |= found
        elif found:
            return NOTHING         # a typo of two different answers: no guess
        else:
            unknown.append(w)
    if NO_READING in meanings:
        return NOTHING
    strong = [m for m in meanings if not m.endswith(WEAK)]
    meanings = strong or [m.removesuffix(WEAK) for m in meanings]
    if len(set(meanings)) > 1:
        return NOTHING
    if meanings:
        if near - set(meanings) or (unknown and not unknown_ok):
            return NOTHING
        return Reading(word=meanings[0])
    if len(near) == 1 and tokens_ok:
        return Reading(near=near.pop())
    if near_words and len(_content(words)) == 1 and not near:
        typo = _near_word(_content(words)[0], near_words)
        if typo is not None:
            return Reading(near=typo)
    return NOTHING


def _near_word(word: str, candidates: Mapping[str, str]) -> str | None:
    """The one contract message `word` is a small typo of (candidates: word -> message), or None."""
    found = _near_meanings(word, candidates) - {FILLER}
    return found.pop() if len(found) == 1 else None


# --- the choice questions ------------------------------------------------------------------------------------

# What else people call each option (the catalogue's labels, in every language, are added by `_choice_table`).
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "soort": {
        "seksueel": ("seksueel", "seksuele", "seksuele uitbuiting", "sexueel", "sexuele uitbuiting", "seks", "sex",
                     "prostitutie", "gedwongen prostitutie", "illegale prostitutie", "sekswerk", "seksindustrie",
                     "loverboy", "loverboys", "pooier", "pooierboy", "escort", "raamprostitutie", "sexual",
                     "sexual exploitation", "forced prostitution", "prostitution"),
        "arbeid": ("arbeid", "arbeidsuitbuiting", "arbeids uitbuiting", "uitbuiting op het werk", "werk",
                   "uitbuiting in het werk", "werkuitbuiting", "uitbuiting van werknemers", "uitbuiting bij het werk",
                   "uitbuiting op de werkvloer", "dwangarbeid", "gedwongen arbeid", "labour", "labor",
                   "labour exploitation", "labor exploitation", "forced labour", "forced labor", "work"),
        "crimineel": ("crimineel", "criminele", "criminele uitbuiting", "criminaliteit", "gedwongen criminaliteit",
                      "drugs", "drugshandel", "drugs dealen", "drugs verkopen", "drugsrunner", "drugskoerier",
                      "geldezel",
                      "geldezels", "winkeldiefstal", "stelen", "diefstal", "criminal", "criminal exploitation",
                      "forced crime"),
        "orgaan": ("orgaan", "organen", "orgaanverwijdering", "gedwongen orgaanverwijdering", "orgaanhandel",
                   "nier", "nier afstaan", "organ", "organs", "organ removal", "forced organ removal",
                   "organ trafficking"),
        "onbekend": ("onbekend", "weet ik niet", "weet niet", "ik weet het niet", "ik weet niet", "weet ik nog niet",
                     "weet het niet", "geen idee", "geen flauw idee", "geen idee eigenlijk", "onduidelijk",
                     "niet zeker", "ik weet het niet zeker", "weet ik niet zeker", "twijfel", "ik twijfel",
                     "kan ik niet zeggen", "lastig te zeggen", "moeilijk te zeggen", "nog onbekend",
                     "weet ik eigenlijk niet", "unknown", "dont know", "i dont know", "no idea", "not sure", "idk",
                     "geen idee welke", "ik weet niet welke", "weet niet welke", "weet k niet",
                     "ik weet het echt niet", "echt geen idee"),
        # Undeclared work or trafficking in general is no form: asked again.
        NO_READING: ("zwart werk", "zwartwerk", "zwartwerken", "illegaal werk", "mensenhandel"),
    },
    "context": {
        "balie": ("balie", "aan de balie", "bij de balie", "loket", "aan het loket", "bij het loket", "receptie",
                  "bij de receptie", "klantcontact", "publieksbalie", "burgerzaken", "spreekuur", "desk",
                  "at the desk", "front desk", "counter"),
        "huisbezoek": ("huisbezoek", "bij een huisbezoek", "huisbezoekje", "op huisbezoek", "tijdens een huisbezoek",
                       "bij iemand thuis", "bij mensen thuis", "aan huis", "keukentafelgesprek", "home visit",
                       "house visit"),
        "toezicht": ("toezicht", "controle", "bij controle", "bij een controle", "tijdens een controle",
                     "bij controle of toezicht", "controle of toezicht", "inspectie", "bij een inspectie",
                     "handhaving", "bij handhaving", "boa", "adrescontrole", "huisbezoek controle", "inspection",
                     "supervision", "check"),
        "vergunning": ("vergunning", "aanvraag", "bij een vergunning", "bij een aanvraag", "vergunningaanvraag",
                       "vergunning of aanvraag", "bij een vergunning of aanvraag", "exploitatievergunning",
                       "bibob", "inschrijving", "een aanvraag", "permit", "application", "licence", "license"),
        "anders": ("anders", "iets anders", "overig", "overige", "ergens anders", "geen van deze", "geen van allen",
                   "other", "something else", "none of these"),
    },
    "anoniem": {
        # The question is "Wil je anoniem blijven voor de AF?": yes is anonymous (`ja`), no shows the name (`nee`).
        "ja" + WEAK: ("graag", "prima", "ok", "oke", "okay", "akkoord", "goed", "is goed", "is prima", "sure",
                      "natuurlijk", "uiteraard", "zeker"),
        "ja": ("ja", "jaa", "jawel", "jazeker", "ja zeker", "ja graag", "ja hoor", "ja please",
               "jep", "jup", "yes", "yep", "yes please", "liefst", "liefst wel", "liever wel", "graag zelfs",
               "anoniem", "anoniem blijven", "ik wil anoniem blijven", "wil anoniem blijven", "liever anoniem",
               "graag anoniem", "anoniem graag", "wel anoniem", "anoniem alsjeblieft", "schuilnaam",
               "met schuilnaam", "met een schuilnaam", "alleen een schuilnaam", "zonder naam", "zonder mijn naam",
               "naam niet", "mijn naam niet", "mijn naam liever niet", "naam liever niet", "liever geen naam",
               "liever niet met naam", "liever niet met mijn naam", "geen naam", "niet met naam",
               "niet met mijn naam", "mijn naam niet noemen", "mijn naam niet doorgeven", "niet herkenbaar",
               "ja anoniem", "anonymous", "stay anonymous", "yes anonymous", "no name",
               # "noemen" is no filler: "liever niet noemen" is rather not named, "nee, liever niet noemen" doubt.
               "liever niet noemen", "liever niet te noemen", "niet noemen", "hoeft niet te noemen",
               "hoef niet genoemd te worden", "niet genoemd worden", "liever niet genoemd", "liever niet genoemd worden",
               "naam niet noemen", "mijn naam liever niet noemen", "naam liever niet noemen", "geen naam noemen",
               "noem mijn naam maar niet", "noem mijn naam niet", "noem me niet", "naam liever niet doorgeven",
               "mijn naam liever niet doorgeven", "niet doorgeven wie ik ben", "liever niet herkenbaar",
               "liever niet bekend", "liever geen naam noemen", "niet bekend worden", "wil niet bekend worden", "onbekend blijven",
               "liever onbekend", "liever niet zichtbaar", "niet zichtbaar", "niet zichtbaar voor de af",
               "hou me anoniem", "houd me anoniem", "houd mij anoniem", "hou mij anoniem", "graag anoniem blijven",
               "anoniem alstublieft", "anoniem alsjeblieft", "liever anoniem blijven", "zonder naam graag",
               "naam hoeft niet", "mijn naam hoeft niet", "mijn naam hoeft er niet bij", "naam hoeft er niet bij",
               "naam mag niet", "mijn naam mag niet", "mijn naam mag niet bij de af", "naam mag er niet bij",
               "mijn naam mag er niet bij", "de af mag mijn naam niet zien", "af mag mijn naam niet zien",
               "de af mag mijn naam niet weten", "af mag mijn naam niet weten", "mag mijn naam niet zien",
               "mag mijn naam niet weten", "mag niet weten wie ik ben", "niemand mag weten dat ik het ben",
               "ik wil niet dat de af mijn naam ziet", "wil niet dat de af mijn naam ziet",
               "ik wil niet dat de af weet wie ik ben", "niet mijn naam", "niet mijn naam graag",
               "keep me anonymous", "rather not be named", "id rather not be named", "rather stay anonymous",
               "id rather stay anonymous", "dont use my name", "do not use my name", "dont show my name",
               "do not show my name", "please dont show my name", "dont share my name", "do not share my name",
               "not my name", "keep my name out of it", "i dont want my name shown", "no name please",
               "without my name", "without a name"),
        "nee": ("nee", "neen", "nee hoor", "nee dank je", "nee dank u", "nee dankjewel", "nee bedankt",
                "nee dankje", "nope", "neuh", "nah", "no", "no thanks", "welnee", "hoeft niet",
                "niet nodig", "is niet nodig", "hoeft niet hoor", "nee hoeft niet", "niet perse", "niet per se",
                "niet anoniem", "niet anoniem blijven", "liever niet anoniem", "hoef niet anoniem",
                "hoef niet anoniem te blijven", "niet anoniem te blijven", "liever niet anoniem blijven",
                "anoniem hoeft niet", "anoniem is niet nodig", "anoniem niet nodig", "naam mag", "mijn naam mag",
                "naam mag erbij", "mijn naam mag erbij", "mijn naam mag zien", "mag mijn naam zien",
                "mag mijn naam weten", "mag mijn naam bij", "met naam is prima", "naam mag gezien worden",
                "mijn naam is goed", "mijn naam is prima",
                "met naam", "met mijn naam", "met naam graag", "naam erbij", "mijn naam erbij", "mijn naam mag er bij",
                "de af mag mijn naam zien", "af mag mijn naam zien", "not anonymous",
                "no need", "my name is fine", "use my name"),
        # Either answer: "liever niet" (rather not be named? rather not be anonymous?), "geen probleem".
        UNSURE: ("liever niet", "liever van niet", "liever niet hoor", "geen probleem", "geen bezwaar",
                 "maakt niet uit", "maakt me niet uit", "maakt mij niet uit", "rather not", "id rather not",
                 "no problem"),
    },
}
# The whole fillers table is too loose for the yes/no question: "is" or "graag" alone mean something there.
_YES_NO_FILLERS = (FILLER, (
    "ik", "wil", "ik wil", "blijven", "het", "is", "dat", "dank", "je", "u", "bedankt", "dank je", "hoor",
    "toch", "wel", "de", "af", "voor", "please", "i", "i want", "thanks", "want to", "dan", "maar", "zo",
    "joh", "aub", "alsjeblieft", "alstublieft", "doe maar", "gewoon",
))
# Not fillers there: "te" and "noemen" ("liever niet te noemen" is no `nee`), nor "want", which starts a reason.
# A reason after `ja` is read only when it says nothing about the answer: no meaning, no negation, none of these.
_ABOUT_THE_NAME = frozenset({
    "naam", "namen", "name", "named", "noemen", "genoemd", "anoniem", "anonieme", "anonimiteit", "anonymous",
    "anonymity", "schuilnaam", "pseudoniem", "pseudonym", "weten", "weet", "wie", "who", "know", "knows",
    "herkenbaar", "herkennen", "herkent", "bekend", "onbekend", "identiteit", "identity", "zien", "ziet", "see",
    "uit", "uitmaken", "mag", "erbij", "bij", "af",
})
_REASONS = frozenset({"want", "omdat", "because", "aangezien", "since"})


def _label_words(label: str) -> str:
    return " ".join(tokens(label))


@cache
def _choice_table(q: str, options: tuple[str, ...], aliases: tuple[tuple[str, str], ...]) -> dict[str, str]:
    fillers = _YES_NO_FILLERS if q == "anoniem" else _FILLERS
    table = _table(fillers)
    for word, phrases in SYNONYMS.get(q, {}).items():
        table.update(_table((word, phrases)))
    for alias, word in aliases:
        table[" ".join(tokens(alias))] = word
    for word in options:
        table[word] = word
        for language in LANGUAGES:   # the label the bot shows, in each language: "arbeidsuitbuiting"
            t = texts(language)
            if t.has(f"choice.{q}.{word}"):
                label = t(f"choice.{q}.{word}")
                for shown in (_label_words(label), " ".join(tokens(label, boundaries=True))):
                    table[shown] = word
                    # as a button may show it: "2 arbeid (arbeidsuitbuiting)"
                    table[f"{word} {shown}"] = table[f"{word} {BOUNDARY} {shown}"] = word
    return table


def choice(q: str, text: str, options: Sequence[str], aliases: Mapping[str, str]) -> Reading:
    """What `text` chooses at choice question `q` (options in their order: a number picks one), after the exact
    rule found nothing. A small typo of a dialog command as the whole message is `near` that command."""
    table = _choice_table(q, tuple(options), tuple(sorted(aliases.items())))
    if q == "anoniem" and asks(text):
        return NOTHING              # "anoniem?", "nee?": a question, explained, not an answer
    words = tokens(text, boundaries=True)
    reading = _read(words, table, unknown_ok=q != "anoniem", numbers=options,
                    near_words={w: w for w in IN_DIALOG})
    content = _content(words)
    if reading == NOTHING and 2 <= len(content) <= 3:   # "huis bezoek": one word typed as two
        reading = _read(["".join(content)], table, unknown_ok=False, numbers=options)
    if reading == NOTHING and q == "anoniem":
        reading = _with_reason(words, table, options)
    return reading


def _with_reason(words: list[str], table: Mapping[str, str], options: Sequence[str]) -> Reading:
    """At yes/no a reason may follow the answer: "ja graag, want ik ken de familie" is `ja`. Only `ja`, and only
    when the reason says nothing about the answer: "ja want mijn naam mag erbij" and "ja want het maakt niet uit"
    contradict it. A `nee` with a reason is asked again: "nee want ik wil anoniem blijven" and "nee, want ik
    woon in de buurt" may well mean the opposite, and a wrong `nee` shows the name."""
    at = next((i for i, w in enumerate(words) if w in _REASONS), None)
    if at is None:
        return NOTHING
    head, reason = words[:at], _content(words[at + 1:])
    found = _read(head, table, unknown_ok=False, numbers=options)
    if found.word != "ja":
        return NOTHING
    meanings, _ = _scan(reason, table)
    if meanings or set(reason) & (NEGATIONS | _ABOUT_THE_NAME | _REASONS):
        return NOTHING
    return found


# --- yes, after "Bedoel je ...?" ----------------------------------------------------------------------------

_YES = _table(
    (FILLER, ("graag", "hoor", "dat", "bedoel", "ik", "dat bedoel ik", "die", "bedoel ik", "please", "thanks",
              "dank je", "bedankt", "i", "mean", "that", "is", "it", "wel", "inderdaad", "precies")),
    ("ja", ("ja", "jaa", "jawel", "jazeker", "ja zeker", "zeker", "ja graag", "ja hoor", "ja precies", "precies",
            "inderdaad", "klopt", "dat klopt", "ok", "oke", "okay", "prima", "akkoord", "goed", "is goed", "juist",
            "correct", "yes", "yep", "jep", "sure", "ja dat bedoel ik", "dat bedoel ik")),
)


def yes(text: str) -> bool:
    """The message is a plain yes ("ja", "ja graag", "jazeker", "ok", "klopt") and nothing else; "ja?" is none."""
    return not asks(text) and _read(tokens(text, boundaries=True), _YES, unknown_ok=False).word == "ja"


_YES_WORDS = frozenset({"ja", "jaa", "jawel", "jazeker", "yes", "yep", "jep", "ok", "oke", "okay", "klopt"})


def yes_and_more(text: str) -> bool:
    """A yes with something else beside it ("ja, maar ook seksueel"): after "Bedoel je arbeid?" that is neither
    the offer nor another answer, and the offer is made again."""
    words = _content(tokens(text))
    return bool(set(words) & _YES_WORDS) and not yes(text) and len(words) > 1


# --- the summary ---------------------------------------------------------------------------------------------

SEND, EDIT, CANCEL = "versturen", "wijzig", "stop"
_SUMMARY_FILLERS = (FILLER, (
    "graag", "hoor", "alles", "het", "dat", "is", "de", "melding", "mijn melding", "hem", "m", "alsjeblieft",
    "aub", "please", "it", "all", "thanks", "dank je", "bedankt", "dankjewel", "zo", "wel",
))
_SUMMARY = _table(
    _SUMMARY_FILLERS,
    # "Klopt dit?" answered with yes: every word of the message says so, or nothing is sent.
    (SEND, ("ja", "jawel", "jazeker", "ja hoor", "ja graag", "ok", "oke", "okay", "prima", "goed", "is goed",
            "akkoord", "top", "mooi", "perfect", "correct", "helemaal goed", "super", "yes", "good", "fine", "right",
            "verstuur", "versturen", "verstuur maar", "verstuur hem", "verstuur hem maar", "stuur maar op", "stuur",
            "stuur maar", "stuur op", "stuur maar door",
            "opsturen", "stuur door", "doorsturen", "verzenden", "verzend", "verzend maar", "indienen", "dien in",
            "klopt", "klopt allemaal", "het klopt", "dat klopt", "alles klopt", "klopt helemaal", "ziet er goed uit",
            "is juist", "juist", "akkoord verstuur", "send", "send it", "submit", "go", "ok send", "correct send")),
    (EDIT, ("nee", "klopt niet", "het klopt niet", "dat klopt niet", "klopt niet helemaal", "niet helemaal",
            "niet goed", "niet juist", "fout", "er klopt iets niet", "wijzigen", "veranderen", "aanpassen",
            "verbeteren", "iets wijzigen", "iets veranderen", "iets aanpassen", "ik wil iets wijzigen",
            "ik wil iets veranderen", "ik wil iets aanpassen", "change", "edit", "no", "wrong")),
    (CANCEL, ("annuleer", "stoppen", "afbreken", "niet versturen", "niet sturen", "toch niet versturen",
              "toch niet", "laat maar", "laat maar zitten", "verwijderen", "wissen", "weggooien", "niet verzenden",
              "dont send", "do not send", "stop maar")),
)
# `wijzig <vraag>` in other words: "verander waar", "aanpassen wanneer".
_EDIT_VERBS = frozenset({"verander", "veranderen", "wijzigen", "aanpassen", "pas", "aan", "verbeter", "verbeteren",
                         "change", "edit"})


def confirm(text: str, questions: Sequence[str], aliases: Mapping[str, str]) -> Reading:
    """What `text` means at the summary, after the contract's commands found nothing: `versturen` only when every
    word says so ("ja klopt, verstuur maar"); "nee" or "klopt niet" asks which question (`wijzig`); "verander
    waar" is `wijzig waar`; cancelling in other words ("laat maar") is only offered, as is a typo of a command.
    A question ("klopt dat?", "ok?") is no answer: nothing is sent on a question mark."""
    if asks(text):
        return NOTHING
    words = _content(tokens(text, boundaries=True))
    if not words:
        return NOTHING
    named = [w for w in words if w in questions or w in aliases]
    if named and len(named) == 1 and set(words) - {named[0]} <= _EDIT_VERBS | {"ik", "wil", "de", "vraag"}:
        if set(words) & _EDIT_VERBS:
            return Reading(word=f"{EDIT} {aliases.get(named[0], named[0])}")
    meanings, rest = _scan(words, _SUMMARY)
    # "niet versturen" is a phrase (cancel); any other negation or word the table does not know: no reading.
    if rest or len(set(meanings)) > 1:
        if not meanings and len(rest) == 1 and len(words) <= 2:
            typo = _near_word(rest[0], _SUMMARY_TYPOS)
            if typo is not None:
                return Reading(near=typo)
        return NOTHING
    if not meanings:
        return NOTHING
    meaning = meanings[0]
    return Reading(near=CANCEL) if meaning == CANCEL else Reading(word=meaning)


def _contract(word: str, table: Mapping[str, str]) -> str:
    """The Dutch contract word of a command word (`send` -> `versturen`): the first of its name in `table`."""
    name = table[word]
    return next(w for w, n in table.items() if n == name)


# A one- or two-word message at the summary may be a typo of a command or of a word that sends ("klopr").
_SUMMARY_TYPOS = {w: _contract(w, IN_DIALOG) for w in IN_DIALOG} | {
    p: m for p, m in _SUMMARY.items() if m and " " not in p}


# --- outside a report ----------------------------------------------------------------------------------------

HELLO = "hallo"
_GREETINGS = ("hoi", "hallo", "hey", "hee", "hi", "hello", "goedemorgen", "goedemiddag", "goedenavond", "goeiemorgen",
              "goeiemiddag", "morgen", "middag", "dag", "beste", "good morning", "good afternoon", "hallo daar",
              "hoi hoi", "hai", "yo")
_OPENERS = _table(
    (FILLER, ("ik", "wil", "ik wil", "graag", "iets", "een", "de", "het", "hier", "kan", "kan ik", "mag", "mag ik",
              "hoe", "hoe kan ik", "waar", "waar kan ik", "moet", "moet ik", "ik moet", "doen", "maken", "doorgeven",
              "heb", "ik heb", "hebben", "wilde", "ik wilde", "zou", "ik zou", "willen", "over", "van", "je", "jullie",
              "bij", "jou", "u", "nieuwe", "nieuw", "want", "dit", "dat", "zo", "even", "snel", "gezien", "zag",
              "i", "want to", "would like to", "a", "an", "something", "new", "to", "like", "dag", "hallo", "hoi",
              "hey", "hi", "hello", "goedemorgen", "goedemiddag", "goedenavond", "beste", "please", "alsjeblieft",
              "mensenhandel", "uitbuiting", "vermoeden", "mogelijk", "misschien", "een vermoeden", "verdacht",
              "verdachte", "situatie", "iets verdachts", "rare", "vreemde", "zorgen", "zorg")),
    ("melden", ("melden", "meld", "melding", "een melding", "melding doen", "melding maken", "meldingen doen",
                "signaal", "signaaltje", "een signaal", "signaal doorgeven", "signaleren", "signaal melden",
                "iets melden", "iets doorgeven", "ik heb iets gezien", "ik zag iets", "report", "new report",
                "make a report", "report something", "rapporteren", "aangeven", "melden mensenhandel",
                "mensenhandel melden", "start", "beginnen", "begin", "starten", "nieuwe melding")),
    ("spoed", ("spoed", "met spoed", "spoedmelding", "spoed melding", "dringend", "het is dringend", "urgent",
               "noodgeval", "nood", "acuut", "gevaar", "er is gevaar", "nu gevaar", "er is nu gevaar",
               "emergency", "direct gevaar")),
    ("help", ("help", "hulp", "help me", "help mij", "helpen", "wat kan je", "wat kun je", "wat kan jij",
              "wat kun jij", "wat kan je doen", "wat kun je doen", "hoe werkt dit", "hoe werkt het", "hoe werk je",
              "uitleg", "menu", "commandos", "opties", "wat moet ik typen", "what can you do", "how does this work")),
    ("contact", ("contact", "nummers", "telefoonnummer", "telefoonnummers", "nummer", "bellen", "wie kan ik bellen",
                 "wie moet ik bellen", "avim", "politie bellen", "nummer politie", "nummer van de politie",
                 "phone number", "who do i call")),
    ("signalen", ("signalen", "signalen herkennen", "hoe herken ik mensenhandel", "herkennen", "kenmerken",
                  "indicatoren", "signs", "signs of trafficking", "waar moet ik op letten", "waar let ik op")),
    ("mijn meldingen", ("mijn meldingen", "mijn melding", "status", "status van mijn melding",
                        "hoe staat het met mijn melding", "wat is er met mijn melding gebeurd", "eerdere melding",
                        "vorige melding", "my reports", "my report", "al gemeld", "gemeld")),
)
_GREETING_PHRASES = frozenset(" ".join(tokens(g)) for g in _GREETINGS)
_GREETING_WORDS = frozenset(g for g in _GREETING_PHRASES if " " not in g)
# Said with a report word, these make the message about an earlier report: "wat is er met mijn melding gebeurd".
_ABOUT_EARLIER = frozenset({"mijn", "status", "gemeld", "eerdere", "vorige", "my"})
_PRIORITY = ("spoed", "melden")
# One-word typos outside a report: `melden` starts one at once (nothing is lost by it); the others are offered.
_TYPO_TARGETS = {w: _contract(w, ANYONE | DIALOG) for w, name in (ANYONE | DIALOG).items()
                 if name in ("report", "urgent", "help", "contact", "signs", "my_reports")} | {
                     "melding": "melden", "signaal": "melden"}


def opener(text: str) -> Reading:
    """What a message outside a report asks for, after the exact contract words found nothing: `melden` for "ik
    wil iets melden", "ik heb een signaal" or "meldne"; `spoed`, `help`, `contact`, `signalen` in other words;
    `mijn meldingen` only offered; a greeting (`hallo`) gets the welcome."""
    if not normalise(text):
        return Reading(word=HELLO)   # nothing at all (the gemeente was just chosen): the welcome
    words = tokens(text)
    if not words:
        return NOTHING
    if " ".join(words) in _GREETING_PHRASES:
        return Reading(word=HELLO)
    meanings, rest = _scan(words, _OPENERS)
    if words[0] in _GREETING_WORDS and not set(meanings) & set(_PRIORITY):
        return Reading(word=HELLO)   # "goedemorgen, hoe werkt dit?": a first contact, the welcome says it all
    if any(w in NEGATIONS for w in rest):
        return NOTHING
    if "mijn meldingen" in meanings or (set(words) & _ABOUT_EARLIER and "melden" in meanings):
        return Reading(near="mijn meldingen")
    for word in _PRIORITY:
        if word in meanings:
            return Reading(word=word)
    found = set(meanings)
    if len(found) == 1 and len(rest) <= 3:
        return Reading(word=found.pop())
    if not found and len(words) <= 3:
        joined = " ".join(words)
        typos = {p: m for p, m in _TYPO_TARGETS.items() if OSA.distance(joined, p) <= allowed_distance(joined)}
        if len(joined) >= MIN_TYPO_LENGTH and len(set(typos.values())) == 1:
            contract = typos.popitem()[1]
            return Reading(word=contract) if contract == "melden" else Reading(near=contract)
    return NOTHING


# --- the gemeente question -----------------------------------------------------------------------------------

_PLACE_FILLERS = frozenset({"gemeente", "bij", "de", "ik", "werk", "voor", "in", "van", "het", "nummer", "optie",
                            "graag", "is", "gem", "municipality", "of", "ik werk", "zit", "at"})


def meldpunt(text: str, names: Sequence[str]) -> Reading:
    """Which of `names` (in the order they were offered) the answer to the gemeente question picks: the number
    (as before), or the name ("Eersel", "gemeente Eersel", "ik werk bij Bergeijk"); a small typo of one name
    only is `near` its number. `word` and `near` are the number as text."""
    words = tokens(text)
    if not words:
        return NOTHING
    own = [[w for w in tokens(n) if w not in _PLACE_FILLERS] or tokens(n) for n in names]
    picked: set[int] = set()
    rest: list[str] = []
    i = 0
    while i < len(words):
        for index, name in enumerate(own):
            if words[i:i + len(name)] == name:
                picked.add(index)
                i += len(name)
                break
        else:
            rest.append(words[i])
            i += 1
    numbers = [w for w in rest if w.isdigit()]
    for number in numbers:
        if not 1 <= int(number) <= len(names):
            return NOTHING
        picked.add(int(number) - 1)
    unknown = [w for w in rest if not w.isdigit() and w not in _PLACE_FILLERS]
    if any(w in NEGATIONS for w in unknown) or len(picked) > 1:
        return NOTHING
    if picked:
        return Reading(word=str(picked.pop() + 1)) if len(unknown) <= 4 else NOTHING
    singles = {" ".join(name): str(index + 1) for index, name in enumerate(own) if len(name) == 1}
    joined = ["".join(unknown)] if 2 <= len(unknown) <= 3 else []   # "berg eijk"
    near = {typo for w in unknown + joined if (typo := _near_word(w, singles)) is not None}
    return Reading(near=near.pop()) if len(near) == 1 and len(unknown) <= 4 else NOTHING
