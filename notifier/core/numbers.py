"""Tracking numbers: normalising what people type and telling valid numbers from mistakes."""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from notifier.errors import InvalidNumberError

S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−ー_.]+")
_S10 = re.compile(r"[A-Z]{2}\d{9}[A-Z]{2}")
_DOMESTIC = re.compile(r"\d{11,13}")


class NumberKind(enum.StrEnum):
    """The two numbering schemes Japan Post tracks."""

    S10 = "s10"
    DOMESTIC = "domestic"


@dataclass(frozen=True, slots=True)
class TrackingNumber:
    """A validated, compact tracking number."""

    value: str
    kind: NumberKind

    def __str__(self) -> str:
        return self.value

    @property
    def country(self) -> str:
        """ISO country of origin: the S10 suffix, or JP for domestic numbers."""
        return self.value[-2:] if self.kind is NumberKind.S10 else "JP"

    @property
    def display(self) -> str:
        """Grouped as Japan Post prints it: `EL 015 307 999 JP`, `1234-5678-9012`."""
        v = self.value
        if self.kind is NumberKind.S10:
            return f"{v[:2]} {v[2:5]} {v[5:8]} {v[8:11]} {v[11:]}"
        head = len(v) - 8
        return f"{v[:head]}-{v[head:-4]}-{v[-4:]}"


def normalise(text: str) -> str:
    """Fold full-width characters, drop spaces and hyphens, upper-case."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()


def s10_check_digit(serial: str) -> int:
    """UPU S10 check digit of an 8-digit serial number (mod 11, weights 8 6 4 2 3 5 9 7)."""
    if len(serial) != 8 or not serial.isdigit():
        raise ValueError(f"an S10 serial is 8 digits, got {serial!r}")
    check = 11 - sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True)) % 11
    return {10: 0, 11: 5}.get(check, check)


def parse_number(text: str) -> TrackingNumber:
    """Validate user input; the error names what is wrong with it."""
    value = normalise(text)
    if not value:
        raise InvalidNumberError(text, "it is empty")
    if not value.isascii() or not value.isalnum():
        bad = "".join(sorted({c for c in value if not (c.isascii() and c.isalnum())}))
        raise InvalidNumberError(text, f"it contains characters that never appear in one: {bad!r}")
    if value.isdigit():
        if _DOMESTIC.fullmatch(value):
            return TrackingNumber(value, NumberKind.DOMESTIC)
        raise InvalidNumberError(text, f"domestic numbers have 11 to 13 digits, this has {len(value)}")
    if _S10.fullmatch(value):
        expected = s10_check_digit(value[2:10])
        if int(value[10]) != expected:
            raise InvalidNumberError(
                text, f"the check digit is {value[10]} but the first eight digits give {expected}: mistyped?"
            )
        return TrackingNumber(value, NumberKind.S10)
    if len(value) == 13 and value[:2].isalpha() and value[-2:].isalpha():
        raise InvalidNumberError(
            text, "international numbers are 2 letters, 9 digits and 2 letters (like EJ123456785JP)"
        )
    raise InvalidNumberError(
        text,
        f"expected 2 letters, 9 digits and 2 letters (like EJ123456785JP) or 11 to 13 digits, "
        f"got {len(value)} characters",
    )
