"""How a form of exploitation is named once a signal exists: for the AF, a partner and the figures."""

from __future__ import annotations

from meldbot.core.i18n import Texts


def form_label(t: Texts, form: str) -> str:
    """The choice list's label ("arbeidsuitbuiting"), except where the melder's own words do not fit a signal:
    "weet ik niet" is what the melder chose, "soort nog onbekend" what the signal is."""
    return t(f"form.{form}") if t.has(f"form.{form}") else t(f"choice.soort.{form}")
