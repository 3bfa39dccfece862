"""Shown windows: the delivery window a customer last saw, and how often deliveries fell inside."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select, update

from notifier.core.eta import Lane, Window, lane_of
from notifier.core.model import EventTime
from notifier.store.database import Database
from notifier.store.rows import EVENTS, SHIPMENTS


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LaneAccuracy:
    """Of the delivered parcels of a lane that had been shown a window, how many arrived in it."""

    lane: Lane
    delivered: int
    inside: int


class ShownWindows:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, shipment_id: int, window: Window, *, now: dt.datetime) -> None:
        """Remember `window` as the one last shown for the shipment (mail or tracking page)."""
        async with self._db.write() as session:
            await session.execute(
                update(SHIPMENTS)
                .where(SHIPMENTS.c.id == shipment_id)
                .where(
                    # A page view repeating the same window writes nothing.
                    (SHIPMENTS.c.window_earliest.is_(None))
                    | (SHIPMENTS.c.window_earliest != window.earliest)
                    | (SHIPMENTS.c.window_latest != window.latest)
                    | (SHIPMENTS.c.window_basis != window.basis)
                )
                .values(
                    window_earliest=window.earliest,
                    window_latest=window.latest,
                    window_basis=window.basis,
                    window_shown_at=now,
                )
            )

    async def accuracy(self) -> list[LaneAccuracy]:
        """Per lane, the delivered shipments that were shown a window and those delivered inside
        it (the delivery date as Japan Post printed it, first delivery scan)."""
        query = (
            select(
                SHIPMENTS.c.id,
                SHIPMENTS.c.number,
                SHIPMENTS.c.item_type,
                SHIPMENTS.c.origin,
                SHIPMENTS.c.destination,
                SHIPMENTS.c.window_earliest,
                SHIPMENTS.c.window_latest,
                EVENTS.c.local_time,
            )
            .join(EVENTS, EVENTS.c.shipment_id == SHIPMENTS.c.id)
            .where(SHIPMENTS.c.window_earliest.is_not(None), EVENTS.c.stage == "delivered")
            .order_by(SHIPMENTS.c.id, EVENTS.c.seq, EVENTS.c.id)
        )
        async with self._db.read_engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        counts: dict[Lane, list[int]] = {}
        seen: set[int] = set()
        for sid, number, item_type, origin, destination, earliest, latest, local_time in rows:
            if sid in seen:
                continue
            seen.add(sid)
            lane = lane_of(number=number, item_type=item_type, origin=origin, destination=destination)
            day = EventTime.from_iso(local_time).date
            tally = counts.setdefault(lane, [0, 0])
            tally[0] += 1
            tally[1] += int(_as_date(earliest) <= day <= _as_date(latest))
        return [LaneAccuracy(lane=lane, delivered=d, inside=i) for lane, (d, i) in sorted(counts.items())]


def _as_date(value: dt.date | str) -> dt.date:
    # SQLite hands back what was stored when read through a Core select on some drivers.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
