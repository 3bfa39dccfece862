"""Column sizes of the tables, read from the ORM, and fitting scraped text into them."""

from __future__ import annotations

from sqlalchemy import String, inspect

from notifier.orm import Base, ContactOfficeRow, Event, OutboxMessage, Shipment

ELLIPSIS = "…"


def column_size(model: type[Base], name: str) -> int:
    """The declared length of a string column (characters: what PostgreSQL's varchar counts)."""
    kind = inspect(model).columns[name].type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"{model.__name__}.{name} is not a sized string column")
    return kind.length


STATUS = column_size(Event, "status")
OFFICE = column_size(Event, "office")
REGION = column_size(Event, "region")
POSTAL_CODE = column_size(Event, "postal_code")
# Event details are TEXT: bounded here only so that a stored copy cannot grow without end.
DETAILS = 2000
ITEM_TYPE = column_size(Shipment, "item_type")
CONTACT_ROLE = column_size(ContactOfficeRow, "role")
CONTACT_OFFICE = column_size(ContactOfficeRow, "office")
CONTACT_PHONE = column_size(ContactOfficeRow, "phone")
OUTBOX_SUBJECT = column_size(OutboxMessage, "subject")


def fit(text: str, size: int) -> str:
    """`text` cut to `size` characters, the cut marked with an ellipsis; unchanged if it fits.

    SQLite ignores declared sizes and PostgreSQL refuses the whole write, so page text is fitted
    before anything else sees it: an event's identity (its key) is then the same on every poll
    and on both backends, and the raw page stays in the snapshot.
    """
    if len(text) <= size:
        return text
    return text[: size - 1] + ELLIPSIS
