"""What the bot remembers of one conversation between turns: the report being made and two markers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meldbot.dialogs.report import Draft


@dataclass(frozen=True)
class ConversationState:
    """Stored sealed as JSON (`to_dict`); `from_dict` reads every state stored so far, missing keys
    included: `{"draft": {...} | None, "choose_meldpunt": true, "pending": "melden", "draft_expired": true}`."""

    draft: Draft = field(default_factory=Draft)
    # The person was asked which meldpunt they belong to; their next message is the answer.
    choose_meldpunt: bool = False
    # While they are asked: the command their first message was (`melden`, `mijn meldingen`), which goes on
    # once they have answered. A contract word only, never free text.
    pending: str | None = None
    # The expiry job erased an unfinished report; the person hears so on their next message.
    draft_expired: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ConversationState:
        if not data:
            return cls()
        pending = data.get("pending")
        return cls(draft=Draft.from_dict(data.get("draft")), choose_meldpunt=bool(data.get("choose_meldpunt")),
                   pending=pending if isinstance(pending, str) and pending else None,
                   draft_expired=bool(data.get("draft_expired")))

    def to_dict(self) -> dict[str, Any]:
        # The markers only when set: the same JSON earlier versions stored.
        data: dict[str, Any] = {"draft": self.draft.to_dict() if self.draft.active else None}
        if self.choose_meldpunt:
            data["choose_meldpunt"] = True
        if self.pending:
            data["pending"] = self.pending
        if self.draft_expired:
            data["draft_expired"] = True
        return data

    @property
    def has_draft(self) -> bool:
        """Answers are kept: a report under way (or one whose question no longer exists)."""
        return self.draft.active or bool(self.draft.answers)

    @property
    def empty(self) -> bool:
        """Nothing worth keeping: the stored row can go."""
        return not (self.draft.active or self.choose_meldpunt or self.draft_expired)
