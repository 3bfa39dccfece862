"""[[watch]] tables to Watch settings: numbers, subscribers, zones, tags."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from notifier.config.checks import _one_of, _set_of, _stored_text, _too_long, name_problem
from notifier.config.settings import _COUNTRY, _NOT_IN_A_TAG, _WATCH_KEYS, Watch
from notifier.config.toml import _Problems
from notifier.core.mime import AddressError, validate_address
from notifier.core.numbers import parse_number
from notifier.store.orm import OutboxMessage, Shipment, Subscriber, Subscription


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
