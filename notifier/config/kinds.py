"""The kinds of value a setting takes, each refusing the others in the words the tests pin."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import InstrumentedAttribute

from notifier.config.checks import (
    _STAGE_NAMES,
    _database_url,
    _http_url,
    _parse_clock,
    _sender_problem,
    _stored_text,
    _too_long,
    parse_duration,
)
from notifier.config.schema import Invalid, Kind, Snapshot
from notifier.config.settings import _CONTROL
from notifier.core.colors import HEX_COLOR, MIN_CONTRAST, contrast_ratio
from notifier.core.mime import AddressError, validate_address
from notifier.core.stages import Stage


def text_of(value: Any) -> str:
    """A non-empty string without NUL, else Invalid (the check behind every textual kind)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid("must be a non-empty string")
    if "\x00" in value:
        raise Invalid("cannot contain a NUL character")
    return value


@dataclass(frozen=True, slots=True)
class Text(Kind):
    """A non-empty string."""

    text: str = "text"

    def parse(self, value: Any, snap: Snapshot) -> str:
        return text_of(value)


@dataclass(frozen=True, slots=True)
class Flag(Kind):
    text: str = "true | false"

    def parse(self, value: Any, snap: Snapshot) -> bool:
        if not isinstance(value, bool):
            raise Invalid("must be true or false")
        return value


@dataclass(frozen=True, slots=True)
class Whole(Kind):
    """A whole number from `least` to `most` (true and false are not numbers)."""

    least: int
    most: int
    message: str = ""

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"whole {self.least}-{self.most}"

    def parse(self, value: Any, snap: Snapshot) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.least <= value <= self.most:
            raise Invalid(self.message or f"must be a whole number from {self.least} to {self.most}")
        return value


@dataclass(frozen=True, slots=True)
class Fraction(Kind):
    text: str = "fraction 0 to <1"

    def parse(self, value: Any, snap: Snapshot) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise Invalid("must be a fraction from 0 to below 1")
        return float(value)


@dataclass(frozen=True, slots=True)
class Choice(Kind):
    """One of a few words."""

    options: tuple[str, ...]
    message: str

    @property
    def text(self) -> str:  # type: ignore[override]
        return " | ".join(self.options)

    def parse(self, value: Any, snap: Snapshot) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise Invalid(self.message)
        return value


@dataclass(frozen=True, slots=True)
class Duration(Kind):
    """Seconds, or "30s", "15m", "6h", "7d", "2w" (parse_duration): a timedelta, or float seconds."""

    positive: bool = False
    most: dt.timedelta | None = None
    most_message: str = ""
    seconds: bool = False
    least_seconds: float = 0.0  # shorter values are raised to it, not refused
    text: str = "duration"

    def parse(self, value: Any, snap: Snapshot) -> dt.timedelta | float:
        try:
            duration = parse_duration(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if self.positive and duration <= dt.timedelta(0):
            raise Invalid("must be more than 0 seconds")
        if self.most is not None and duration > self.most:
            raise Invalid(self.most_message)
        return max(self.least_seconds, duration.total_seconds()) if self.seconds else duration


@dataclass(frozen=True, slots=True)
class StageDurations(Kind):
    """A table of stage = duration; with `off`, false or "off" switches a stage's entry off (None)."""

    off: bool = False
    text: str = "table of durations"

    def parse(self, value: Any, snap: Snapshot) -> dict[Stage, dt.timedelta | None]:
        if not isinstance(value, dict):
            raise Invalid("must be a table of stage = duration")
        out: dict[Stage, dt.timedelta | None] = {}
        problems: list[tuple[str, str]] = []
        for stage_name, entry in value.items():
            if stage_name not in _STAGE_NAMES:
                problems.append((f".{stage_name}", "not a stage name"))
            elif self.off and (entry is False or entry == "off"):
                out[Stage(stage_name)] = None
            else:
                try:
                    out[Stage(stage_name)] = parse_duration(entry)
                except ValueError as exc:
                    problems.append((f".{stage_name}", str(exc)))
        if problems:
            raise Invalid(problems=tuple(problems))
        return out


@dataclass(frozen=True, slots=True)
class Durations(Kind):
    """A small table of named durations."""

    names: tuple[str, ...]
    text: str = "table"

    def parse(self, value: Any, snap: Snapshot) -> dict[str, dt.timedelta]:
        if not isinstance(value, dict):
            raise Invalid("must be a table")
        problems = [(f".{key}", "unknown key") for key in sorted(set(value) - set(self.names))]
        out = {}
        for name in self.names:
            if name in value:
                try:
                    out[name] = parse_duration(value[name])
                except ValueError as exc:
                    problems.append((f".{name}", str(exc)))
        if problems:
            raise Invalid(problems=tuple(problems))
        return out


@dataclass(frozen=True, slots=True)
class Words(Kind):
    """A list of strings, compared case-insensitively (country codes: upper case)."""

    upper: bool = False
    text: str = "list"

    def parse(self, value: Any, snap: Snapshot) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Invalid("must be a list of strings")
        return frozenset(v.upper() if self.upper else v.casefold() for v in value)


@dataclass(frozen=True, slots=True)
class Tables(Kind):
    """An array of tables, each walked against the keys declared for `section` by the code that
    joins them (rules: a default rule's name changes it)."""

    section: str
    message: str
    text: str = "array of tables"

    def parse(self, value: Any, snap: Snapshot) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(self.message)
        return value


@dataclass(frozen=True, slots=True)
class Refused(Kind):
    """A key that must not be set (a secret in the config file), refused with its own words."""

    message: str
    text: str = "-"

    def parse(self, value: Any, snap: Snapshot) -> Any:
        raise Invalid(self.message)


@dataclass(frozen=True, slots=True)
class Address(Kind):
    """An email address (with a display name when `display`), fitting `fits` columns."""

    display: bool = False
    fits: tuple[InstrumentedAttribute[Any], ...] = ()
    text: str = "address"

    def parse(self, value: Any, snap: Snapshot) -> str:
        try:
            address = validate_address(text_of(value), allow_display_name=self.display)
        except AddressError as exc:
            raise Invalid(str(exc)) from None
        if self.fits and (reason := _too_long(address, *self.fits)) is not None:
            raise Invalid(reason)
        return address


@dataclass(frozen=True, slots=True)
class Sender(Kind):
    """The From address: it and the Message-ID made from its domain must fit their columns."""

    text: str = "address"

    def parse(self, value: Any, snap: Snapshot) -> str:
        sender = Address(display=True).parse(value, snap)
        if (reason := _sender_problem(sender)) is not None:
            raise Invalid(reason)
        return sender


@dataclass(frozen=True, slots=True)
class DatabaseUrl(Kind):
    text: str = "URL"

    def parse(self, value: Any, snap: Snapshot) -> str:
        if not isinstance(value, str) or not value:
            raise Invalid("must be a non-empty string")
        if (reason := _database_url(value)) is not None:
            raise Invalid(reason)
        return value


@dataclass(frozen=True, slots=True)
class SiteUrl(Kind):
    """An http(s) URL with a host that the HTTP client accepts."""

    text: str = "http(s) URL"

    def parse(self, value: Any, snap: Snapshot) -> str:
        if not isinstance(value, str) or not _http_url(value):
            raise Invalid("must be an http(s) URL")
        return value


def _printable(value: str) -> None:
    if _CONTROL.search(value) or " " in value.strip() or not value.isascii():
        raise Invalid("must be printable ASCII without spaces (percent-encode the rest)")
    if len(value) > 2000:
        raise Invalid("is too long (at most 2000 characters)")


@dataclass(frozen=True, slots=True)
class OutboundUrl(Kind):
    """An http(s) URL the daemon calls. The value itself never appears in an error or a log
    line: webhook and ping URLs carry their credentials in their path."""

    text: str = "http(s) URL"

    def parse(self, raw: Any, snap: Snapshot) -> str:
        value = text_of(raw).strip()
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
        except ValueError as exc:
            raise Invalid(f"is not a valid URL ({exc})") from None
        if parts.scheme.lower() not in ("http", "https"):
            scheme = f"{parts.scheme}:" if parts.scheme and parts.scheme.isascii() else "no scheme"
            raise Invalid(f"must be an http:// or https:// URL (this one has {scheme[:20]})")
        if not parts.hostname:
            raise Invalid("must name a host, like https://hooks.example.com/...")
        _printable(value)
        if not _http_url(value):
            raise Invalid("is not a URL the HTTP client accepts")
        return value


@dataclass(frozen=True, slots=True)
class HttpsUrl(Kind):
    """An https URL that customer messages link to or load (a logo): shown as written."""

    text: str = "https URL"

    def parse(self, raw: Any, snap: Snapshot) -> str:
        value = text_of(raw)
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise Invalid("must be an https:// URL with a host, like https://shop.example/")
        _printable(value)
        return value.strip()


@dataclass(frozen=True, slots=True)
class Unsubscribe(Kind):
    text: str = "mailto: or https: URI"

    def parse(self, raw: Any, snap: Snapshot) -> str:
        value = text_of(raw)
        if not value.startswith(("mailto:", "https:")):
            raise Invalid("must be a mailto: or https: URI")
        if not (value.isascii() and value.isprintable() and " " not in value):
            raise Invalid("must be printable ASCII without spaces (percent-encode the rest)")
        return value


_PHONE = re.compile(r"\+?[0-9][0-9 ()\-]{4,28}[0-9]")


@dataclass(frozen=True, slots=True)
class Phone(Kind):
    text: str = "phone number"

    def parse(self, raw: Any, snap: Snapshot) -> str:
        value = text_of(raw)
        if not _PHONE.fullmatch(value.strip()):
            raise Invalid(
                "must be a phone number: digits, spaces, hyphens and brackets, "
                'optionally starting with + (e.g. "+81 3-1234-5678")'
            )
        return value.strip()


@dataclass(frozen=True, slots=True)
class Color(Kind):
    """The messages' accent colour: white text sits on it and it colours links on white."""

    text: str = "#rrggbb"

    def parse(self, raw: Any, snap: Snapshot) -> str:
        value = text_of(raw)
        if not HEX_COLOR.fullmatch(value):
            raise Invalid(f"must be a colour written #rrggbb, like #1d4f91 (not {value[:20]!r})")
        ratio = contrast_ratio(value)
        if ratio < MIN_CONTRAST:
            raise Invalid(
                f"{value} has a contrast of {ratio:.2f}:1 against white; white button text and links on "
                f"white need at least {MIN_CONTRAST}:1 (WCAG AA): choose a darker colour"
            )
        return value.lower()


@dataclass(frozen=True, slots=True)
class ClockWindow(Kind):
    text: str = "HH:MM-HH:MM"

    def parse(self, value: Any, snap: Snapshot) -> tuple[dt.time, dt.time]:
        try:
            if not isinstance(value, str) or "-" not in value:
                raise ValueError(f'{value!r} is not a window like "21:00-08:00"')
            start, end = value.split("-", 1)
            return _parse_clock(start), _parse_clock(end)
        except ValueError as exc:
            raise Invalid(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Zone(Kind):
    """An IANA time zone the zone database knows (snap.zones), fitting the columns that store it."""

    fits: tuple[InstrumentedAttribute[Any], ...] = ()
    text: str = "IANA zone"

    def parse(self, value: Any, snap: Snapshot) -> str:
        if not isinstance(value, str):
            raise Invalid("must be an IANA time zone name (like Asia/Tokyo)")
        if (reason := _too_long(value, *self.fits)) is not None:
            raise Invalid(reason)
        if value not in snap.zones:
            raise Invalid(f"{value!r} is not an IANA time zone (like Asia/Tokyo)")
        return value


@dataclass(frozen=True, slots=True)
class FilePath(Kind):
    """A path, relative to the config's folder: its text checked (`message` replaces the house
    words), and with `exists` the file must be there ("smtp.cert_bundle '...' is not a readable
    file", as SmtpSettings says it)."""

    message: str = ""
    exists: str = ""
    text: str = "path"

    def parse(self, value: Any, snap: Snapshot) -> Path:
        if self.message and (not isinstance(value, str) or not value or "\x00" in value):
            raise Invalid(self.message)
        path = snap.path(value if self.message else text_of(value))
        if self.exists and path not in snap.files:
            raise Invalid(f"{self.exists} {str(path)!r} is not a readable file")
        return path


@dataclass(frozen=True, slots=True)
class Folder(Kind):
    """A folder, relative to the config's folder; with `exists`, it must be there."""

    exists: bool = False
    text: str = "folder"

    def parse(self, value: Any, snap: Snapshot) -> Path:
        path = snap.path(text_of(value))
        if self.exists and path not in snap.folders:
            raise Invalid(f"{path} is not a directory")
        return path


def watch_file_patterns(value: Any) -> tuple[list[str], list[str]]:
    """watch_files as written (one string or a list): the good patterns, and the problems."""
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, list):
        return [], ["must be a list of file patterns"]
    good, problems = [], []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            problems.append(f"{pattern!r} is not a file pattern (a non-empty string)")
        elif "\x00" in pattern:
            problems.append(f"{pattern!r} cannot contain a NUL character")
        else:
            good.append(pattern)
    return good, problems


@dataclass(frozen=True, slots=True)
class Patterns(Kind):
    """Glob patterns of watch files. A mistyped folder would match nothing and unwatch every
    number it should hold; an existing empty folder (nothing imported yet) is fine."""

    text: str = "list of patterns"

    def parse(self, value: Any, snap: Snapshot) -> list[str]:
        good, problems = watch_file_patterns(value)
        for pattern in good:
            folder = snap.watch_folders.get(pattern)
            if folder is not None and folder not in snap.folders:
                problems.append(f"{pattern!r}: the folder {folder} does not exist")
        if problems:
            raise Invalid(problems=tuple(("", problem) for problem in problems))
        return good


_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>[0-9]{1,5})")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


@dataclass(frozen=True, slots=True)
class Listen(Kind):
    text: str = "host:port"

    def parse(self, value: Any, snap: Snapshot) -> tuple[str, int]:
        found = _LISTEN.fullmatch(value) if isinstance(value, str) else None
        if found is None:
            raise Invalid(
                'must be host:port, e.g. "127.0.0.1:8080" or "[::1]:8080" (an IPv6 address in brackets)'
            )
        port = int(found["port"])
        if not 1 <= port <= 65535:
            raise Invalid(f"port {port} is not a port number 1-65535")
        return found["v6"] or found["host"], port


@dataclass(frozen=True, slots=True)
class PublicUrl(Kind):
    text: str = "http(s) URL"

    def parse(self, value: Any, snap: Snapshot) -> str:
        if (
            not isinstance(value, str)
            or not _http_url(value)
            or not (value.isascii() and value.isprintable())
        ):
            raise Invalid('must be an https: URL, e.g. "https://track.example.com"')
        url = httpx.URL(value)
        if url.query or url.fragment or " " in value:
            raise Invalid("must be a plain URL without a query (?...) or fragment (#...)")
        if url.scheme != "https" and url.netloc.decode("ascii").rsplit(":", 1)[0] not in _LOCAL_HOSTS:
            # Unsubscribe and tracking links travel in email; over plain http anyone on the path reads them.
            raise Invalid("must be https: (plain http: only for localhost, 127.0.0.1 or [::1] while testing)")
        return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class StoredText(Kind):
    """A string stored as written: `problem` says why it cannot be (control characters, length)."""

    columns: tuple[InstrumentedAttribute[Any], ...]
    text: str = "text"

    def parse(self, value: Any, snap: Snapshot) -> str:
        if not isinstance(value, str):
            raise Invalid("must be a string")
        if (reason := _stored_text(value, *self.columns)) is not None:
            raise Invalid(reason)
        return value


@dataclass(frozen=True, slots=True)
class Checked(Kind):
    """A value checked by a function of its own (tracking numbers, addresses lists, tags):
    `check` returns the typed value or raises Invalid."""

    check: Callable[[Any], Any]
    text: str = ""

    def parse(self, value: Any, snap: Snapshot) -> Any:
        return self.check(value)


def one_of(options: Sequence[str], message: str) -> Choice:
    return Choice(tuple(options), message)
