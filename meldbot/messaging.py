"""The shared types between platforms and the core: who spoke, what they said, what we answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, asdict
from typing import Any, Protocol

from meldbot.text import clean_incoming, clean_name

PLATFORMS = ("console", "matrix", "teams")


@dataclass(frozen=True, order=True)
class Identity:
    """A person as one platform knows them. Never a display name: names can be changed by anyone."""

    platform: str
    user_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.user_id}"

    @classmethod
    def parse(cls, text: str) -> "Identity":
        platform, _, user_id = text.partition(":")
        if not user_id or platform not in PLATFORMS:
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
    def platform(self) -> str:
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

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("image")  # images are rendered on delivery, never stored in the outbox
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> "Reply":
        data = json.loads(raw)
        return cls(
            text=data["text"],
            choices=tuple(Choice(**c) for c in data.get("choices", ())),
            actions=tuple(Action(**a) for a in data.get("actions", ())),
            image_alt=data.get("image_alt", ""),
            urgent=data.get("urgent", False),
            language=data.get("language"),
        )


class DeliveryError(Exception):
    """A platform could not take a message. `permanent` means retrying will not help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


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


@dataclass
class Turn:
    """The outcome of handling one IncomingMessage: the direct answers to the sender."""

    replies: list[Reply] = field(default_factory=list)
