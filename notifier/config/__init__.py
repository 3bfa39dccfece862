"""Configuration files (TOML) to validated, frozen settings; every problem names its file, line and key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import glob
import itertools
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.orm import InstrumentedAttribute

from notifier.config.password import PasswordHash
from notifier.config.smtp import SmtpSettings, is_loopback
from notifier.core.colors import HEX_COLOR, MIN_CONTRAST, contrast_ratio
from notifier.core.identity import EXAMPLE_SHOP_NAME, EXAMPLE_SHOP_PHONE, address_domain, reserved_domain
from notifier.core.messages import Template
from notifier.core.mime import AddressError, header_token, make_message_id, validate_address
from notifier.core.model import DEFAULT_BASE_URL
from notifier.core.numbers import parse_number
from notifier.core.policy import PollingPolicy
from notifier.core.rules import (
    DEFAULT_RULES,
    DEFAULT_STALLS,
    Baseline,
    MultiStage,
    Rule,
    RulesConfig,
    StallRule,
    merge_rules,
)
from notifier.core.stages import Stage
from notifier.errors import ConfigError
from notifier.store.database import DEFAULT_DATABASE_URL, DatabaseError, async_url
from notifier.store.orm import OutboxMessage, Shipment, Subscriber, Subscription, column_size

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

CONFIG_ENV = "NOTIFIER_CONFIG"
DATABASE_URL_ENV = "NOTIFIER_DATABASE_URL"
SMTP_PASSWORD_ENV = "NOTIFIER_SMTP_PASSWORD"
CREDENTIAL_NAME = "smtp-password"
HTTP_SECRET_ENV = "NOTIFIER_HTTP_SECRET"
HTTP_CREDENTIAL_NAME = "http-secret"
HTTP_ADMIN_PASSWORD_ENV = "NOTIFIER_HTTP_ADMIN_PASSWORD"
HTTP_ADMIN_CREDENTIAL_NAME = "http-admin-password"
# The operator board is on the public web face: a short password is guessed despite the throttle.
HTTP_ADMIN_PASSWORD_MIN = 12
# The web face's links are HMAC-signed with the secret: a short one could be guessed offline
# from one signed link.
HTTP_SECRET_MIN = 16

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
MAX_DURATION = dt.timedelta(days=36525)
MAX_ATTEMPTS = 1000
# C0 and C1 controls and the Unicode line separators: NUL is refused by PostgreSQL, the others
# break log lines, `status` tables and headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
# Tags are stored joined by spaces and split on whitespace when read back.
_NOT_IN_A_TAG = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_WATCH_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*watch[ \t]*\]\]", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    url: str = DEFAULT_DATABASE_URL


@dataclass(frozen=True, slots=True, kw_only=True)
class JapanPostSettings:
    base_url: str = DEFAULT_BASE_URL
    request_interval: float = 5.0
    budget: str = "shared"
    """"shared": on PostgreSQL every instance takes its request slots from one budget in the
    database; "per_instance": each instance paces itself (instances leaving through different
    IP addresses)."""
    # After `circuit_failures` failed requests in a row, polling pauses `circuit_pause`,
    # doubling each time it opens again up to `circuit_pause_max`.
    circuit_failures: int = 5
    circuit_pause: dt.timedelta = dt.timedelta(minutes=1)
    circuit_pause_max: dt.timedelta = dt.timedelta(minutes=30)
    # No successful request for this long raises one `site_down` alert (and one notice on recovery).
    down_alert_after: dt.timedelta = dt.timedelta(minutes=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationSettings:
    sender: str = "notifier <notifier@localhost>"
    shop_name: str = "Our shop"
    # Shown in every message's footer as a tel: link; "" leaves it out.
    shop_phone: str = ""
    operator: str | None = None
    reply_to: str | None = None
    unsubscribe: str | None = None
    templates: Path | None = None
    outbox_dir: Path = Path("outbox")
    quiet_hours: tuple[dt.time, dt.time] | None = None
    # The zone quiet hours follow for a subscriber with neither a zone of their own nor a
    # destination country with one (notifier/country_zones.csv); required with quiet_hours.
    default_time_zone: str | None = None
    max_attempts: int = 8
    outbox_lease: dt.timedelta = dt.timedelta(minutes=5)
    # Operator alerts are emailed this long after the first one not yet sent, gathered into one.
    alert_batch: dt.timedelta = dt.timedelta(minutes=5)
    # Each new operator alert is also POSTed here as JSON ({"text": ...} for Slack and alike).
    operator_webhook: str | None = None
    # Pinged after good poll cycles, URL/fail after failing ones (healthchecks.io style).
    heartbeat_url: str | None = None
    # Branding of customer messages: a logo (https), the accent colour of the header, buttons
    # and links (#rrggbb, at least 4.5:1 against white) and a link to the shop in the footer.
    logo_url: str | None = None
    brand_color: str | None = None
    shop_url: str | None = None
    rules: RulesConfig = field(default_factory=RulesConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """The optional web face ([http]): where it listens, how customers reach it, what signs its links."""

    host: str
    port: int
    # Without a trailing slash; links are public_url + "/u/..." and "/t/...".
    public_url: str
    # Signs every link (tokens.py); "" only while Settings.http_secret_problem says why.
    secret: str = field(default="", repr=False)
    # The operator board's password, as a hash only; None: no board (/admin/ answers 404).
    admin_password: PasswordHash | None = field(default=None, repr=False)

    @property
    def listen(self) -> str:
        """host:port as the configuration writes it ([::1]:8080 for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """One watched number and who hears about it."""

    number: str
    label: str = ""
    # The customer's name, for the greeting of their messages; "" greets without one.
    name: str = ""
    subscribers: tuple[str, ...] = ()
    locale: str = "en"
    tags: frozenset[str] = frozenset()
    destination: str | None = None
    time_zone: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    source: Path | None = None
    watches: tuple[Watch, ...] = ()
    watch_files: tuple[Path, ...] = ()
    # The watch_files patterns, anchored at the config's folder: the daemon globs them again to
    # notice a watch file added or removed, not only one edited.
    watch_patterns: tuple[str, ...] = ()
    polling: PollingPolicy = field(default_factory=PollingPolicy)
    poll_tick: float = 5.0
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    japanpost: JapanPostSettings = field(default_factory=JapanPostSettings)
    smtp: SmtpSettings | None = None
    # [smtp] names a login whose password this process cannot see (file:line: key: why). Only
    # what sends mail refuses it (`sending_smtp`); under systemd the service has the credential.
    smtp_login_problem: str | None = None
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    http: HttpSettings | None = None
    # [http] is set but its secret cannot be had here (file:line: key: why, where it looked).
    # As with smtp_login_problem, only what serves or queues customer mail refuses it
    # (`web_secret`): `status` beside a systemd service does not see the service's credential.
    http_secret_problem: str | None = None
    # [smtp] allow_example_identity = true, honoured only for a relay on this machine: a trial
    # may send as the example shop. Logged at every start and shown by `config check`.
    example_identity_allowed: bool = False


_KNOWN: dict[str, set[str]] = {
    "database": {"url"},
    "japanpost": {
        "base_url",
        "request_interval",
        "budget",
        "circuit_failures",
        "circuit_pause",
        "circuit_pause_max",
        "down_alert_after",
    },
    "smtp": {
        "host",
        "port",
        "security",
        "username",
        "password_file",
        "from",
        "timeout",
        "validate_certs",
        "ca_file",
        "local_hostname",
        "allow_example_identity",
    },
    "notifications": {
        "operator",
        "shop_name",
        "shop_phone",
        "reply_to",
        "unsubscribe",
        "templates",
        "outbox_dir",
        "quiet_hours",
        "default_time_zone",
        "max_attempts",
        "outbox_lease",
        "alert_batch",
        "operator_webhook",
        "heartbeat_url",
        "logo_url",
        "brand_color",
        "shop_url",
        "baseline",
        "multi_stage",
        "max_event_age",
        "settle",
        "stall",
        "retention",
        "rule",
    },
}
# "secret" is refused with its own message, not as an unknown key.
_KNOWN["http"] = {"listen", "public_url", "secret_file", "secret", "admin_password_file", "admin_password"}
_KNOWN["polling"] = {
    "fixed_interval",
    "intervals",
    "jitter",
    "pending_give_up",
    "terminal_grace",
    "stale_give_up",
    "tick",
    "watch_files",
    "lease",
}
_RULE_KEYS = {"name", "stages", "template", "enabled", "item_types", "destinations", "tags"}
_WATCH_KEYS = {"number", "label", "name", "subscribers", "locale", "tags", "destination", "time_zone"}


def _circuit(japanpost: dict[str, Any], problems: _Problems) -> dict[str, Any]:
    """The circuit breaker's settings from [japanpost]: only the keys given, each checked."""
    out: dict[str, Any] = {}
    if "circuit_failures" in japanpost:
        failures = japanpost["circuit_failures"]
        if isinstance(failures, bool) or not isinstance(failures, int) or not 1 <= failures <= 1000:
            problems.add("japanpost.circuit_failures", "must be a whole number from 1 to 1000")
        else:
            out["circuit_failures"] = failures
    for key in ("circuit_pause", "circuit_pause_max"):
        if key in japanpost:
            try:
                pause = parse_duration(japanpost[key])
            except ValueError as exc:
                problems.add(f"japanpost.{key}", str(exc))
                continue
            if pause <= dt.timedelta(0):
                problems.add(f"japanpost.{key}", "must be more than 0 seconds")
                continue
            out[key] = pause
    defaults = JapanPostSettings()
    pause = out.get("circuit_pause", defaults.circuit_pause)
    if pause > out.get("circuit_pause_max", defaults.circuit_pause_max):
        problems.add("japanpost.circuit_pause", "must not be longer than japanpost.circuit_pause_max")
    return out


def parse_duration(value: object) -> dt.timedelta:
    """Seconds as a number, or "30s", "15m", "6h", "7d", "2w"; at most 100 years."""
    limit = MAX_DURATION.total_seconds()
    if isinstance(value, bool):
        raise ValueError("a duration, not true/false")
    if isinstance(value, int):
        # float() of a huge int raises OverflowError; anything this large is too long anyway.
        seconds = float(value) if abs(value) <= limit else math.copysign(math.inf, value)
    elif isinstance(value, float):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f'{value!r} is not a duration (use seconds, or e.g. "30s", "15m", "6h", "7d")')
    if math.isnan(seconds):
        raise ValueError("nan is not a duration")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > limit:
        raise ValueError(f"{value!r} is too long a duration (at most 100 years)")
    return dt.timedelta(seconds=seconds)


def _parse_clock(text: str) -> dt.time:
    m = _CLOCK.fullmatch(text.strip())
    if not m or not (0 <= int(m.group(1)) <= 23 and 0 <= int(m.group(2)) <= 59):
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    return dt.time(int(m.group(1)), int(m.group(2)))


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


def _section(data: dict[str, Any], name: str, problems: _Problems) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.add(name, "must be a table")
        return {}
    for key in sorted(set(value) - _KNOWN[name]):
        problems.add(f"{name}.{key}", "unknown key")
    return value


def _string(table: dict[str, Any], key: str, dotted: str, problems: _Problems) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(dotted, "must be a non-empty string")
        return None
    if "\x00" in value:
        problems.add(dotted, "cannot contain a NUL character")
        return None
    return value


def _outbound_url(table: dict[str, Any], key: str, dotted: str, problems: _Problems) -> str | None:
    """An http(s) URL the daemon calls. The value itself never appears in an error or a log
    line: webhook and ping URLs carry their credentials in their path."""
    value = _string(table, key, dotted, problems)
    if value is None:
        return None
    value = value.strip()
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError as exc:
        problems.add(dotted, f"is not a valid URL ({exc})")
        return None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"{parts.scheme}:" if parts.scheme and parts.scheme.isascii() else "no scheme"
        problems.add(dotted, f"must be an http:// or https:// URL (this one has {scheme[:20]})")
        return None
    if not parts.hostname:
        problems.add(dotted, "must name a host, like https://hooks.example.com/...")
        return None
    if _CONTROL.search(value) or " " in value or not value.isascii():
        problems.add(dotted, "must be printable ASCII without spaces (percent-encode the rest)")
        return None
    if len(value) > 2000:
        problems.add(dotted, "is too long (at most 2000 characters)")
        return None
    if not _http_url(value):
        problems.add(dotted, "is not a URL the HTTP client accepts")
        return None
    return value


def _address(
    table: dict[str, Any], key: str, dotted: str, problems: _Problems, *, display: bool
) -> str | None:
    value = _string(table, key, dotted, problems)
    if value is None:
        return None
    try:
        return validate_address(value, allow_display_name=display)
    except AddressError as exc:
        problems.add(dotted, str(exc))
        return None


@functools.cache
def _column_size(attribute: InstrumentedAttribute[Any]) -> tuple[int, str]:
    """The declared size of a String column, and its name: the ORM is where sizes are written."""
    model = attribute.class_
    if not isinstance(model, type):
        raise TypeError(f"{attribute} is not a column of a mapped class")
    return column_size(model, attribute.key), f"{getattr(model, '__tablename__', '?')}.{attribute.key}"


def _too_long(value: str, *columns: InstrumentedAttribute[Any]) -> str | None:
    """Why `value` does not fit every column that stores it, or None when it does."""
    for column in columns:
        size, name = _column_size(column)
        if len(value) > size:
            return f"is {len(value)} characters long; at most {size} fit (database column {name})"
    return None


def name_problem(name: str) -> str | None:
    """Why a customer's name cannot be stored and greeted with, or None."""
    return _stored_text(name, Subscription.name)


def _stored_text(value: str, *columns: InstrumentedAttribute[Any]) -> str | None:
    """Why a config value cannot be stored as it is written, or None."""
    if _CONTROL.search(value):
        return "cannot contain control characters (such as NUL, tab or a line break)"
    return _too_long(value, *columns)


def _file_path(base: Path, text: str) -> Path:
    # os.path.expanduser never raises; Path.expanduser does when no home directory is known.
    return base / os.path.expanduser(text)


def read_password(smtp: dict[str, Any], problems: _Problems, base: Path) -> str | None:
    """The SMTP password: password_file, else $NOTIFIER_SMTP_PASSWORD, else the systemd
    credential `smtp-password`. Never from the TOML itself."""
    if "password" in smtp:
        problems.add(
            "smtp.password",
            "passwords do not go in the config file; use password_file or $NOTIFIER_SMTP_PASSWORD",
        )
    return _find_secret(
        smtp,
        "password_file",
        "smtp",
        env=SMTP_PASSWORD_ENV,
        credential=CREDENTIAL_NAME,
        credential_key="smtp.username",
        problems=problems,
        base=base,
    )


def _find_secret(
    table: dict[str, Any],
    file_key: str,
    section: str,
    *,
    env: str,
    credential: str,
    credential_key: str,
    problems: _Problems,
    base: Path,
) -> str | None:
    """A secret from the file `table[file_key]` names, else $`env`, else the systemd credential
    `credential` (in $CREDENTIALS_DIRECTORY); None when none of them is there."""
    path = table.get(file_key)
    if path is not None:
        if not isinstance(path, str) or not path or "\x00" in path:
            problems.add(f"{section}.{file_key}", "must be a path")
            return None
        return _read_secret(_file_path(base, path), f"{section}.{file_key}", problems)
    if os.environ.get(env):
        return os.environ[env]
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / credential).is_file():
        return _read_secret(
            Path(credentials) / credential,
            credential_key,
            problems,
            f' (the systemd credential "{credential}", from LoadCredential={credential}:/etc/notifier/{credential})',
        )
    return None


def _read_secret(file: Path, dotted: str, problems: _Problems, origin: str = "") -> str | None:
    try:
        secret = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.add(dotted, f"cannot read {file}: {exc.strerror}")
        return None
    except UnicodeDecodeError:
        problems.add(dotted, f"{file} is not UTF-8 text")
        return None
    if not secret:
        # A password prompt run without a terminal writes an empty file and exits 0.
        problems.add(
            dotted, f"{file}{origin} is empty: write the secret into it again (see docs/how-to/systemd.md)"
        )
        return None
    return secret


# SmtpSettings names its own fields; these are the config keys that set them.
_SMTP_FIELD_KEYS = {"cert_bundle": "ca_file", "password": "username", "connect_timeout": "timeout"}


def _smtp(data: dict[str, Any], problems: _Problems, base: Path) -> tuple[SmtpSettings | None, str | None]:
    if "smtp" not in data:
        return None, None
    smtp = _section(data, "smtp", problems)
    host = _string(smtp, "host", "smtp.host", problems)
    sender = _address(smtp, "from", "smtp.from", problems, display=True)
    if host is None and "host" not in smtp:
        problems.add("smtp.host", "is required in [smtp]")
    if "from" not in smtp:
        problems.add("smtp.from", 'is required in [smtp] (e.g. "Shop <shop@example.com>")')
    if sender is not None and not _sender_fits(sender, "smtp.from", problems):
        sender = None
    security = smtp.get("security", "starttls")
    if security not in ("starttls", "tls", "none"):
        problems.add("smtp.security", "must be starttls, tls or none")
        security = "starttls"
    default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
    port = smtp.get("port", default_port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.add("smtp.port", "must be a port number 1-65535")
        port = default_port
    timeout = 60.0
    if "timeout" in smtp:
        try:
            timeout = parse_duration(smtp["timeout"]).total_seconds()
        except ValueError as exc:
            problems.add("smtp.timeout", str(exc))
        else:
            if timeout <= 0:
                problems.add("smtp.timeout", "must be more than 0 seconds")
                timeout = 60.0
    username = _string(smtp, "username", "smtp.username", problems)
    password = read_password(smtp, problems, base)
    login_problem = None
    if username and not password:
        # Only sending needs it: `status`, `db backup` and the like run as root beside a service
        # whose password is a systemd credential only the service sees.
        login_problem = problems.located(
            "smtp.username",
            f"needs a password: set smtp.password_file, ${SMTP_PASSWORD_ENV}, or under systemd the "
            f'credential "{CREDENTIAL_NAME}" (LoadCredential={CREDENTIAL_NAME}:/etc/notifier/{CREDENTIAL_NAME})',
        )
        username = None  # no half-given login reaches the transport
    validate = smtp.get("validate_certs", True)
    if not isinstance(validate, bool):
        problems.add("smtp.validate_certs", "must be true or false")
        validate = True
    ca_file = _string(smtp, "ca_file", "smtp.ca_file", problems)
    local_hostname = _string(smtp, "local_hostname", "smtp.local_hostname", problems)
    if host is None:
        return None, sender
    problems.smtp_login = login_problem
    try:
        # A password found in the environment or a credential is unused by a relay without AUTH.
        settings = SmtpSettings(
            host=host,
            port=port,
            security=security,
            username=username,
            password=password if username else None,
            timeout=timeout,
            validate_certs=validate,
            cert_bundle=str(_file_path(base, ca_file)) if ca_file else None,
            local_hostname=local_hostname,
            username_at=problems.place("smtp.username") if username else None,
        )
    except ConfigError as exc:  # the transport's own checks, e.g. security=none off loopback
        for part in str(exc).split("; "):
            found = re.match(r"smtp\.(\w+)", part)
            field_name = found.group(1) if found else "security"
            problems.add(f"smtp.{_SMTP_FIELD_KEYS.get(field_name, field_name)}", part)
        return None, sender
    return settings, sender


_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>[0-9]{1,5})")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


def _listen(value: object, problems: _Problems) -> tuple[str, int] | None:
    if value is None:
        problems.add("http.listen", 'is required in [http] (host:port, e.g. "127.0.0.1:8080")')
        return None
    found = _LISTEN.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        problems.add(
            "http.listen",
            'must be host:port, e.g. "127.0.0.1:8080" or "[::1]:8080" (an IPv6 address in brackets)',
        )
        return None
    port = int(found["port"])
    if not 1 <= port <= 65535:
        problems.add("http.listen", f"port {port} is not a port number 1-65535")
        return None
    return found["v6"] or found["host"], port


def _public_url(value: object, problems: _Problems) -> str | None:
    if value is None:
        problems.add(
            "http.public_url",
            'is required in [http]: the address customers open, e.g. "https://track.example.com"',
        )
        return None
    if not isinstance(value, str) or not _http_url(value) or not (value.isascii() and value.isprintable()):
        problems.add("http.public_url", 'must be an https: URL, e.g. "https://track.example.com"')
        return None
    url = httpx.URL(value)
    if url.query or url.fragment or " " in value:
        problems.add("http.public_url", "must be a plain URL without a query (?...) or fragment (#...)")
        return None
    if url.scheme != "https" and url.netloc.decode("ascii").rsplit(":", 1)[0] not in _LOCAL_HOSTS:
        # Unsubscribe and tracking links travel in email; over plain http anyone on the path reads them.
        problems.add(
            "http.public_url",
            "must be https: (plain http: only for localhost, 127.0.0.1 or [::1] while testing)",
        )
        return None
    return value.rstrip("/")


def _http(data: dict[str, Any], problems: _Problems, base: Path) -> HttpSettings | None:
    if "http" not in data:
        return None
    table = _section(data, "http", problems)
    listen = _listen(table.get("listen"), problems)
    public_url = _public_url(table.get("public_url"), problems)
    if "secret" in table:
        problems.add(
            "http.secret",
            f"secrets do not go in the config file; use secret_file or ${HTTP_SECRET_ENV}",
        )
    secret = _find_secret(
        table,
        "secret_file",
        "http",
        env=HTTP_SECRET_ENV,
        credential=HTTP_CREDENTIAL_NAME,
        credential_key="http",
        problems=problems,
        base=base,
    )
    if secret is None:
        if "secret_file" not in table:
            problems.http_secret = problems.located(
                "http",
                f"needs a secret to sign its links: none in http.secret_file (not set), ${HTTP_SECRET_ENV} "
                f'(not set) or the systemd credential "{HTTP_CREDENTIAL_NAME}" (no $CREDENTIALS_DIRECTORY/'
                f"{HTTP_CREDENTIAL_NAME}); create one with `openssl rand -base64 32`",
            )
        secret = ""
    elif len(secret) < HTTP_SECRET_MIN:
        if "secret_file" in table:
            key, source = "http.secret_file", f"in {table['secret_file']}"
        elif os.environ.get(HTTP_SECRET_ENV):
            key, source = "http", f"in ${HTTP_SECRET_ENV}"
        else:
            key, source = "http", f'of the systemd credential "{HTTP_CREDENTIAL_NAME}"'
        problems.add(
            key,
            f"the secret {source} is {len(secret)} characters long; at least {HTTP_SECRET_MIN} are "
            "needed (create one with `openssl rand -base64 32`)",
        )
        return None
    admin_password = _admin_password(table, problems, base)
    if listen is None or public_url is None:
        return None
    return HttpSettings(
        host=listen[0], port=listen[1], public_url=public_url, secret=secret, admin_password=admin_password
    )


def _admin_password(table: dict[str, Any], problems: _Problems, base: Path) -> PasswordHash | None:
    """The operator board's password: admin_password_file, else $NOTIFIER_HTTP_ADMIN_PASSWORD,
    else the systemd credential `http-admin-password`; None (no board) when none is there."""
    if "admin_password" in table:
        problems.add(
            "http.admin_password",
            f"passwords do not go in the config file; use admin_password_file or ${HTTP_ADMIN_PASSWORD_ENV}",
        )
    password = _find_secret(
        table,
        "admin_password_file",
        "http",
        env=HTTP_ADMIN_PASSWORD_ENV,
        credential=HTTP_ADMIN_CREDENTIAL_NAME,
        credential_key="http",
        problems=problems,
        base=base,
    )
    if password is None:
        return None
    if len(password) < HTTP_ADMIN_PASSWORD_MIN:
        if "admin_password_file" in table:
            key, source = "http.admin_password_file", f"in {table['admin_password_file']}"
        elif os.environ.get(HTTP_ADMIN_PASSWORD_ENV):
            key, source = "http", f"in ${HTTP_ADMIN_PASSWORD_ENV}"
        else:
            key, source = "http", f'of the systemd credential "{HTTP_ADMIN_CREDENTIAL_NAME}"'
        problems.add(
            key,
            f"the operator board's password {source} is {len(password)} characters long; at least "
            f"{HTTP_ADMIN_PASSWORD_MIN} are needed (create one with `openssl rand -base64 18`)",
        )
        return None
    return PasswordHash.of(password)


def _sender_fits(sender: str, dotted: str, problems: _Problems) -> bool:
    """Every message stores its From and a Message-ID made from its domain: both must fit."""
    reason = _too_long(sender, OutboxMessage.sender)
    if reason is None:
        domain = sender.rsplit("<", 1)[-1].rstrip(">").rsplit("@", 1)[-1]
        try:
            message_id = make_message_id(domain)
        except ValueError as exc:
            reason = f"its domain cannot make a Message-ID: {exc}"
        else:
            too_long = _too_long(message_id, OutboxMessage.message_id)
            reason = f"its domain makes a Message-ID that {too_long}" if too_long else None
    if reason is not None:
        problems.add(dotted, reason)
        return False
    return True


def _set_of(value: object, dotted: str, problems: _Problems, *, upper: bool = False) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(dotted, "must be a list of strings")
        return frozenset()
    return frozenset(v.upper() if upper else v.casefold() for v in value)


_STAGE_NAMES = frozenset(s.value for s in Stage)
_TEMPLATE_NAMES = frozenset(t.value for t in Template)


def _one_of(value: object, allowed: frozenset[str] | set[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _rule(raw: dict[str, Any], dotted: str, base: Rule | None, problems: _Problems) -> Rule | None:
    """One [[notifications.rule]] entry; every problem in it is reported, not just the first."""
    before = len(problems.items)
    for key in sorted(set(raw) - _RULE_KEYS):
        problems.add(f"{dotted}.{key}", "unknown key")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.add(f"{dotted}.name", "every rule needs a name (a default rule's name overrides it)")
    elif not header_token(name):
        problems.add(
            f"{dotted}.name", "must contain ASCII letters or digits (it names the rule in each message)"
        )
    elif (reason := _stored_text(name, OutboxMessage.rule)) is not None:
        problems.add(f"{dotted}.name", reason)
    stages_raw = raw.get("stages", sorted(base.stages) if base else None)
    if not isinstance(stages_raw, list) or not stages_raw:
        problems.add(f"{dotted}.stages", "must list at least one stage")
        stages_raw = []
    bad = [s for s in stages_raw if not _one_of(s, _STAGE_NAMES)]
    if bad:
        problems.add(f"{dotted}.stages", f"not stage names: {', '.join(map(str, bad))}")
    default_template = str(base.template) if base else (stages_raw[0] if stages_raw else None)
    template_name = raw.get("template", default_template)
    if not _one_of(template_name, _TEMPLATE_NAMES):
        problems.add(f"{dotted}.template", f"no such message {template_name!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(f"{dotted}.enabled", "must be true or false")
    item_types = _set_of(raw.get("item_types"), f"{dotted}.item_types", problems)
    destinations = _set_of(raw.get("destinations"), f"{dotted}.destinations", problems, upper=True)
    tags = _set_of(raw.get("tags"), f"{dotted}.tags", problems)
    if len(problems.items) > before:
        return None
    return Rule(
        name=str(name),
        template=Template(str(template_name)),
        stages=frozenset(Stage(s) for s in stages_raw),
        enabled=enabled,
        item_types=item_types,
        destinations=destinations,
        tags=tags,
    )


def _rules(notifications: dict[str, Any], problems: _Problems) -> RulesConfig:
    defaults = RulesConfig()
    baseline = notifications.get("baseline", str(defaults.baseline))
    if not _one_of(baseline, {b.value for b in Baseline}):
        problems.add("notifications.baseline", "must be current, none or all")
        baseline = str(defaults.baseline)
    multi = notifications.get("multi_stage", str(defaults.multi_stage))
    if not _one_of(multi, {m.value for m in MultiStage}):
        problems.add("notifications.multi_stage", "must be latest or each")
        multi = str(defaults.multi_stage)
    max_age = defaults.max_event_age
    if "max_event_age" in notifications:
        try:
            max_age = parse_duration(notifications["max_event_age"])
        except ValueError as exc:
            problems.add("notifications.max_event_age", str(exc))
    settle = defaults.settle
    if "settle" in notifications:
        try:
            settle = parse_duration(notifications["settle"])
        except ValueError as exc:
            problems.add("notifications.settle", str(exc))
    stalls = dict(DEFAULT_STALLS)
    stall_table = notifications.get("stall", {})
    if not isinstance(stall_table, dict):
        problems.add("notifications.stall", "must be a table of stage = duration")
        stall_table = {}
    for stage_name, value in stall_table.items():
        dotted = f"notifications.stall.{stage_name}"
        if stage_name not in _STAGE_NAMES:
            problems.add(dotted, "not a stage name")
            continue
        stage = Stage(stage_name)
        if value is False or value == "off":
            stalls.pop(stage, None)
            continue
        try:
            after = parse_duration(value)
        except ValueError as exc:
            problems.add(dotted, str(exc))
            continue
        stalls[stage] = StallRule(
            after=after, normal=DEFAULT_STALLS.get(stage, StallRule(after=after, normal=False)).normal
        )
    durations = {"hold": defaults.retention_hold, "remind_before": defaults.retention_remind_before}
    retention = notifications.get("retention", {})
    if not isinstance(retention, dict):
        problems.add("notifications.retention", "must be a table")
        retention = {}
    for key in sorted(set(retention) - set(durations)):
        problems.add(f"notifications.retention.{key}", "unknown key")
    for key in durations:
        if key in retention:
            try:
                durations[key] = parse_duration(retention[key])
            except ValueError as exc:
                problems.add(f"notifications.retention.{key}", str(exc))
    overrides = []
    rule_list = notifications.get("rule", [])
    if not isinstance(rule_list, list):
        problems.add("notifications.rule", "must be an array of tables ([[notifications.rule]])")
        rule_list = []
    names = {rule.name: rule for rule in DEFAULT_RULES}
    for index, raw in enumerate(rule_list):
        dotted = f"notifications.rule[{index}]"
        if not isinstance(raw, dict):
            problems.add(dotted, "must be a table")
            continue
        name = raw.get("name")
        rule = _rule(raw, dotted, names.get(name) if isinstance(name, str) else None, problems)
        if rule is not None:
            overrides.append(rule)
    return RulesConfig(
        rules=merge_rules(DEFAULT_RULES, overrides),
        baseline=Baseline(baseline),
        multi_stage=MultiStage(multi),
        max_event_age=max_age,
        settle=settle,
        stalls=stalls,
        retention_hold=durations["hold"],
        retention_remind_before=durations["remind_before"],
    )


def _notifications(
    data: dict[str, Any], problems: _Problems, base: Path, sender: str | None
) -> NotificationSettings:
    table = _section(data, "notifications", problems)
    defaults = NotificationSettings()
    quiet = None
    if "quiet_hours" in table:
        value = table["quiet_hours"]
        try:
            if not isinstance(value, str) or "-" not in value:
                raise ValueError(f'{value!r} is not a window like "21:00-08:00"')
            start, end = (part for part in value.split("-", 1))
            quiet = (_parse_clock(start), _parse_clock(end))
        except ValueError as exc:
            problems.add("notifications.quiet_hours", str(exc))
    default_zone = _string(table, "default_time_zone", "notifications.default_time_zone", problems)
    if default_zone is not None and (reason := _zone_problem(default_zone)) is not None:
        problems.add("notifications.default_time_zone", reason)
        default_zone = None
    elif default_zone is None and "quiet_hours" in table and "default_time_zone" not in table:
        # Without it, quiet hours of subscribers with no zone would be kept in UTC: 21:00-08:00
        # UTC is 06:00-17:00 in Japan, the middle of the day.
        line = problems.line_of("notifications.quiet_hours")
        problems.items.append(
            f"{problems.where}:{line}: notifications.default_time_zone: required when quiet_hours is set "
            '(the shop\'s IANA time zone, like default_time_zone = "Asia/Tokyo"): quiet hours follow '
            "each subscriber's time_zone, else their destination country's, else this"
            if line
            else problems.located(
                "notifications.default_time_zone",
                'required when quiet_hours is set (like default_time_zone = "Asia/Tokyo")',
            )
        )
    attempts = table.get("max_attempts", defaults.max_attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        problems.add("notifications.max_attempts", f"must be a whole number from 1 to {MAX_ATTEMPTS}")
        attempts = defaults.max_attempts
    lease = defaults.outbox_lease
    if "outbox_lease" in table:
        try:
            lease = parse_duration(table["outbox_lease"])
        except ValueError as exc:
            problems.add("notifications.outbox_lease", str(exc))
    alert_batch = defaults.alert_batch
    if "alert_batch" in table:
        try:
            alert_batch = parse_duration(table["alert_batch"])
        except ValueError as exc:
            problems.add("notifications.alert_batch", str(exc))
        else:
            if alert_batch > dt.timedelta(days=1):
                problems.add("notifications.alert_batch", "at most 1d (the daily digest covers longer)")
                alert_batch = defaults.alert_batch
    templates = _string(table, "templates", "notifications.templates", problems)
    template_dir = _file_path(base, templates) if templates else None
    if template_dir is not None and not template_dir.is_dir():
        problems.add("notifications.templates", f"{template_dir} is not a directory")
    outbox_dir = _string(table, "outbox_dir", "notifications.outbox_dir", problems)
    unsubscribe = _string(table, "unsubscribe", "notifications.unsubscribe", problems)
    if unsubscribe and not unsubscribe.startswith(("mailto:", "https:")):
        problems.add("notifications.unsubscribe", "must be a mailto: or https: URI")
    elif unsubscribe and not (unsubscribe.isascii() and unsubscribe.isprintable() and " " not in unsubscribe):
        problems.add(
            "notifications.unsubscribe", "must be printable ASCII without spaces (percent-encode the rest)"
        )
    operator = _address(table, "operator", "notifications.operator", problems, display=False)
    if operator is not None and (reason := _too_long(operator, OutboxMessage.recipient)) is not None:
        problems.add("notifications.operator", reason)
    if unsubscribe is None and operator:
        unsubscribe = f"mailto:{operator}?subject=unsubscribe%20{{email}}"
    return NotificationSettings(
        sender=sender or defaults.sender,
        shop_name=_string(table, "shop_name", "notifications.shop_name", problems) or defaults.shop_name,
        shop_phone=_phone(table, problems),
        operator=operator,
        reply_to=_address(table, "reply_to", "notifications.reply_to", problems, display=True),
        unsubscribe=unsubscribe,
        templates=template_dir,
        outbox_dir=_file_path(base, outbox_dir) if outbox_dir else defaults.outbox_dir,
        quiet_hours=quiet,
        default_time_zone=default_zone,
        max_attempts=attempts,
        outbox_lease=lease,
        alert_batch=alert_batch,
        operator_webhook=_outbound_url(table, "operator_webhook", "notifications.operator_webhook", problems),
        heartbeat_url=_outbound_url(table, "heartbeat_url", "notifications.heartbeat_url", problems),
        logo_url=_https_url(table, "logo_url", "notifications.logo_url", problems),
        brand_color=_brand_color(table, problems),
        shop_url=_https_url(table, "shop_url", "notifications.shop_url", problems),
        rules=_rules(table, problems),
    )


def _https_url(table: dict[str, Any], key: str, dotted: str, problems: _Problems) -> str | None:
    """An https URL that customer messages link to or load (a logo): shown as written."""
    value = _string(table, key, dotted, problems)
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname:
        problems.add(dotted, "must be an https:// URL with a host, like https://shop.example/")
        return None
    if _CONTROL.search(value) or " " in value.strip() or not value.isascii():
        problems.add(dotted, "must be printable ASCII without spaces (percent-encode the rest)")
        return None
    if len(value) > 2000:
        problems.add(dotted, "is too long (at most 2000 characters)")
        return None
    return value.strip()


def _brand_color(table: dict[str, Any], problems: _Problems) -> str | None:
    """The messages' accent colour: white text sits on it and it colours links on white."""
    dotted = "notifications.brand_color"
    value = _string(table, "brand_color", dotted, problems)
    if value is None:
        return None
    if not HEX_COLOR.fullmatch(value):
        problems.add(dotted, f"must be a colour written #rrggbb, like #1d4f91 (not {value[:20]!r})")
        return None
    ratio = contrast_ratio(value)
    if ratio < MIN_CONTRAST:
        problems.add(
            dotted,
            f"{value} has a contrast of {ratio:.2f}:1 against white; white button text and links on "
            f"white need at least {MIN_CONTRAST}:1 (WCAG AA): choose a darker colour",
        )
        return None
    return value.lower()


def _watch(raw: dict[str, Any], index: int, count: int, problems: _Problems) -> Watch | None:
    """One [[watch]] table; every problem in it is reported, not just the first."""
    dotted = f"watch[{index}]"

    def problem(key: str, message: str) -> None:
        problems.add(f"{dotted}.{key}", message)

    if not raw.keys() <= _WATCH_KEYS:
        for key in sorted(set(raw) - _WATCH_KEYS):
            problem(key, "unknown key")
    raw_number = raw.get("number")
    number = ""
    if raw_number is None:
        problem("number", "is required (the tracking number, like EJ123456785JP)")
    elif isinstance(raw_number, bool) or not isinstance(raw_number, str | int):
        problem("number", 'must be a string, like "EJ123456785JP"')
    else:
        try:
            number = parse_number(str(raw_number)).value
        except ValueError as exc:
            problem("number", str(exc))
    subscribers = raw.get("subscribers", [])
    if isinstance(subscribers, str):
        subscribers = [subscribers]
    addresses = []
    if not isinstance(subscribers, list):
        problem("subscribers", "must be a list of email addresses")
        subscribers = []
    for address in subscribers:
        try:
            valid = _subscriber_address(address)
        except AddressError as exc:
            problem("subscribers", str(exc))
            continue
        if (reason := _too_long(valid, Subscriber.email, OutboxMessage.recipient)) is not None:
            problem("subscribers", f"{valid!r} {reason}")
            continue
        addresses.append(valid)
    locale = raw.get("locale", "en")
    if not _one_of(locale, {"en", "ja"}):
        problem("locale", "must be en or ja")
        locale = "en"
    zone = raw.get("time_zone")
    if zone is not None:
        reason = _zone_problem(zone)
        if reason is not None:
            problem("time_zone", reason)
            zone = None
    destination = raw.get("destination")
    if destination is not None and not (isinstance(destination, str) and _COUNTRY.fullmatch(destination)):
        problem("destination", "must be a two-letter country code")
        destination = None
    label = raw.get("label", "")
    if not isinstance(label, str):
        problem("label", "must be a string")
        label = ""
    elif (reason := _stored_text(label, Shipment.label)) is not None:
        problem("label", reason)
    name = raw.get("name", "")
    if not isinstance(name, str):
        problem("name", "must be a string")
        name = ""
    elif (reason := name_problem(name)) is not None:
        problem("name", reason)
    tags = _set_of(raw.get("tags"), f"{dotted}.tags", problems)
    if any(not tag or _NOT_IN_A_TAG.search(tag) for tag in tags):
        problem("tags", "each tag is one word: no spaces, control characters or empty tags")
    elif (reason := _too_long(" ".join(sorted(tags)), Shipment.tags)) is not None:
        problem("tags", f"joined by spaces, they make a text that {reason}")
    if not number:
        return None  # with a number, even a watch with problems takes part in the duplicate check
    return Watch(
        number=number,
        label=label,
        name=name.strip(),
        subscribers=tuple(addresses),
        locale=locale,
        tags=tags,
        destination=destination.upper() if destination else None,
        time_zone=zone,
        source=f"{problems.where}:{problems.watch_line(index, count) or '?'}",
    )


# The common shape of a customer's address: validate_address accepts each such address with only
# its domain lower-cased (tests/test_config.py proves it), so the stdlib header round trip it also
# does, about 0.1 ms an address, is skipped for the thousands of them a big watchlist holds.
_PLAIN_ADDRESS = re.compile(
    r"([A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]{1,64})*)@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)


def _subscriber_address(text: object) -> str:
    if (
        isinstance(text, str)
        and len(text) <= 254
        and (m := _PLAIN_ADDRESS.fullmatch(text))
        and len(m[1]) <= 64
    ):
        return f"{m[1]}@{m[2].lower()}"
    return validate_address(text)  # type: ignore[arg-type]  # it names the type when it is wrong


_zone_cache: dict[str, str | None] = {}


def _zone_problem(zone: object) -> str | None:
    if not isinstance(zone, str):
        return "must be an IANA time zone name (like Asia/Tokyo)"
    if zone not in _zone_cache:
        reason = _too_long(zone, Subscription.time_zone, OutboxMessage.time_zone)
        if reason is None:
            try:
                ZoneInfo(zone)
            except Exception:  # zoneinfo raises ValueError, KeyError or OSError by input
                reason = f"{zone!r} is not an IANA time zone (like Asia/Tokyo)"
        _zone_cache[zone] = reason
    return _zone_cache[zone]


def _watches(data: dict[str, Any], problems: _Problems) -> list[Watch]:
    raw_list = data.get("watch", [])
    if not isinstance(raw_list, list):
        problems.add("watch", "use [[watch]] tables")
        return []
    watches = []
    for index, raw in enumerate(raw_list):
        dotted = f"watch[{index}]"
        if not isinstance(raw, dict):
            problems.add(dotted, "must be a table")
            continue
        watch = _watch(raw, index, len(raw_list), problems)
        if watch is not None:
            watches.append(watch)
    return watches


def _polling(data: dict[str, Any], problems: _Problems) -> tuple[PollingPolicy, float]:
    table = _section(data, "polling", problems)
    defaults = PollingPolicy()
    values: dict[str, Any] = {}
    for key in ("fixed_interval", "pending_give_up", "terminal_grace", "stale_give_up", "lease"):
        if key in table:
            try:
                values[key] = parse_duration(table[key])
            except ValueError as exc:
                problems.add(f"polling.{key}", str(exc))
    if "jitter" in table:
        jitter = table["jitter"]
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            problems.add("polling.jitter", "must be a fraction from 0 to below 1")
        else:
            values["jitter"] = float(jitter)
    intervals = dict(defaults.intervals)
    table_intervals = table.get("intervals", {})
    if not isinstance(table_intervals, dict):
        problems.add("polling.intervals", "must be a table of stage = duration")
        table_intervals = {}
    for stage_name, value in table_intervals.items():
        if stage_name not in _STAGE_NAMES:
            problems.add(f"polling.intervals.{stage_name}", "not a stage name")
            continue
        try:
            intervals[Stage(stage_name)] = parse_duration(value)
        except ValueError as exc:
            problems.add(f"polling.intervals.{stage_name}", str(exc))
    tick = 5.0
    if "tick" in table:
        try:
            tick = max(0.1, parse_duration(table["tick"]).total_seconds())
        except ValueError as exc:
            problems.add("polling.tick", str(exc))
    return PollingPolicy(intervals=intervals, **values), tick


def _watch_file_patterns(polling: object, problems: _Problems) -> list[str]:
    patterns = polling.get("watch_files", []) if isinstance(polling, dict) else []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list):
        problems.add("polling.watch_files", "must be a list of file patterns")
        return []
    good = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            problems.add("polling.watch_files", f"{pattern!r} is not a file pattern (a non-empty string)")
        elif "\x00" in pattern:
            problems.add("polling.watch_files", f"{pattern!r} cannot contain a NUL character")
        else:
            good.append(pattern)
    return good


def _anchored(base: Path, pattern: str) -> str:
    """A watch_files pattern relative to the config's folder unless absolute (like
    /etc/notifier/watch.d/*.toml)."""
    return os.path.join(glob.escape(str(base)), os.path.expanduser(pattern))


def _fixed_folder(base: Path, pattern: str) -> Path:
    """The folder a watch_files pattern reads: its path up to the first wildcard, from `base`."""
    parts = Path(os.path.expanduser(pattern)).parts[:-1]
    return Path(base, *itertools.takewhile(lambda part: not glob.has_magic(part), parts))


def matching_watch_files(patterns: Sequence[str], source: Path | None = None) -> list[Path]:
    """The files the anchored patterns match, in order; names starting with a dot (editor and
    temporary files) are skipped. A file matched by two patterns counts once, and the config
    itself (watch_files = ["*.toml"] beside it) is not a watch file."""
    read = {os.path.realpath(source)} if source is not None else set()
    files: list[Path] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(path) and os.path.realpath(path) not in read:
                read.add(os.path.realpath(path))
                files.append(Path(path))
    return files


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


def _anchor_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path in a config file means beside that file, like every other path in it."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    relative = url[len(prefix) :]
    if not relative or relative.startswith(":memory:") or "?" in relative:
        return url
    return prefix + str((base / relative).resolve())


def _database_url(url: str) -> str | None:
    """Why the daemon could not open this URL, or None."""
    if "\x00" in url:
        return "cannot contain a NUL character"
    try:
        async_url(url)
    except DatabaseError as exc:
        return str(exc)
    return None


def parse_settings(text: str, source: Path | None = None) -> Settings:
    """Validate a whole config file; raise one ConfigError listing every problem."""
    where = str(source) if source else "<config>"
    try:
        return _parse_settings(text, source, where)
    except ConfigError:
        raise
    except Exception as exc:  # a gap in the checks must still not crash `config check` or a reload
        raise ConfigError(
            f"{where}: could not be checked ({type(exc).__name__}: {exc}); please report this"
        ) from exc


def _parse_settings(text: str, source: Path | None, where: str) -> Settings:
    data = _parse_toml(text, where)
    problems = _Problems(text, where)
    base = source.parent if source else Path.cwd()
    database = _section(data, "database", problems)
    japanpost = _section(data, "japanpost", problems)
    url = database.get("url", DEFAULT_DATABASE_URL)
    if not isinstance(url, str) or not url:
        problems.add("database.url", "must be a non-empty string")
        url = DEFAULT_DATABASE_URL
    elif (reason := _database_url(url)) is not None:
        problems.add("database.url", reason)
        url = DEFAULT_DATABASE_URL
    url = _anchor_sqlite(url, base) if source is not None else url
    base_url = japanpost.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not _http_url(base_url):
        problems.add("japanpost.base_url", "must be an http(s) URL")
        base_url = DEFAULT_BASE_URL
    interval = 5.0
    if "request_interval" in japanpost:
        try:
            interval = parse_duration(japanpost["request_interval"]).total_seconds()
        except ValueError as exc:
            problems.add("japanpost.request_interval", str(exc))
    budget = japanpost.get("budget", "shared")
    if budget not in ("shared", "per_instance"):
        problems.add("japanpost.budget", 'must be "shared" or "per_instance"')
        budget = "shared"
    circuit = _circuit(japanpost, problems)
    down_alert_after = JapanPostSettings().down_alert_after
    if "down_alert_after" in japanpost:
        try:
            down_alert_after = parse_duration(japanpost["down_alert_after"])
        except ValueError as exc:
            problems.add("japanpost.down_alert_after", str(exc))
    smtp, sender = _smtp(data, problems, base)
    http = _http(data, problems, base)
    notifications = _notifications(data, problems, base, sender)
    example_identity_allowed = _identity(data, problems, smtp, notifications, http)
    polling, tick = _polling(data, problems)
    watches = _watches(data, problems)
    patterns = tuple(
        _anchored(base, pattern) for pattern in _watch_file_patterns(data.get("polling"), problems)
    )
    watch_files = matching_watch_files(patterns, source)
    for pattern in _watch_file_patterns(data.get("polling"), _Problems("", where)):
        folder = _fixed_folder(base, pattern)
        if not folder.is_dir():
            # A mistyped folder would match nothing and unwatch every number it should hold; an
            # existing empty folder (nothing imported yet) is fine.
            problems.add("polling.watch_files", f"{pattern!r}: the folder {folder} does not exist")
    for path in watch_files:
        watches += _watch_file(path, problems)
    seen: dict[str, str] = {}
    for watch in watches:
        if watch.number in seen:
            problems.items.append(
                f"{watch.source}: watch.number: {watch.number} is already watched at {seen[watch.number]}"
            )
        else:
            seen[watch.number] = watch.source
    known_tables = set(_KNOWN) | {"watch"}
    for key in sorted(set(data) - known_tables):
        problems.add(key, "unknown section")
    if problems.items:
        raise ConfigError("\n".join(sorted(problems.items, key=_by_place)))
    return Settings(
        source=source,
        watches=tuple(watches),
        watch_files=tuple(watch_files),
        watch_patterns=patterns,
        polling=polling,
        poll_tick=tick,
        database=DatabaseSettings(url=str(url)),
        japanpost=JapanPostSettings(
            base_url=str(base_url),
            request_interval=interval,
            budget=str(budget),
            down_alert_after=down_alert_after,
            **circuit,
        ),
        smtp=smtp,
        smtp_login_problem=problems.smtp_login,
        notifications=notifications,
        http=http,
        http_secret_problem=problems.http_secret,
        example_identity_allowed=example_identity_allowed,
    )


# Logged at every start and printed by `config check` while the opt-out is on.
EXAMPLE_IDENTITY_WARNING = (
    "[smtp] allow_example_identity = true: mail may go out as a placeholder shop (reserved example "
    "domains, the example's name and phone); for a trial against a test relay on this machine only, "
    "never with customers' addresses"
)
_TRIAL_HINT = " (a trial against a test relay on this machine: [smtp] allow_example_identity = true)"


def _reserved(host: str) -> str | None:
    """How a host customers would be sent to is a placeholder, or None when it is not."""
    tag = reserved_domain(host)
    if tag is None:
        return None
    if tag in ("localhost", "a loopback address"):
        return "is this machine's own name (a loopback address), which no customer can reach"
    return f"is on {tag}, a domain reserved for examples (RFC 2606/6761)"


def _unsubscribe_host(target: str) -> str:
    """The domain a List-Unsubscribe target (mailto: or https:) sends customers to."""
    if target.startswith("mailto:"):
        return address_domain(target[len("mailto:") :].split("?", 1)[0])
    return urllib.parse.urlsplit(target).hostname or ""


def _identity(
    data: dict[str, Any],
    problems: _Problems,
    smtp: SmtpSettings | None,
    n: NotificationSettings,
    http: HttpSettings | None,
) -> bool:
    """With [smtp] (mail reaches customers), refuse every part of the shop's identity that they
    see and that is still a placeholder: From, Reply-To, the unsubscribe target (also when it
    defaults to the operator's address), the web face's links, the example shop's name and phone.
    Subscribers' addresses are not the shop's and are left alone. Returns whether a trial's
    allow_example_identity lets placeholders through."""
    if smtp is None:
        return False
    table = data.get("smtp")
    allow = table.get("allow_example_identity", False) if isinstance(table, dict) else False
    if not isinstance(allow, bool):
        problems.add("smtp.allow_example_identity", "must be true or false")
        allow = False
    if allow and is_loopback(smtp.host):
        return True
    if allow:
        problems.add(
            "smtp.allow_example_identity",
            f"is only for a test relay on this machine (smtp.host localhost, 127.0.0.1 or ::1), not "
            f"{smtp.host!r}: a real relay delivers to customers, who must see your shop",
        )
    raw = data.get("notifications")
    raw = raw if isinstance(raw, dict) else {}
    found: list[tuple[str, str, str]] = []  # (key, what is wrong, what customers would meet)
    if (why := _reserved(address_domain(n.sender))) is not None:
        found.append(("smtp.from", f"{n.sender} {why}", "get mail from a shop that does not exist"))
    if n.reply_to and (why := _reserved(address_domain(n.reply_to))) is not None:
        found.append(
            ("notifications.reply_to", f"{n.reply_to} {why}", "write to a mailbox that does not exist")
        )
    if n.unsubscribe and (why := _reserved(_unsubscribe_host(n.unsubscribe))) is not None:
        if "unsubscribe" in raw:
            found.append(
                (
                    "notifications.unsubscribe",
                    f"{n.unsubscribe} {why}",
                    "send their unsubscribe requests nowhere",
                )
            )
        else:
            found.append(
                (
                    "notifications.operator",
                    f"{n.operator} {why}; unsubscribe requests go to it (List-Unsubscribe defaults to "
                    "mailto: the operator while notifications.unsubscribe is unset)",
                    "send their unsubscribe requests nowhere",
                )
            )
    if http is not None and (why := _reserved(urllib.parse.urlsplit(http.public_url).hostname or "")):
        found.append(
            (
                "http.public_url",
                f"{http.public_url} {why}",
                "get unsubscribe and tracking links that do not open",
            )
        )
    if raw.get("shop_name") == EXAMPLE_SHOP_NAME:
        found.append(
            (
                "notifications.shop_name",
                "is config.example.toml's sample shop",
                "be greeted by a shop that is not yours",
            )
        )
    if n.shop_phone == EXAMPLE_SHOP_PHONE:
        found.append(
            (
                "notifications.shop_phone",
                "is config.example.toml's sample number",
                "call a number that is not yours",
            )
        )
    for key, what, meets in found:
        problems.add(
            key, f"{what}: with [smtp] customers would {meets}; put your shop's own here{_TRIAL_HINT}"
        )
    return False


def _http_url(text: str) -> bool:
    if not text.startswith(("http://", "https://")):
        return False
    try:
        return bool(httpx.URL(text).host)
    except (httpx.InvalidURL, ValueError, TypeError):
        return False


def _watch_file(path: Path, problems: _Problems) -> list[Watch]:
    """The [[watch]] tables of one watch file; its problems join the main file's."""
    try:
        extra_text = _decode(path.read_bytes(), str(path))
        extra = _parse_toml(extra_text, str(path))
    except OSError as exc:
        problems.items.append(f"{path}: cannot read watch file: {exc.strerror}")
        return []
    except ConfigError as exc:
        problems.items.append(str(exc))
        return []
    extra_problems = _Problems(extra_text, str(path))
    for key in sorted(set(extra) - {"watch"}):
        extra_problems.add(key, "watch files hold only [[watch]] tables")
    watches = _watches(extra, extra_problems)
    problems.items += extra_problems.items
    return watches


_PHONE = re.compile(r"\+?[0-9][0-9 ()\-]{4,28}[0-9]")


def _phone(table: dict[str, Any], problems: _Problems) -> str:
    value = _string(table, "shop_phone", "notifications.shop_phone", problems)
    if value is None:
        return ""
    if not _PHONE.fullmatch(value.strip()):
        problems.add(
            "notifications.shop_phone",
            "must be a phone number: digits, spaces, hyphens and brackets, "
            'optionally starting with + (e.g. "+81 3-1234-5678")',
        )
        return ""
    return value.strip()


def sending_smtp(settings: Settings) -> SmtpSettings | None:
    """The SMTP settings for a command that sends mail: a ConfigError when the login's password
    cannot be had here, rather than a send that the server refuses."""
    if settings.smtp_login_problem is not None:
        raise ConfigError(settings.smtp_login_problem)
    return settings.smtp


def web_secret(settings: Settings) -> str | None:
    """The web face's secret for what serves pages or queues customer mail with links: None
    without [http], a ConfigError naming where it looked when [http] is set and it is missing."""
    if settings.http is None:
        return None
    if settings.http_secret_problem is not None or not settings.http.secret:
        raise ConfigError(settings.http_secret_problem or "[http]: no secret")
    return settings.http.secret


def start_refusals(settings: Settings) -> list[str]:
    """Why `notifier run` would refuse to start with `settings`, one self-contained line each in
    the words it logs (and `config check` prints): a login without its password, [http] without
    its secret, a SQLite database whose folder is missing or not writable. [] when it would start."""
    from notifier.store.dbenv import database_file_problem

    refusals = []
    for check in (sending_smtp, web_secret):
        try:
            check(settings)
        except ConfigError as exc:
            refusals.append(str(exc))
    if (problem := database_file_problem(settings.database.url)) is not None:
        refusals.append(str(problem))
    return refusals


def load_settings(path: str | None, *, database_url: str | None = None) -> Settings:
    """`--config PATH`, else $NOTIFIER_CONFIG, else defaults; `--database-url` or
    $NOTIFIER_DATABASE_URL override the file's database URL.

    Every failure is a ConfigError whose lines each name the file, and the line and key where
    they can be known."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen:
        source = Path(chosen)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config: {exc.strerror}") from exc
        settings = parse_settings(_decode(data, str(source)), source)
    else:
        settings = Settings()
    override = database_url or os.environ.get(DATABASE_URL_ENV)
    if override:
        if (reason := _database_url(override)) is not None:
            raise ConfigError(f"database URL from --database-url or ${DATABASE_URL_ENV}: {reason}")
        settings = dataclasses.replace(settings, database=DatabaseSettings(url=override))
    return settings
