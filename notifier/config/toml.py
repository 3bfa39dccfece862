"""TOML text to data, and where each key sits in it, so every problem can name its file and line."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from typing import Any

from notifier.config.settings import _WATCH_HEADER
from notifier.errors import ConfigError

# tomli is the stdlib's tomllib, released on its own with compiled wheels that parse about twice
# as fast: 10,000 watches are half a second of pure-Python parsing otherwise.
_toml_loads: Callable[[str], dict[str, Any]] = tomllib.loads
_TOML_ERRORS: tuple[type[ValueError], ...] = (tomllib.TOMLDecodeError,)
try:
    import tomli

    _toml_loads = tomli.loads
    _TOML_ERRORS = (tomli.TOMLDecodeError, tomllib.TOMLDecodeError)
except ImportError:  # pragma: no cover - a dependency, but the stdlib parser gives the same results
    pass


_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _key_parts(text: str) -> list[str]:
    """`a."b.c" . d` -> ["a", "b.c", "d"]: a TOML key split on the dots outside quotes."""
    parts, current, quote = [], [], ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)
        elif char in "\"'":
            quote = char
        elif char == ".":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


class _Index:
    """Where each table and key of a TOML text starts, found in one pass over the text.

    tomllib keeps no positions. This scanner reads the same text (strings, comments, multi-line
    values) just well enough to name the line of every table header and `key =`, with arrays of
    tables numbered as the parsed data numbers them: `watch[3].label`, `notifications.rule[0]`.
    It never fails: on text tomllib refused it gives its best guess, which is all an error needs.
    """

    def __init__(self, text: str) -> None:
        # Only "\n" ends a TOML line; str.splitlines would also split at U+2028 or \x1c in a string.
        self.lines = text.split("\n")
        self.first: dict[str, int] = {}
        self.at_line: dict[int, str] = {}
        self.table_at: list[str] = [""]
        self.inside: dict[int, str] = {}  # line -> the key whose multi-line value covers it
        last = ""
        arrays: dict[str, int] = {}
        table = ""
        string = ""  # the open multi-line string delimiter, if any
        depth = 0  # open brackets and braces of a multi-line value
        for number, line in enumerate(self.lines, 1):
            self.table_at.append(table)
            if string or depth:
                self.inside[number] = last
                string, depth = self._scan(line, 0, string, depth)
                continue
            stripped = line.lstrip()
            if not stripped or stripped[0] == "#":
                continue
            if stripped.startswith("[["):
                parts = _key_parts(stripped[2:].split("]]", 1)[0])
                array = self._resolve(parts[:-1], arrays)
                array = f"{array}.{parts[-1]}" if array else parts[-1]
                arrays[array] = arrays.get(array, -1) + 1
                table = f"{array}[{arrays[array]}]"
                self._record(table, number)
                self.table_at[number] = table
                continue
            if stripped[0] == "[":
                table = self._resolve(_key_parts(stripped[1:].split("]", 1)[0]), arrays)
                self._record(table, number)
                self.table_at[number] = table
                continue
            equals = self._equals(stripped)
            if equals < 0:
                continue
            key = ".".join(_key_parts(stripped[:equals]))
            last = f"{table}.{key}" if table else key
            self._record(last, number)
            string, depth = self._scan(stripped, equals + 1, "", 0)

    def _record(self, path: str, number: int) -> None:
        self.first.setdefault(path, number)
        self.at_line[number] = path

    @staticmethod
    def _resolve(parts: list[str], arrays: dict[str, int]) -> str:
        path = ""
        for part in parts:
            path = f"{path}.{part}" if path else part
            if path in arrays:
                path = f"{path}[{arrays[path]}]"
        return path

    @staticmethod
    def _equals(text: str) -> int:
        quote = ""
        for position, char in enumerate(text):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "=":
                return position
            elif char == "#":
                return -1
        return -1

    @staticmethod
    def _scan(line: str, position: int, string: str, depth: int) -> tuple[str, int]:
        """Follow a value through one line; returns the open multi-line string and bracket depth."""
        end = len(line)
        while position < end:
            if string:
                close = line.find(string, position)
                while close >= 0 and string == '"""' and _escaped(line, close):
                    close = line.find(string, close + 1)
                if close < 0:
                    return string, depth
                position, string = close + 3, ""
                continue
            char = line[position]
            if char in "\"'":
                if line.startswith(char * 3, position):
                    string, position = char * 3, position + 3
                    continue
                position += 1
                while position < end and line[position] != char:
                    position += 2 if char == '"' and line[position] == "\\" else 1
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth = max(0, depth - 1)
            elif char == "#":
                break
            position += 1
        return string, depth

    def line_of(self, dotted: str) -> int | None:
        """The line of `dotted`, else of the nearest table or key above it in the path."""
        path = dotted
        while path:
            if path in self.first:
                return self.first[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def key_at(self, number: int) -> str:
        """The key defined on this line, else the one whose value spans it, else its table."""
        number = max(0, min(number, len(self.lines)))
        return self.at_line.get(number) or self.inside.get(number) or self.table_at[number]


def _escaped(line: str, position: int) -> bool:
    backslashes = 0
    while position > 0 and line[position - 1] == "\\":
        backslashes += 1
        position -= 1
    return backslashes % 2 == 1


class _Problems:
    """Collects every problem, each located as precisely as the TOML text allows."""

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.text = text
        self.items: list[str] = []
        # A problem only for commands that send mail (see Settings.smtp_login_problem).
        self.smtp_login: str | None = None
        # Likewise for the web face's secret (see Settings.http_secret_problem).
        self.http_secret: str | None = None
        self._index: _Index | None = None
        self._watch_lines: list[int] | None = None

    @property
    def index(self) -> _Index:
        # Built on first use: a valid file needs no more than the [[watch]] lines below.
        if self._index is None:
            self._index = _Index(self.text)
        return self._index

    def line_of(self, dotted: str) -> int | None:
        return self.index.line_of(dotted)

    def watch_line(self, index: int, count: int) -> int | None:
        """Line of the index-th of `count` [[watch]] tables."""
        if self._watch_lines is None:
            starts = [m.start() for m in _WATCH_HEADER.finditer(self.text)]
            if len(starts) == count:
                lines, line, previous = [], 1, 0
                for start in starts:
                    line += self.text.count("\n", previous, start)
                    lines.append(line)
                    previous = start
                self._watch_lines = lines
            else:  # inline tables, or a header inside a multi-line string: ask the full index
                self._watch_lines = [self.index.first.get(f"watch[{i}]", 0) for i in range(count)]
        return (self._watch_lines[index] or None) if index < len(self._watch_lines) else None

    def located(self, dotted: str, message: str) -> str:
        line = self.line_of(dotted)
        place = f"{self.where}:{line}" if line else self.where
        return f"{place}: {_shown(dotted)}: {message}"

    def place(self, dotted: str) -> str:
        """FILE:LINE of a key (FILE alone when its line cannot be known)."""
        line = self.line_of(dotted)
        return f"{self.where}:{line}" if line else self.where

    def add(self, dotted: str, message: str) -> None:
        self.items.append(self.located(dotted, message))


def _shown(key: str) -> str:
    """A key as it can be printed on one line: odd characters escaped, as Python writes them."""
    return key if key.isprintable() else key.encode("unicode_escape").decode("ascii")


def _decode(data: bytes, where: str) -> str:
    """UTF-8 text (a leading BOM, as Windows editors write, is dropped), or a ConfigError naming
    the line of the first byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        key = _Index(data.decode("utf-8", errors="replace")).key_at(line)
        raise ConfigError(
            f"{where}:{line}: {_shown(key) + ': ' if key else ''}byte 0x{data[exc.start]:02x} at column {column} "
            f"is not UTF-8: save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


_TOML_HINTS = {
    "Cannot overwrite a value": "is set twice (a duplicate key)",
    "Illegal character '\\x00'": "contains a NUL character",
    "Found invalid character '\\x00'": "contains a NUL character",
}


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    """tomllib's parse, with every failure a ConfigError naming the line and the key there."""
    try:
        return _toml_loads(text)
    except _TOML_ERRORS as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position is None:
            raise ConfigError(f"{where}: {message}") from None
        # tomllib's own position stays at the end: it gives the column too.
        at = message[position.start() :]
        message = message[: position.start()]
        line = int(position.group(1)) if position.group(1) else max(1, len(text.rstrip("\n").split("\n")))
        message = _TOML_HINTS.get(message, message)
        key = _Index(text).key_at(line)
        if message.startswith("Cannot declare") and key:
            message = f"the table [{key}] is declared twice"
        raise ConfigError(f"{where}:{line}: {_shown(key) + ': ' if key else ''}{message}{at}") from None
    except RecursionError:
        raise ConfigError(
            _located(text, where, r"(?:[\[{]\s*){100}", "values are nested too deeply")
        ) from None
    except ValueError:  # an integer too long for Python to convert
        raise ConfigError(_located(text, where, r"\d{4300}", "a number with more than 4300 digits")) from None


def _located(text: str, where: str, pattern: str, message: str) -> str:
    """`message` at the line and key of the first match of `pattern`."""
    match = re.search(pattern, text)
    if match is None:
        return f"{where}: {message}"
    line = text.count("\n", 0, match.start()) + 1
    key = _Index(text).key_at(line)
    return f"{where}:{line}: {_shown(key) + ': ' if key else ''}{message}"


_PLACE = re.compile(r"(.+?):(\d+): ")


def _by_place(item: str) -> tuple[str, int]:
    found = _PLACE.match(item)
    return (found.group(1), int(found.group(2))) if found else (item.split(": ", 1)[0], 0)
