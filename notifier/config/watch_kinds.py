"""The kinds of value a [[watch]] table holds: tracking numbers, subscribers' addresses, tags, countries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from notifier.config.checks import _too_long
from notifier.config.kinds import Words
from notifier.config.schema import Invalid, Kind, Snapshot
from notifier.core.mime import AddressError, validate_address
from notifier.core.numbers import parse_number
from notifier.store.orm import OutboxMessage, Shipment, Subscriber


@dataclass(frozen=True, slots=True)
class TrackingNumber(Kind):
    text: str = "tracking number"

    def parse(self, value: Any, snap: Snapshot) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise Invalid('must be a string, like "EJ123456785JP"')
        try:
            return parse_number(str(value)).value
        except ValueError as exc:
            raise Invalid(str(exc)) from None


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


@dataclass(frozen=True, slots=True)
class Subscribers(Kind):
    """Email addresses (one string is a list of one), each fitting the columns that store it."""

    text: str = "list of addresses"

    def parse(self, value: Any, snap: Snapshot) -> tuple[str, ...]:
        subscribers = [value] if isinstance(value, str) else value
        if not isinstance(subscribers, list):
            raise Invalid("must be a list of email addresses")
        addresses, problems = [], []
        for address in subscribers:
            try:
                valid = _subscriber_address(address)
            except AddressError as exc:
                problems.append(("", str(exc)))
                continue
            if (reason := _too_long(valid, Subscriber.email, OutboxMessage.recipient)) is not None:
                problems.append(("", f"{valid!r} {reason}"))
                continue
            addresses.append(valid)
        if problems:
            raise Invalid(problems=tuple(problems))
        return tuple(addresses)


# Tags are stored joined by spaces and split on whitespace when read back.
_NOT_IN_A_TAG = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Tags(Kind):
    text: str = "list of words"

    def parse(self, value: Any, snap: Snapshot) -> frozenset[str]:
        tags = Words().parse(value, snap)
        if any(not tag or _NOT_IN_A_TAG.search(tag) for tag in tags):
            raise Invalid("each tag is one word: no spaces, control characters or empty tags")
        if (reason := _too_long(" ".join(sorted(tags)), Shipment.tags)) is not None:
            raise Invalid(f"joined by spaces, they make a text that {reason}")
        return tags


_COUNTRY = re.compile(r"[A-Za-z]{2}")


@dataclass(frozen=True, slots=True)
class Country(Kind):
    text: str = "country code"

    def parse(self, value: Any, snap: Snapshot) -> str:
        if not (isinstance(value, str) and _COUNTRY.fullmatch(value)):
            raise Invalid("must be a two-letter country code")
        return value.upper()
