"""Japan Post's own wording in the customer's language: the other locale's page, paired event by event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from notifier.model import ContactOffice, ItemResult, TrackingEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class PageWording:
    """What one locale's detail page says, keyed by the English (polled) events' identity.

    Attributes:
        locale: the page's language.
        events: English event key -> the same scan as that page prints it.
        item_type: the class of goods in that language ("ゆうパック"), or None if not shown.
        contacts: the office contact table in that language.
    """

    locale: str
    events: dict[str, TrackingEvent]
    item_type: str | None
    contacts: tuple[ContactOffice, ...]

    def covers(self, events: Sequence[TrackingEvent]) -> bool:
        return all(event.key in self.events for event in events)


def pair_wording(polled: ItemResult, other: ItemResult | None, locale: str) -> PageWording | None:
    """Pair the polled (English) page's events with the other locale's, or None if they cannot be."""
    return pair_events(polled.events, other, locale)


def pair_events(polled: Sequence[TrackingEvent], other: ItemResult | None, locale: str) -> PageWording | None:
    """Pair English events (from a page just read, or the stored history) with the other
    locale's page, or None if they cannot be.

    The two pages list the same scans in the same order. A scan added between the two requests
    shows at the end of the later page only: the earlier scans still pair, and the new one is
    news for the next poll. Any other difference (fewer rows, a row whose local date and time
    differ) is a different snapshot, and pairing it would put one scan's words on another's row.
    """
    if other is None or len(other.events) < len(polled):
        return None
    paired = list(zip(polled, other.events[: len(polled)], strict=True))
    if any(a.when.iso_local() != b.when.iso_local() for a, b in paired):
        return None
    return PageWording(
        locale=locale,
        events={a.key: b for a, b in paired},
        item_type=other.item_type,
        contacts=other.offices,
    )
