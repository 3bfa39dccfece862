"""Pure checks the kinds share (durations, clock times, column fits, URLs) and the shop's identity across keys."""

from __future__ import annotations

import datetime as dt
import functools
import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx
from sqlalchemy.orm import InstrumentedAttribute

from notifier.config.settings import (
    _CLOCK,
    _CONTROL,
    _DURATION,
    _UNITS,
    MAX_DURATION,
    HttpSettings,
    NotificationSettings,
    Settings,
)
from notifier.config.smtp import SmtpSettings, is_loopback
from notifier.config.toml import _Problems
from notifier.core.identity import EXAMPLE_SHOP_NAME, EXAMPLE_SHOP_PHONE, address_domain, reserved_domain
from notifier.core.messages import Template
from notifier.core.mime import make_message_id
from notifier.core.stages import Stage
from notifier.errors import ConfigError
from notifier.store.database import DatabaseError, async_url
from notifier.store.orm import OutboxMessage, Subscription, column_size


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


def _sender_problem(sender: str) -> str | None:
    """Why a From cannot be stored: it and a Message-ID made from its domain must both fit."""
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
    return reason


_STAGE_NAMES = frozenset(s.value for s in Stage)
_TEMPLATE_NAMES = frozenset(t.value for t in Template)


def _database_url(url: str) -> str | None:
    """Why the daemon could not open this URL, or None."""
    if "\x00" in url:
        return "cannot contain a NUL character"
    try:
        async_url(url)
    except DatabaseError as exc:
        return str(exc)
    return None


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
    data: Mapping[str, Any],
    problems: _Problems,
    smtp: SmtpSettings | None,
    n: NotificationSettings,
    http: HttpSettings | None,
    *,
    allow: bool,
) -> bool:
    """With [smtp] (mail reaches customers), refuse every part of the shop's identity that they
    see and that is still a placeholder: From, Reply-To, the unsubscribe target (also when it
    defaults to the operator's address), the web face's links, the example shop's name and phone.
    Subscribers' addresses are not the shop's and are left alone. Returns whether a trial's
    allow_example_identity lets placeholders through."""
    if smtp is None:
        return False
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
    # Not seen by customers, but a placeholder here loses mail all the same: no relay answers on
    # a reserved name, and alerts to a reserved operator address reach nobody.
    if (why := reserved_domain(smtp.host)) not in (None, "localhost", "a loopback address"):
        problems.add(
            "smtp.host",
            f"{smtp.host} is on {why}, a domain reserved for examples (RFC 2606/6761): no mail server "
            "answers there; put your provider's relay here",
        )
    if n.operator and "unsubscribe" in raw and (why := _reserved(address_domain(n.operator))) is not None:
        problems.add(
            "notifications.operator",
            f"{n.operator} {why}: operator alerts and the daily digest would reach nobody; put your "
            f"own address here{_TRIAL_HINT}",
        )
    return False


def _http_url(text: str) -> bool:
    if not text.startswith(("http://", "https://")):
        return False
    try:
        return bool(httpx.URL(text).host)
    except (httpx.InvalidURL, ValueError, TypeError):
        return False


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
