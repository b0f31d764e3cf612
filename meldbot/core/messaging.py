"""The shared types between platforms and the core: who spoke, what they said, what we answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeGuard

from meldbot.core.text import QUOTE, clean_incoming, clean_name

Platform = Literal["console", "matrix", "teams"]
PLATFORMS: tuple[Platform, ...] = ("console", "matrix", "teams")


def is_platform(name: str) -> TypeGuard[Platform]:
    return name in PLATFORMS


@dataclass(frozen=True, order=True)
class Identity:
    """A person as one platform knows them. Never a display name: names can be changed by anyone."""

    platform: Platform
    user_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.user_id}"

    @classmethod
    def parse(cls, text: str) -> "Identity":
        platform, _, user_id = text.partition(":")
        if not user_id or not is_platform(platform):
            raise ValueError(f"not an identity: {text!r}")
        return cls(platform, user_id)


@dataclass(frozen=True)
class IncomingMessage:
    """One thing a person sent to the bot, translated from the platform's event."""

    sender: Identity
    conversation_id: str
    text: str = ""
    # The value of a pressed card button (Teams); adapters turn it into `text` where they can.
    card_value: dict[str, Any] | None = None
    event_id: str | None = None
    # True only when the conversation holds exactly the bot and this one person.
    is_private: bool = True
    # A picture or file came along; it is never stored.
    has_attachment: bool = False
    sender_name: str | None = None
    # Platform hints for the meldpunt mapping and the default language.
    tenant: str | None = None
    locale: str | None = None

    def __post_init__(self) -> None:
        # The edge of every platform: what a person typed and the name they chose are cleaned here,
        # once, so nothing behind it (dialogs, database, sealing, the AF's views) meets a lone surrogate,
        # a bidi override or a zero-width character.
        object.__setattr__(self, "text", clean_incoming(self.text))
        object.__setattr__(self, "sender_name", clean_name(self.sender_name))

    @property
    def platform(self) -> Platform:
        return self.sender.platform


@dataclass(frozen=True)
class Choice:
    """An option the person can answer with, by number or by word."""

    number: int
    word: str
    label: str


@dataclass(frozen=True)
class Action:
    """A button that sends `command` as if the person typed it."""

    label: str
    command: str


@dataclass(frozen=True)
class Fact:
    """One answer in an overview: the question's label and what was answered, as the text shows it."""

    label: str
    value: str


@dataclass(frozen=True)
class Reply:
    """What the bot says. Adapters render it: numbered text, Adaptive Cards or sanitised HTML.

    `text` is plain text in the recipient's language; adapters escape it for their platform.
    """

    text: str
    choices: tuple[Choice, ...] = ()
    actions: tuple[Action, ...] = ()
    image: bytes | None = None
    image_alt: str = ""
    urgent: bool = False
    # The language the text is in (set by the bot on direct answers), for the labels adapters add.
    language: str | None = None
    # An overview (the report's summary) as label-value pairs, for platforms that show a list or a table.
    # `text` stays complete: its lines facts_lines[0] up to (not including) facts_lines[1] say the same
    # in words, and a platform with a list shows the facts in their place.
    facts: tuple[Fact, ...] = ()
    facts_lines: tuple[int, int] = (0, 0)

    def to_json(self) -> str:
        return json.dumps(self.to_data(), ensure_ascii=False)

    def to_data(self) -> dict[str, Any]:
        """What to_json writes, as plain data (lists, dicts, text, numbers)."""
        # Field by field: dataclasses.asdict deep-copies every value, a tenth of a turn's own CPU.
        # Images are rendered on delivery, never stored in the outbox.
        return {
            "text": self.text,
            "choices": [{"number": c.number, "word": c.word, "label": c.label} for c in self.choices],
            "actions": [{"label": a.label, "command": a.command} for a in self.actions],
            "image_alt": self.image_alt,
            "urgent": self.urgent,
            "language": self.language,
            "facts": [{"label": f.label, "value": f.value} for f in self.facts],
            "facts_lines": list(self.facts_lines),
        }

    @classmethod
    def from_json(cls, raw: str) -> "Reply":
        data = json.loads(raw)
        start, end = data.get("facts_lines", (0, 0))
        return cls(
            text=data["text"],
            choices=tuple(Choice(**c) for c in data.get("choices", ())),
            actions=tuple(Action(**a) for a in data.get("actions", ())),
            image_alt=data.get("image_alt", ""),
            urgent=data.get("urgent", False),
            language=data.get("language"),
            # Rows stored before facts existed have neither key: their text says it all.
            facts=tuple(Fact(**f) for f in data.get("facts", ())),
            facts_lines=(int(start), int(end)),
        )

    def parts(self) -> tuple[list[str], list[str]]:
        """The text's lines before and after those the facts stand for (all lines before, when none)."""
        lines = self.text.split("\n")
        if not self.facts:
            return lines, []
        start, end = self.facts_lines
        return lines[:start], lines[end:]


# The mark under each part of a reply that had to be split: "(2/3)". Measured at its widest.
PART_MARK = "({index}/{count})"
_WIDEST_MARK = PART_MARK.format(index=999, count=999)


def split_reply(reply: Reply, fits: Callable[[Reply], bool]) -> list[Reply]:
    """A Reply as one or more Replies that each `fits` the platform, in order, nothing left out.

    `fits` measures the reply as the platform will carry it (rendered, escaped, encrypted), so markup
    that grows the text (HTML entities, Teams' escaping) is counted. Cuts fall between lines; a line too
    long for one message is cut at a space, and its rest starts behind QUOTE: whatever someone wrote can
    never open a message as if it were one of the bot's own lines. The buttons, choices and picture go
    with the last part; the urgent mark (and Teams' alert) with the first.
    """
    if fits(reply):
        return [reply]

    # A split reply is plain lines: the facts' line numbers would no longer match the parts.
    reply = replace(reply, facts=(), facts_lines=(0, 0))

    def piece(text: str, last: bool) -> Reply:
        text = f"{text}\n{_WIDEST_MARK}" if text else _WIDEST_MARK
        if last:
            return replace(reply, text=text, urgent=False)
        return Reply(text, language=reply.language)

    lines = reply.text.split("\n")
    parts: list[str] = []
    start = 0
    while start < len(lines) and not fits(piece("\n".join(lines[start:]), last=True)):
        # The most lines from `start` that fit: more lines never make a part smaller.
        low, high = 0, len(lines) - start
        while low < high:
            middle = (low + high + 1) // 2
            if fits(piece("\n".join(lines[start:start + middle]), last=False)):
                low = middle
            else:
                high = middle - 1
        if low:
            parts.append("\n".join(lines[start:start + low]))
            start += low
            continue
        head, rest = _cut_line(lines[start], lambda text: fits(piece(text, last=False)))
        parts.append(head)
        lines[start] = rest
    parts.append("\n".join(lines[start:]))
    count = len(parts)
    replies = []
    for index, text in enumerate(parts, start=1):
        mark = PART_MARK.format(index=index, count=count)
        text = f"{text}\n{mark}" if text else mark
        if index == count:
            replies.append(replace(reply, text=text, urgent=reply.urgent and count == 1))
        else:
            replies.append(Reply(text, language=reply.language, urgent=reply.urgent and index == 1))
    return replies


def _cut_line(line: str, fits: Callable[[str], bool]) -> tuple[str, str]:
    """The longest head of `line` that fits (at a space where one is near the end) and the rest, quoted."""
    low, high = 1, len(line) - 1
    while low < high:   # the most characters that fit; one always goes, so the loop ends
        middle = (low + high + 1) // 2
        if fits(line[:middle]):
            low = middle
        else:
            high = middle - 1
    cut = line.rfind(" ", 0, low + 1)
    if cut <= low // 2:
        cut = low
    head, rest = line[:cut].rstrip(), line[cut:].strip()
    if not head:
        head, rest = line[:low], line[low:].strip()
    return head, QUOTE + rest


class DeliveryError(Exception):
    """A platform could not take a message. `permanent` means retrying will not help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class NotSendingHere(Exception):
    """This process cannot send for the platform right now; another one does (the Matrix holder changed).

    Not a failure: the outbox gives the row back unclaimed, with no attempt counted, for that process.
    """


class RecipientAway(Exception):
    """The recipient cannot be reached right now (e.g. not the active console identity).

    Not a failure: the message waits in the outbox until the adapter says the person is back.
    """


class Notifier(Protocol):
    """Sends a Reply to a person, creating a private chat with them if there is none."""

    platform: str

    async def send(self, recipient: Identity, reply: Reply, idempotency_key: str) -> None:
        """Deliver once. A second call with the same key must not show the message twice."""
        ...


class SendProgress(Protocol):
    """What the outbox row knows of a message sent in parts, kept in the database so that any process
    continues after the parts the platform accepted, not only the one that sent them.

    For a platform that cannot be asked whether a message was shown (Teams): `sending(index)` is called
    just before the platform call for part `index` (0-based), `sent(index)` right after the platform
    accepted it. A part whose `sending` was recorded and whose `sent` was not is in doubt: its sender died
    during the call. It is sent again (the platform may then show it twice); the parts before it never."""

    @property
    def parts_done(self) -> int:
        """How many parts, from the first, the platform accepted before this attempt."""
        ...

    async def sending(self, index: int) -> None: ...

    async def sent(self, index: int) -> None: ...


class PartedNotifier(Notifier, Protocol):
    """A Notifier that records each part's send in the outbox row (see SendProgress). Optional: the
    dispatcher calls `send_parts` where a notifier has it, `send` everywhere else."""

    async def send_parts(self, recipient: Identity, reply: Reply, idempotency_key: str,
                         progress: SendProgress) -> None: ...


@dataclass
class Turn:
    """The outcome of handling one IncomingMessage: the direct answers to the sender."""

    replies: list[Reply] = field(default_factory=list)
