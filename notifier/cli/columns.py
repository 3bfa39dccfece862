"""Text laid out by display width: East Asian wide characters take two terminal columns."""

from __future__ import annotations

import shutil
import unicodedata
from collections.abc import Sequence


def char_width(char: str) -> int:
    """Columns one character takes in a terminal: 2 for wide and fullwidth (漢字, かな, ＡＢ),
    0 for combining marks and invisible format characters, else 1. Ambiguous characters
    (○, ×) count 1, as terminals outside CJK locales draw them."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cf", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    return sum(char_width(char) for char in text)


def ljust(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def rjust(text: str, columns: int) -> str:
    return " " * max(0, columns - width(text)) + text


def truncate(text: str, columns: int) -> str:
    """At most `columns` wide, with an ellipsis when something was cut."""
    if width(text) <= columns:
        return text
    kept, used = [], 0
    for char in text:
        if used + char_width(char) > columns - 1:
            break
        kept.append(char)
        used += char_width(char)
    return "".join(kept) + "…"


def wrap(text: str, columns: int) -> list[str]:
    """Lines at most `columns` wide holding all of `text`: broken at spaces where there are
    any, else between any two characters (Japanese has no spaces to break at)."""
    columns = max(columns, 2)
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if width(candidate) <= columns:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:
                if width(line) + char_width(char) > columns:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


def terminal_columns(default: int = 100) -> int:
    """The terminal's width, $COLUMNS when set, else `default` (piped output)."""
    return shutil.get_terminal_size((default, 24)).columns


def table(
    rows: Sequence[Sequence[str]],
    headers: Sequence[str],
    *,
    right: frozenset[int] = frozenset(),
    max_width: int | None = None,
) -> str:
    """Columns two spaces apart, aligned by display width. With `max_width`, the last column
    is wrapped to fit (never cut): its continuation lines start under its first."""
    count = len(headers)
    widths = [max([width(headers[i]), *(width(row[i]) for row in rows)]) for i in range(count)]
    last_start = sum(widths[:-1]) + 2 * (count - 1)
    last_width = max(20, max_width - last_start) if max_width else None

    def render(cells: Sequence[str]) -> list[str]:
        head = "  ".join(
            rjust(cell, w) if i in right else ljust(cell, w)
            for i, (cell, w) in enumerate(zip(cells[:-1], widths[:-1], strict=True))
        )
        prefix = head + "  " if count > 1 else ""
        pieces = wrap(cells[-1], last_width) if last_width else [cells[-1]]
        lines = [(prefix + pieces[0]).rstrip()]
        lines += [(" " * last_start + piece).rstrip() for piece in pieces[1:]]
        return lines

    out = render(headers)
    for row in rows:
        out += render(row)
    return "\n".join(out)
