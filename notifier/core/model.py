"""Value types for what a Japan Post page says: pages, items, events, contact offices."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from dataclasses import dataclass

from notifier.core.stages import Stage

TOKYO = "Asia/Tokyo"
# Where Japan Post's tracking pages live; the client fetches them, mail links customers to them.
DEFAULT_BASE_URL = "https://trackings.post.japanpost.jp"
DETAIL_PATH = "/services/srv/search/direct"


class Layout(enum.StrEnum):
    """Which of Japan Post's page layouts a response used."""

    DETAIL = "detail"
    LIST = "list"
    UNRECOGNIZED = "unrecognized"


class Outcome(enum.StrEnum):
    """What the page says about one tracking number."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    INVALID_NUMBER = "invalid_number"


class Locale(enum.StrEnum):
    """Page and message language."""

    EN = "en"
    JA = "ja"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventTime:
    """A wall-clock time exactly as the page shows it.

    Japan Post prints events abroad in the local time of the place, with no offset, so an
    event only carries a zone when it happened in Japan. Rows may also carry a date alone.
    """

    date: dt.date
    time: dt.time | None = None
    zone: str | None = None

    def iso_local(self) -> str:
        """`YYYY-MM-DDTHH:MM`, or `YYYY-MM-DD` when the page gave no time."""
        if self.time is None:
            return self.date.isoformat()
        return f"{self.date.isoformat()}T{self.time.strftime('%H:%M')}"

    def aware(self) -> dt.datetime | None:
        """The instant, where the zone is known; a date-only row counts as its midnight."""
        if self.zone is None:
            return None
        from zoneinfo import ZoneInfo

        return dt.datetime.combine(self.date, self.time or dt.time(0, 0), tzinfo=ZoneInfo(self.zone))

    @classmethod
    def from_iso(cls, text: str, zone: str | None = None) -> EventTime:
        """Inverse of `iso_local`."""
        if "T" in text:
            day, clock = text.split("T", 1)
            return cls(date=dt.date.fromisoformat(day), time=dt.time.fromisoformat(clock), zone=zone)
        return cls(date=dt.date.fromisoformat(text), zone=zone)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingEvent:
    """One event of a shipment's history (two table rows on the page)."""

    when: EventTime
    status: str
    stage: Stage
    details: str = ""
    office: str = ""
    region: str = ""
    postal_code: str = ""

    @property
    def key(self) -> str:
        """Stable identity: the same scan read twice, in either locale order, gives the same key.

        The stage is left out so that a better status mapping does not split history.
        """
        raw = "\x1f".join(
            (self.when.iso_local(), self.status.casefold(), self.office.casefold(), self.postal_code)
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactOffice:
    """A row of the office contact table (`窓口店`): who to call about the item."""

    role: str
    office: str
    phone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemResult:
    """Everything one page says about one tracking number."""

    number: str
    outcome: Outcome
    item_type: str | None = None
    events: tuple[TrackingEvent, ...] = ()
    offices: tuple[ContactOffice, ...] = ()
    additional_services: str = ""
    message: str = ""

    @property
    def stage(self) -> Stage:
        """Stage of the latest event; `pending` when there is none."""
        return self.events[-1].stage if self.events else Stage.PENDING

    @property
    def latest(self) -> TrackingEvent | None:
        return self.events[-1] if self.events else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """A parsed Japan Post response.

    `unrecognized` means the markup matched neither layout (maintenance, block page,
    redesign); `reason` says what was missing. It never means "found with no events".
    """

    layout: Layout
    locale: Locale
    items: tuple[ItemResult, ...] = ()
    reason: str = ""
    title: str = ""

    def item(self, number: str) -> ItemResult | None:
        for item in self.items:
            if item.number == number:
                return item
        return None
