"""The persistence façade: one Store composing the database and a repository per aggregate."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.diff import Change
from notifier.core.eta import Journey, Window
from notifier.core.history import HistoryRecord
from notifier.core.model import ContactOffice, ItemResult, TrackingEvent
from notifier.core.numbers import TrackingNumber
from notifier.core.rules import OperatorAlert
from notifier.core.views import (
    WATCHED_BY_CLI,
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
from notifier.store.alerts import Alerts
from notifier.store.audience import Audience
from notifier.store.board import Board
from notifier.store.database import Database, make_engine, require_head
from notifier.store.history import History, ImportCounts
from notifier.store.intake import Intake
from notifier.store.outbox import Outbox
from notifier.store.polls import Polls
from notifier.store.shipments import Shipments
from notifier.store.watchlist import Watchlist
from notifier.store.windows import LaneAccuracy, ShownWindows


class Store:
    """Async persistence over one database. Every write is one transaction; the SQL lives in
    the repositories (shipments, polls, alerts, outbox, audience, watchlist, board)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.database = Database(engine)
        self.shipment_store = Shipments(self.database)
        self.alert_store = Alerts(self.database)
        self.outbox_store = Outbox(self.database, self.alert_store)
        self.poll_store = Polls(self.database, self.alert_store, self.outbox_store)
        self.audience = Audience(self.database)
        self.watchlist = Watchlist(self.database)
        self.board = Board(self.database)
        self.shown_windows = ShownWindows(self.database)
        # Shop-platform webhooks (web/intake.py): used through this repository directly.
        self.intake = Intake(self.database)
        self.history_files = History(self.database)

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

    @property
    def dialect(self) -> str:
        return self.database.dialect

    # --- Shipments ---
    async def watch(
        self,
        number: TrackingNumber,
        *,
        now: dt.datetime,
        label: str = "",
        destination: str | None = None,
        tags: frozenset[str] | None = None,
        first_poll_at: dt.datetime | None = None,
        watched_by: str = WATCHED_BY_CLI,
    ) -> ShipmentView:
        return await self.shipment_store.watch(
            number,
            now=now,
            label=label,
            destination=destination,
            tags=tags,
            first_poll_at=first_poll_at,
            watched_by=watched_by,
        )

    async def watch_many(
        self,
        numbers: Sequence[TrackingNumber],
        *,
        now: dt.datetime,
        label: str = "",
        destination: str | None = None,
        tags: frozenset[str] | None = None,
        first_poll_at: dt.datetime | None = None,
        watched_by: str = WATCHED_BY_CLI,
    ) -> list[ShipmentView]:
        return await self.shipment_store.watch_many(
            numbers,
            now=now,
            label=label,
            destination=destination,
            tags=tags,
            first_poll_at=first_poll_at,
            watched_by=watched_by,
        )

    async def unwatch(self, number: str) -> bool:
        return await self.shipment_store.unwatch(number)

    async def get(self, number: str) -> ShipmentView | None:
        return await self.shipment_store.get(number)

    async def shipments(self, *, include_inactive: bool = False) -> list[ShipmentView]:
        return await self.shipment_store.shipments(include_inactive=include_inactive)

    async def history(self, shipment_id: int) -> tuple[TrackingEvent, ...]:
        return await self.shipment_store.history(shipment_id)

    async def histories(self, shipment_ids: Sequence[int]) -> dict[int, tuple[TrackingEvent, ...]]:
        return await self.shipment_store.histories(shipment_ids)

    async def journeys(self, *, since: dt.datetime | None = None) -> list[Journey]:
        return await self.shipment_store.journeys(since=since)

    def export_history(self, *, since: dt.datetime | None = None) -> AsyncIterator[str]:
        return self.history_files.export(since=since)

    async def import_history(self, records: Sequence[HistoryRecord], *, now: dt.datetime) -> ImportCounts:
        return await self.history_files.import_records(records, now=now)

    async def history_imported_at(self) -> dt.datetime | None:
        return await self.history_files.imported_at()

    async def subscribed_shipment_ids(self) -> set[int]:
        return await self.shipment_store.subscribed_shipment_ids()

    async def record_window(self, shipment_id: int, window: Window, *, now: dt.datetime) -> None:
        return await self.shown_windows.record(shipment_id, window, now=now)

    async def window_accuracy(self) -> list[LaneAccuracy]:
        return await self.shown_windows.accuracy()

    async def save_wordings(self, shipment_id: int, bodies: Mapping[str, str], *, now: dt.datetime) -> None:
        return await self.shipment_store.save_wordings(shipment_id, bodies, now=now)

    async def wording(self, shipment_id: int, locale: str) -> str | None:
        return await self.shipment_store.wording(shipment_id, locale)

    async def contacts(self, shipment_id: int) -> tuple[ContactOffice, ...]:
        return await self.shipment_store.contacts(shipment_id)

    # --- Polls ---
    async def record_unchanged(
        self, polls: Sequence[tuple[int, dt.datetime | None]], *, now: dt.datetime, owner: str
    ) -> int:
        return await self.poll_store.record_unchanged(polls, now=now, owner=owner)

    async def release_all_leases(self) -> tuple[int, int]:
        return await self.poll_store.release_all_leases()

    async def claim_due(
        self,
        *,
        owner: str,
        now: dt.datetime,
        limit: int,
        lease: dt.timedelta,
        due_by: dt.datetime | None = None,
    ) -> list[ShipmentView]:
        return await self.poll_store.claim_due(owner=owner, now=now, limit=limit, lease=lease, due_by=due_by)

    async def release(self, shipment_id: int, *, owner: str, next_poll_at: dt.datetime) -> bool:
        return await self.poll_store.release(shipment_id, owner=owner, next_poll_at=next_poll_at)

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
        return await self.poll_store.record_poll(
            shipment_id,
            change=change,
            item=item,
            now=now,
            next_poll_at=next_poll_at,
            capture=capture,
            owner=owner,
            outbox=outbox,
            held=held,
            closes=closes,
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
        return await self.poll_store.record_failure(
            shipment_id, error=error, now=now, next_poll_at=next_poll_at, owner=owner, capture=capture
        )

    async def prune_snapshots(
        self, *, now: dt.datetime, max_age: dt.timedelta, keep_per_shipment: int
    ) -> int:
        return await self.poll_store.prune_snapshots(
            now=now, max_age=max_age, keep_per_shipment=keep_per_shipment
        )

    async def snapshots(self, number: str) -> list[tuple[str, str, bytes]]:
        return await self.poll_store.snapshots(number)

    async def scheduled(self, *, now: dt.datetime) -> list[ScheduledRow]:
        return await self.poll_store.scheduled(now=now)

    async def move_due_times(self, moves: Sequence[tuple[int, dt.datetime]], *, now: dt.datetime) -> None:
        return await self.poll_store.move_due_times(moves, now=now)

    async def mark_due(self, numbers: Sequence[str] | None, *, now: dt.datetime) -> list[str]:
        return await self.poll_store.mark_due(numbers, now=now)

    async def take_lease(
        self,
        shipment_id: int,
        *,
        owner: str,
        now: dt.datetime,
        lease: dt.timedelta,
        stale_owner: str | None = None,
    ) -> str | None:
        return await self.poll_store.take_lease(
            shipment_id, owner=owner, now=now, lease=lease, stale_owner=stale_owner
        )

    async def take_leases(
        self,
        shipment_ids: Sequence[int],
        *,
        owner: str,
        now: dt.datetime,
        lease: dt.timedelta,
        stale: Callable[[str], bool] = lambda _holder: False,
    ) -> dict[int, str | None]:
        return await self.poll_store.take_leases(shipment_ids, owner=owner, now=now, lease=lease, stale=stale)

    # --- Alerts ---
    async def raise_alert(
        self, kind: str, message: str, *, now: dt.datetime, subject: str = "", shipment_id: int | None = None
    ) -> None:
        return await self.alert_store.raise_alert(
            kind, message, now=now, subject=subject, shipment_id=shipment_id
        )

    async def alerts(self, *, include_acknowledged: bool = False) -> list[AlertView]:
        return await self.alert_store.alerts(include_acknowledged=include_acknowledged)

    async def alert_summary(self) -> tuple[int, AlertView | None]:
        return await self.alert_store.alert_summary()

    async def alerts_after(self, alert_id: int, *, limit: int = 500) -> list[AlertView]:
        return await self.alert_store.alerts_after(alert_id, limit=limit)

    async def last_alert_id(self) -> int:
        return await self.alert_store.last_alert_id()

    async def resolve_alert(
        self, kind: str, *, now: dt.datetime, notice_kind: str, notice: str, subject: str = ""
    ) -> bool:
        return await self.alert_store.resolve_alert(
            kind, now=now, notice_kind=notice_kind, notice=notice, subject=subject
        )

    async def acknowledge(self, alert_ids: Sequence[int] | None, *, now: dt.datetime) -> int:
        return await self.alert_store.acknowledge(alert_ids, now=now)

    # --- Outbox ---
    async def queue_alert_notice(
        self,
        key_prefix: str,
        decide: Callable[[Sequence[AlertView]], OutboxDraft | None],
        *,
        now: dt.datetime,
    ) -> OutboxDraft | None:
        return await self.outbox_store.queue_alert_notice(key_prefix, decide, now=now)

    async def waiting_stages(self, shipment_id: int) -> dict[int, tuple[str, ...]]:
        return await self.outbox_store.waiting_stages(shipment_id)

    async def fix_date(self, message_id: int, *, owner: str, raw: bytes, now: dt.datetime) -> bool:
        return await self.outbox_store.fix_date(message_id, owner=owner, raw=raw, now=now)

    async def deferred_for_quiet_hours(self) -> list[tuple[int, str | None, dt.datetime]]:
        return await self.outbox_store.deferred_for_quiet_hours()

    async def reschedule_pending(self, moves: Sequence[tuple[int, dt.datetime]]) -> int:
        return await self.outbox_store.reschedule_pending(moves)

    async def enqueue(
        self,
        drafts: Sequence[OutboxDraft],
        *,
        now: dt.datetime,
        alert: OperatorAlert | None = None,
        shipment_id: int | None = None,
        alerts: Sequence[OperatorAlert] = (),
    ) -> int:
        return await self.outbox_store.enqueue(
            drafts, now=now, alert=alert, shipment_id=shipment_id, alerts=alerts
        )

    async def release_held(self, *, now: dt.datetime) -> int:
        return await self.outbox_store.release_held(now=now)

    async def known_dedup_keys(self, keys: Sequence[str]) -> set[str]:
        return await self.outbox_store.known_dedup_keys(keys)

    async def claim_outbox(
        self, *, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[OutboxItem]:
        return await self.outbox_store.claim_outbox(owner=owner, now=now, limit=limit, lease=lease)

    async def mark_sent(self, message_id: int, *, owner: str, now: dt.datetime, reply: str) -> bool:
        return await self.outbox_store.mark_sent(message_id, owner=owner, now=now, reply=reply)

    async def mark_retry(
        self,
        message_id: int,
        *,
        owner: str,
        error: str,
        next_attempt_at: dt.datetime,
        count_attempt: bool = True,
    ) -> bool:
        return await self.outbox_store.mark_retry(
            message_id, owner=owner, error=error, next_attempt_at=next_attempt_at, count_attempt=count_attempt
        )

    async def mark_failed(
        self, message_id: int, *, owner: str, error: str, now: dt.datetime, count_attempt: bool = True
    ) -> bool:
        return await self.outbox_store.mark_failed(
            message_id, owner=owner, error=error, now=now, count_attempt=count_attempt
        )

    async def mark_suppressed(self, message_id: int, *, owner: str) -> bool:
        return await self.outbox_store.mark_suppressed(message_id, owner=owner)

    async def outbox(
        self, *, states: Sequence[OutboxState] | None = None, limit: int = 200, rule: str | None = None
    ) -> list[OutboxItem]:
        return await self.outbox_store.outbox(states=states, limit=limit, rule=rule)

    async def outbox_for(self, number: str, *, limit: int = 200) -> list[OutboxItem]:
        return await self.outbox_store.outbox_for(number, limit=limit)

    async def outbox_item(self, message_id: int) -> OutboxItem | None:
        return await self.outbox_store.outbox_item(message_id)

    async def retry_failed(self, message_ids: Sequence[int] | None, *, now: dt.datetime) -> int:
        return await self.outbox_store.retry_failed(message_ids, now=now)

    # --- Audience ---
    async def set_subscribers(
        self, shipment_id: int, subscribers: Sequence[tuple[str, str, str | None]], *, now: dt.datetime
    ) -> None:
        return await self.audience.set_subscribers(shipment_id, subscribers, now=now)

    async def subscribe(
        self, shipment_id: int, email: str, *, locale: str, now: dt.datetime, time_zone: str | None = None
    ) -> None:
        return await self.audience.subscribe(shipment_id, email, locale=locale, now=now, time_zone=time_zone)

    async def suppress(self, email: str, *, now: dt.datetime, reason: str = "unsubscribed") -> bool:
        return await self.audience.suppress(email, now=now, reason=reason)

    async def unsuppress(self, email: str) -> bool:
        return await self.audience.unsuppress(email)

    async def suppressed_among(self, emails: Sequence[str]) -> set[str]:
        return await self.audience.suppressed_among(emails)

    async def suppress_shipment(self, email: str, number: str, *, now: dt.datetime) -> bool:
        return await self.audience.suppress_shipment(email, number, now=now)

    async def unsuppress_shipment(self, email: str, number: str) -> bool:
        return await self.audience.unsuppress_shipment(email, number)

    async def suppressed_shipments_among(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return await self.audience.suppressed_shipments_among(pairs)

    async def locale_for(self, email: str, number: str) -> str | None:
        return await self.audience.locale_for(email, number)

    async def choose_locale(self, email: str, number: str, locale: str) -> bool:
        return await self.audience.choose_locale(email, number, locale)

    async def subscription_names(self, shipment_id: int) -> dict[int, str]:
        return await self.audience.subscription_names(shipment_id)

    async def recipients(self, shipment_id: int) -> list[tuple[int, str, str, str | None]]:
        return await self.audience.recipients(shipment_id)

    async def active_subscribers(self) -> dict[int, tuple[str, ...]]:
        return await self.audience.active_subscribers()

    async def suppressions(self, *, limit: int = 500) -> list[tuple[str, str, dt.datetime]]:
        return await self.audience.suppressions(limit=limit)

    # --- Watchlist ---
    async def sync_config_watches(self, watches: Sequence[ConfiguredWatch], *, now: dt.datetime) -> WatchSync:
        return await self.watchlist.sync_config_watches(watches, now=now)

    # --- Board ---
    async def ops_counts(self, *, now: dt.datetime, overdue_before: dt.datetime) -> OpsCounts:
        return await self.board.ops_counts(now=now, overdue_before=overdue_before)

    async def count_active(self) -> int:
        return await self.board.count_active()

    async def latest_poll_error(self) -> str | None:
        return await self.board.latest_poll_error()

    async def outbox_depth(self) -> dict[str, int]:
        return await self.board.outbox_depth()

    async def last_sent_at(self) -> dt.datetime | None:
        return await self.board.last_sent_at()

    # --- Database ---
    def on_queued(self, listener: Callable[[], None]) -> None:
        return self.database.on_queued(listener)

    async def close(self) -> None:
        return await self.database.close()

    async def ping(self) -> None:
        return await self.database.ping()

    async def checkpoint(self) -> tuple[int, int, int] | None:
        return await self.database.checkpoint()
