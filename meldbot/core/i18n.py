"""The message catalogue: every sentence users read, in Dutch and English."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from string import Formatter
from typing import Any

LANGUAGES = ("nl", "en")


@cache
def _catalogue(language: str) -> dict[str, str]:
    """`<language>.toml` plus any `<language>-<part>.toml` (one per feature, e.g. nl-rapport.toml)."""
    folder = resources.files("meldbot.locale")
    table: dict[str, str] = {}
    names = sorted(p.name for p in folder.iterdir() if p.name == f"{language}.toml"
                   or (p.name.startswith(f"{language}-") and p.name.endswith(".toml")))
    for name in names:
        part = _flatten(tomllib.loads(folder.joinpath(name).read_text(encoding="utf-8")))
        clash = set(part) & set(table)
        if clash:
            raise ValueError(f"{name} repeats keys: {sorted(clash)[:5]}")
        table.update(part)
    return table


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def keys(language: str) -> set[str]:
    return set(_catalogue(language))


def placeholders(language: str, key: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(_catalogue(language)[key]) if field}


class Texts:
    """The catalogue for one language. `texts("key", name=value)` gives the sentence."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else "nl"
        self._table = _catalogue(self.language)

    def __call__(self, key: str, **params: object) -> str:
        template = self._table.get(key)
        if template is None:
            template = _catalogue("nl")[key]  # a missing translation falls back to Dutch
        return template.format(**params) if params else template

    def has(self, key: str) -> bool:
        return key in self._table


@cache
def texts(language: str) -> Texts:
    return Texts(language)
