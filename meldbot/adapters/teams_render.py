"""How a Reply looks in Teams: escaped text that always works, plus an Adaptive Card with buttons."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

from microsoft_agents.activity import Activity, Attachment

from meldbot.core.i18n import Texts
from meldbot.core.messaging import Reply, split_reply
from meldbot.core.text import escape_markup

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


def _data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def _submit(title: str, command: str) -> dict:
    return {"type": "Action.Submit", "title": title, "data": {SUBMIT_KEY: command}}


def card(reply: Reply, t: Texts, fallback: str) -> dict:
    """Buttons only; the words stay in the message text, escaped (no markup from a melder's answer can
    become a link or formatting in a card, whose text blocks read Markdown)."""
    body: list[dict] = [{"type": "TextBlock", "wrap": True, "isSubtle": True,
                         "text": t("teams.card.choose" if reply.choices else "teams.card.act")}]
    if reply.image:
        body.append({"type": "Image", "url": _data_url(reply.image), "altText": reply.image_alt or t("teams.image_alt")})
    actions: list[dict] = []
    if len(reply.choices) > MAX_BUTTONS:
        body.append({"type": "Input.ChoiceSet", "id": SUBMIT_KEY, "style": "compact",
                     "placeholder": t("teams.card.placeholder"),
                     "choices": [{"title": t("teams.choice_button", number=c.number, label=c.label), "value": c.word}
                                 for c in reply.choices]})
        actions.append({"type": "Action.Submit", "title": t("teams.card.submit")})
    else:
        actions += [_submit(t("teams.choice_button", number=c.number, label=c.label), c.word) for c in reply.choices]
    actions += [_submit(a.label, a.command) for a in reply.actions]
    return {"type": "AdaptiveCard", "$schema": CARD_SCHEMA, "version": CARD_VERSION, "fallbackText": fallback,
            "body": body, "actions": actions}


def render(reply: Reply, t: Texts) -> Activity:
    """One message activity per Reply, so a retry can never show half of it.

    Not every Teams client honours textFormat "plain": some read the text as Markdown or HTML, so a
    melder's `<img onerror=...>` or `**...**` would become markup. The text is escaped for both and sent
    as Markdown (Teams' default), so every client shows the same characters and keeps the line breaks."""
    text = escape_markup(plain_text(reply, t))
    attachments: list[Attachment] = []
    if reply.choices or reply.actions:
        attachments.append(Attachment(content_type=CARD_TYPE, content=card(reply, t, text)))
    elif reply.image:
        attachments.append(Attachment(content_type="image/png", content_url=_data_url(reply.image),
                                      name=t("teams.image_name")))
    activity = Activity(type="message", text=text, text_format="markdown")
    if attachments:
        activity.attachments = attachments
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

    if reply.image is None or fits(reply):
        return [render(part, t) for part in split_reply(reply, fits)]
    text = [render(part, t) for part in split_reply(replace(reply, image=None), fits)]
    picture = Reply("", image=reply.image, image_alt=reply.image_alt, language=reply.language)
    return [*text, render(picture, t)]
