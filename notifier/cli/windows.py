"""How `status` and `history` show the delivery window: a table cell, a line, `--json` fields."""

from __future__ import annotations

import datetime as dt

from notifier.config import Settings
from notifier.core.eta import Window
from notifier.core.model import ContactOffice, TrackingEvent
from notifier.core.views import ShipmentView
from notifier.core.windows import Shown, window_dates, window_json
from notifier.pipeline.estimates import Estimator, shown_windows
from notifier.store import Store


def window_fields(shown: Shown) -> dict[str, object]:
    window, withheld = shown
    return {"window": window_json(window), "window_withheld": withheld}


def window_cell(window: Window | None, *, locale: str = "en") -> str:
    """The window in a table: its dates, marked * when from Japan Post's published times alone."""
    if window is None:
        return "-"
    return window_dates(window, locale=locale, today=dt.date.today()) + (
        " *" if window.basis != "lane" else ""
    )


PRIOR_NOTE = (
    "* expected window from Japan Post's published transit times (not yet this shop's own deliveries)"
)


async def windows_now(store: Store, settings: Settings, views: list[ShipmentView]) -> dict[int, Shown]:
    """The window each shipment shows now (as on its tracking page), or why it has none."""
    estimator = Estimator(store, settings.estimates)
    histories: dict[int, tuple[TrackingEvent, ...]] = {}
    ids = [v.id for v in views]
    for start in range(0, len(ids), 500):  # bounded IN lists on a large shop
        histories.update(await store.histories(ids[start : start + 500]))
    return await shown_windows(estimator, views, histories, now=dt.datetime.now(dt.UTC))


def history_json(
    view: ShipmentView,
    events: tuple[TrackingEvent, ...],
    contacts: tuple[ContactOffice, ...],
    shown: Shown,
) -> dict[str, object]:
    return {
        "number": view.number,
        "label": view.label,
        "item_type": view.item_type,
        "stage": str(view.stage),
        "events": [
            {
                "time": e.when.iso_local(),
                "stage": str(e.stage),
                "status": e.status,
                "office": e.office,
                "region": e.region,
                "postal_code": e.postal_code,
            }
            for e in events
        ],
        "contacts": [{"role": c.role, "office": c.office, "phone": c.phone} for c in contacts],
        **window_fields(shown),
    }
