"""How a Reply looks in Matrix: a plain-text body plus sanitised HTML, and charts as m.image."""

from __future__ import annotations

import html
import re
import struct

import nh3

from meldbot.core.messaging import Reply
from meldbot.core.text import QUOTE

# Only what we produce ourselves; anything else (a melder's <script>, <a>, <img>) was escaped to text
# before it got here, and nh3 is the second line of defence.
ALLOWED_TAGS = {"br", "p", "strong", "em", "code", "ol", "ul", "li"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"ol": {"start"}}

# "@room" pings everybody in a room in clients without intentional mentions; a word joiner keeps it
# readable but stops the legacy push rule from matching.
_ROOM_PING = re.compile(r"@(room)\b", re.IGNORECASE)
WORD_JOINER = "\u2060"
URGENT_MARK = "\u203c\ufe0f "  # ‼️


def neutralise(text: str) -> str:
    return _ROOM_PING.sub(lambda m: "@" + WORD_JOINER + m.group(1), text)


def _html_text(text: str) -> str:
    return html.escape(neutralise(text), quote=True).replace("\r\n", "\n").replace("\n", "<br>")


def _fact_html(value: str) -> str:
    """An answer in a list item: its own lines, without the quote marks the plain body needs to tell them
    from the bot's lines (the list item already does that)."""
    lines = [line.removeprefix(QUOTE).strip() for line in value.split("\n")]
    return "<br>".join(_html_text(line) for line in lines if line) or "-"


def sanitise(markup: str) -> str:
    return nh3.clean(markup, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=set(),
                     strip_comments=True, link_rel=None)


def render(reply: Reply) -> dict:
    """An m.text content: numbered choices in both forms; actions as the command to type; an overview
    (facts) as a list in the HTML, as lines in the body."""
    mark = URGENT_MARK if reply.urgent else ""
    body = [mark + neutralise(reply.text)]
    strong_mark = f"<strong>{mark}</strong>" if mark else ""
    if reply.facts:
        # An overview as a list, the words around it as paragraphs; the body keeps the lines as typed.
        before, after = ("\n".join(lines) for lines in reply.parts())
        markup = [f"<p>{strong_mark}{_html_text(before)}</p>" if before or mark else ""]
        markup.append("<ul>" + "".join(f"<li><strong>{_html_text(f.label)}</strong>: {_fact_html(f.value)}</li>"
                                       for f in reply.facts) + "</ul>")
        if after:
            markup.append(f"<p>{_html_text(after)}</p>")
    else:
        markup = [f"<p>{strong_mark}{_html_text(reply.text)}</p>"]
    if reply.choices:
        # A choice answered by its number only (the gemeente question) shows no word: "1. Gemeente Bergeijk".
        body += [f"{c.number}. {neutralise(c.label)}" if c.word == str(c.number)
                 else f"{c.number}. {neutralise(c.word)} — {neutralise(c.label)}" for c in reply.choices]
        numbers = [c.number for c in reply.choices]
        items = "".join(f"<li>{_html_text(c.label)}</li>" if c.word == str(c.number)
                        else f"<li><strong>{_html_text(c.word)}</strong> — {_html_text(c.label)}</li>"
                        for c in reply.choices)
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            markup.append(f'<ol start="{numbers[0]}">{items}</ol>')
        else:  # numbers with gaps: say them, a list would renumber
            markup.append("<p>" + "<br>".join(f"{c.number}. <strong>{_html_text(c.word)}</strong> — "
                                               f"{_html_text(c.label)}" for c in reply.choices) + "</p>")
    if reply.actions:
        body += [f"• {neutralise(a.label)}: {neutralise(a.command)}" for a in reply.actions]
        markup.append("<ul>" + "".join(f"<li>{_html_text(a.label)}: <code>{_html_text(a.command)}</code></li>"
                                       for a in reply.actions) + "</ul>")
    return {
        "msgtype": "m.text",
        "body": "\n".join(body),
        "format": "org.matrix.custom.html",
        "formatted_body": sanitise("".join(markup)),
        # Intentional mentions: an empty set means this message mentions nobody, whatever the text says.
        "m.mentions": {},
    }


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def image_content(reply: Reply, name: str, *, url: str | None = None, file: dict | None = None) -> dict:
    """An m.image for an uploaded PNG: `file` (keys and mxc) in encrypted rooms, else `url`."""
    info: dict = {"mimetype": "image/png", "size": len(reply.image or b"")}
    size = png_size(reply.image or b"")
    if size:
        info["w"], info["h"] = size
    content = {"msgtype": "m.image", "body": neutralise(reply.image_alt) or name, "filename": name, "info": info,
               "m.mentions": {}}
    if file is not None:
        content["file"] = file
    else:
        content["url"] = url
    return content
