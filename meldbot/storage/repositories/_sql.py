"""What the repositories share: the dialect's INSERT (for ON CONFLICT) and multi-row statements in slices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")


def dialect_insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def chunks(rows: list[T], size: int = 500) -> Iterator[list[T]]:
    """Multi-row statements in slices that stay below the drivers' bound-parameter limits."""
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
