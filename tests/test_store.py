"""The store on real SQLite files and real PostgreSQL: polls, idempotence, leases, alerts, retention."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.core.diff import AnomalyKind, diff_detail
from notifier.core.model import Layout, Locale, Page
from notifier.core.numbers import parse_number
from notifier.core.parser import parse_page
from notifier.core.stages import Stage
from notifier.core.views import PageCapture
from notifier.errors import LeaseLostError
from notifier.store import Store

PAGES = Path(__file__).parent / "data" / "pages"
CAPTURE = (PAGES / "en_ems_detail_intransit_2014.html").read_bytes()
NUMBER = "EL015307999JP"
T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def page_with(count: int) -> Page:
    """The genuine capture cut to its first `count` events, as an earlier poll would have seen it."""
    full = parse_page(CAPTURE)
    item = full.items[0]
    return Page(
        layout=full.layout,
        locale=full.locale,
        items=(
            type(item)(
                number=item.number,
                outcome=item.outcome,
                item_type=item.item_type,
                events=item.events[:count],
                offices=item.offices,
            ),
        ),
    )


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


async def poll(store: Store, shipment_id: int, page: Page, now: dt.datetime, owner: str | None = None):
    stored = await store.history(shipment_id)
    change = diff_detail(stored, page, NUMBER)
    await store.record_poll(
        shipment_id,
        change=change,
        item=page.item(NUMBER),
        now=now,
        next_poll_at=now + dt.timedelta(hours=1),
        capture=PageCapture(body=CAPTURE, url="http://jp/test", layout=str(page.layout), note=page.reason),
        owner=owner,
    )
    return change


async def test_polls_build_history_idempotently(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0, label="Order 1001")
    assert shipment.stage is Stage.PENDING
    first = await poll(store, shipment.id, page_with(2), T0)
    assert first.first_sight
    second = await poll(store, shipment.id, page_with(5), T0 + dt.timedelta(hours=1))
    assert [t.to_stage for t in second.transitions] == [
        Stage.DEPARTED_ORIGIN,
        Stage.INWARD_EXCHANGE,
        Stage.INLAND_TRANSIT,
    ]
    again = await poll(store, shipment.id, page_with(5), T0 + dt.timedelta(hours=2))
    assert not again.changed
    history = await store.history(shipment.id)
    assert history == parse_page(CAPTURE).items[0].events
    view = await store.get(NUMBER)
    assert view is not None
    assert view.stage is Stage.INLAND_TRANSIT
    assert view.item_type == "EMS"
    assert view.last_event_time == "2014-11-05T14:03"
    # Events abroad have no zone, so the stage's entry time falls back to the poll time.
    assert view.stage_entered_at == T0 + dt.timedelta(hours=1)
    assert view.last_changed_at == T0 + dt.timedelta(hours=1)
    assert view.last_polled_at == T0 + dt.timedelta(hours=2)
    assert view.next_poll_at == T0 + dt.timedelta(hours=3)
    contacts = await store.contacts(shipment.id)
    assert [(c.role, c.office, c.phone) for c in contacts] == [
        ("Acceptance", "HIGASHIKURUME", "042-473-8141")
    ]
    # Snapshots only for polls that changed something.
    assert [reason for reason, _, _ in await store.snapshots(NUMBER)] == ["changed", "changed"]


async def test_replaying_a_recorded_poll_inserts_nothing(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0)
    change = diff_detail((), page_with(3), NUMBER)
    for attempt in range(2):  # a crash after commit makes the daemon record the same change again
        await store.record_poll(
            shipment.id, change=change, item=page_with(3).items[0], now=T0, next_poll_at=None
        )
        assert len(await store.history(shipment.id)) == 3, attempt


async def test_shorter_page_keeps_history_and_raises_one_counted_alert(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0)
    await poll(store, shipment.id, page_with(5), T0)
    for hour in (1, 2):
        change = await poll(store, shipment.id, page_with(3), T0 + dt.timedelta(hours=hour))
        assert [a.kind for a in change.anomalies] == [AnomalyKind.HISTORY_SHORTER]
    assert len(await store.history(shipment.id)) == 5
    alerts = await store.alerts()
    assert [(a.kind, a.subject, a.count) for a in alerts] == [("history_shorter", NUMBER, 2)]
    assert alerts[0].first_seen_at == T0 + dt.timedelta(hours=1)
    assert alerts[0].last_seen_at == T0 + dt.timedelta(hours=2)
    view = await store.get(NUMBER)
    assert view is not None
    assert view.open_alerts == 1
    assert view.stage is Stage.INLAND_TRANSIT
    assert await store.acknowledge([alerts[0].id], now=T0) == 1
    assert await store.alerts() == []
    # After acknowledgement a repeat opens a fresh alert instead of reviving the old one.
    await poll(store, shipment.id, page_with(3), T0 + dt.timedelta(hours=3))
    fresh = await store.alerts()
    assert [(a.kind, a.count) for a in fresh] == [("history_shorter", 1)]
    assert len(await store.alerts(include_acknowledged=True)) == 2


async def test_unrecognized_page_counts_a_failure_and_touches_no_history(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0)
    await poll(store, shipment.id, page_with(2), T0)
    broken = parse_page(b"<html><body>maintenance</body></html>")
    assert broken.layout is Layout.UNRECOGNIZED
    for hour in (1, 2):
        await poll(store, shipment.id, broken, T0 + dt.timedelta(hours=hour))
    view = await store.get(NUMBER)
    assert view is not None
    assert view.consecutive_failures == 2
    assert view.last_error is not None
    assert "neither" in view.last_error
    assert view.stage is Stage.OUTWARD_EXCHANGE
    assert len(await store.history(shipment.id)) == 2
    assert [a.kind for a in await store.alerts()] == ["unrecognized_page"]
    assert [r for r, _, _ in await store.snapshots(NUMBER)] == ["unrecognized", "unrecognized", "changed"]
    await poll(store, shipment.id, page_with(3), T0 + dt.timedelta(hours=3))
    view = await store.get(NUMBER)
    assert view is not None
    assert view.consecutive_failures == 0
    assert view.last_error is None


async def test_fetch_failures_are_counted(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0)
    assert await store.record_failure(shipment.id, error="HTTP 500", now=T0, next_poll_at=T0) == 1
    assert await store.record_failure(shipment.id, error="HTTP 503", now=T0, next_poll_at=T0) == 2
    view = await store.get(NUMBER)
    assert view is not None
    assert view.last_error == "HTTP 503"


async def test_leases_fence_concurrent_claims(db_url: str) -> None:
    first, second = await Store.open(db_url), await Store.open(db_url)
    try:
        for i in range(30):
            number = parse_number(f"1234567890{i:02d}")
            await first.watch(number, now=T0, first_poll_at=T0 - dt.timedelta(minutes=i))
        lease = dt.timedelta(minutes=5)
        claims = await asyncio.gather(
            first.claim_due(owner="a", now=T0, limit=20, lease=lease),
            second.claim_due(owner="b", now=T0, limit=20, lease=lease),
        )
        a_ids, b_ids = {v.id for v in claims[0]}, {v.id for v in claims[1]}
        assert not a_ids & b_ids
        assert len(a_ids | b_ids) == 30
        # Leased rows are not due for anyone until the lease runs out...
        assert await first.claim_due(owner="c", now=T0 + dt.timedelta(minutes=1), limit=50, lease=lease) == []
        # ...then a crashed owner's rows come back.
        later = await first.claim_due(owner="c", now=T0 + dt.timedelta(minutes=6), limit=50, lease=lease)
        assert len(later) == 30
        victim = later[0]
        change = diff_detail((), page_with(1), NUMBER)
        with pytest.raises(LeaseLostError):
            await first.record_poll(victim.id, change=change, item=None, now=T0, next_poll_at=None, owner="a")
        assert await first.history(victim.id) == ()
        await first.record_poll(victim.id, change=change, item=None, now=T0, next_poll_at=None, owner="c")
        assert len(await first.history(victim.id)) == 1
    finally:
        await first.close()
        await second.close()


async def test_claims_come_in_due_order_and_skip_inactive(store: Store) -> None:
    numbers = [f"9876543210{i:02d}" for i in range(5)]
    for i, number in enumerate(numbers):
        await store.watch(parse_number(number), now=T0, first_poll_at=T0 - dt.timedelta(minutes=10 - i))
    await store.watch(parse_number("987654321099"), now=T0, first_poll_at=T0 + dt.timedelta(hours=1))
    assert await store.unwatch(numbers[0])
    claimed = await store.claim_due(owner="x", now=T0, limit=10, lease=dt.timedelta(minutes=1))
    assert [v.number for v in claimed] == numbers[1:]
    assert [v.number for v in await store.shipments()] == sorted([*numbers[1:], "987654321099"])
    assert len(await store.shipments(include_inactive=True)) == 6


async def test_snapshot_retention_by_age_and_count(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0)
    for count in range(1, 6):
        await poll(store, shipment.id, page_with(count), T0 + dt.timedelta(days=count))
    assert len(await store.snapshots(NUMBER)) == 5
    removed = await store.prune_snapshots(
        now=T0 + dt.timedelta(days=6), max_age=dt.timedelta(days=4, hours=12), keep_per_shipment=10
    )
    assert removed == 1
    removed = await store.prune_snapshots(
        now=T0 + dt.timedelta(days=6), max_age=dt.timedelta(days=30), keep_per_shipment=2
    )
    assert removed == 2
    kept = await store.snapshots(NUMBER)
    assert len(kept) == 2
    assert all(body == CAPTURE for _, _, body in kept)


async def test_subscriptions_are_unique_per_person_and_shipment(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0)
    await store.subscribe(shipment.id, "a@example.com", locale="en", now=T0)
    await store.subscribe(shipment.id, "a@example.com", locale="ja", now=T0, time_zone="Asia/Tokyo")
    from sqlalchemy import func, select

    from notifier.store.orm import Subscription

    async with store.engine.connect() as connection:
        rows = (
            await connection.execute(select(Subscription.locale, func.count()).group_by(Subscription.locale))
        ).all()
    assert [tuple(row) for row in rows] == [("ja", 1)]


async def test_watch_keeps_one_row_per_number(store: Store) -> None:
    a = await store.watch(parse_number(NUMBER), now=T0, label="first")
    b = await store.watch(parse_number("el 015 307 999 jp"), now=T0, label="second")
    assert a.id == b.id
    view = await store.get(NUMBER)
    assert view is not None
    assert view.label == "second"
    assert view.incarnation == 1
    assert Locale.EN  # the store is locale-agnostic; polls always read English pages


async def test_reused_number_retires_the_old_shipment(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0)
    await poll(store, shipment.id, page_with(5), T0)
    # A year later the same number is on a new parcel: other events, long after ours ended.
    old_events = parse_page(CAPTURE).items[0].events
    new_events = tuple(
        type(e)(
            when=type(e.when)(date=e.when.date.replace(year=2015), time=e.when.time, zone=e.when.zone),
            status=e.status,
            stage=e.stage,
            office=e.office,
            region=e.region,
            postal_code=e.postal_code,
        )
        for e in old_events[:2]
    )
    reused = Page(
        layout=Layout.DETAIL,
        locale=Locale.EN,
        items=(
            type(page_with(1).items[0])(
                number=NUMBER, outcome=page_with(1).items[0].outcome, events=new_events
            ),
        ),
    )
    change = await poll(store, shipment.id, reused, T0 + dt.timedelta(days=1))
    assert [a.kind for a in change.anomalies] == [AnomalyKind.NUMBER_REUSED]
    assert not change.changed
    assert len(await store.history(shipment.id)) == 5
    old = await store.get(NUMBER)
    assert old is not None
    assert not old.active
    assert [a.kind for a in await store.alerts()] == ["number_reused"]
    fresh = await store.watch(parse_number(NUMBER), now=T0 + dt.timedelta(days=2))
    assert fresh.incarnation == 2
    assert fresh.id != shipment.id
    assert await store.history(fresh.id) == ()
    assert [v.incarnation for v in await store.shipments(include_inactive=True)] == [1, 2]


async def test_snapshots_are_stored_compressed(store: Store) -> None:
    from sqlalchemy import func, select

    from notifier.store.orm import Snapshot

    shipment = await store.watch(parse_number(NUMBER), now=T0)
    await poll(store, shipment.id, page_with(5), T0)
    async with store.engine.connect() as connection:
        stored = (await connection.execute(select(func.length(Snapshot.body)))).scalar_one()
    assert stored < len(CAPTURE) / 3
    ((_, _, body),) = await store.snapshots(NUMBER)
    assert body == CAPTURE


async def test_concurrent_writers_on_one_store_never_hit_a_locked_database(store: Store) -> None:
    numbers = [f"5555555555{i:02d}" for i in range(8)]
    views = [await store.watch(parse_number(n), now=T0) for n in numbers]

    async def hammer(view_id: int) -> None:
        for round_ in range(15):
            await store.record_failure(view_id, error=f"round {round_}", now=T0, next_poll_at=T0)
            await store.raise_alert("test", "busy", now=T0, subject=str(view_id))

    await asyncio.gather(*(hammer(v.id) for v in views))
    assert {v.consecutive_failures for v in await store.shipments()} == {15}


async def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path, sqlite_template: Path) -> None:
    import shutil
    import sqlite3
    import time

    path = tmp_path / "busy.db"
    shutil.copyfile(sqlite_template, path)
    store = await Store.open(f"sqlite:///{path}")
    try:
        shipment = await store.watch(parse_number(NUMBER), now=T0)
        await poll(store, shipment.id, page_with(3), T0)
        writer = sqlite3.connect(path)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE shipments SET label = 'in flight'")
        started = time.monotonic()
        history = await store.history(shipment.id)
        view = await store.get(NUMBER)
        elapsed = time.monotonic() - started
        writer.rollback()
        writer.close()
        assert len(history) == 3
        assert view is not None
        assert view.label == ""  # the writer's uncommitted change is invisible
        assert elapsed < 1.0  # a write transaction would have waited for the 5 s busy timeout
    finally:
        await store.close()


async def test_batched_reads_and_unchanged_polls_respect_leases(store: Store) -> None:
    first = await store.watch(parse_number(NUMBER), now=T0)
    second = await store.watch(parse_number("EJ123456785JP"), now=T0)
    await poll(store, first.id, page_with(3), T0)
    histories = await store.histories([first.id, second.id])
    assert len(histories[first.id]) == 3
    assert histories[second.id] == ()
    claimed = await store.claim_due(
        owner="me", now=T0 + dt.timedelta(hours=2), limit=10, lease=dt.timedelta(minutes=5)
    )
    assert {v.id for v in claimed} == {first.id, second.id}
    later = T0 + dt.timedelta(hours=3)
    assert (
        await store.record_unchanged([(first.id, later), (second.id, None)], now=later, owner="someone else")
        == 0
    )
    assert await store.record_unchanged([(first.id, later), (second.id, None)], now=later, owner="me") == 2
    view = await store.get(NUMBER)
    assert view is not None
    assert (view.next_poll_at, view.last_polled_at) == (later, later)
    assert len(await store.history(first.id)) == 3  # nothing but the polling state moved
    assert await store.count_active() == 2


async def test_claim_takes_what_falls_due_by_the_given_time_and_no_later(store: Store) -> None:
    """The daemon claims at each tick what falls due before the next one (`due_by`)."""
    soon = await store.watch(parse_number(NUMBER), now=T0, first_poll_at=T0 + dt.timedelta(seconds=3))
    later = await store.watch(
        parse_number("EJ123456785JP"), now=T0, first_poll_at=T0 + dt.timedelta(seconds=30)
    )
    lease = dt.timedelta(minutes=5)
    assert await store.claim_due(owner="me", now=T0, limit=10, lease=lease) == []
    claimed = await store.claim_due(
        owner="me", now=T0, limit=10, lease=lease, due_by=T0 + dt.timedelta(seconds=5)
    )
    assert [v.id for v in claimed] == [soon.id]
    assert claimed[0].next_poll_at == T0 + dt.timedelta(seconds=3)
    rest = await store.claim_due(
        owner="me", now=T0, limit=10, lease=lease, due_by=T0 + dt.timedelta(minutes=1)
    )
    assert [v.id for v in rest] == [later.id]  # the first is leased already
