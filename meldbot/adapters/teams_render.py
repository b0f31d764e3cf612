"""How a Reply looks in Teams: escaped Markdown text, or one Adaptive Card with the words and the buttons."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from typing import Any

from microsoft_agents.activity import Activity, Attachment

from meldbot.core.i18n import Texts
from meldbot.core.messaging import Reply, split_reply
from meldbot.core.text import QUOTE, escape_markup

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.5"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
# The key a pressed button sends back in activity.value; its value is exactly what the person would type.
SUBMIT_KEY = "meldbot"
# Teams shows at most six buttons side by side; more options become a drop-down with one button.
MAX_BUTTONS = 6
# Teams refuses a message of more than about 28 KB (the activity as the connector receives it, card
# included). The activity we build, as JSON, stays below this budget; the connector's own envelope
# (ids, service URL, timestamps) fits in what is left. A chart is measured apart: it is a picture
# the bot makes itself, never text from someone.
ACTIVITY_BUDGET = 24_000


def submitted_text(value: Any) -> str | None:
    """The command a pressed button stands for, or None when the value is not one of our buttons."""
    if isinstance(value, dict):
        command = value.get(SUBMIT_KEY)
        if isinstance(command, str):
            return command
    return None


def plain_text(reply: Reply, t: Texts) -> str:
    """Everything needed to answer by typing: the text, numbered choices, commands behind buttons."""
    lines = [reply.text]
    for choice in reply.choices:
        lines.append(t("teams.choice_line", number=choice.number, word=choice.word, label=choice.label))
    for action in reply.actions:
        if action.command not in reply.text:
            lines.append(t("teams.action_line", label=action.label, command=action.command))
    return "\n".join(lines)


# fallbackText is shown as it is by clients that cannot draw cards: plain text, short, no markup, no entities.
FALLBACK_MAX = 600
_NOT_IN_FALLBACK = re.compile(r"[<>\[\]*_`~#|\\&\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def _plain(line: str) -> str:
    return " ".join(_NOT_IN_FALLBACK.sub(" ", line).split())


def fallback_text(reply: Reply, t: Texts) -> str:
    """The card's fallbackText: the bot's own lines (an overview's answers left out: a melder's answers never go
    in it), the numbered choices and what to type, as plain text. Stripped of markup characters and control
    characters rather than escaped, so it reads the same whether a client shows it as text or as Markdown, and
    short: it does not double the size of a card (a summary of three long answers stays one card)."""
    before, after = reply.parts()
    lines = [_plain(line) for line in (before + after if reply.facts else before)]
    text = "\n".join(line for line in lines if line)
    if len(text) > FALLBACK_MAX:
        text = text[:FALLBACK_MAX].rsplit(" ", 1)[0] + " \u2026"
    out = [text] if text else []
    for c in reply.choices:
        line = (t("teams.choice_button", number=c.number, label=c.label) if c.word == str(c.number)
                else t("teams.choice_line", number=c.number, word=c.word, label=c.label))
        out.append(_plain(line)[:200])
    for a in reply.actions:
        if a.command not in reply.text:
            out.append(_plain(t("teams.action_line", label=a.label, command=a.command))[:200])
    return "\n".join(out)


def _data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def _submit(title: str, command: str) -> dict:
    return {"type": "Action.Submit", "title": title, "data": {SUBMIT_KEY: command}}


def _text_blocks(lines: list[str], *, first: bool) -> list[dict]:
    """One TextBlock per line: Teams' Markdown joins single line breaks and shows no <br>, so a line of
    its own is the one way every client keeps them. An empty line becomes space above the next block."""
    blocks: list[dict] = []
    gap = False
    for line in lines:
        if not line.strip():
            gap = True
            continue
        block: dict = {"type": "TextBlock", "text": escape_markup(line), "wrap": True}
        if not (first and not blocks):
            block["spacing"] = "Medium" if gap else "None"
        blocks.append(block)
        gap = False
    return blocks


def _fact_value(value: str) -> str:
    """An answer in a FactSet cell: its own lines, without the quote marks the plain text needs to tell
    them from the bot's lines (the cell already does that)."""
    lines = [line.removeprefix(QUOTE).strip() for line in value.split("\n")]
    return "\n\n".join(escape_markup(line) for line in lines if line) or "-"


def _rows(buttons: list[dict]) -> list[list[dict]]:
    """Buttons in rows Teams shows whole (it hides a seventh behind "..."), as even as possible."""
    if not buttons:
        return []
    count = -(-len(buttons) // MAX_BUTTONS)
    size = -(-len(buttons) // count)
    return [buttons[i:i + size] for i in range(0, len(buttons), size)]


def card(reply: Reply, t: Texts, fallback: str) -> dict:
    """The whole message as one card: the text (escaped: a TextBlock reads Markdown, so no markup from a
    melder's answer can become a link or formatting), an overview as a FactSet, and the choices and
    actions as buttons in rows of at most six; more than six choices become a drop-down with one button."""
    before, after = reply.parts()
    body = _text_blocks(before, first=True)
    if reply.facts:
        body.append({"type": "FactSet", "facts": [{"title": escape_markup(f.label), "value": _fact_value(f.value)}
                                                  for f in reply.facts]})
        body += _text_blocks(after, first=True)      # the default space below the list
    if reply.choices:
        body.append({"type": "TextBlock", "wrap": True, "isSubtle": True, "text": t("teams.card.choose")})
    if reply.image:
        body.append({"type": "Image", "url": _data_url(reply.image), "altText": reply.image_alt or t("teams.image_alt")})
    buttons: list[dict] = []
    if len(reply.choices) > MAX_BUTTONS:
        body.append({"type": "Input.ChoiceSet", "id": SUBMIT_KEY, "style": "compact",
                     "placeholder": t("teams.card.placeholder"),
                     "choices": [{"title": t("teams.choice_button", number=c.number, label=c.label), "value": c.word}
                                 for c in reply.choices]})
        buttons.append({"type": "Action.Submit", "title": t("teams.card.submit")})
    else:
        buttons += [_submit(t("teams.choice_button", number=c.number, label=c.label), c.word) for c in reply.choices]
    buttons += [_submit(a.label, a.command) for a in reply.actions]
    rows = _rows(buttons)
    body += [{"type": "ActionSet", "actions": row} for row in rows[:-1]]
    return {"type": "AdaptiveCard", "$schema": CARD_SCHEMA, "version": CARD_VERSION, "fallbackText": fallback,
            "body": body, "actions": rows[-1] if rows else []}


def render(reply: Reply, t: Texts) -> Activity:
    """One message activity per Reply, so a retry can never show half of it.

    A Reply with buttons is one Adaptive Card that holds its words too, and no activity text: Teams
    shows text beside a card as a second bubble that repeats the choices. A short plain text (the bot's
    lines, the numbered choices, what to type) is the card's fallbackText, for clients that cannot draw cards.

    Not every Teams client honours textFormat "plain": some read the text as Markdown or HTML, so a
    melder's `<img onerror=...>` or `**...**` would become markup. The text is escaped for both and sent
    as Markdown (Teams' default), so every client shows the same characters and keeps the line breaks."""
    text = escape_markup(plain_text(reply, t))
    activity = Activity(type="message", text_format="markdown")
    if reply.choices or reply.actions:
        activity.attachments = [Attachment(content_type=CARD_TYPE, content=card(reply, t, fallback_text(reply, t)))]
    else:
        activity.text = text
        if reply.image:
            activity.attachments = [Attachment(content_type="image/png", content_url=_data_url(reply.image),
                                               name=t("teams.image_name"))]
    if reply.urgent:
        # Teams raises an activity-feed alert for this message, also when the chat is muted.
        activity.channel_data = {"notification": {"alert": True}}
    return activity


def activity_size(activity: Activity) -> int:
    """The activity's size as the SDK posts it: aiohttp's json.dumps writes every non-ASCII character as
    a \\u escape (6 bytes for "é", 12 for an emoji), so UTF-8 would count too little."""
    return len(json.dumps(activity.model_dump(by_alias=True, exclude_none=True, mode="json")))


def render_parts(reply: Reply, t: Texts) -> list[Activity]:
    """The activities for one Reply, in order, each below Teams' size limit (escaping and the picture
    counted). A picture that does not fit beside the text goes in a message of its own, after it."""
    def fits(part: Reply) -> bool:
        return activity_size(render(part, t)) <= ACTIVITY_BUDGET

    whole = render(reply, t)   # nearly always it fits: rendered once, measured once
    if activity_size(whole) <= ACTIVITY_BUDGET:
        return [whole]
    if reply.image is None:
        return [render(part, t) for part in split_reply(reply, fits)]
    text = [render(part, t) for part in split_reply(replace(reply, image=None), fits)]
    picture = Reply("", image=reply.image, image_alt=reply.image_alt, language=reply.language)
    return [*text, render(picture, t)]
