"""Polls: claiming due shipments, recording polls and failures, leases, snapshots, due times."""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from collections.abc import Callable, Sequence

from sqlalchemy import Table, Update, bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.core.diff import AnomalyKind, Change
from notifier.core.model import ContactOffice, ItemResult, TrackingEvent
from notifier.core.stages import Stage
from notifier.core.views import (
    OutboxDraft,
    OutboxState,
    PageCapture,
    ScheduledRow,
    ShipmentView,
)
from notifier.errors import LeaseLostError, NotifierError
from notifier.store.alerts import Alerts
from notifier.store.database import IN_CHUNK, Database
from notifier.store.orm import (
    Alert,
    ContactOfficeRow,
    Event,
    OutboxMessage,
    Shipment,
    Snapshot,
    UTCDateTime,
)
from notifier.store.outbox import Outbox
from notifier.store.rows import (
    SHIPMENTS,
    VIEW_COLUMNS,
    event_row,
    view_of_columns,
)

_CLAIM_DUE = (
    update(SHIPMENTS)
    .where(
        SHIPMENTS.c.id.in_(
            select(SHIPMENTS.c.id)
            .where(
                SHIPMENTS.c.active.is_(True),
                SHIPMENTS.c.next_poll_at <= bindparam("due_by"),
                (SHIPMENTS.c.lease_until.is_(None)) | (SHIPMENTS.c.lease_until < bindparam("now")),
            )
            .order_by(SHIPMENTS.c.next_poll_at, SHIPMENTS.c.id)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(leased_by=bindparam("owner"), lease_until=bindparam("lease_until"))
    .returning(*VIEW_COLUMNS)
)


def _unchanged_statement(size: int) -> Update:
    """One UPDATE for `size` unchanged polls of one owner: each row gets its own next poll
    time (a CASE on the id), the rest of the polling state is the same for all."""
    return (
        update(SHIPMENTS)
        .where(
            SHIPMENTS.c.id.in_([bindparam(f"id_{k}") for k in range(size)]),
            SHIPMENTS.c.leased_by == bindparam("owner"),
        )
        .values(
            last_polled_at=bindparam("now"),
            next_poll_at=case(
                *(
                    (SHIPMENTS.c.id == bindparam(f"id_{k}"), bindparam(f"due_{k}", type_=UTCDateTime()))
                    for k in range(size)
                ),
                else_=SHIPMENTS.c.next_poll_at,
            ),
            consecutive_failures=0,
            last_error=None,
            leased_by=None,
            lease_until=None,
        )
    )


# Statements for the batch sizes a cycle uses (a list page holds up to ten numbers); others
# are built when asked for and kept too.
_UNCHANGED: dict[int, Update] = {size: _unchanged_statement(size) for size in range(1, 11)}


class Polls:
    """The polling aggregate. record_poll is one transaction: events, alerts and drafts commit together."""

    def __init__(self, db: Database, alerts: Alerts, outbox: Outbox) -> None:
        self._db = db
        self._alerts = alerts
        self._outbox = outbox

    async def record_unchanged(
        self, polls: Sequence[tuple[int, dt.datetime | None]], *, now: dt.datetime, owner: str
    ) -> int:
        """Polls that found nothing new, in one transaction of one statement: only the polling
        state moves. Returns how many were still ours (a lost lease leaves that row alone)."""
        if not polls:
            return 0
        statement = _UNCHANGED.get(len(polls))
        if statement is None:
            statement = _UNCHANGED.setdefault(len(polls), _unchanged_statement(len(polls)))
        params: dict[str, object] = {"owner": owner, "now": now}
        for k, (shipment_id, next_poll_at) in enumerate(polls):
            params[f"id_{k}"] = shipment_id
            params[f"due_{k}"] = next_poll_at
        if self._db.worker is not None:
            chosen = statement
            return await self._db.on_worker(lambda c: int(c.execute(chosen, params).rowcount), write=True)
        async with self._db.write_connection() as connection:
            result = await connection.execute(statement, params)
            return int(result.rowcount)

    async def release_all_leases(self) -> tuple[int, int]:
        """Hand back every lease: for a sole instance (SQLite's lock guarantees one) starting up,
        any lease is a dead predecessor's, and waiting for it to expire would only delay news.
        Messages it was sending go back to pending and are resent with the same Message-ID."""
        async with self._db.write() as session:
            shipments = await session.execute(
                update(Shipment)
                .where(Shipment.leased_by.is_not(None))
                .values(leased_by=None, lease_until=None)
            )
            messages = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.state == str(OutboxState.SENDING))
                .values(state=str(OutboxState.PENDING), leased_by=None, lease_until=None)
            )
            return int(shipments.rowcount), int(messages.rowcount)  # type: ignore[attr-defined]

    async def claim_due(
        self,
        *,
        owner: str,
        now: dt.datetime,
        limit: int,
        lease: dt.timedelta,
        due_by: dt.datetime | None = None,
    ) -> list[ShipmentView]:
        """Lease up to `limit` shipments due by `due_by` (default `now`) to `owner`.

        On PostgreSQL, SKIP LOCKED lets several instances claim disjoint rows at once; the
        lease brings a crashed owner's rows back once it expires. On SQLite the writer lock
        (BEGIN IMMEDIATE) gives the same exclusion.
        """
        params = {
            "now": now,
            "due_by": due_by or now,
            "limit": limit,
            "owner": owner,
            "lease_until": now + lease,
        }
        if self._db.worker is not None:
            rows = await self._db.on_worker(lambda c: c.execute(_CLAIM_DUE, params).all(), write=True)
        else:
            async with self._db.write_connection() as connection:
                rows = (await connection.execute(_CLAIM_DUE, params)).all()
        return sorted((view_of_columns(row) for row in rows), key=lambda v: (v.next_poll_at or now, v.id))

    async def release(self, shipment_id: int, *, owner: str, next_poll_at: dt.datetime) -> bool:
        """Give a claimed shipment back unpolled (circuit open, shutting down)."""
        async with self._db.write() as session:
            result = await session.execute(
                update(Shipment)
                .where(Shipment.id == shipment_id, Shipment.leased_by == owner)
                .values(leased_by=None, lease_until=None, next_poll_at=next_poll_at)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _fenced(self, session: AsyncSession, shipment_id: int, owner: str | None) -> Shipment:
        query = select(Shipment).where(Shipment.id == shipment_id).with_for_update()
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotifierError(f"shipment {shipment_id} does not exist")
        if owner is not None and row.leased_by != owner:
            raise LeaseLostError(f"shipment {row.number} is leased by {row.leased_by!r}, not {owner!r}")
        return row

    async def record_poll(
        self,
        shipment_id: int,
        *,
        change: Change,
        item: ItemResult | None,
        now: dt.datetime,
        next_poll_at: dt.datetime | None,
        capture: PageCapture | None = None,
        owner: str | None = None,
        outbox: Sequence[OutboxDraft] = (),
        held: bool = False,
        closes: Sequence[str] = (),
    ) -> None:
        """Commit one poll atomically: new events, stage, polling state, snapshot, alerts and
        the notifications they cause (so an event is never stored without its messages).

        `outbox` is what the rules decided for `change.transitions`; `held` queues it as
        `held` (the kill switch is on) instead of `pending`, to be sent when it lifts.
        `closes` are alert kinds about this shipment that a new event settles (a stall): their
        open alert is closed when the poll brought one.
        Nothing is deleted: events the page no longer shows are marked `missing_since`.
        """
        async with self._db.write() as session:
            row = await self._fenced(session, shipment_id, owner)
            await self._merge_events(session, row.id, change.history, item, now)
            if item is not None and item.item_type:
                row.item_type = item.item_type
            if item is not None and item.offices:
                await self._store_contacts(session, row.id, item.offices, now)
            if change.current_stage is not Stage(row.stage):
                row.stage = str(change.current_stage)
                entered = change.transitions[-1].event.when.aware() if change.transitions else None
                row.stage_entered_at = entered or now
            if change.history:
                row.last_event_time = change.history[-1].when.iso_local()
            if change.changed:
                row.last_changed_at = now
            row.last_polled_at = now
            row.next_poll_at = next_poll_at
            unreadable = [a for a in change.anomalies if a.kind is AnomalyKind.UNRECOGNIZED_PAGE]
            if unreadable:
                # A page we could not read is a failed poll: history untouched, failure counted.
                row.consecutive_failures += 1
                row.last_error = unreadable[0].message[:2000]
            else:
                row.consecutive_failures = 0
                row.last_error = None
            row.leased_by = None
            row.lease_until = None
            for anomaly in change.anomalies:
                await self._alerts.raise_in(
                    session, str(anomaly.kind), anomaly.message, now, row.number, row.id
                )
                if anomaly.kind is AnomalyKind.NUMBER_REUSED:
                    # The watch was for the old parcel: stop, and never mail its subscribers
                    # about someone else's. Watching the number again starts a new incarnation.
                    row.active = False
                    row.retired_at = now
                    row.next_poll_at = None
            if capture is not None and (change.changed or change.anomalies):
                reason = "unrecognized" if unreadable else "changed" if change.changed else "anomaly"
                self._snapshot(session, row, capture, reason, now)
            if closes and change.new_events:
                await session.execute(
                    update(Alert)
                    .where(
                        Alert.kind.in_(list(closes)),
                        Alert.subject == row.number,
                        Alert.acknowledged_at.is_(None),
                    )
                    .values(acknowledged_at=now)
                )
            await self._outbox.insert_drafts(session, outbox, now, held=held)

    async def _merge_events(
        self,
        session: AsyncSession,
        shipment_id: int,
        history: Sequence[TrackingEvent],
        item: ItemResult | None,
        now: dt.datetime,
    ) -> None:
        existing = {
            row.key: row
            for row in (
                await session.execute(select(Event).where(Event.shipment_id == shipment_id))
            ).scalars()
        }
        on_page = {event.key for event in item.events} if item is not None else None
        fresh = []
        for seq, event in enumerate(history):
            row = existing.get(event.key)
            if row is None:
                fresh.append(event_row(shipment_id, seq, event, now))
                continue
            row.seq = seq
            if on_page is not None and event.key not in on_page:
                row.missing_since = row.missing_since or now
            elif on_page is not None:
                row.missing_since = None
        if fresh:
            # The unique (shipment_id, key) makes a replayed poll a no-op instead of a duplicate.
            statement = (
                self._db.insert(Event)
                .values(fresh)
                .on_conflict_do_nothing(index_elements=["shipment_id", "key"])
            )
            await session.execute(statement)

    async def _store_contacts(
        self, session: AsyncSession, shipment_id: int, offices: Sequence[ContactOffice], now: dt.datetime
    ) -> None:
        for office in offices:
            statement = (
                self._db.insert(ContactOfficeRow)
                .values(
                    shipment_id=shipment_id,
                    role=office.role,
                    office=office.office,
                    phone=office.phone,
                    seen_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["shipment_id", "role"],
                    set_={"office": office.office, "phone": office.phone, "seen_at": now},
                )
            )
            await session.execute(statement)

    def _snapshot(
        self, session: AsyncSession, row: Shipment, capture: PageCapture, reason: str, now: dt.datetime
    ) -> None:
        session.add(
            Snapshot(
                shipment_id=row.id,
                number=row.number,
                reason=reason,
                layout=capture.layout,
                note=capture.note,
                url=capture.url,
                sha256=hashlib.sha256(capture.body).hexdigest(),
                # Pages compress about 5:1 and would otherwise be most of the database.
                body=zlib.compress(capture.body, 6),
                fetched_at=now,
            )
        )

    async def record_failure(
        self,
        shipment_id: int,
        *,
        error: str,
        now: dt.datetime,
        next_poll_at: dt.datetime | None,
        owner: str | None = None,
        capture: PageCapture | None = None,
    ) -> int:
        """A poll that produced nothing usable: history untouched, failure counted. Returns the count."""
        async with self._db.write() as session:
            row = await self._fenced(session, shipment_id, owner)
            row.consecutive_failures += 1
            row.last_error = error[:2000]
            row.last_polled_at = now
            row.next_poll_at = next_poll_at
            row.leased_by = None
            row.lease_until = None
            if capture is not None:
                self._snapshot(session, row, capture, "failed", now)
            return row.consecutive_failures

    async def prune_snapshots(
        self, *, now: dt.datetime, max_age: dt.timedelta, keep_per_shipment: int
    ) -> int:
        """Bounded retention: drop snapshots older than `max_age`, and all but the newest
        `keep_per_shipment` of each shipment's."""
        async with self._db.write() as session:
            aged = await session.execute(delete(Snapshot).where(Snapshot.fetched_at < now - max_age))
            ranked = (
                select(
                    Snapshot.id,
                    func.row_number()
                    .over(
                        partition_by=Snapshot.number,
                        order_by=(Snapshot.fetched_at.desc(), Snapshot.id.desc()),
                    )
                    .label("position"),
                )
            ).subquery()
            surplus = select(ranked.c.id).where(ranked.c.position > keep_per_shipment)
            extra = await session.execute(delete(Snapshot).where(Snapshot.id.in_(surplus)))
            return int(aged.rowcount) + int(extra.rowcount)  # type: ignore[attr-defined]

    async def snapshots(self, number: str) -> list[tuple[str, str, bytes]]:
        """(reason, layout, body) of a number's kept snapshots, newest first."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(Snapshot.reason, Snapshot.layout, Snapshot.body)
                .where(Snapshot.number == number)
                .order_by(Snapshot.fetched_at.desc(), Snapshot.id.desc())
            )
            return [(r, layout, zlib.decompress(body)) for r, layout, body in rows]

    async def scheduled(self, *, now: dt.datetime) -> list[ScheduledRow]:
        """Active shipments waiting for a future poll (not leased): what a policy change moves."""
        async with self._db.reads() as session:
            rows = await session.execute(
                select(
                    Shipment.id,
                    Shipment.stage,
                    Shipment.next_poll_at,
                    Shipment.last_polled_at,
                    Shipment.created_at,
                    Shipment.last_changed_at,
                    Shipment.stage_entered_at,
                    Shipment.consecutive_failures,
                ).where(
                    Shipment.active.is_(True),
                    Shipment.next_poll_at > now,
                    Shipment.last_polled_at.is_not(None),
                    (Shipment.lease_until.is_(None)) | (Shipment.lease_until < now),
                )
            )
            return [
                ScheduledRow(
                    id=sid,
                    stage=Stage(stage) if stage in Stage.__members__.values() else Stage.UNKNOWN,
                    next_poll_at=due or now,
                    last_polled_at=polled or now,
                    created_at=created,
                    last_changed_at=changed,
                    stage_entered_at=entered,
                    consecutive_failures=failures,
                )
                for sid, stage, due, polled, created, changed, entered, failures in rows
            ]

    async def move_due_times(self, moves: Sequence[tuple[int, dt.datetime]], *, now: dt.datetime) -> None:
        """Set these shipments' next poll times, leaving alone any leased meanwhile."""
        if not moves:
            return
        table = Shipment.__table__
        assert isinstance(table, Table)
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("row_id"),
                (table.c.lease_until.is_(None)) | (table.c.lease_until < now),
            )
            .values(next_poll_at=bindparam("due"))
        )
        async with self._db.write() as session:
            await session.execute(statement, [{"row_id": sid, "due": due} for sid, due in moves])

    async def mark_due(self, numbers: Sequence[str] | None, *, now: dt.datetime) -> list[str]:
        """Make these watched numbers (every watched one when None) due now: a running daemon
        claims them at its next tick. Returns the numbers marked."""
        statement = update(Shipment).where(Shipment.active.is_(True))
        if numbers is not None:
            statement = statement.where(Shipment.number.in_(list(numbers)))
        async with self._db.write() as session:
            result = await session.execute(
                statement.values(next_poll_at=now).returning(Shipment.number),
                execution_options={"synchronize_session": False},
            )
            return sorted(str(number) for (number,) in result)

    async def take_lease(
        self,
        shipment_id: int,
        *,
        owner: str,
        now: dt.datetime,
        lease: dt.timedelta,
        stale_owner: str | None = None,
    ) -> str | None:
        """Lease one shipment for a poll outside the daemon's cycle. Returns None when taken,
        else who holds it (a running daemon polling it right now). A lease held by
        `stale_owner` (a holder known to be dead) is taken over."""
        free = (Shipment.lease_until.is_(None)) | (Shipment.lease_until < now)
        if stale_owner is not None:
            free = free | (Shipment.leased_by == stale_owner)
        async with self._db.write() as session:
            result = await session.execute(
                update(Shipment)
                .where(Shipment.id == shipment_id, free)
                .values(leased_by=owner, lease_until=now + lease),
                execution_options={"synchronize_session": False},
            )
            if result.rowcount:  # type: ignore[attr-defined]
                return None
            holder = await session.execute(select(Shipment.leased_by).where(Shipment.id == shipment_id))
            return str(holder.scalar_one_or_none() or "another process")

    async def take_leases(
        self,
        shipment_ids: Sequence[int],
        *,
        owner: str,
        now: dt.datetime,
        lease: dt.timedelta,
        stale: Callable[[str], bool] = lambda _holder: False,
    ) -> dict[int, str | None]:
        """`take_lease` for many shipments in one transaction: per id, None when taken, else
        who holds it. A holder for which `stale(holder)` is true (known dead) is taken over."""
        ids = list(dict.fromkeys(shipment_ids))
        holders: dict[int, str | None] = {}
        async with self._db.write() as session:
            current: list[tuple[int, str | None, dt.datetime | None]] = []
            for start in range(0, len(ids), IN_CHUNK):
                query = (
                    select(Shipment.id, Shipment.leased_by, Shipment.lease_until)
                    .where(Shipment.id.in_(ids[start : start + IN_CHUNK]))
                    .with_for_update()
                )
                current.extend((int(i), by, until) for i, by, until in await session.execute(query))
            free = []
            for shipment_id, holder, until in current:
                if until is None or until < now or (holder is not None and stale(holder)):
                    free.append(shipment_id)
                else:
                    holders[shipment_id] = holder or "another process"
            for start in range(0, len(free), IN_CHUNK):
                await session.execute(
                    update(Shipment)
                    .where(Shipment.id.in_(free[start : start + IN_CHUNK]))
                    .values(leased_by=owner, lease_until=now + lease),
                    execution_options={"synchronize_session": False},
                )
        for shipment_id in ids:
            holders.setdefault(shipment_id, None)
        return holders
