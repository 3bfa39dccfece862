"""The persistence façade: shipments, histories, polls, alerts and snapshots; takes and returns value types."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Select, Table, Update, bindparam, case, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from notifier import hints
from notifier.core.diff import AnomalyKind, Change
from notifier.core.limits import OUTBOX_SUBJECT, fit
from notifier.core.model import ContactOffice, EventTime, ItemResult, TrackingEvent
from notifier.core.numbers import TrackingNumber
from notifier.core.rules import OperatorAlert
from notifier.core.stages import Stage
from notifier.core.views import (
    WAITING_STATES,
    WATCHED_BY_CLI,
    WATCHED_BY_CONFIG,
    AlertView,
    ConfiguredWatch,
    OpsCounts,
    OutboxDraft,
    OutboxItem,
    OutboxState,
    PageCapture,
    ScheduledRow,
    ShipmentView,
    WatchSync,
)
from notifier.errors import LeaseLostError, NotifierError
from notifier.store.database import (
    READ_ONLY,
    make_engine,
    make_sqlite_worker_engine,
    require_head,
    sqlite_checkpoint,
)
from notifier.store.orm import (
    Alert,
    ContactOfficeRow,
    Event,
    OutboxMessage,
    PageWordingRow,
    Shipment,
    ShipmentSuppression,
    Snapshot,
    Subscriber,
    Subscription,
    Suppression,
    UTCDateTime,
)

logger = logging.getLogger(__name__)


_Leased = TypeVar("_Leased", Shipment, OutboxMessage)
_T = TypeVar("_T")
# Ids or numbers per IN (...) list: well under SQLite's and PostgreSQL's limits on parameters.
_IN_CHUNK = 500
# session.info key: this unit of work made a message pending (see Store.on_queued).
_QUEUED = "notifier_queued"


def _outbox_item(row: OutboxMessage) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        dedup_key=row.dedup_key,
        recipient=row.recipient,
        sender=row.sender,
        locale=row.locale,
        time_zone=row.time_zone,
        rule=row.rule,
        template=row.template,
        stage=row.stage,
        number=row.number,
        subject=row.subject,
        message_id=row.message_id,
        raw=row.raw,
        state=OutboxState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
        first_attempt_at=row.first_attempt_at,
        shipment_id=row.shipment_id,
        subscription_id=row.subscription_id,
    )


def _view(row: Shipment, open_alerts: int = 0) -> ShipmentView:
    return ShipmentView(
        id=row.id,
        number=row.number,
        incarnation=row.incarnation,
        label=row.label,
        item_type=row.item_type,
        origin=row.origin,
        destination=row.destination,
        tags=frozenset(row.tags.split()),
        stage=Stage(row.stage),
        stage_entered_at=row.stage_entered_at,
        last_event_time=row.last_event_time,
        active=row.active,
        next_poll_at=row.next_poll_at,
        last_polled_at=row.last_polled_at,
        last_changed_at=row.last_changed_at,
        consecutive_failures=row.consecutive_failures,
        last_error=row.last_error,
        created_at=row.created_at,
        open_alerts=open_alerts,
        watched_by=row.watched_by,
    )


_STAGES = {str(stage): stage for stage in Stage}


def _event_of(
    local_time: str,
    zone: str | None,
    status: str,
    stage: str,
    details: str,
    office: str,
    region: str,
    postal_code: str,
) -> TrackingEvent:
    return TrackingEvent(
        when=EventTime.from_iso(local_time, zone),
        status=status,
        stage=_STAGES.get(stage, Stage.UNKNOWN),
        details=details,
        office=office,
        region=region,
        postal_code=postal_code,
    )


# The hot path of a poll cycle (claim, history reads, unchanged polls) runs Core statements
# built once here: SQLAlchemy then finds them in its compiled cache by identity, and no ORM
# objects are made for rows that are only read or bumped.
_SHIPMENTS = cast(Table, Shipment.__table__)
_EVENTS = cast(Table, Event.__table__)
_VIEW_COLUMNS = (
    _SHIPMENTS.c.id,
    _SHIPMENTS.c.number,
    _SHIPMENTS.c.incarnation,
    _SHIPMENTS.c.label,
    _SHIPMENTS.c.item_type,
    _SHIPMENTS.c.origin,
    _SHIPMENTS.c.destination,
    _SHIPMENTS.c.tags,
    _SHIPMENTS.c.stage,
    _SHIPMENTS.c.stage_entered_at,
    _SHIPMENTS.c.last_event_time,
    _SHIPMENTS.c.active,
    _SHIPMENTS.c.next_poll_at,
    _SHIPMENTS.c.last_polled_at,
    _SHIPMENTS.c.last_changed_at,
    _SHIPMENTS.c.consecutive_failures,
    _SHIPMENTS.c.last_error,
    _SHIPMENTS.c.created_at,
    _SHIPMENTS.c.watched_by,
)
_EVENT_COLUMNS = (
    _EVENTS.c.local_time,
    _EVENTS.c.zone,
    _EVENTS.c.status,
    _EVENTS.c.stage,
    _EVENTS.c.details,
    _EVENTS.c.office,
    _EVENTS.c.region,
    _EVENTS.c.postal_code,
)
_HISTORY = (
    select(*_EVENT_COLUMNS)
    .where(_EVENTS.c.shipment_id == bindparam("shipment_id"))
    .order_by(_EVENTS.c.seq, _EVENTS.c.id)
)
_HISTORIES = (
    select(_EVENTS.c.shipment_id, *_EVENT_COLUMNS)
    .where(_EVENTS.c.shipment_id.in_(bindparam("shipment_ids", expanding=True)))
    .order_by(_EVENTS.c.shipment_id, _EVENTS.c.seq, _EVENTS.c.id)
)
_CLAIM_DUE = (
    update(_SHIPMENTS)
    .where(
        _SHIPMENTS.c.id.in_(
            select(_SHIPMENTS.c.id)
            .where(
                _SHIPMENTS.c.active.is_(True),
                _SHIPMENTS.c.next_poll_at <= bindparam("due_by"),
                (_SHIPMENTS.c.lease_until.is_(None)) | (_SHIPMENTS.c.lease_until < bindparam("now")),
            )
            .order_by(_SHIPMENTS.c.next_poll_at, _SHIPMENTS.c.id)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(leased_by=bindparam("owner"), lease_until=bindparam("lease_until"))
    .returning(*_VIEW_COLUMNS)
)


def _unchanged_statement(size: int) -> Update:
    """One UPDATE for `size` unchanged polls of one owner: each row gets its own next poll
    time (a CASE on the id), the rest of the polling state is the same for all."""
    return (
        update(_SHIPMENTS)
        .where(
            _SHIPMENTS.c.id.in_([bindparam(f"id_{k}") for k in range(size)]),
            _SHIPMENTS.c.leased_by == bindparam("owner"),
        )
        .values(
            last_polled_at=bindparam("now"),
            next_poll_at=case(
                *(
                    (_SHIPMENTS.c.id == bindparam(f"id_{k}"), bindparam(f"due_{k}", type_=UTCDateTime()))
                    for k in range(size)
                ),
                else_=_SHIPMENTS.c.next_poll_at,
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


def _view_of(row: Any, open_alerts: int = 0) -> ShipmentView:
    """A ShipmentView from a row of _VIEW_COLUMNS."""
    (
        id_,
        number,
        incarnation,
        label,
        item_type,
        origin,
        destination,
        tags,
        stage,
        stage_entered_at,
        last_event_time,
        active,
        next_poll_at,
        last_polled_at,
        last_changed_at,
        consecutive_failures,
        last_error,
        created_at,
        watched_by,
    ) = row
    return ShipmentView(
        id=id_,
        number=number,
        incarnation=incarnation,
        label=label,
        item_type=item_type,
        origin=origin,
        destination=destination,
        tags=frozenset(str(tags).split()),
        stage=Stage(stage),
        stage_entered_at=stage_entered_at,
        last_event_time=last_event_time,
        active=bool(active),
        next_poll_at=next_poll_at,
        last_polled_at=last_polled_at,
        last_changed_at=last_changed_at,
        consecutive_failures=consecutive_failures,
        last_error=last_error,
        created_at=created_at,
        open_alerts=open_alerts,
        watched_by=watched_by,
    )


def _alert_view(row: Alert) -> AlertView:
    return AlertView(
        id=row.id,
        kind=row.kind,
        subject=row.subject,
        message=row.message,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        count=row.count,
        acknowledged_at=row.acknowledged_at,
    )


# The language a subscription's mail is in: the customer's own choice, else the watchlist's.
_READS_IN = func.coalesce(Subscription.chosen_locale, Subscription.locale)


class Store:
    """Async repository over one database. Every write is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Reads run in deferred transactions: on SQLite they then never take the write lock
        # (see db.READ_ONLY), so a status query does not stall a poll being recorded.
        self._read_engine = engine.execution_options(**{READ_ONLY: True})
        self._reads = async_sessionmaker(self._read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Several connections of this process queueing on its
        # lock can starve one past the busy timeout ("database is locked"); queueing them here
        # first hands the lock over in order. PostgreSQL needs no such thing.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._queued_listeners: list[Callable[[], None]] = []
        # SQLite: the hot path of a cycle (claims, history reads, unchanged polls) runs on a
        # synchronous connection in one worker thread, a batch per hand-off; aiosqlite hands
        # each statement over several times (cursor, execute, fetch, close). Writes there take
        # the same write lock and BEGIN IMMEDIATE, so the transactions are the same.
        self._worker: Engine | None = None
        self._worker_thread: ThreadPoolExecutor | None = None
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._worker = make_sqlite_worker_engine(engine)
            self._worker_reads = self._worker.execution_options(**{READ_ONLY: True})
            self._worker_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-sqlite")

    def on_queued(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each commit that made a message pending (a poll's, an enqueue,
        held mail released, failed mail retried): a sender can start at once instead of at its
        next tick. It is called on the event loop, must not block, and its errors are logged."""
        self._queued_listeners.append(listener)

    def _notify_queued(self) -> None:
        for listener in self._queued_listeners:
            try:
                listener()
            except Exception:
                # The commit stands; only the early wake-up is lost (the sender's tick remains).
                logger.exception("a queued-mail listener failed", extra={"action": "queued_listener_failed"})

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed on success, rolled back on any error. A unit of
        work that made a message pending sets session.info[_QUEUED]; listeners hear of it once
        the commit is done."""
        if self._write_lock is None:
            async with self._sessions.begin() as session:
                yield session
        else:
            async with self._write_lock, self._sessions.begin() as session:
                yield session
        if session.info.get(_QUEUED):
            self._notify_queued()

    @contextlib.asynccontextmanager
    async def _write_connection(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction on a bare connection (no ORM session): for the hot path."""
        if self._write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_lock, self.engine.begin() as connection:
            yield connection

    @classmethod
    async def open(cls, url: str, *, check_schema: bool = True) -> Store:
        engine = make_engine(url)
        if check_schema:
            try:
                await require_head(engine)
            except BaseException:
                await engine.dispose()
                raise
        return cls(engine)

    async def close(self) -> None:
        if self._worker is not None and self._worker_thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._worker_thread, self._worker.dispose)
            self._worker_thread.shutdown(wait=True)
        await self.engine.dispose()

    async def _on_worker(self, work: Callable[[Connection], _T], *, write: bool) -> _T:
        """Run `work` in one transaction on the SQLite worker thread (committed if `write`,
        under the write lock; else a deferred read, rolled back)."""
        assert self._worker_thread is not None
        loop = asyncio.get_running_loop()
        if not write:
            return await loop.run_in_executor(self._worker_thread, self._worker_read, work)
        assert self._write_lock is not None
        async with self._write_lock:
            return await loop.run_in_executor(self._worker_thread, self._worker_write, work)

    def _worker_read(self, work: Callable[[Connection], _T]) -> _T:
        with self._worker_reads.connect() as connection:
            return work(connection)

    def _worker_write(self, work: Callable[[Connection], _T]) -> _T:
        assert self._worker is not None
        with self._worker.begin() as connection:
            return work(connection)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _insert(
        self,
        table: type[Event]
        | type[Alert]
        | type[ContactOfficeRow]
        | type[OutboxMessage]
        | type[Suppression]
        | type[ShipmentSuppression]
        | type[Shipment]
        | type[Subscriber]
        | type[Subscription]
        | type[PageWordingRow],
    ) -> sqlite.Insert:
        # Both dialects share on_conflict_* with the same signatures; the type is nominal.
        if self.dialect == "postgresql":
            return postgresql.insert(table)  # type: ignore[return-value]
        return sqlite.insert(table)

    # --- shipments -----------------------------------------------------------------

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
        async with self._write() as session:
            if self.dialect == "postgresql":
                # Serialized with watchlist syncs: both decide from the newest incarnation.
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WATCH_SYNC_LOCK})
            latest: dict[str, Shipment] = {}
            for start in range(0, len(wanted), _IN_CHUNK):
                rows = await session.execute(
                    select(Shipment).where(Shipment.number.in_(wanted[start : start + _IN_CHUNK]))
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
            return [_view(row) for row in watched]

    async def unwatch(self, number: str) -> bool:
        """Stop polling; the history stays."""
        async with self._write() as session:
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
        async with self._reads() as session:
            row = await self._latest(session, number)
            return None if row is None else _view(row, await self._open_alert_count(session, row.number))

    async def _open_alert_count(self, session: AsyncSession, subject: str) -> int:
        result = await session.execute(
            select(func.count()).where(Alert.subject == subject, Alert.acknowledged_at.is_(None))
        )
        return int(result.scalar_one())

    async def shipments(self, *, include_inactive: bool = False) -> list[ShipmentView]:
        async with self._reads() as session:
            # Plain rows, no ORM objects: the daemon's housekeeping reads every shipment.
            query = select(*_VIEW_COLUMNS).order_by(_SHIPMENTS.c.number, _SHIPMENTS.c.incarnation)
            if not include_inactive:
                query = query.where(_SHIPMENTS.c.active.is_(True))
            rows = (await session.execute(query)).all()
            open_alerts = await session.execute(
                select(Alert.subject, func.count())
                .where(Alert.acknowledged_at.is_(None))
                .group_by(Alert.subject)
            )
            # Not dict(result): a Result has .keys(), so dict() would treat it as a mapping.
            counts = {subject: int(count) for subject, count in open_alerts}
            return [_view_of(row, counts.get(row.number, 0)) for row in rows]

    async def history(self, shipment_id: int) -> tuple[TrackingEvent, ...]:
        params = {"shipment_id": shipment_id}
        if self._worker is not None:
            rows = await self._on_worker(lambda c: c.execute(_HISTORY, params).all(), write=False)
        else:
            async with self._read_engine.connect() as connection:
                rows = (await connection.execute(_HISTORY, params)).all()
        return tuple(_event_of(*row) for row in rows)

    async def histories(self, shipment_ids: Sequence[int]) -> dict[int, tuple[TrackingEvent, ...]]:
        """Several shipments' histories in one query (a list page covers ten at a time)."""
        if not shipment_ids:
            return {}
        found: dict[int, list[TrackingEvent]] = {sid: [] for sid in shipment_ids}
        params = {"shipment_ids": list(shipment_ids)}
        if self._worker is not None:
            rows = await self._on_worker(lambda c: c.execute(_HISTORIES, params).all(), write=False)
        else:
            async with self._read_engine.connect() as connection:
                rows = (await connection.execute(_HISTORIES, params)).all()
        for shipment_id, *event in rows:
            found[shipment_id].append(_event_of(*event))
        return {sid: tuple(events) for sid, events in found.items()}

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
        if self._worker is not None:
            chosen = statement
            return await self._on_worker(lambda c: int(c.execute(chosen, params).rowcount), write=True)
        async with self._write_connection() as connection:
            result = await connection.execute(statement, params)
            return int(result.rowcount)

    async def release_all_leases(self) -> tuple[int, int]:
        """Hand back every lease: for a sole instance (SQLite's lock guarantees one) starting up,
        any lease is a dead predecessor's, and waiting for it to expire would only delay news.
        Messages it was sending go back to pending and are resent with the same Message-ID."""
        async with self._write() as session:
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

    async def count_active(self) -> int:
        async with self._reads() as session:
            result = await session.execute(
                select(func.count()).select_from(Shipment).where(Shipment.active.is_(True))
            )
            return int(result.scalar_one())

    async def subscribed_shipment_ids(self) -> set[int]:
        async with self._reads() as session:
            rows = await session.execute(
                select(Subscription.shipment_id).where(Subscription.active.is_(True)).distinct()
            )
            return {int(sid) for (sid,) in rows}

    async def save_wordings(self, shipment_id: int, bodies: Mapping[str, str], *, now: dt.datetime) -> None:
        """Keep the latest page read in each of these languages (locale -> localize.wording_json)."""
        if not bodies:
            return
        async with self._write() as session:
            for locale, body in bodies.items():
                insert = self._insert(PageWordingRow).values(
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
        async with self._reads() as session:
            found: str | None = await session.scalar(
                select(PageWordingRow.body).where(
                    PageWordingRow.shipment_id == shipment_id, PageWordingRow.locale == locale
                )
            )
            return found

    async def contacts(self, shipment_id: int) -> tuple[ContactOffice, ...]:
        async with self._reads() as session:
            rows = (
                await session.execute(
                    select(ContactOfficeRow)
                    .where(ContactOfficeRow.shipment_id == shipment_id)
                    .order_by(ContactOfficeRow.id)
                )
            ).scalars()
            return tuple(ContactOffice(role=r.role, office=r.office, phone=r.phone) for r in rows)

    # --- polling ---------------------------------------------------------------------

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
        if self._worker is not None:
            rows = await self._on_worker(lambda c: c.execute(_CLAIM_DUE, params).all(), write=True)
        else:
            async with self._write_connection() as connection:
                rows = (await connection.execute(_CLAIM_DUE, params)).all()
        return sorted((_view_of(row) for row in rows), key=lambda v: (v.next_poll_at or now, v.id))

    async def _lease(self, model: type[_Leased], due: Select[int], **values: object) -> list[_Leased]:
        """Update the rows `due` selects (locked, SKIP LOCKED on PostgreSQL) and return them, in
        one statement, so two instances can never both take a row."""
        async with self._write() as session:
            result = await session.execute(
                update(model).where(model.id.in_(due.scalar_subquery())).values(**values).returning(model),
                execution_options={"synchronize_session": False},
            )
            return list(result.scalars())

    async def release(self, shipment_id: int, *, owner: str, next_poll_at: dt.datetime) -> bool:
        """Give a claimed shipment back unpolled (circuit open, shutting down)."""
        async with self._write() as session:
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
        async with self._write() as session:
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
                await self._raise(session, str(anomaly.kind), anomaly.message, now, row.number, row.id)
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
            await self._enqueue(session, outbox, now, held=held)

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
                fresh.append(
                    {
                        "shipment_id": shipment_id,
                        "seq": seq,
                        "key": event.key,
                        "local_time": event.when.iso_local(),
                        "zone": event.when.zone,
                        "occurred_at": event.when.aware(),
                        "status": event.status,
                        "stage": str(event.stage),
                        "details": event.details,
                        "office": event.office,
                        "region": event.region,
                        "postal_code": event.postal_code,
                        "first_seen_at": now,
                    }
                )
                continue
            row.seq = seq
            if on_page is not None and event.key not in on_page:
                row.missing_since = row.missing_since or now
            elif on_page is not None:
                row.missing_since = None
        if fresh:
            # The unique (shipment_id, key) makes a replayed poll a no-op instead of a duplicate.
            statement = (
                self._insert(Event)
                .values(fresh)
                .on_conflict_do_nothing(index_elements=["shipment_id", "key"])
            )
            await session.execute(statement)

    async def _store_contacts(
        self, session: AsyncSession, shipment_id: int, offices: Sequence[ContactOffice], now: dt.datetime
    ) -> None:
        for office in offices:
            statement = (
                self._insert(ContactOfficeRow)
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
        async with self._write() as session:
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

    async def latest_poll_error(self) -> str | None:
        """The error of the most recent failed poll still unresolved, if any."""
        async with self._reads() as session:
            return (
                await session.execute(
                    select(Shipment.last_error)
                    .where(Shipment.consecutive_failures > 0, Shipment.last_error.is_not(None))
                    .order_by(Shipment.last_polled_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    # --- alerts ----------------------------------------------------------------------

    async def _raise(
        self,
        session: AsyncSession,
        kind: str,
        message: str,
        now: dt.datetime,
        subject: str,
        shipment_id: int | None,
    ) -> None:
        statement = (
            self._insert(Alert)
            .values(
                kind=kind,
                subject=subject,
                shipment_id=shipment_id,
                message=message,
                first_seen_at=now,
                last_seen_at=now,
                count=1,
            )
            .on_conflict_do_update(
                index_elements=["kind", "subject"],
                index_where=text("acknowledged_at IS NULL"),
                set_={"message": message, "last_seen_at": now, "count": Alert.count + 1},
            )
        )
        await session.execute(statement)

    async def raise_alert(
        self, kind: str, message: str, *, now: dt.datetime, subject: str = "", shipment_id: int | None = None
    ) -> None:
        """Record an operator alert; an open alert of the same kind and subject counts up instead."""
        async with self._write() as session:
            await self._raise(session, kind, message, now, subject, shipment_id)

    async def alerts(self, *, include_acknowledged: bool = False) -> list[AlertView]:
        async with self._reads() as session:
            query = select(Alert).order_by(Alert.last_seen_at.desc(), Alert.id.desc())
            if not include_acknowledged:
                query = query.where(Alert.acknowledged_at.is_(None))
            return [_alert_view(row) for row in (await session.execute(query)).scalars()]

    async def alert_summary(self) -> tuple[int, AlertView | None]:
        """How many alerts are open, and the newest of them: for a status line, in two small queries."""
        async with self._reads() as session:
            open_ = Alert.acknowledged_at.is_(None)
            count = int((await session.execute(select(func.count()).where(open_))).scalar_one())
            newest = (
                await session.execute(
                    select(Alert).where(open_).order_by(Alert.last_seen_at.desc(), Alert.id.desc()).limit(1)
                )
            ).scalar_one_or_none()
            return count, None if newest is None else _alert_view(newest)

    async def alerts_after(self, alert_id: int, *, limit: int = 500) -> list[AlertView]:
        """Alerts created after `alert_id` (acknowledged ones included), oldest first."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Alert).where(Alert.id > alert_id).order_by(Alert.id).limit(limit)
            )
            return [_alert_view(row) for row in rows.scalars()]

    async def last_alert_id(self) -> int:
        async with self._reads() as session:
            return int((await session.execute(select(func.coalesce(func.max(Alert.id), 0)))).scalar_one())

    async def resolve_alert(
        self, kind: str, *, now: dt.datetime, notice_kind: str, notice: str, subject: str = ""
    ) -> bool:
        """Close the open (kind, subject) alert and record `notice` as an already-closed alert,
        in one transaction: the operator hears of the recovery without another alert to clear.
        Returns whether such an alert was open."""
        async with self._write() as session:
            closed = await session.execute(
                update(Alert)
                .where(Alert.kind == kind, Alert.subject == subject, Alert.acknowledged_at.is_(None))
                .values(acknowledged_at=now)
            )
            if not closed.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(
                Alert(
                    kind=notice_kind,
                    subject=subject,
                    message=notice,
                    first_seen_at=now,
                    last_seen_at=now,
                    count=1,
                    acknowledged_at=now,
                )
            )
            return True

    async def queue_alert_notice(
        self,
        key_prefix: str,
        decide: Callable[[Sequence[AlertView]], OutboxDraft | None],
        *,
        now: dt.datetime,
    ) -> OutboxDraft | None:
        """Queue one message about the alerts created since the last such message.

        The last message's dedup key ends in the highest alert id it covered; `decide` gets the
        alerts after it and returns the message to queue (its dedup key must be `key_prefix` +
        that message's highest alert id), or None to wait. One transaction, holding off alert
        writers while it reads, so an alert committed late with a lower id is never skipped.
        """
        async with self._write() as session:
            if self.dialect == "postgresql":
                await session.execute(text("LOCK TABLE alerts IN SHARE ROW EXCLUSIVE MODE"))
            last = (
                await session.execute(
                    select(OutboxMessage.dedup_key)
                    .where(OutboxMessage.dedup_key.startswith(key_prefix, autoescape=True))
                    .order_by(OutboxMessage.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            watermark = int(last[len(key_prefix) :]) if last and last[len(key_prefix) :].isdigit() else 0
            rows = await session.execute(
                select(Alert).where(Alert.id > watermark).order_by(Alert.id).limit(500)
            )
            message = decide([_alert_view(row) for row in rows.scalars()])
            if message is None:
                return None
            await self._enqueue(session, [message], now)
            return message

    async def acknowledge(self, alert_ids: Sequence[int] | None, *, now: dt.datetime) -> int:
        """Acknowledge the given alerts, or every open one when `alert_ids` is None."""
        async with self._write() as session:
            statement = update(Alert).where(Alert.acknowledged_at.is_(None)).values(acknowledged_at=now)
            if alert_ids is not None:
                statement = statement.where(Alert.id.in_(list(alert_ids)))
            result = await session.execute(statement)
            return int(result.rowcount)  # type: ignore[attr-defined]

    # --- subscribers -----------------------------------------------------------------

    async def set_subscribers(
        self, shipment_id: int, subscribers: Sequence[tuple[str, str, str | None]], *, now: dt.datetime
    ) -> None:
        """Make these (email, locale, time zone) the shipment's active subscriptions; others stop."""
        wanted = {email.lower(): (locale, zone) for email, locale, zone in subscribers}
        for email, (locale, zone) in wanted.items():
            await self.subscribe(shipment_id, email, locale=locale, now=now, time_zone=zone)
        async with self._write() as session:
            rows = await session.execute(
                select(Subscription, Subscriber.email)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscription.shipment_id == shipment_id)
            )
            for subscription, email in rows:
                subscription.active = email.lower() in wanted

    async def subscribe(
        self, shipment_id: int, email: str, *, locale: str, now: dt.datetime, time_zone: str | None = None
    ) -> None:
        # Upserts, so instances subscribing the same address at the same moment both succeed.
        async with self._write() as session:
            subscriber_id = (
                await session.execute(
                    self._insert(Subscriber)
                    .values(email=email, locale=locale, created_at=now)
                    .on_conflict_do_nothing(index_elements=["email"])
                    .returning(Subscriber.id)
                )
            ).scalar_one_or_none()
            if subscriber_id is None:
                subscriber_id = (
                    await session.execute(select(Subscriber.id).where(Subscriber.email == email))
                ).scalar_one()
            await session.execute(
                self._insert(Subscription)
                .values(
                    subscriber_id=subscriber_id,
                    shipment_id=shipment_id,
                    locale=locale,
                    time_zone=time_zone,
                    created_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["subscriber_id", "shipment_id"],
                    set_={"locale": locale, "time_zone": time_zone, "active": True},
                )
            )

    # --- housekeeping ----------------------------------------------------------------

    async def prune_snapshots(
        self, *, now: dt.datetime, max_age: dt.timedelta, keep_per_shipment: int
    ) -> int:
        """Bounded retention: drop snapshots older than `max_age`, and all but the newest
        `keep_per_shipment` of each shipment's."""
        async with self._write() as session:
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

    async def checkpoint(self) -> tuple[int, int, int] | None:
        """SQLite: copy the WAL into the database and truncate it to nothing, so the file never
        keeps the size of its biggest burst. (busy, WAL pages, pages copied); None elsewhere."""
        if self._write_lock is None:
            return None
        # Under the write lock, so our own writers do not make it give up half-way.
        async with self._write_lock, self.engine.connect() as connection:
            return await connection.run_sync(sqlite_checkpoint)

    async def snapshots(self, number: str) -> list[tuple[str, str, bytes]]:
        """(reason, layout, body) of a number's kept snapshots, newest first."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Snapshot.reason, Snapshot.layout, Snapshot.body)
                .where(Snapshot.number == number)
                .order_by(Snapshot.fetched_at.desc(), Snapshot.id.desc())
            )
            return [(r, layout, zlib.decompress(body)) for r, layout, body in rows]

    # --- outbox ----------------------------------------------------------------------

    async def _enqueue(
        self, session: AsyncSession, drafts: Sequence[OutboxDraft], now: dt.datetime, *, held: bool = False
    ) -> int:
        created = 0
        state = OutboxState.HELD if held else OutboxState.PENDING
        batch = [draft.dedup_key for draft in drafts]
        for draft in drafts:
            due = max(now, draft.not_before or now)
            if draft.supersedes and draft.error is None and draft.subscription_id is not None:
                replaced = await self._supersede(session, draft, batch)
                # News merged into this message goes no later than the first of it would have:
                # a parcel scanned every few hours must not push its news back window by window.
                if replaced is not None:
                    due = max(now, min(due, replaced))
            statement = (
                self._insert(OutboxMessage)
                .values(
                    dedup_key=draft.dedup_key,
                    shipment_id=draft.shipment_id,
                    subscription_id=draft.subscription_id,
                    recipient=draft.recipient,
                    sender=draft.sender,
                    locale=draft.locale,
                    time_zone=draft.time_zone,
                    rule=draft.rule,
                    template=draft.template,
                    stage=draft.stage,
                    number=draft.number,
                    # Only shown in listings (the bytes carry the real one): a label near its
                    # size limit must not make the insert, and the whole poll, fail.
                    subject=fit(draft.subject, OUTBOX_SUBJECT),
                    message_id=draft.message_id,
                    raw=draft.raw,
                    # A message that could not be built fails alone; held or not.
                    state=str(state if draft.error is None else OutboxState.FAILED),
                    last_error=None if draft.error is None else draft.error[:2000],
                    attempts=0,
                    next_attempt_at=due,
                    created_at=now,
                )
                # The dedup key can exist only once, ever: a replayed poll creates nothing.
                .on_conflict_do_nothing(index_elements=["dedup_key"])
            )
            result = await session.execute(statement)
            new = int(result.rowcount)  # type: ignore[attr-defined]
            created += new
            if new and state is OutboxState.PENDING and draft.error is None:
                session.info[_QUEUED] = True
            if new and draft.error is not None:
                # One alert per template and language: a broken template counts up, not floods.
                await self._raise(
                    session,
                    "message_build_failed",
                    f"the {draft.locale} {draft.template} message to {draft.recipient} about "
                    f"{draft.number or '-'} could not be built and was not sent: {draft.error}. It is "
                    f"listed by {hints.command('outbox --state failed')}; later messages are built afresh.",
                    now,
                    f"{draft.locale}/{draft.template}"[:40],
                    draft.shipment_id,
                )
        return created

    async def _supersede(
        self, session: AsyncSession, draft: OutboxDraft, batch: Sequence[str]
    ) -> dt.datetime | None:
        """Retire what still waits for this subscription about this shipment, and return when
        the earliest pending one of them was due (None when none was). Only pending and held
        rows: a message being sent (leased) or sent stays as it is, so no customer gets both nor
        neither. Messages of the same batch (`multi_stage = "all"` asks for each stage) are
        kept, and a replayed poll (its dedup key already queued) supersedes nothing."""
        exists = select(OutboxMessage.id).where(OutboxMessage.dedup_key == draft.dedup_key)
        if (await session.execute(exists)).first() is not None:
            return None
        waiting = (
            OutboxMessage.shipment_id == draft.shipment_id,
            OutboxMessage.subscription_id == draft.subscription_id,
            OutboxMessage.state.in_([str(OutboxState.PENDING), str(OutboxState.HELD)]),
            OutboxMessage.dedup_key.not_in(list(batch)),
        )
        earliest = (
            await session.execute(
                select(func.min(OutboxMessage.next_attempt_at)).where(
                    *waiting, OutboxMessage.state == str(OutboxState.PENDING)
                )
            )
        ).scalar_one_or_none()
        await session.execute(
            update(OutboxMessage)
            .where(*waiting)
            .values(
                state=str(OutboxState.SUPERSEDED),
                last_error=f"superseded by the {draft.template} message ({draft.dedup_key})"[:2000],
            )
        )
        return earliest  # func.min keeps the column's type: an aware UTC datetime

    async def waiting_stages(self, shipment_id: int) -> dict[int, tuple[str, ...]]:
        """Per subscription id, the stages of its messages about this shipment still waiting
        (pending or held), oldest first: what a newer message would supersede."""
        async with self._reads() as session:
            rows = await session.execute(
                select(OutboxMessage.subscription_id, OutboxMessage.stage)
                .where(
                    OutboxMessage.shipment_id == shipment_id,
                    OutboxMessage.subscription_id.is_not(None),
                    OutboxMessage.state.in_([str(OutboxState.PENDING), str(OutboxState.HELD)]),
                )
                .order_by(OutboxMessage.id)
            )
            waiting: dict[int, list[str]] = {}
            for subscription_id, stage in rows:
                waiting.setdefault(int(subscription_id or 0), []).append(str(stage))
            return {k: tuple(v) for k, v in waiting.items()}

    async def fix_date(self, message_id: int, *, owner: str, raw: bytes, now: dt.datetime) -> bool:
        """Record the first send attempt: the bytes with their final Date, before they are sent."""
        return await self._finish_keep_lease(message_id, owner, raw=raw, first_attempt_at=now)

    async def _finish_keep_lease(self, message_id: int, owner: str, **values: object) -> bool:
        async with self._write() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.leased_by == owner,
                    OutboxMessage.state == str(OutboxState.SENDING),
                )
                .values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def deferred_for_quiet_hours(self) -> list[tuple[int, str | None, dt.datetime]]:
        """(id, time zone, next attempt) of pending messages waiting for the end of quiet hours."""
        async with self._reads() as session:
            rows = await session.execute(
                select(OutboxMessage.id, OutboxMessage.time_zone, OutboxMessage.next_attempt_at).where(
                    OutboxMessage.state == str(OutboxState.PENDING),
                    OutboxMessage.last_error == "quiet hours",
                )
            )
            return [(int(i), zone, due) for i, zone, due in rows]

    async def reschedule_pending(self, moves: Sequence[tuple[int, dt.datetime]]) -> int:
        """Move pending messages' next attempt (quiet hours changed); rows no longer pending are left."""
        moved = 0
        async with self._write() as session:
            for message_id, when in moves:
                result = await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id, OutboxMessage.state == str(OutboxState.PENDING))
                    .values(next_attempt_at=when)
                )
                moved += int(result.rowcount)  # type: ignore[attr-defined]
        return moved

    async def enqueue(
        self,
        drafts: Sequence[OutboxDraft],
        *,
        now: dt.datetime,
        alert: OperatorAlert | None = None,
        shipment_id: int | None = None,
    ) -> int:
        """Queue messages not tied to a poll (time-based rules, digests, tests); returns how many were new.

        `alert` is raised in the same transaction, and only if a message was new: it belongs to
        them (a stall the customer is told the shop follows up), so it is raised once, however
        often the time-based rules run.
        """
        async with self._write() as session:
            created = await self._enqueue(session, drafts, now)
            if created and alert is not None:
                await self._raise(session, alert.kind, alert.message, now, alert.subject, shipment_id)
            return created

    async def release_held(self, *, now: dt.datetime) -> int:
        """The kill switch lifted: held messages become pending, due now. Returns how many."""
        async with self._write() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.state == str(OutboxState.HELD))
                .values(state=str(OutboxState.PENDING), next_attempt_at=now)
            )
            released = int(result.rowcount)  # type: ignore[attr-defined]
            session.info[_QUEUED] = released > 0
            return released

    async def known_dedup_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        async with self._reads() as session:
            rows = await session.execute(
                select(OutboxMessage.dedup_key).where(OutboxMessage.dedup_key.in_(list(keys)))
            )
            return {key for (key,) in rows}

    async def claim_outbox(
        self, *, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[OutboxItem]:
        """Lease due messages: pending ones whose time has come, and sending ones whose owner
        died (lease expired). A claim is not an attempt: mark_* count one when a send was tried,
        so a crash or restart loop does not eat the retry budget."""
        # A customer hears about one parcel in order: no message is claimed while an earlier one
        # to the same subscription about the same shipment still waits or is being sent (by
        # another instance, say), so a later stage never overtakes an earlier one.
        earlier = aliased(OutboxMessage)
        overtaking = (
            select(earlier.id)
            .where(
                earlier.subscription_id == OutboxMessage.subscription_id,
                earlier.shipment_id == OutboxMessage.shipment_id,
                earlier.id < OutboxMessage.id,
                earlier.state.in_(
                    (str(OutboxState.PENDING), str(OutboxState.SENDING), str(OutboxState.HELD))
                ),
            )
            .exists()
        )
        due = (
            select(OutboxMessage.id)
            .where(
                ((OutboxMessage.state == str(OutboxState.PENDING)) & (OutboxMessage.next_attempt_at <= now))
                | ((OutboxMessage.state == str(OutboxState.SENDING)) & (OutboxMessage.lease_until < now)),
                (OutboxMessage.subscription_id.is_(None))
                | (OutboxMessage.shipment_id.is_(None))
                | ~overtaking,
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = await self._lease(
            OutboxMessage,
            due,
            state=str(OutboxState.SENDING),
            leased_by=owner,
            lease_until=now + lease,
        )
        return sorted((_outbox_item(row) for row in rows), key=lambda i: (i.next_attempt_at, i.id))

    async def _finish(self, message_id: int, owner: str, **values: object) -> bool:
        """Move a leased message on, only if we still hold its lease (a fence against a
        second instance that reclaimed it after our lease expired)."""
        async with self._write() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.leased_by == owner,
                    OutboxMessage.state == str(OutboxState.SENDING),
                )
                .values(leased_by=None, lease_until=None, **values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_sent(self, message_id: int, *, owner: str, now: dt.datetime, reply: str) -> bool:
        return await self._finish(
            message_id,
            owner,
            state=str(OutboxState.SENT),
            sent_at=now,
            server_reply=reply[:500],
            last_error=None,
            attempts=OutboxMessage.attempts + 1,
        )

    async def mark_retry(
        self,
        message_id: int,
        *,
        owner: str,
        error: str,
        next_attempt_at: dt.datetime,
        count_attempt: bool = True,
    ) -> bool:
        values: dict[str, object] = {
            "state": str(OutboxState.PENDING),
            "next_attempt_at": next_attempt_at,
            "last_error": error[:2000],
        }
        if count_attempt:
            values["attempts"] = OutboxMessage.attempts + 1
        return await self._finish(message_id, owner, **values)

    async def mark_failed(
        self, message_id: int, *, owner: str, error: str, now: dt.datetime, count_attempt: bool = True
    ) -> bool:
        async with self._write() as session:
            row = await session.get(OutboxMessage, message_id)
            if row is None or row.leased_by != owner or row.state != str(OutboxState.SENDING):
                return False
            row.state = str(OutboxState.FAILED)
            row.last_error = error[:2000]
            row.leased_by = None
            row.lease_until = None
            if count_attempt:
                row.attempts += 1
            # The subject column is short; the outbox id fits it whole and is what
            # `notifier outbox show` takes. The Message-ID is in the text, in full.
            await self._raise(
                session,
                "send_failed",
                f"message {row.id} to {row.recipient} about {row.number or '-'} ({row.rule}, "
                f"Message-ID {row.message_id}) failed for good: {error}",
                now,
                f"outbox {row.id}",
                row.shipment_id,
            )
            return True

    async def mark_suppressed(self, message_id: int, *, owner: str) -> bool:
        return await self._finish(message_id, owner, state=str(OutboxState.SUPPRESSED))

    async def outbox(
        self, *, states: Sequence[OutboxState] | None = None, limit: int = 200, rule: str | None = None
    ) -> list[OutboxItem]:
        async with self._reads() as session:
            query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
            if states:
                query = query.where(OutboxMessage.state.in_([str(s) for s in states]))
            if rule is not None:
                query = query.where(OutboxMessage.rule == rule)
            return [_outbox_item(row) for row in (await session.execute(query)).scalars()]

    async def outbox_for(self, number: str, *, limit: int = 200) -> list[OutboxItem]:
        """Every message about `number`, whatever its state, newest first (the board's parcel page)."""
        async with self._reads() as session:
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.number == number)
                .order_by(OutboxMessage.id.desc())
                .limit(limit)
            )
            return [_outbox_item(row) for row in (await session.execute(query)).scalars()]

    async def outbox_item(self, message_id: int) -> OutboxItem | None:
        async with self._reads() as session:
            row = await session.get(OutboxMessage, message_id)
            return None if row is None else _outbox_item(row)

    async def retry_failed(self, message_ids: Sequence[int] | None, *, now: dt.datetime) -> int:
        """Put failed messages back in the queue (same bytes, same Message-ID)."""
        async with self._write() as session:
            statement = (
                update(OutboxMessage)
                .where(OutboxMessage.state == str(OutboxState.FAILED))
                .values(state=str(OutboxState.PENDING), next_attempt_at=now, attempts=0)
            )
            if message_ids is not None:
                statement = statement.where(OutboxMessage.id.in_(list(message_ids)))
            result = await session.execute(statement)
            retried = int(result.rowcount)  # type: ignore[attr-defined]
            session.info[_QUEUED] = retried > 0
            return retried

    async def outbox_depth(self) -> dict[str, int]:
        async with self._reads() as session:
            rows = await session.execute(
                select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
            )
            return {state: int(count) for state, count in rows}

    async def last_sent_at(self) -> dt.datetime | None:
        """When the latest message went out (None: never); a send ends an SMTP pause."""
        async with self._reads() as session:
            return (await session.execute(select(func.max(OutboxMessage.sent_at)))).scalar_one()

    async def ping(self) -> None:
        """One round trip to the database (the health check's); raises when it does not answer."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def ops_counts(self, *, now: dt.datetime, overdue_before: dt.datetime) -> OpsCounts:
        """Shipments by stage with their due and overdue counts, the outbox by state and its
        oldest waiting message, and the open alerts: four grouped statements in one read,
        whatever the number of shipments and messages."""
        async with self._reads() as session:
            shipments = await session.execute(
                select(
                    Shipment.stage,
                    func.count(),
                    func.sum(case((Shipment.next_poll_at <= now, 1), else_=0)),
                    func.sum(case((Shipment.next_poll_at <= overdue_before, 1), else_=0)),
                )
                .where(Shipment.active.is_(True))
                .group_by(Shipment.stage)
            )
            stages: dict[str, int] = {}
            due = overdue = 0
            for stage, count, stage_due, stage_overdue in shipments:
                stages[str(stage)] = int(count)
                due += int(stage_due or 0)
                overdue += int(stage_overdue or 0)
            # Counted from the (state, next_attempt_at) index alone; the oldest waiting message
            # reads only the rows of the waiting states, not the sent history with its bytes.
            messages = await session.execute(
                select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
            )
            outbox = {str(state): int(count) for state, count in messages}
            oldest = (
                await session.execute(
                    select(func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.state.in_(sorted(WAITING_STATES))
                    )
                )
            ).scalar_one()
            open_alerts = (
                await session.execute(select(func.count()).where(Alert.acknowledged_at.is_(None)))
            ).scalar_one()
            return OpsCounts(
                stages=stages,
                due=due,
                overdue=overdue,
                outbox=outbox,
                oldest_waiting=oldest,
                open_alerts=int(open_alerts),
            )

    # --- suppression list ------------------------------------------------------------

    async def suppress(self, email: str, *, now: dt.datetime, reason: str = "unsubscribed") -> bool:
        async with self._write() as session:
            statement = (
                self._insert(Suppression)
                .values(email=email.lower(), reason=reason, created_at=now)
                .on_conflict_do_nothing(index_elements=["email"])
            )
            return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def unsuppress(self, email: str) -> bool:
        async with self._write() as session:
            result = await session.execute(delete(Suppression).where(Suppression.email == email.lower()))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def suppressed_among(self, emails: Sequence[str]) -> set[str]:
        """Which of these addresses are on the suppression list (lower-cased), in one query."""
        if not emails:
            return set()
        wanted = sorted({e.lower() for e in emails})
        async with self._reads() as session:
            rows = await session.execute(select(Suppression.email).where(Suppression.email.in_(wanted)))
            return {email for (email,) in rows}

    async def suppress_shipment(self, email: str, number: str, *, now: dt.datetime) -> bool:
        """No more mail to `email` about tracking number `number` (True if that is new)."""
        async with self._write() as session:
            statement = (
                self._insert(ShipmentSuppression)
                .values(email=email.lower(), number=number, created_at=now)
                .on_conflict_do_nothing(index_elements=["email", "number"])
            )
            return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def unsuppress_shipment(self, email: str, number: str) -> bool:
        async with self._write() as session:
            result = await session.execute(
                delete(ShipmentSuppression).where(
                    ShipmentSuppression.email == email.lower(), ShipmentSuppression.number == number
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def suppressed_shipments_among(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (address, number) pairs are unsubscribed from that parcel (address lower-cased)."""
        emails = sorted({email.lower() for email, number in pairs if number})
        if not emails:
            return set()
        async with self._reads() as session:
            rows = await session.execute(
                select(ShipmentSuppression.email, ShipmentSuppression.number).where(
                    ShipmentSuppression.email.in_(emails)
                )
            )
            wanted = {(email.lower(), number) for email, number in pairs}
            return {(str(e), str(n)) for e, n in rows if (e, n) in wanted}

    async def locale_for(self, email: str, number: str) -> str | None:
        """The language `email` reads about `number` (their latest subscription to it, the one
        they chose on the page first), else the one they last subscribed with; None for an
        address never subscribed."""
        async with self._reads() as session:
            about = await session.scalar(
                select(_READS_IN)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .join(Shipment, Shipment.id == Subscription.shipment_id)
                .where(func.lower(Subscriber.email) == email.lower(), Shipment.number == number)
                .order_by(Subscription.id.desc())
                .limit(1)
            )
            if about is not None:
                return str(about)
            anything = await session.scalar(
                select(_READS_IN)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(func.lower(Subscriber.email) == email.lower())
                .order_by(Subscription.id.desc())
                .limit(1)
            )
            return None if anything is None else str(anything)

    async def choose_locale(self, email: str, number: str, locale: str) -> bool:
        """`email` wants mail about `number` in `locale` from now on (True if a subscription
        to it exists). Kept apart from the watchlist's `locale`, so no sync undoes it."""
        async with self._write() as session:
            ids = (
                await session.scalars(
                    select(Subscription.id)
                    .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                    .join(Shipment, Shipment.id == Subscription.shipment_id)
                    .where(func.lower(Subscriber.email) == email.lower(), Shipment.number == number)
                )
            ).all()
            if ids:
                await session.execute(
                    update(Subscription).where(Subscription.id.in_(ids)).values(chosen_locale=locale)
                )
            return bool(ids)

    async def subscription_names(self, shipment_id: int) -> dict[int, str]:
        """Subscription id -> greeting name, for the shipment's active subscriptions that have one."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Subscription.id, Subscription.name).where(
                    Subscription.shipment_id == shipment_id,
                    Subscription.active.is_(True),
                    Subscription.name.is_not(None),
                    Subscription.name != "",
                )
            )
            return {int(i): str(name) for i, name in rows}

    async def recipients(self, shipment_id: int) -> list[tuple[int, str, str, str | None]]:
        """(subscription id, email, locale, time zone) of the shipment's active subscriptions."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Subscription.id, Subscriber.email, _READS_IN, Subscription.time_zone)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscription.shipment_id == shipment_id, Subscription.active.is_(True))
                .order_by(Subscription.id)
            )
            return [(int(i), str(e), str(loc), tz) for i, e, loc, tz in rows]

    # --- watch management (config sync, due times) ----------------------------------

    async def sync_config_watches(self, watches: Sequence[ConfiguredWatch], *, now: dt.datetime) -> WatchSync:
        """Make the configuration's watchlist true in one transaction, with a few set-based
        statements whatever its size: listed numbers are watched (and taken over from the CLI),
        their subscriptions are exactly the listed ones, and numbers the configuration watched
        that it no longer lists stop (their history stays). CLI watches are never unwatched."""
        wanted = {w.number.value: w for w in watches}
        async with self._write() as session:
            if self.dialect == "postgresql":
                # Instances starting or reloading the same configuration together sync one after
                # the other, each seeing what the previous one committed (SQLite's write lock
                # already does this). The inserts below also skip rows a racing writer added.
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WATCH_SYNC_LOCK})
            latest: dict[str, _Latest] = {}
            for columns in await session.execute(
                select(
                    Shipment.id,
                    Shipment.number,
                    Shipment.incarnation,
                    Shipment.label,
                    Shipment.destination,
                    Shipment.tags,
                    Shipment.active,
                    Shipment.retired_at,
                    Shipment.watched_by,
                )
            ):
                found = _Latest(*columns)
                if found.number not in latest or latest[found.number].incarnation < found.incarnation:
                    latest[found.number] = found
            inserts: list[dict[str, object]] = []
            updates: list[dict[str, object]] = []
            revived: list[dict[str, object]] = []
            added: list[str] = []
            taken_over: list[str] = []
            reused: list[str] = []
            for number, watch in wanted.items():
                row = latest.get(number)
                tags = " ".join(sorted(watch.tags))
                if row is not None and row.retired_at is not None:
                    # Japan Post shows someone else's parcel under this number now: the entry
                    # was for the old one, and its subscribers must not hear about a stranger's.
                    # `notifier watch` starts a new incarnation when the shop means a new parcel.
                    reused.append(number)
                    continue
                if row is None:
                    inserts.append(
                        {
                            "number": number,
                            "incarnation": row.incarnation + 1 if row is not None else 1,
                            "label": watch.label,
                            "origin": watch.number.country,
                            "destination": watch.destination,
                            "tags": tags,
                            "created_at": now,
                            "next_poll_at": now,
                            "watched_by": WATCHED_BY_CONFIG,
                        }
                    )
                    added.append(number)
                    continue
                values: dict[str, object] = {
                    "id": row.id,
                    "label": watch.label or row.label,
                    "destination": watch.destination or row.destination,
                    "tags": tags,
                    "watched_by": WATCHED_BY_CONFIG,
                }
                if row.watched_by != WATCHED_BY_CONFIG and row.active:
                    taken_over.append(number)
                if not row.active:
                    added.append(number)
                    revived.append({**values, "active": True, "next_poll_at": now})
                elif (values["label"], values["destination"], tags, WATCHED_BY_CONFIG) != (
                    row.label,
                    row.destination,
                    row.tags,
                    row.watched_by,
                ):
                    updates.append(values)
            gone = [
                row
                for number, row in latest.items()
                if row.active and row.watched_by == WATCHED_BY_CONFIG and number not in wanted
            ]
            if inserts:
                await session.execute(
                    self._insert(Shipment).on_conflict_do_nothing(index_elements=["number", "incarnation"]),
                    inserts,
                )
            for batch in (updates, revived):
                if batch:
                    await session.execute(update(Shipment), batch)
            if gone:
                await session.execute(
                    update(Shipment),
                    [{"id": row.id, "active": False, "leased_by": None, "lease_until": None} for row in gone],
                )
            await self._sync_subscriptions(session, wanted, now)
        return WatchSync(
            added=tuple(added),
            updated=len(updates),
            unwatched=tuple(sorted(row.number for row in gone)),
            taken_over=tuple(taken_over),
            reused=tuple(reused),
        )

    async def _sync_subscriptions(
        self, session: AsyncSession, wanted: dict[str, ConfiguredWatch], now: dt.datetime
    ) -> None:
        shipment_ids = {
            number: sid
            for sid, number in await session.execute(
                select(Shipment.id, Shipment.number).where(
                    Shipment.watched_by == WATCHED_BY_CONFIG,
                    Shipment.active.is_(True),
                )
            )
            if number in wanted
        }
        # (email, locale, zone) per shipment, lower-cased as `set_subscribers` stores them.
        listed: dict[int, dict[str, tuple[str, str | None]]] = {}
        names: dict[int, str | None] = {}
        for number, watch in wanted.items():
            sid = shipment_ids.get(number)
            if sid is not None:
                listed[sid] = {email.lower(): (locale, zone) for email, locale, zone in watch.subscribers}
                names[sid] = watch.name or None
        people = {email: sid for sid, email in await session.execute(select(Subscriber.id, Subscriber.email))}
        new_people: dict[str, str] = {}
        for subscribers in listed.values():
            for email, (locale, _) in subscribers.items():
                if email not in people:
                    new_people.setdefault(email, locale)
        if new_people:
            await session.execute(
                self._insert(Subscriber).on_conflict_do_nothing(index_elements=["email"]),
                [
                    {"email": email, "locale": locale, "created_at": now}
                    for email, locale in new_people.items()
                ],
            )
            people = {
                email: sid for sid, email in await session.execute(select(Subscriber.id, Subscriber.email))
            }
        existing = {
            (shipment_id, subscriber_id): (sub_id, locale, zone, active, name)
            for sub_id, shipment_id, subscriber_id, locale, zone, active, name in await session.execute(
                select(
                    Subscription.id,
                    Subscription.shipment_id,
                    Subscription.subscriber_id,
                    Subscription.locale,
                    Subscription.time_zone,
                    Subscription.active,
                    Subscription.name,
                )
                .join(Shipment, Shipment.id == Subscription.shipment_id)
                .where(Shipment.watched_by == WATCHED_BY_CONFIG, Shipment.active.is_(True))
            )
        }
        inserts: list[dict[str, object]] = []
        updates: list[dict[str, object]] = []
        keep: set[tuple[int, int]] = set()
        for sid, subscribers in listed.items():
            for email, (locale, zone) in subscribers.items():
                key = (sid, people[email])
                keep.add(key)
                current = existing.get(key)
                if current is None:
                    inserts.append(
                        {
                            "subscriber_id": people[email],
                            "shipment_id": sid,
                            "locale": locale,
                            "time_zone": zone,
                            "name": names[sid],
                            "created_at": now,
                        }
                    )
                elif current[1:] != (locale, zone, True, names[sid]):
                    updates.append(
                        {
                            "id": current[0],
                            "locale": locale,
                            "time_zone": zone,
                            "active": True,
                            "name": names[sid],
                        }
                    )
        stopped = [
            {"id": current[0], "active": False}
            for key, current in existing.items()
            if key not in keep and current[3] and key[0] in listed
        ]
        if inserts:
            await session.execute(
                self._insert(Subscription).on_conflict_do_nothing(
                    index_elements=["subscriber_id", "shipment_id"]
                ),
                inserts,
            )
        for batch in (updates, stopped):
            if batch:
                await session.execute(update(Subscription), batch)

    async def scheduled(self, *, now: dt.datetime) -> list[ScheduledRow]:
        """Active shipments waiting for a future poll (not leased): what a policy change moves."""
        async with self._reads() as session:
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
        async with self._write() as session:
            await session.execute(statement, [{"row_id": sid, "due": due} for sid, due in moves])

    async def mark_due(self, numbers: Sequence[str] | None, *, now: dt.datetime) -> list[str]:
        """Make these watched numbers (every watched one when None) due now: a running daemon
        claims them at its next tick. Returns the numbers marked."""
        statement = update(Shipment).where(Shipment.active.is_(True))
        if numbers is not None:
            statement = statement.where(Shipment.number.in_(list(numbers)))
        async with self._write() as session:
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
        async with self._write() as session:
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
        async with self._write() as session:
            current: list[tuple[int, str | None, dt.datetime | None]] = []
            for start in range(0, len(ids), _IN_CHUNK):
                query = (
                    select(Shipment.id, Shipment.leased_by, Shipment.lease_until)
                    .where(Shipment.id.in_(ids[start : start + _IN_CHUNK]))
                    .with_for_update()
                )
                current.extend((int(i), by, until) for i, by, until in await session.execute(query))
            free = []
            for shipment_id, holder, until in current:
                if until is None or until < now or (holder is not None and stale(holder)):
                    free.append(shipment_id)
                else:
                    holders[shipment_id] = holder or "another process"
            for start in range(0, len(free), _IN_CHUNK):
                await session.execute(
                    update(Shipment)
                    .where(Shipment.id.in_(free[start : start + _IN_CHUNK]))
                    .values(leased_by=owner, lease_until=now + lease),
                    execution_options={"synchronize_session": False},
                )
        for shipment_id in ids:
            holders.setdefault(shipment_id, None)
        return holders

    # --- operator board --------------------------------------------------------------

    async def active_subscribers(self) -> dict[int, tuple[str, ...]]:
        """Shipment id -> the addresses of its active subscriptions, for every shipment at once."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Subscription.shipment_id, Subscriber.email)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscription.active.is_(True))
                .order_by(Subscription.shipment_id, Subscription.id)
            )
            found: dict[int, list[str]] = {}
            for shipment_id, email in rows:
                found.setdefault(int(shipment_id), []).append(str(email))
            return {sid: tuple(emails) for sid, emails in found.items()}

    async def suppressions(self, *, limit: int = 500) -> list[tuple[str, str, dt.datetime]]:
        """(address, reason, since) of the suppression list, newest first."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Suppression.email, Suppression.reason, Suppression.created_at)
                .order_by(Suppression.created_at.desc(), Suppression.id.desc())
                .limit(limit)
            )
            return [(str(email), str(reason), created) for email, reason, created in rows]


# pg_advisory_xact_lock key serializing watchlist syncs ("watchsyn" in ASCII).
_WATCH_SYNC_LOCK = 0x776174636873796E


@dataclass(frozen=True, slots=True)
class _Latest:
    id: int
    number: str
    incarnation: int
    label: str
    destination: str | None
    tags: str
    active: bool
    retired_at: dt.datetime | None
    watched_by: str
