"""Log set-up: key=value or JSON lines; callers pass only content-free fields in `extra`."""

from __future__ import annotations

import json
import logging
import sys

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict:
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


def setup(level: str = "INFO", json_lines: bool = False, stream=sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries log statements with their parameters (aiosqlite, SQLAlchemy) or request details at
    # DEBUG/INFO; those could hold content. Only meldbot's own loggers follow the chosen level.
    root.setLevel(logging.WARNING)
    logging.getLogger("meldbot").setLevel(level)
