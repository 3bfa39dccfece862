"""The simulated site's data: journeys, scans, contacts, faults, the request log and fixed paths."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Final, NamedTuple

DIRECT_PATH: Final = "/services/srv/search/direct"
SEARCH_PATH: Final = "/services/srv/search/"
OFFSITE_REDIRECT: Final = "https://example.invalid/track"
MAX_NUMBERS: Final = 10
ALL_SCANS: Final = -1
"""`Journey.revealed` default: every scan is visible."""

# FORMAT.md §8. The English wrong-digits text is genuine (2014 capture); the rest come from parsers.
MESSAGE_WRONG_DIGITS: Final = {
    "en": "** There is a mistake in the number of digits for the item number. The number should be 11-13 digits.",
    "ja": "＊＊ お問い合わせ番号の入力桁数に誤りがあります。11桁から13桁で入力してください。",
}
MESSAGE_NOT_FOUND: Final = {
    "en": "** Your item was not found. Confirm your item number and ask at your local office.",
    "ja": "＊＊ お問い合わせ番号が見つかりません。お問い合わせ番号をご確認の上、お近くの取扱店にお問い合わせください。",
}

_S10_RE: Final = re.compile(r"[A-Z]{2}\d{9}[A-Z]{2}")
_WHEN_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2})?")
_SEPARATORS_RE: Final = re.compile(r"[-\s\u3000‐－]")
# Jinja turns every line end into "\n"; the captures mix CRLF and LF, so carriage returns travel
# through the template engine as this private-use character and are restored afterwards.
_CR: Final = "\ue000"


def compact_number(number: str) -> str:
    """The tracking number without hyphens or spaces, upper-cased: the form the site looks up."""
    return _SEPARATORS_RE.sub("", number).upper()


def display_number(number: str) -> str:
    """The number as the detail page prints it.

    S10 numbers are grouped like the 2014 capture ("EL 015 307 999 JP"). Domestic 12-digit numbers
    are printed 4-4-4 with hyphens, as parsers of the live site report; other lengths have no known
    grouping and are printed as plain digits.
    """
    n = compact_number(number)
    if _S10_RE.fullmatch(n):
        return f"{n[:2]} {n[2:5]} {n[5:8]} {n[8:11]} {n[11:]}"
    if len(n) == 12 and n.isdigit():
        return f"{n[:4]}-{n[4:8]}-{n[8:]}"
    return n


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """One history event as the page shows it: both languages, so either locale can be served."""

    when: str
    """Local wall time `YYYY-MM-DDTHH:MM`, or `YYYY-MM-DD` for a date-only row."""
    status_en: str
    status_ja: str
    office_en: str = ""
    office_ja: str = ""
    region_en: str = ""
    """Prefecture, or the country when the event happened abroad."""
    region_ja: str = ""
    postal_code: str = ""
    """Empty abroad; the page then shows `&nbsp;`."""
    details: str = ""

    def __post_init__(self) -> None:
        if not _WHEN_RE.fullmatch(self.when):
            raise ValueError(f"scan time must be YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {self.when!r}")
        dt.date.fromisoformat(self.when[:10])
        if "T" in self.when:
            dt.time.fromisoformat(self.when[11:])

    @property
    def date(self) -> dt.date:
        return dt.date.fromisoformat(self.when[:10])

    @property
    def clock(self) -> str:
        """`HH:MM`, or "" for a date-only row."""
        return self.when[11:] if "T" in self.when else ""

    def shown_when(self, locale: str) -> str:
        """The date cell: `MM/DD/YYYY HH:MM` in English, `YYYY/MM/DD HH:MM` in Japanese."""
        day = f"{self.date:%m/%d/%Y}" if locale == "en" else f"{self.date:%Y/%m/%d}"
        return f"{day} {self.clock}" if self.clock else day


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRow:
    """A row of the office contact table (`窓口店`)."""

    role_en: str
    role_ja: str
    office_en: str
    office_ja: str
    phone: str
    office_id: str = ""
    """Japan Post office id; when set, the office name links to the office search like the capture."""


@dataclass(slots=True, kw_only=True)
class Journey:
    """A scripted shipment: all its scans, of which the first `revealed` are visible now."""

    number: str
    item_type_en: str
    item_type_ja: str
    international: bool
    scans: list[Scan]
    contacts: list[ContactRow] = field(default_factory=list)
    revealed: int = ALL_SCANS
    """How many scans are visible; 0 means "not found yet"; negative means all of them."""
    additional_services_en: str = ""
    additional_services_ja: str = ""
    type_code: str = ""
    """Hidden `trackingNoTypeCode`; "" means "4" (as captured) for international items, "1" otherwise."""
    class_code: str = ""
    """Hidden `pslClsfctCod` (postal class code, "2130" for the captured EMS)."""
    accepted_seconds: int = 0
    """Seconds of the acceptance time, which only the hidden `proposalHandDateTimeString` shows."""

    def __post_init__(self) -> None:
        self.number = compact_number(self.number)
        self.scans = list(self.scans)
        self.contacts = list(self.contacts)
        if self.revealed < 0:
            self.revealed = len(self.scans)
        self.revealed = min(self.revealed, len(self.scans))
        if not 0 <= self.accepted_seconds < 60:
            raise ValueError("accepted_seconds must be 0-59")

    @property
    def visible(self) -> list[Scan]:
        return self.scans[: self.revealed]

    @property
    def hidden_type_code(self) -> str:
        return self.type_code or ("4" if self.international else "1")


class Fault(enum.StrEnum):
    """Misbehaviour the simulator can be told to show, one request at a time or until cleared."""

    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    SLOW = "slow"
    TRICKLE = "trickle"
    OVERSIZED = "oversized"
    GZIP_BOMB = "gzip_bomb"
    MAINTENANCE = "maintenance"
    CHANGED_LAYOUT = "changed_layout"
    RESET = "reset"
    REDIRECT_OFFSITE = "redirect_offsite"
    REDIRECT_ONSITE = "redirect_onsite"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the simulator saw it. `status` is 0 when the connection was reset unanswered."""

    at: float
    """`time.monotonic()` when the request arrived."""
    path: str
    numbers: tuple[str, ...]
    """The non-empty number slots, compacted (see `compact_number`), in slot order."""
    locale: str
    status: int
    fault: Fault | None
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class _FaultSpec:
    fault: Fault
    retry_after: float | None
    delay: float
    size: int


@dataclass(slots=True)
class _Reply:
    """A response before it meets a socket; the server turns the fault fields into timing."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    spec: _FaultSpec | None = None
    padding: int = 0
    """OVERSIZED: filler bytes streamed after `body`, so a large `size` never sits in memory."""

    @property
    def fault(self) -> Fault | None:
        return self.spec.fault if self.spec else None


class _Entry(NamedTuple):
    """One requested number, resolved: a snapshot of a visible journey, or an error message key."""

    typed: str
    journey: Journey | None
    error: str
