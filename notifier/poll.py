"""One poll of one shipment: fetch, parse, diff, record. The only module that joins the shells."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from notifier.client import JapanPostClient
from notifier.diff import Change, diff_detail
from notifier.errors import FetchError
from notifier.faults import crashpoint
from notifier.model import Layout, Locale
from notifier.store import PageCapture, ShipmentView, Store

logger = logging.getLogger(__name__)

# Identity of events includes the status wording, so every poll of a shipment must read the
# same language: English, the language the genuine captures and most status lists are in.
POLL_LOCALE = Locale.EN


@dataclass(frozen=True, slots=True, kw_only=True)
class PollResult:
    number: str
    change: Change | None = None
    error: str | None = None
    failures: int = 0


async def poll_detail(
    store: Store,
    client: JapanPostClient,
    shipment: ShipmentView,
    *,
    now: dt.datetime,
    next_poll_at: dt.datetime | None,
    owner: str | None = None,
) -> PollResult:
    """Fetch one shipment's detail page and commit what changed, in one transaction."""
    stored = await store.history(shipment.id)
    try:
        fetched = await client.fetch_detail(shipment.number, POLL_LOCALE)
    except FetchError as exc:
        failures = await store.record_failure(
            shipment.id, error=str(exc), now=now, next_poll_at=next_poll_at, owner=owner
        )
        logger.warning(
            "poll failed",
            extra={
                "action": "poll_failed",
                "number": shipment.number,
                "error": str(exc),
                "failures": failures,
            },
        )
        return PollResult(number=shipment.number, error=str(exc), failures=failures)
    page = fetched.page
    change = diff_detail(stored, page, shipment.number)
    crashpoint("poll:before-commit")
    await store.record_poll(
        shipment.id,
        change=change,
        item=page.item(shipment.number),
        now=now,
        next_poll_at=next_poll_at,
        capture=PageCapture(body=fetched.body, url=fetched.url, layout=str(page.layout), note=page.reason),
        owner=owner,
    )
    crashpoint("poll:after-commit")
    logger.info(
        "poll done",
        extra={
            "action": "poll_done",
            "number": shipment.number,
            "layout": str(page.layout),
            "new_events": len(change.new_events),
            "stage": str(change.current_stage),
            "anomalies": ",".join(str(a.kind) for a in change.anomalies),
        },
    )
    error = page.reason if page.layout is Layout.UNRECOGNIZED else None
    return PollResult(number=shipment.number, change=change, error=error)
