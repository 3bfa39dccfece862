"""Log lines that carry their structured fields: `LEVEL logger: message key=value …`, one line each."""

from __future__ import annotations

import json
import logging
import re
import sys

# Attributes every LogRecord has; whatever else a record holds came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_BARE = re.compile(r"[^\s\"'=\\]+")
FORMAT = "%(levelname)s %(name)s: %(message)s"


def _value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    # Quoted (JSON escapes) when it has spaces, quotes or newlines, so that a line stays one
    # line and `key=value` pairs stay parseable.
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def fields(record: logging.LogRecord) -> list[tuple[str, object]]:
    """The `extra=` fields of a record (number, to, action, message_id…), in the order given."""
    return [(k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")]


class FieldsFormatter(logging.Formatter):
    """The usual format, then every structured field as `key=value`."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        # A field the message already states as key=value is not said twice.
        pairs = [f"{key}={_value(value)}" for key, value in fields(record)]
        pairs = [pair for pair in pairs if pair not in line.split()]
        if not pairs:
            return line
        return line + " " + " ".join(pairs)


def configure(level: int = logging.WARNING) -> None:
    """stderr, one line per record with its fields; a no-op when logging is already set up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FieldsFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
