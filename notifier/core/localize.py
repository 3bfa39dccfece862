"""Japan Post's own wording in the customer's language: the other locale's page, paired event by event."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

from notifier.core import limits
from notifier.core.model import ContactOffice, ItemResult, TrackingEvent


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
    # The other page's words on the polled event, as wording_from_json restores them: which stage
    # a scan is comes from the polled history alone, so the tracker and the headline say the
    # same in every language (the Japanese page words some scans as another stage, 税関保留
    # for "Item held at inward Office of Exchange").
    return PageWording(
        locale=locale,
        events={
            a.key: dataclasses.replace(
                a,
                status=b.status,
                details=b.details,
                office=b.office,
                region=b.region,
                postal_code=b.postal_code,
            )
            for a, b in paired
        },
        item_type=other.item_type,
        contacts=other.offices,
    )


def wording_json(wording: PageWording) -> str:
    """The wording as stored (page_wordings.body): each English event key with that scan's words
    in the other language, the class of goods and the contacts; every text fitted to the size
    the same field has in the events and contacts tables, so a hostile page stays bounded."""
    events = {
        key: [
            limits.fit(e.status, limits.STATUS),
            e.details[: limits.DETAILS],
            limits.fit(e.office, limits.OFFICE),
            limits.fit(e.region, limits.REGION),
            limits.fit(e.postal_code, limits.POSTAL_CODE),
        ]
        for key, e in wording.events.items()
    }
    contacts = [
        [
            limits.fit(c.role, limits.CONTACT_ROLE),
            limits.fit(c.office, limits.CONTACT_OFFICE),
            limits.fit(c.phone, limits.CONTACT_PHONE),
        ]
        for c in wording.contacts
    ]
    item_type = limits.fit(wording.item_type, limits.ITEM_TYPE) if wording.item_type else None
    return json.dumps(
        {"locale": wording.locale, "item_type": item_type, "events": events, "contacts": contacts},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def wording_from_json(body: str, history: Sequence[TrackingEvent]) -> PageWording | None:
    """The stored wording, paired again with the stored English `history` (only the events both
    know); None if the body is not a wording this code wrote."""
    try:
        data = json.loads(body)
        by_key = {e.key: e for e in history}
        events = {
            key: dataclasses.replace(
                by_key[key], status=status, details=details, office=office, region=region, postal_code=postal
            )
            for key, (status, details, office, region, postal) in data["events"].items()
            if key in by_key and _texts(status, details, office, region, postal)
        }
        contacts = tuple(
            ContactOffice(role=r, office=o, phone=p) for r, o, p in data["contacts"] if _texts(r, o, p)
        )
        item_type = data["item_type"]
        locale = data["locale"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(locale, str) or not (item_type is None or isinstance(item_type, str)):
        return None
    return PageWording(locale=locale, events=events, item_type=item_type, contacts=contacts)


def _texts(*values: object) -> bool:
    return all(isinstance(v, str) for v in values)
