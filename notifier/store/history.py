"""Past shipments in and out: history files exported by chunks and imported as unwatched history."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.core.diff import current_stage
from notifier.core.history import HistoryRecord, record_json
from notifier.core.model import TOKYO, TrackingEvent
from notifier.core.stages import Stage
from notifier.core.views import WATCHED_BY_IMPORT
from notifier.store.database import IN_CHUNK, Database
from notifier.store.orm import Event, WorkLease
from notifier.store.rows import EVENT_COLUMNS, EVENTS, SHIPMENTS, event_of, event_row

# A work_leases row whose acquired_at is the time of the last import that changed something:
# how a running daemon learns that its lane statistics are out of date.
IMPORT_MARK = "history_import"
EXPORT_CHUNK = 500


@dataclasses.dataclass(slots=True)
class ImportCounts:
    """What an import did."""

    added: int = 0  # new shipments
    merged: int = 0  # unwatched shipments already stored that gained events
    unchanged: int = 0  # already stored with every event of the line
    events: int = 0  # events stored
    # Watched numbers: their history comes from Japan Post's page, never from a file.
    watched: list[str] = dataclasses.field(default_factory=list)
    # Numbers Japan Post has reused since (the stored row is retired): not imported.
    retired: list[str] = dataclasses.field(default_factory=list)

    def add(self, other: ImportCounts) -> None:
        self.added += other.added
        self.merged += other.merged
        self.unchanged += other.unchanged
        self.events += other.events
        self.watched.extend(other.watched)
        self.retired.extend(other.retired)


def _moment(event: TrackingEvent) -> dt.datetime:
    """Naive wall-clock time of an event (a date alone counts as its midnight), to order by."""
    return dt.datetime.combine(event.when.date, event.when.time or dt.time(0))


def _created_at(events: Sequence[TrackingEvent]) -> dt.datetime:
    """When an imported shipment was first seen: its first scan, read in Japan's time when the
    scan's own zone is unknown (an export's first scan is its acceptance in Japan)."""
    first = events[0].when
    return dt.datetime.combine(first.date, first.time or dt.time(0), tzinfo=ZoneInfo(first.zone or TOKYO))


def _summary(events: Sequence[TrackingEvent]) -> dict[str, object]:
    """The shipment columns the poller keeps from its history: stage, since when, last event."""
    stage = current_stage(events)
    entered = None
    for event in reversed(events):
        if event.stage is stage:
            entered = event.when.aware()
        elif event.stage is not Stage.UNKNOWN:
            break
    return {"stage": str(stage), "stage_entered_at": entered, "last_event_time": events[-1].when.iso_local()}


def _merge(records: Sequence[HistoryRecord]) -> list[HistoryRecord]:
    """One record per number: a number on several lines is one shipment's events together."""
    merged: dict[str, HistoryRecord] = {}
    for record in records:
        known = merged.get(record.number.value)
        if known is None:
            merged[record.number.value] = record
            continue
        keys = {event.key for event in known.events}
        merged[record.number.value] = dataclasses.replace(
            known,
            item_type=known.item_type or record.item_type,
            destination=known.destination or record.destination,
            events=known.events + tuple(e for e in record.events if e.key not in keys),
        )
    return list(merged.values())


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[start : start + IN_CHUNK] for start in range(0, len(ids), IN_CHUNK)]


class History:
    """History files: export every stored shipment's events, import past shipments."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def export(self, *, since: dt.datetime | None = None) -> AsyncIterator[str]:
        """One history-file line per stored shipment with events, first watched at or after
        `since` (aware), oldest first; read in chunks, so a big database is never held at once."""
        after = 0
        while True:
            query = (
                select(SHIPMENTS.c.id, SHIPMENTS.c.number, SHIPMENTS.c.item_type, SHIPMENTS.c.destination)
                .where(SHIPMENTS.c.id > after)
                .order_by(SHIPMENTS.c.id)
                .limit(EXPORT_CHUNK)
            )
            if since is not None:
                query = query.where(SHIPMENTS.c.created_at >= since)
            async with self._db.read_engine.connect() as connection:
                shipments = (await connection.execute(query)).all()
                if not shipments:
                    return
                ids = [row.id for row in shipments]
                rows = (
                    await connection.execute(
                        select(EVENTS.c.shipment_id, *EVENT_COLUMNS)
                        .where(EVENTS.c.shipment_id.in_(ids))
                        .order_by(EVENTS.c.shipment_id, EVENTS.c.seq, EVENTS.c.id)
                    )
                ).all()
            events: dict[int, list[TrackingEvent]] = {}
            for shipment_id, *event in rows:
                events.setdefault(shipment_id, []).append(event_of(*event))
            for row in shipments:
                if events.get(row.id):
                    yield record_json(
                        number=row.number,
                        item_type=row.item_type,
                        destination=row.destination,
                        events=events[row.id],
                    )
            after = ids[-1]

    async def import_records(self, records: Sequence[HistoryRecord], *, now: dt.datetime) -> ImportCounts:
        """Store one batch of checked records in one transaction. New numbers become unwatched
        shipments (watched_by "import": never polled, no subscriptions, no messages); unwatched
        ones already stored gain the events they lack; watched ones are left to the poller."""
        counts = ImportCounts()
        records = _merge(records)
        async with self._db.write() as session:
            latest = await self._latest(session, [r.number.value for r in records])
            fresh: list[HistoryRecord] = []
            targets: dict[int, HistoryRecord] = {}
            for record in records:
                row = latest.get(record.number.value)
                if row is None:
                    fresh.append(record)
                elif row.retired_at is not None:
                    counts.retired.append(record.number.value)
                elif row.active:
                    counts.watched.append(record.number.value)
                else:
                    targets[row.id] = record
            if fresh:
                connection = await session.connection()
                await connection.execute(
                    self._insert(SHIPMENTS).on_conflict_do_nothing(index_elements=["number", "incarnation"]),
                    [
                        {
                            "number": r.number.value,
                            "incarnation": 1,
                            "label": "",
                            "item_type": r.item_type,
                            "origin": r.number.country,
                            "destination": r.destination,
                            "tags": "",
                            **_summary(r.events),
                            "active": False,
                            "created_at": _created_at(r.events),
                            "next_poll_at": None,
                            "watched_by": WATCHED_BY_IMPORT,
                        }
                        for r in fresh
                    ],
                )
                ids = await self._latest(session, [r.number.value for r in fresh])
                rows: list[dict[str, object]] = []
                for record in fresh:
                    shipment_id = ids[record.number.value].id
                    rows.extend(event_row(shipment_id, seq, e, now) for seq, e in enumerate(record.events))
                await self._insert_events(session, rows)
                counts.added += len(fresh)
                counts.events += len(rows)
            if targets:
                await self._merge_into(session, targets, latest, now, counts)
            if counts.added or counts.merged:
                await self._mark(session, now)
        return counts

    async def _merge_into(
        self,
        session: AsyncSession,
        targets: dict[int, HistoryRecord],
        latest: dict[str, _Latest],
        now: dt.datetime,
        counts: ImportCounts,
    ) -> None:
        # Keys first: a file imported again finds every event stored, and reads no more.
        keys: dict[int, set[str]] = {sid: set() for sid in targets}
        for chunk in _chunks(list(targets)):
            result = await session.execute(
                select(EVENTS.c.shipment_id, EVENTS.c.key).where(EVENTS.c.shipment_id.in_(chunk))
            )
            for shipment_id, key in result:
                keys[shipment_id].add(key)
        extras = {sid: [e for e in r.events if e.key not in keys[sid]] for sid, r in targets.items()}
        counts.unchanged += sum(1 for extra in extras.values() if not extra)
        growing = [sid for sid, extra in extras.items() if extra]
        stored: dict[int, list[tuple[int, TrackingEvent]]] = {sid: [] for sid in growing}
        for chunk in _chunks(growing):
            rows = await session.execute(
                select(EVENTS.c.shipment_id, EVENTS.c.id, *EVENT_COLUMNS)
                .where(EVENTS.c.shipment_id.in_(chunk))
                .order_by(EVENTS.c.shipment_id, EVENTS.c.seq, EVENTS.c.id)
            )
            for shipment_id, event_id, *columns in rows:
                stored[shipment_id].append((event_id, event_of(*columns)))
        new_rows: list[dict[str, object]] = []
        for shipment_id in growing:
            record, extra = targets[shipment_id], extras[shipment_id]
            # Stored and imported events in time order (a stable sort keeps each side's order
            # for scans printed with the same minute); every row then takes its new place.
            combined: list[tuple[TrackingEvent, int | None]] = sorted(
                [(event, event_id) for event_id, event in stored[shipment_id]]
                + [(event, None) for event in extra],
                key=lambda pair: _moment(pair[0]),
            )
            seqs: list[dict[str, int]] = []
            for seq, (event, event_id) in enumerate(combined):
                if event_id is None:
                    new_rows.append(event_row(shipment_id, seq, event, now))
                else:
                    seqs.append({"id": event_id, "seq": seq})
            if seqs:
                await session.execute(update(Event), seqs)
            row = latest[record.number.value]
            await session.execute(
                update(SHIPMENTS)
                .where(SHIPMENTS.c.id == shipment_id)
                .values(
                    item_type=row.item_type or record.item_type,
                    destination=row.destination or record.destination,
                    **_summary([event for event, _ in combined]),
                )
            )
            counts.merged += 1
            counts.events += len(extra)
        await self._insert_events(session, new_rows)

    async def _insert_events(self, session: AsyncSession, rows: list[dict[str, object]]) -> None:
        if rows:
            # A Core executemany on the session's connection: the ORM's bulk path costs several
            # times more per row, and these rows need none of it.
            connection = await session.connection()
            await connection.execute(
                self._insert(EVENTS).on_conflict_do_nothing(index_elements=["shipment_id", "key"]), rows
            )

    def _insert(self, table: Table) -> sqlite.Insert:
        # Both dialects share on_conflict_* with the same signatures; the type is nominal.
        if self._db.dialect == "postgresql":
            return postgresql.insert(table)  # type: ignore[return-value]
        return sqlite.insert(table)

    async def _latest(self, session: AsyncSession, numbers: Sequence[str]) -> dict[str, _Latest]:
        found: dict[str, _Latest] = {}
        for start in range(0, len(numbers), IN_CHUNK):
            result = await session.execute(
                select(
                    SHIPMENTS.c.id,
                    SHIPMENTS.c.number,
                    SHIPMENTS.c.incarnation,
                    SHIPMENTS.c.active,
                    SHIPMENTS.c.retired_at,
                    SHIPMENTS.c.item_type,
                    SHIPMENTS.c.destination,
                ).where(SHIPMENTS.c.number.in_(numbers[start : start + IN_CHUNK]))
            )
            for row in result:
                latest = _Latest(*row)
                if row.number not in found or found[row.number].incarnation < latest.incarnation:
                    found[row.number] = latest
        return found

    async def _mark(self, session: AsyncSession, now: dt.datetime) -> None:
        insert = self._db.insert(WorkLease).values(
            name=IMPORT_MARK, owner="import", lease_until=now, acquired_at=now
        )
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["name"], set_={"lease_until": now, "acquired_at": now}
            )
        )

    async def imported_at(self) -> dt.datetime | None:
        """When the last import that changed something committed (None: never)."""
        async with self._db.reads() as session:
            found: dt.datetime | None = await session.scalar(
                select(WorkLease.acquired_at).where(WorkLease.name == IMPORT_MARK)
            )
            return found


@dataclasses.dataclass(frozen=True, slots=True)
class _Latest:
    id: int
    number: str
    incarnation: int
    active: bool
    retired_at: dt.datetime | None
    item_type: str | None
    destination: str | None
