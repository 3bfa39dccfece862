"""Configuration files (TOML) to validated, frozen settings; every problem names its file, line and key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notifier.client import DEFAULT_BASE_URL
from notifier.db import DEFAULT_DATABASE_URL
from notifier.errors import ConfigError
from notifier.mailer import AddressError, SmtpSettings, validate_address
from notifier.messages import Template
from notifier.numbers import parse_number
from notifier.policy import PollingPolicy
from notifier.rules import (
    DEFAULT_RULES,
    DEFAULT_STALLS,
    Baseline,
    MultiStage,
    Rule,
    RulesConfig,
    StallRule,
    merge_rules,
)
from notifier.stages import Stage

CONFIG_ENV = "NOTIFIER_CONFIG"
DATABASE_URL_ENV = "NOTIFIER_DATABASE_URL"
SMTP_PASSWORD_ENV = "NOTIFIER_SMTP_PASSWORD"
CREDENTIAL_NAME = "smtp-password"

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    url: str = DEFAULT_DATABASE_URL


@dataclass(frozen=True, slots=True, kw_only=True)
class JapanPostSettings:
    base_url: str = DEFAULT_BASE_URL
    request_interval: float = 5.0
    # No successful request for this long raises one `site_down` alert (and one notice on recovery).
    down_alert_after: dt.timedelta = dt.timedelta(minutes=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationSettings:
    sender: str = "notifier <notifier@localhost>"
    shop_name: str = "Our shop"
    operator: str | None = None
    reply_to: str | None = None
    unsubscribe: str | None = None
    templates: Path | None = None
    outbox_dir: Path = Path("outbox")
    quiet_hours: tuple[dt.time, dt.time] | None = None
    max_attempts: int = 8
    outbox_lease: dt.timedelta = dt.timedelta(minutes=5)
    # Operator alerts are emailed this long after the first one not yet sent, gathered into one.
    alert_batch: dt.timedelta = dt.timedelta(minutes=5)
    rules: RulesConfig = field(default_factory=RulesConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """One watched number and who hears about it."""

    number: str
    label: str = ""
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
    polling: PollingPolicy = field(default_factory=PollingPolicy)
    poll_tick: float = 5.0
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    japanpost: JapanPostSettings = field(default_factory=JapanPostSettings)
    smtp: SmtpSettings | None = None
    notifications: NotificationSettings = field(default_factory=NotificationSettings)


_KNOWN: dict[str, set[str]] = {
    "database": {"url"},
    "japanpost": {"base_url", "request_interval", "down_alert_after"},
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
    },
    "notifications": {
        "operator",
        "shop_name",
        "reply_to",
        "unsubscribe",
        "templates",
        "outbox_dir",
        "quiet_hours",
        "max_attempts",
        "outbox_lease",
        "alert_batch",
        "baseline",
        "multi_stage",
        "max_event_age",
        "stall",
        "retention",
        "rule",
    },
}
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
_WATCH_KEYS = {"number", "label", "subscribers", "locale", "tags", "destination", "time_zone"}


def parse_duration(value: object) -> dt.timedelta:
    """Seconds as a number, or "30s", "15m", "6h", "7d", "2w"."""
    if isinstance(value, bool):
        raise ValueError("a duration, not true/false")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f'{value!r} is not a duration (use seconds, or e.g. "30s", "15m", "6h", "7d")')
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return dt.timedelta(seconds=seconds)


def _parse_clock(text: str) -> dt.time:
    m = _CLOCK.fullmatch(text.strip())
    if not m or not (0 <= int(m.group(1)) <= 23 and 0 <= int(m.group(2)) <= 59):
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    return dt.time(int(m.group(1)), int(m.group(2)))


class _Problems:
    """Collects every problem, each located as precisely as the TOML text allows."""

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.lines = text.splitlines()
        self.items: list[str] = []

    def line_of(self, dotted: str) -> int | None:
        # tomllib keeps no positions: find `key =` under the right [section] header instead.
        *sections, key = dotted.split(".")
        section = ".".join(sections)
        current = ""
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith("["):
                current = stripped.strip("[] ").strip()
                continue
            if current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
                return number
        for number, line in enumerate(self.lines, 1):
            if line.strip().strip("[] ") == dotted:
                return number
        return None

    def add(self, dotted: str, message: str) -> None:
        line = self.line_of(dotted)
        place = f"{self.where}:{line}" if line else self.where
        self.items.append(f"{place}: {dotted}: {message}")


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


def read_password(smtp: dict[str, Any], problems: _Problems, base: Path) -> str | None:
    """The SMTP password: password_file, else $NOTIFIER_SMTP_PASSWORD, else the systemd
    credential `smtp-password`. Never from the TOML itself."""
    if "password" in smtp:
        problems.add(
            "smtp.password",
            "passwords do not go in the config file; use password_file or $NOTIFIER_SMTP_PASSWORD",
        )
    path = smtp.get("password_file")
    if path is not None:
        if not isinstance(path, str):
            problems.add("smtp.password_file", "must be a path")
            return None
        file = (base / path).expanduser()
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.add("smtp.password_file", f"cannot read {file}: {exc.strerror}")
            return None
    if os.environ.get(SMTP_PASSWORD_ENV):
        return os.environ[SMTP_PASSWORD_ENV]
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        return (Path(credentials) / CREDENTIAL_NAME).read_text(encoding="utf-8").strip()
    return None


def _smtp(data: dict[str, Any], problems: _Problems, base: Path) -> tuple[SmtpSettings | None, str | None]:
    if "smtp" not in data:
        return None, None
    smtp = _section(data, "smtp", problems)
    host = _string(smtp, "host", "smtp.host", problems)
    sender = _address(smtp, "from", "smtp.from", problems, display=True)
    if host is None:
        problems.add("smtp.host", "is required in [smtp]")
    if "from" not in smtp:
        problems.add("smtp.from", 'is required in [smtp] (e.g. "Shop <shop@example.com>")')
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
    username = _string(smtp, "username", "smtp.username", problems)
    password = read_password(smtp, problems, base)
    if username and not password:
        problems.add("smtp.username", f"needs a password: set smtp.password_file or ${SMTP_PASSWORD_ENV}")
    validate = smtp.get("validate_certs", True)
    if not isinstance(validate, bool):
        problems.add("smtp.validate_certs", "must be true or false")
        validate = True
    ca_file = _string(smtp, "ca_file", "smtp.ca_file", problems)
    if host is None:
        return None, sender
    try:
        settings = SmtpSettings(
            host=host,
            port=port,
            security=security,
            username=username,
            password=password,
            timeout=timeout,
            validate_certs=validate,
            cert_bundle=str(base / ca_file) if ca_file else None,
            local_hostname=_string(smtp, "local_hostname", "smtp.local_hostname", problems),
        )
    except Exception as exc:  # the transport's own validation, e.g. security=none off loopback
        problems.add("smtp.security", str(exc))
        return None, sender
    return settings, sender


def _set_of(value: object, dotted: str, problems: _Problems, *, upper: bool = False) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(dotted, "must be a list of strings")
        return frozenset()
    return frozenset(v.upper() if upper else v.casefold() for v in value)


def _rules(notifications: dict[str, Any], problems: _Problems) -> RulesConfig:
    defaults = RulesConfig()
    baseline = notifications.get("baseline", str(defaults.baseline))
    if baseline not in {b.value for b in Baseline}:
        problems.add("notifications.baseline", "must be current, none or all")
        baseline = str(defaults.baseline)
    multi = notifications.get("multi_stage", str(defaults.multi_stage))
    if multi not in {m.value for m in MultiStage}:
        problems.add("notifications.multi_stage", "must be latest or each")
        multi = str(defaults.multi_stage)
    max_age = defaults.max_event_age
    if "max_event_age" in notifications:
        try:
            max_age = parse_duration(notifications["max_event_age"])
        except ValueError as exc:
            problems.add("notifications.max_event_age", str(exc))
    stalls = dict(DEFAULT_STALLS)
    stall_table = notifications.get("stall", {})
    if not isinstance(stall_table, dict):
        problems.add("notifications.stall", "must be a table of stage = duration")
        stall_table = {}
    for stage_name, value in stall_table.items():
        dotted = f"notifications.stall.{stage_name}"
        if stage_name not in {s.value for s in Stage}:
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
    hold, remind = defaults.retention_hold, defaults.retention_remind_before
    retention = notifications.get("retention", {})
    if not isinstance(retention, dict):
        problems.add("notifications.retention", "must be a table")
        retention = {}
    for key in sorted(set(retention) - {"hold", "remind_before"}):
        problems.add(f"notifications.retention.{key}", "unknown key")
    try:
        hold = parse_duration(retention.get("hold", hold.total_seconds()))
        remind = parse_duration(retention.get("remind_before", remind.total_seconds()))
    except ValueError as exc:
        problems.add("notifications.retention", str(exc))
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
        for key in sorted(set(raw) - _RULE_KEYS):
            problems.add(f"{dotted}.{key}", "unknown key")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            problems.add(f"{dotted}.name", "every rule needs a name (a default rule's name overrides it)")
            continue
        base = names.get(name)
        stages_raw = raw.get("stages", sorted(base.stages) if base else None)
        if stages_raw is None or not isinstance(stages_raw, list) or not stages_raw:
            problems.add(f"{dotted}.stages", "must list at least one stage")
            continue
        bad = [s for s in stages_raw if s not in {st.value for st in Stage}]
        if bad:
            problems.add(f"{dotted}.stages", f"not stage names: {', '.join(map(str, bad))}")
            continue
        template_name = raw.get("template", str(base.template) if base else str(stages_raw[0]))
        if template_name not in {t.value for t in Template}:
            problems.add(f"{dotted}.template", f"no such message {template_name!r}")
            continue
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.add(f"{dotted}.enabled", "must be true or false")
            continue
        overrides.append(
            Rule(
                name=name,
                template=Template(template_name),
                stages=frozenset(Stage(s) for s in stages_raw),
                enabled=enabled,
                item_types=_set_of(raw.get("item_types"), f"{dotted}.item_types", problems),
                destinations=_set_of(raw.get("destinations"), f"{dotted}.destinations", problems, upper=True),
                tags=_set_of(raw.get("tags"), f"{dotted}.tags", problems),
            )
        )
    return RulesConfig(
        rules=merge_rules(DEFAULT_RULES, overrides),
        baseline=Baseline(baseline),
        multi_stage=MultiStage(multi),
        max_event_age=max_age,
        stalls=stalls,
        retention_hold=hold,
        retention_remind_before=remind,
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
    attempts = table.get("max_attempts", defaults.max_attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        problems.add("notifications.max_attempts", "must be a whole number >= 1")
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
    template_dir = (base / templates).expanduser() if templates else None
    if template_dir is not None and not template_dir.is_dir():
        problems.add("notifications.templates", f"{template_dir} is not a directory")
    outbox_dir = _string(table, "outbox_dir", "notifications.outbox_dir", problems)
    unsubscribe = _string(table, "unsubscribe", "notifications.unsubscribe", problems)
    if unsubscribe and not unsubscribe.startswith(("mailto:", "https:")):
        problems.add("notifications.unsubscribe", "must be a mailto: or https: URI")
    operator = _address(table, "operator", "notifications.operator", problems, display=False)
    if unsubscribe is None and operator:
        unsubscribe = f"mailto:{operator}?subject=unsubscribe%20{{email}}"
    return NotificationSettings(
        sender=sender or defaults.sender,
        shop_name=_string(table, "shop_name", "notifications.shop_name", problems) or defaults.shop_name,
        operator=operator,
        reply_to=_address(table, "reply_to", "notifications.reply_to", problems, display=True),
        unsubscribe=unsubscribe,
        templates=template_dir,
        outbox_dir=(base / outbox_dir).expanduser() if outbox_dir else defaults.outbox_dir,
        quiet_hours=quiet,
        max_attempts=attempts,
        outbox_lease=lease,
        alert_batch=alert_batch,
        rules=_rules(table, problems),
    )


def _watch_line(problems: _Problems, index: int, key: str | None) -> int | None:
    """Line of the index-th [[watch]] table, or of `key` inside it."""
    seen = -1
    for number, line in enumerate(problems.lines, 1):
        stripped = line.strip()
        if stripped.replace(" ", "") == "[[watch]]":
            seen += 1
            if seen == index and key is None:
                return number
            continue
        if seen == index and stripped.startswith("["):
            return None
        if seen == index and key is not None and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


def _watches(data: dict[str, Any], problems: _Problems) -> list[Watch]:
    raw_list = data.get("watch", [])
    if not isinstance(raw_list, list):
        problems.items.append(f"{problems.where}: watch: use [[watch]] tables")
        return []
    watches = []

    def problem(index: int, key: str | None, message: str) -> None:
        line = _watch_line(problems, index, key)
        place = f"{problems.where}:{line}" if line else problems.where
        problems.items.append(f"{place}: watch[{index}]{'.' + key if key else ''}: {message}")

    for index, raw in enumerate(raw_list):
        if not isinstance(raw, dict):
            problem(index, None, "must be a table")
            continue
        for key in sorted(set(raw) - _WATCH_KEYS):
            problem(index, key, "unknown key")
        try:
            number = parse_number(str(raw.get("number", ""))).value
        except ValueError as exc:
            problem(index, "number", str(exc))
            continue
        subscribers = raw.get("subscribers", [])
        if isinstance(subscribers, str):
            subscribers = [subscribers]
        addresses = []
        if not isinstance(subscribers, list):
            problem(index, "subscribers", "must be a list of email addresses")
            subscribers = []
        for address in subscribers:
            try:
                addresses.append(validate_address(str(address)))
            except AddressError as exc:
                problem(index, "subscribers", str(exc))
        locale = raw.get("locale", "en")
        if locale not in ("en", "ja"):
            problem(index, "locale", "must be en or ja")
            locale = "en"
        zone = raw.get("time_zone")
        if zone is not None:
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(str(zone))
            except Exception:
                problem(index, "time_zone", f"{zone!r} is not an IANA time zone (like Asia/Tokyo)")
                zone = None
        destination = raw.get("destination")
        if destination is not None and not (
            isinstance(destination, str) and re.fullmatch(r"[A-Za-z]{2}", destination)
        ):
            problem(index, "destination", "must be a two-letter country code")
            destination = None
        label = raw.get("label", "")
        if not isinstance(label, str):
            problem(index, "label", "must be a string")
            label = ""
        watches.append(
            Watch(
                number=number,
                label=label,
                subscribers=tuple(addresses),
                locale=locale,
                tags=_set_of(raw.get("tags"), f"watch[{index}].tags", problems),
                destination=destination.upper() if destination else None,
                time_zone=str(zone) if zone else None,
                source=f"{problems.where}:{_watch_line(problems, index, None) or '?'}",
            )
        )
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
        if stage_name not in {s.value for s in Stage}:
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


def _anchor_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path in a config file means beside that file, like every other path in it."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    relative = url[len(prefix) :]
    if not relative or relative.startswith(":memory:") or "?" in relative:
        return url
    return prefix + str((base / relative).resolve())


def parse_settings(text: str, source: Path | None = None) -> Settings:
    """Validate a whole config file; raise one ConfigError listing every problem."""
    where = str(source) if source else "<config>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    problems = _Problems(text, where)
    base = source.parent if source else Path.cwd()
    database = _section(data, "database", problems)
    japanpost = _section(data, "japanpost", problems)
    url = database.get("url", DEFAULT_DATABASE_URL)
    if not isinstance(url, str) or not url:
        problems.add("database.url", "must be a non-empty string")
        url = DEFAULT_DATABASE_URL
    url = _anchor_sqlite(url, base) if source is not None else url
    base_url = japanpost.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        problems.add("japanpost.base_url", "must be an http(s) URL")
        base_url = DEFAULT_BASE_URL
    interval = 5.0
    if "request_interval" in japanpost:
        try:
            interval = parse_duration(japanpost["request_interval"]).total_seconds()
        except ValueError as exc:
            problems.add("japanpost.request_interval", str(exc))
    down_alert_after = JapanPostSettings().down_alert_after
    if "down_alert_after" in japanpost:
        try:
            down_alert_after = parse_duration(japanpost["down_alert_after"])
        except ValueError as exc:
            problems.add("japanpost.down_alert_after", str(exc))
    smtp, sender = _smtp(data, problems, base)
    notifications = _notifications(data, problems, base, sender)
    polling, tick = _polling(data, problems)
    watches = _watches(data, problems)
    watch_files: list[Path] = []
    patterns = data.get("polling", {}).get("watch_files", []) if isinstance(data.get("polling"), dict) else []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list):
        problems.add("polling.watch_files", "must be a list of file patterns")
        patterns = []
    for pattern in patterns:
        for path in sorted(base.glob(str(pattern))):
            watch_files.append(path)
            try:
                extra_text = path.read_text(encoding="utf-8")
                extra = tomllib.loads(extra_text)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                problems.items.append(f"{path}: {exc}")
                continue
            extra_problems = _Problems(extra_text, str(path))
            for key in sorted(set(extra) - {"watch"}):
                extra_problems.add(key, "watch files hold only [[watch]] tables")
            watches += _watches(extra, extra_problems)
            problems.items += extra_problems.items
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
        raise ConfigError("\n".join(problems.items))
    return Settings(
        source=source,
        watches=tuple(watches),
        watch_files=tuple(watch_files),
        polling=polling,
        poll_tick=tick,
        database=DatabaseSettings(url=str(url)),
        japanpost=JapanPostSettings(
            base_url=str(base_url), request_interval=interval, down_alert_after=down_alert_after
        ),
        smtp=smtp,
        notifications=notifications,
    )


def load_settings(path: str | None, *, database_url: str | None = None) -> Settings:
    """`--config PATH`, else $NOTIFIER_CONFIG, else defaults; `--database-url` or
    $NOTIFIER_DATABASE_URL override the file's database URL."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen:
        source = Path(chosen)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config: {exc.strerror}") from exc
        settings = parse_settings(text, source)
    else:
        settings = Settings()
    override = database_url or os.environ.get(DATABASE_URL_ENV)
    if override:
        settings = dataclasses.replace(settings, database=DatabaseSettings(url=override))
    return settings
