"""Shipments: watching, reading views and histories, page wordings and contact offices."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.core.eta import Journey, Scan, lane_of
from notifier.core.model import ContactOffice, EventTime, TrackingEvent
from notifier.core.numbers import TrackingNumber
from notifier.core.stages import Stage
from notifier.core.views import (
    WATCHED_BY_CLI,
    ShipmentView,
)
from notifier.store.database import IN_CHUNK, Database
from notifier.store.orm import (
    Alert,
    ContactOfficeRow,
    PageWordingRow,
    Shipment,
    Subscription,
)
from notifier.store.rows import (
    EVENT_COLUMNS,
    EVENTS,
    SHIPMENTS,
    STAGES,
    VIEW_COLUMNS,
    event_of,
    view_of_columns,
    view_of_orm,
)
from notifier.store.watchlist import WATCH_SYNC_LOCK

_HISTORY = (
    select(*EVENT_COLUMNS)
    .where(EVENTS.c.shipment_id == bindparam("shipment_id"))
    .order_by(EVENTS.c.seq, EVENTS.c.id)
)
_HISTORIES = (
    select(EVENTS.c.shipment_id, *EVENT_COLUMNS)
    .where(EVENTS.c.shipment_id.in_(bindparam("shipment_ids", expanding=True)))
    .order_by(EVENTS.c.shipment_id, EVENTS.c.seq, EVENTS.c.id)
)

_JOURNEYS = (
    select(
        SHIPMENTS.c.id,
        SHIPMENTS.c.number,
        SHIPMENTS.c.item_type,
        SHIPMENTS.c.origin,
        SHIPMENTS.c.destination,
        EVENTS.c.local_time,
        EVENTS.c.stage,
    )
    .join(EVENTS, EVENTS.c.shipment_id == SHIPMENTS.c.id)
    # A scan of a wording we cannot map says nothing of the stage: the model never sees it.
    .where(SHIPMENTS.c.created_at >= bindparam("since"), EVENTS.c.stage != str(Stage.UNKNOWN))
    .order_by(SHIPMENTS.c.id, EVENTS.c.seq, EVENTS.c.id)
)


class Shipments:
    """The shipments aggregate: watch and unwatch, views, histories, wordings, contacts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def watch(
        self,
        number: TrackingNumber,
        *,
        now: dt.datetime,
        label: str = "",
        destination: str | None = None,
        tags: frozenset[str] | None = None,
        first_poll_at: dt.datetime | None = None,
    ) -> ShipmentView:
        """Start (or keep) watching the newest shipment under this number."""
        (view,) = await self.watch_many(
            [number], now=now, label=label, destination=destination, tags=tags, first_poll_at=first_poll_at
        )
        return view

    async def watch_many(
        self,
        numbers: Sequence[TrackingNumber],
        *,
        now: dt.datetime,
        label: str = "",
        destination: str | None = None,
        tags: frozenset[str] | None = None,
        first_poll_at: dt.datetime | None = None,
    ) -> list[ShipmentView]:
        """`watch` for each number, in one transaction and a few statements; one view per
        distinct number, in the order given."""
        wanted = list(dict.fromkeys(n.value for n in numbers))
        by_value = {n.value: n for n in numbers}
        async with self._db.write() as session:
            if self._db.dialect == "postgresql":
                # Serialized with watchlist syncs: both decide from the newest incarnation.
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WATCH_SYNC_LOCK})
            latest: dict[str, Shipment] = {}
            for start in range(0, len(wanted), IN_CHUNK):
                rows = await session.execute(
                    select(Shipment).where(Shipment.number.in_(wanted[start : start + IN_CHUNK]))
                )
                for found in rows.scalars():
                    if found.number not in latest or latest[found.number].incarnation < found.incarnation:
                        latest[found.number] = found
            watched = []
            for value in wanted:
                newest = latest.get(value)
                row = newest if newest is not None and newest.retired_at is None else None
                if row is None:
                    row = Shipment(
                        number=value,
                        incarnation=newest.incarnation + 1 if newest is not None else 1,
                        label=label,
                        origin=by_value[value].country,
                        destination=destination,
                        tags=" ".join(sorted(tags or ())),
                        created_at=now,
                        next_poll_at=first_poll_at or now,
                    )
                    session.add(row)
                else:
                    row.label = label or row.label
                    row.destination = destination or row.destination
                    if tags is not None:
                        row.tags = " ".join(sorted(tags))
                    if not row.active:
                        row.active = True
                        row.next_poll_at = first_poll_at or now
                        # Watched again from the CLI: a reload must not unwatch it again.
                        row.watched_by = WATCHED_BY_CLI
                watched.append(row)
            await session.flush()
            return [view_of_orm(row) for row in watched]

    async def unwatch(self, number: str) -> bool:
        """Stop polling; the history stays."""
        async with self._db.write() as session:
            row = await self._latest(session, number)
            if row is None:
                return False
            row.active = False
            row.leased_by = None
            row.lease_until = None
            return True

    async def _latest(self, session: AsyncSession, number: str) -> Shipment | None:
        result = await session.execute(
            select(Shipment).where(Shipment.number == number).order_by(Shipment.incarnation.desc()).limit(1)
        )
        return result.scalar_one_or_none()

    async def get(self, number: str) -> ShipmentView | None:
        async with self._db.reads() as session:
            row = await self._latest(session, number)
            return (
                None if row is None else view_of_orm(row, await self._open_alert_count(session, row.number))
            )

    async def _open_alert_count(self, session: AsyncSession, subject: str) -> int:
        result = await session.execute(
            select(func.count()).where(Alert.subject == subject, Alert.acknowledged_at.is_(None))
        )
        return int(result.scalar_one())

    async def shipments(self, *, include_inactive: bool = False) -> list[ShipmentView]:
        async with self._db.reads() as session:
            # Plain rows, no ORM objects: the daemon's housekeeping reads every shipment.
            query = select(*VIEW_COLUMNS).order_by(SHIPMENTS.c.number, SHIPMENTS.c.incarnation)
            if not include_inactive:
                query = query.where(SHIPMENTS.c.active.is_(True))
            rows = (await session.execute(query)).all()
            open_alerts = await session.execute(
                select(Alert.subject, func.count())
                .where(Alert.acknowledged_at.is_(None))
                .group_by(Alert.subject)
            )
            # Not dict(result): a Result has .keys(), so dict() would treat it as a mapping.
            counts = {subject: int(count) for subject, count in open_alerts}
            return [view_of_columns(row, counts.get(row.number, 0)) for row in rows]

    async def history(self, shipment_id: int) -> tuple[TrackingEvent, ...]:
        params = {"shipment_id": shipment_id}
        if self._db.worker is not None:
            rows = await self._db.on_worker(lambda c: c.execute(_HISTORY, params).all(), write=False)
        else:
            async with self._db.read_engine.connect() as connection:
                rows = (await connection.execute(_HISTORY, params)).all()
        return tuple(event_of(*row) for row in rows)

    async def histories(self, shipment_ids: Sequence[int]) -> dict[int, tuple[TrackingEvent, ...]]:
        """Several shipments' histories in one query (a list page covers ten at a time)."""
        if not shipment_ids:
            return {}
        found: dict[int, list[TrackingEvent]] = {sid: [] for sid in shipment_ids}
        params = {"shipment_ids": list(shipment_ids)}
        if self._db.worker is not None:
            rows = await self._db.on_worker(lambda c: c.execute(_HISTORIES, params).all(), write=False)
        else:
            async with self._db.read_engine.connect() as connection:
                rows = (await connection.execute(_HISTORIES, params)).all()
        for shipment_id, *event in rows:
            found[shipment_id].append(event_of(*event))
        return {sid: tuple(events) for sid, events in found.items()}

    async def journeys(self, *, since: dt.datetime | None = None) -> list[Journey]:
        """Every shipment first watched at or after `since` (aware; imported ones count from
        their first scan) as the time model sees it: its lane and its stage-bearing scans in the
        order Japan Post printed them. Shipments without such a scan are left out."""
        params = {"since": since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}
        async with self._db.read_engine.connect() as connection:
            rows = (await connection.execute(_JOURNEYS, params)).all()
        journeys: list[Journey] = []
        current: int | None = None
        scans: list[Scan] = []
        for shipment_id, number, item_type, origin, destination, local_time, stage in rows:
            if shipment_id != current:
                if current is not None:
                    journeys[-1] = dataclasses.replace(journeys[-1], scans=tuple(scans))
                current, scans = shipment_id, []
                lane = lane_of(number=number, item_type=item_type, origin=origin, destination=destination)
                journeys.append(Journey(number=number, lane=lane, scans=()))
            when = EventTime.from_iso(local_time)
            scans.append(
                Scan(
                    at=dt.datetime.combine(when.date, when.time or dt.time(0)),
                    stage=STAGES.get(stage, Stage.UNKNOWN),
                )
            )
        if current is not None:
            journeys[-1] = dataclasses.replace(journeys[-1], scans=tuple(scans))
        return journeys

    async def subscribed_shipment_ids(self) -> set[int]:
        async with self._db.reads() as session:
            rows = await session.execute(
                select(Subscription.shipment_id).where(Subscription.active.is_(True)).distinct()
            )
            return {int(sid) for (sid,) in rows}

    async def save_wordings(self, shipment_id: int, bodies: Mapping[str, str], *, now: dt.datetime) -> None:
        """Keep the latest page read in each of these languages (locale -> localize.wording_json)."""
        if not bodies:
            return
        async with self._db.write() as session:
            for locale, body in bodies.items():
                insert = self._db.insert(PageWordingRow).values(
                    shipment_id=shipment_id, locale=locale, fetched_at=now, body=body
                )
                await session.execute(
                    insert.on_conflict_do_update(
                        index_elements=["shipment_id", "locale"],
                        set_={"fetched_at": insert.excluded.fetched_at, "body": insert.excluded.body},
                    )
                )

    async def wording(self, shipment_id: int, locale: str) -> str | None:
        """The stored page of `locale` for the shipment (localize.wording_json), if one was read."""
        async with self._db.reads() as session:
            found: str | None = await session.scalar(
                select(PageWordingRow.body).where(
                    PageWordingRow.shipment_id == shipment_id, PageWordingRow.locale == locale
                )
            )
            return found

    async def contacts(self, shipment_id: int) -> tuple[ContactOffice, ...]:
        async with self._db.reads() as session:
            rows = (
                await session.execute(
                    select(ContactOfficeRow)
                    .where(ContactOfficeRow.shipment_id == shipment_id)
                    .order_by(ContactOfficeRow.id)
                )
            ).scalars()
            return tuple(ContactOffice(role=r.role, office=r.office, phone=r.phone) for r in rows)
