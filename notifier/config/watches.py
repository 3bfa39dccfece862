"""[[watch]] tables to Watch settings: numbers, subscribers, zones, tags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifier.config.keys import DECLARED
from notifier.config.schema import Snapshot
from notifier.config.settings import Watch
from notifier.config.toml import _Problems
from notifier.config.watch_kinds import _PLAIN_ADDRESS, _subscriber_address

__all__ = ["_PLAIN_ADDRESS", "_subscriber_address", "_watches"]


def _watch(
    raw: Mapping[str, Any], index: int, count: int, problems: _Problems, snap: Snapshot
) -> Watch | None:
    """One [[watch]] table; every problem in it is reported, not just the first."""
    values = DECLARED.walk(raw, "watch", problems, snap, f"watch[{index}]")
    number = values.get("number")
    if not number:
        return None  # with a number, even a watch with problems takes part in the duplicate check
    return Watch(
        number=number,
        label=values.get("label", ""),
        name=values.get("name", "").strip(),
        subscribers=values.get("subscribers", ()),
        locale=values.get("locale", "en"),
        tags=values.get("tags", frozenset()),
        destination=values.get("destination"),
        time_zone=values.get("time_zone"),
        source=f"{problems.where}:{problems.watch_line(index, count) or '?'}",
    )


def _watches(data: Mapping[str, Any], problems: _Problems, snap: Snapshot) -> list[Watch]:
    raw_list = data.get("watch", [])
    if not isinstance(raw_list, list):
        problems.add("watch", "use [[watch]] tables")
        return []
    watches = []
    for index, raw in enumerate(raw_list):
        if not isinstance(raw, dict):
            problems.add(f"watch[{index}]", "must be a table")
            continue
        watch = _watch(raw, index, len(raw_list), problems, snap)
        if watch is not None:
            watches.append(watch)
    return watches
