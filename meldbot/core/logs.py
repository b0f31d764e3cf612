"""Log set-up: key=value or JSON lines; callers pass only content-free fields in `extra`."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any, TextIO

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        base = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
        return f"{base} {extra}".rstrip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "message": record.getMessage(), **_fields(record)}
        return json.dumps(data, default=str, ensure_ascii=False)


def setup(level: str = "INFO", json_lines: bool = False, stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries log statements with their parameters (aiosqlite, SQLAlchemy) or request details at
    # DEBUG/INFO; those could hold content. Only meldbot's own loggers follow the chosen level.
    root.setLevel(logging.WARNING)
    logging.getLogger("meldbot").setLevel(level)
    quiet_libraries()


# Libraries whose messages name users, devices and rooms (matrix-nio warns "Error decrypting megolm
# event from @x:y, device ABC, room !r:y"). Their records are counted, never written.
QUIET_LIBRARIES = ("nio", "peewee")
library_counts: dict[tuple[str, str], int] = {}
_relay = logging.getLogger("meldbot.libraries")


class CountingHandler(logging.Handler):
    """Counts a library's records by logger and level; says in meldbot's own log, without the message,
    that a warning came (the first one of a kind, then every hundredth)."""

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelname)
        count = library_counts[key] = library_counts.get(key, 0) + 1
        if record.levelno >= logging.WARNING and (count == 1 or count % 100 == 0):
            _relay.warning("a library reported a problem; its message is not logged because it can hold ids",
                           extra={"library_logger": record.name, "library_level": record.levelname, "count": count})


_counting = CountingHandler(level=logging.DEBUG)


def quiet_libraries() -> None:
    """Route the libraries in QUIET_LIBRARIES to the counter only (idempotent)."""
    for name in QUIET_LIBRARIES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [_counting]
        logger.propagate = False
        logger.setLevel(logging.WARNING)


def where(exc: BaseException) -> str:
    """file:line of the innermost frames of a traceback, without the exception's message."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
