"""Text hygiene for every platform: what people send, cleaned at the edge, and their words shown as theirs."""

from __future__ import annotations

import re
import unicodedata

# Characters that some renderers take as the end of a line. They become "\n" so that a single rule
# (quote every line of someone's words) covers them all.
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# Code points that no valid text contains: lone surrogates (JSON "\ud800" from Matrix or Teams; stdin
# bytes that are not UTF-8) and Unicode's noncharacters. Storing or sealing them fails, so they are
# replaced, visibly, before anything else sees them.
_INVALID = re.compile("[\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
                      + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
                      + "]")
REPLACEMENT = "\ufffd"
# The mark before every line of someone's words shown on more than one line. Nothing the bot writes
# itself starts a line with it.
QUOTE = "  > "


def _keep(char: str) -> bool:
    if char in "\n\t":
        return True
    # Cc: control characters (terminal escapes, NUL). Cf: invisible format characters — bidi embeddings,
    # overrides, isolates and marks (U+202A-E, U+2066-9, U+200E/F, U+061C), zero-width space, joiners
    # and the word joiner (U+200B-D, U+2060), the byte-order mark (U+FEFF), soft hyphen, tag characters.
    # They can reorder what a reader sees or hide a difference between two words that look the same.
    return unicodedata.category(char) not in ("Cc", "Cf")


# What _keep has to look at: everything but printable ASCII, line feed and tab (those are always kept).
_NOT_PLAIN = re.compile(r"[^\x20-\x7e\n\t]")


def _kept(match: re.Match[str]) -> str:
    char = match.group()
    return char if _keep(char) else ""


def clean_incoming(text: str) -> str:
    """Text as it enters from any platform, safe to store, seal, match and show: invalid code points
    replaced, every kind of line break a plain "\\n", control and invisible format characters removed.
    White space around it is kept (the dialog decides what an empty answer is)."""
    if not text:
        return ""
    text = _INVALID.sub(REPLACEMENT, text)
    text = _LINE_BREAKS.sub("\n", text)
    return _NOT_PLAIN.sub(_kept, text)


def clean_name(name: str | None) -> str | None:
    """A display name as it enters: cleaned like any text, and on one line (a name is never a block)."""
    if name is None:
        return None
    return " ".join(clean_incoming(name).split()) or None


def quote_user_text(text: str | None) -> str:
    """Someone's words inside one of the bot's lines ("- Wat: {value}"), so that they can never pass
    for a line of the bot's own: one line stays on the bot's line; more lines go below it, each behind
    QUOTE. Also cleans again, for values stored before the edge cleaned them."""
    lines = [" ".join(line.split()) for line in clean_incoming(text or "").strip().split("\n")]
    if len(lines) == 1:
        return lines[0]
    return "".join("\n" + (QUOTE + line if line else QUOTE.rstrip()) for line in lines)


# Markdown's special characters anywhere in a line, and HTML's. Numeric character references mean the
# character itself to an HTML renderer and to a Markdown one (CommonMark reads them as literal text),
# so the escaped text looks the same whichever of the two a client applies.
_MARKUP = {c: f"&#{ord(c)};" for c in "\\`*_~[]|<>&\"#"}
_LINE_START = re.compile(r"^([ \t]*)(?:[-+=]|\d+[.)])", re.MULTILINE)


def _line_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(0)[len(match.group(1)):]
    # The marker's punctuation is enough: "1&#46;" is no numbered item, "&#45;" no list item.
    return indent + marker[:-1] + f"&#{ord(marker[-1])};"


def escape_markup(text: str) -> str:
    """Plain text (the bot's own lines and the words it quotes) for a client that renders Markdown and
    HTML (Teams): every character shows as itself, nothing becomes a tag, link, list, heading or code
    block, and line breaks stay line breaks."""
    escaped = "".join(_MARKUP.get(c, c) for c in text)
    # A list marker, numbered item or heading underline only counts at the start of a line.
    escaped = _LINE_START.sub(_line_start, escaped)
    # Leading white space would make an indented code block, or vanish; non-breaking spaces keep the indent.
    escaped = re.sub(r"^[ \t]+", lambda m: "&#160;" * len(m.group(0)), escaped, flags=re.MULTILINE)
    # Markdown joins single line breaks into one paragraph; an explicit break keeps every line.
    return escaped.replace("\n", "<br>")
