"""A watch sent as JSON (the API's POST), checked by the same declared rules as a [[watch]] table."""

from __future__ import annotations

from typing import Any

from notifier.config.schema import Snapshot
from notifier.config.settings import Watch
from notifier.config.toml import _Problems
from notifier.config.watches import _watch


class _FieldProblems(_Problems):
    """Problems of one watch sent as JSON: (field, reason) pairs, no file or line."""

    def __init__(self) -> None:
        super().__init__("", "request")
        self.fields: list[tuple[str, str]] = []

    def add(self, dotted: str, message: str) -> None:
        self.fields.append((dotted.removeprefix("watch[0]."), message))

    def watch_line(self, index: int, count: int) -> int | None:
        return None


def check_watch(raw: dict[str, Any]) -> tuple[Watch | None, list[tuple[str, str]]]:
    """A watch sent as a JSON object, checked as a [[watch]] table is (numbers by our rules,
    addresses as the config reads them, lengths against the columns): the watch when there is
    no problem, else the (field, reason) of every problem."""
    problems = _FieldProblems()
    watch = _watch(raw, 0, 1, problems, Snapshot(text="", where="request"))
    if problems.fields or watch is None:
        return None, problems.fields
    return watch, []
