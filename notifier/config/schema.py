"""How a setting is declared (a kind, a default, a doc), the snapshot parsing reads, and the walker.

A `Key` names one setting: its table, its name, its `Kind` (what values it takes and the words
that refuse the others), its default as the reference page shows it and a one-line doc. `walk`
checks one TOML table against the keys declared for it: unknown keys, required keys, and each
value given through its kind, every problem located at file, line and key. It returns the values
that passed; what is left out keeps its dataclass default. Hand-written code is left with what
joins several keys (a pause no longer than its maximum, a login and its password).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notifier.config.toml import _Problems


class Invalid(ValueError):
    """A value a kind refuses: one or more (suffix, message) pairs, the suffix under the key
    (".stage" for one entry of a table of stages, "" for the key itself)."""

    def __init__(self, message: str = "", *, problems: tuple[tuple[str, str], ...] = ()) -> None:
        self.problems = problems or (("", message),)
        super().__init__("; ".join(text for _, text in self.problems))


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A file the configuration names that could not be read: why, in the words of the problem."""

    why: str


@dataclass(frozen=True, slots=True)
class WatchFile:
    """One file the watch_files patterns match: its text and parsed tables, or the one problem
    (unreadable, not UTF-8, not TOML) that stands for all of it."""

    path: Path
    text: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything a configuration depends on outside its own text, gathered before parsing.

    sources.gather makes it (the only I/O); parse.parse reads nothing else, so the same snapshot
    always gives the same Settings or the same ConfigError.
    """

    text: str
    where: str
    source: Path | None = None
    # What relative paths are relative to: the config's folder, else the working folder.
    base: Path = Path()
    # The parsed text (read only), or None when it is not TOML and parse must raise `toml_error`.
    data: Mapping[str, Any] | None = None
    toml_error: str | None = None
    # The environment variables the configuration reads, those that are set.
    environment: Mapping[str, str] = field(default_factory=dict)
    # Each path text the configuration names, as it resolves (~ expanded, relative to `base`).
    paths: Mapping[str, Path] = field(default_factory=dict)
    # Secret files and systemd credentials: their stripped text, or why they could not be read.
    reads: Mapping[Path, str | Unreadable] = field(default_factory=dict)
    # Of the paths asked about, those that are folders and those that are plain files.
    folders: frozenset[Path] = frozenset()
    files: frozenset[Path] = frozenset()
    # The systemd credentials present in $CREDENTIALS_DIRECTORY, by name.
    credentials: Mapping[str, Path] = field(default_factory=dict)
    # watch_files: each pattern's fixed folder, the anchored patterns, the files they match in
    # order with their texts.
    watch_folders: Mapping[str, Path] = field(default_factory=dict)
    watch_patterns: tuple[str, ...] = ()
    watch_files: tuple[WatchFile, ...] = ()
    # Of the time zone names the texts mention, those the zone database knows.
    zones: frozenset[str] = frozenset()
    # A relative SQLite URL anchored at the config's folder (resolved there), by the URL as written.
    sqlite_urls: Mapping[str, str] = field(default_factory=dict)

    def path(self, text: str) -> Path:
        """Where a path text of the configuration points (gathered; `base / text` otherwise)."""
        return self.paths.get(text) or self.base / text


class Kind:
    """What values a key takes: `parse` returns the typed value or raises Invalid in the house words."""

    text = ""

    def parse(self, value: Any, snap: Snapshot) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key as declared: its table, name, kind, default (as the reference page shows
    it) and one-line doc. `type` overrides the kind's own words on the reference page; `required`
    is the problem when the key is missing from a table that is there."""

    section: str
    name: str
    kind: Kind
    default: str
    doc: str
    type: str = ""
    required: str | None = None

    @property
    def shown_type(self) -> str:
        return self.type or self.kind.text


def table_of(data: Mapping[str, Any], name: str, problems: _Problems) -> Mapping[str, Any]:
    """The table `name` of the document, {} when missing (or not a table, which is a problem)."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.add(name, "must be a table")
        return {}
    return value


class Declaration:
    """The declared keys by table, as `walk` reads them."""

    def __init__(self, keys: tuple[Key, ...]) -> None:
        self.keys = keys
        self.by_section: dict[str, tuple[Key, ...]] = {}
        for key in keys:
            self.by_section[key.section] = (*self.by_section.get(key.section, ()), key)
        self.names = {section: frozenset(k.name for k in group) for section, group in self.by_section.items()}

    @functools.cached_property
    def sections(self) -> tuple[str, ...]:
        return tuple(self.by_section)

    def walk(
        self,
        table: Mapping[str, Any],
        section: str,
        problems: _Problems,
        snap: Snapshot,
        dotted: str | None = None,
    ) -> dict[str, Any]:
        """The values of `table` that pass their kinds, by key name; every problem added."""
        dotted = dotted or section
        known = self.names[section]
        if not table.keys() <= known:
            for name in sorted(set(table) - known):
                problems.add(f"{dotted}.{name}", "unknown key")
        values: dict[str, Any] = {}
        for key in self.by_section[section]:
            if key.name not in table:
                if key.required is not None:
                    problems.add(f"{dotted}.{key.name}", key.required)
                continue
            try:
                values[key.name] = key.kind.parse(table[key.name], snap)
            except Invalid as exc:
                for suffix, message in exc.problems:
                    problems.add(f"{dotted}.{key.name}{suffix}", message)
        return values
