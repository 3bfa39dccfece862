"""Column sizes of the tables (the ORM declares its columns with them) and fitting scraped text into them."""

from __future__ import annotations

ELLIPSIS = "…"

# Characters, what PostgreSQL's varchar counts; notifier.store.orm sizes its String columns from these.
STATUS = 300
OFFICE = 200
REGION = 200
POSTAL_CODE = 16
# Event details are TEXT: bounded here only so that a stored copy cannot grow without end.
DETAILS = 2000
ITEM_TYPE = 60
CONTACT_ROLE = 60
CONTACT_OFFICE = 200
CONTACT_PHONE = 40
OUTBOX_SUBJECT = 300


def fit(text: str, size: int) -> str:
    """`text` cut to `size` characters, the cut marked with an ellipsis; unchanged if it fits.

    SQLite ignores declared sizes and PostgreSQL refuses the whole write, so page text is fitted
    before anything else sees it: an event's identity (its key) is then the same on every poll
    and on both backends, and the raw page stays in the snapshot.
    """
    if len(text) <= size:
        return text
    return text[: size - 1] + ELLIPSIS
