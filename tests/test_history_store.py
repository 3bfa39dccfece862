"""History import and Store.journeys on real SQLite files and real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from notifier.core.diff import diff_detail
from notifier.core.eta import Lane
from notifier.core.history import HistoryRecord, parse_line
from notifier.core.numbers import parse_number
from notifier.core.parser import parse_page
from notifier.core.stages import Stage
from notifier.core.views import ConfiguredWatch
from notifier.pipeline.lanes import LaneCache
from notifier.store import Store
from notifier.store.orm import Event, OutboxMessage, Shipment, Subscription

CAPTURE = (Path(__file__).parent / "data" / "pages" / "en_ems_detail_intransit_2014.html").read_bytes()
T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


def record(
    number: str, *events: tuple[str, str, str], item_type: str | None = "EMS", **extra: object
) -> HistoryRecord:
    line = json.dumps(
        {
            "number": number,
            "item_type": item_type,
            "events": [{"time": t, "status": s, "office": "X", "region": r} for t, s, r in events],
            **extra,
        }
    )
    found = parse_line(line)
    assert isinstance(found, HistoryRecord), found
    return found


POSTED = ("2026-03-02T10:00", "Posting/Collection", "TOKYO")
OUT = ("2026-03-03T09:00", "Dispatch from outward office of exchange", "TOKYO")
IN = ("2026-03-05T08:00", "Arrival at inward office of exchange", "GERMANY")
DONE = ("2026-03-08T15:30", "Final delivery", "GERMANY")


async def count(store: Store, model: type[object]) -> int:
    async with store.database.reads() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_journeys_give_lane_scans_in_order_and_honour_since(store: Store) -> None:
    # A shipment the poller watched and polled from the genuine capture (created at T0).
    watched = await store.watch(parse_number("EL015307999JP"), now=T0, destination="DE")
    page = parse_page(CAPTURE)
    change = diff_detail((), page, "EL015307999JP")
    await store.record_poll(
        watched.id, change=change, item=page.item("EL015307999JP"), now=T0, next_poll_at=T0
    )
    # Its next page adds a wording no table knows: stored (as the poller does), unseen by the model.
    item = page.items[0]
    odd = dataclasses.replace(item.events[-1], status="Something new", stage=Stage.UNKNOWN)
    later = dataclasses.replace(page, items=(dataclasses.replace(item, events=(*item.events, odd)),))
    change = diff_detail(await store.history(watched.id), later, "EL015307999JP")
    await store.record_poll(watched.id, change=change, item=later.items[0], now=T0, next_poll_at=T0)
    assert len(await store.history(watched.id)) == 6
    # Imported ones: created at their first scan (March 2026), one domestic, one without destination.
    await store.import_history(
        [
            record("EJ100000003JP", POSTED, OUT, IN, DONE, destination="DE"),
            record(
                "123456789012",
                ("2026-03-01", "引受", "東京都"),
                ("2026-03-02T09:10", "お届け先にお届け済み", "大阪府"),
            ),
            record("RR100000025JP", ("2026-04-01T10:00", "引受", "東京都"), item_type=None),
        ],
        now=T0,
    )
    # Watched but never polled: no scans, no journey.
    await store.watch(parse_number("EJ100000096JP"), now=T0)

    journeys = {j.number: j for j in await store.journeys()}
    assert set(journeys) == {"EL015307999JP", "EJ100000003JP", "123456789012", "RR100000025JP"}
    assert journeys["EL015307999JP"].lane == Lane("ems", "DE")  # the page says EMS
    assert [s.stage for s in journeys["EL015307999JP"].scans] == [
        Stage.ACCEPTED,
        Stage.OUTWARD_EXCHANGE,
        Stage.DEPARTED_ORIGIN,
        Stage.INWARD_EXCHANGE,
        Stage.INLAND_TRANSIT,
    ]
    assert journeys["EL015307999JP"].scans[0].at == dt.datetime(2014, 11, 3, 20, 37)
    assert journeys["EJ100000003JP"].lane == Lane("ems", "DE")
    assert journeys["EJ100000003JP"].delivered_at == dt.datetime(2026, 3, 8, 15, 30)
    assert journeys["123456789012"].lane == Lane("domestic", "JP")
    # A date alone is its midnight.
    assert journeys["123456789012"].scans[0].at == dt.datetime(2026, 3, 1)
    assert journeys["RR100000025JP"].lane == Lane("registered", "??")

    # since: shipments first watched at or after it (imported ones: at their first scan).
    since = dt.datetime(2026, 3, 2, 1, 1, tzinfo=dt.UTC)  # 10:01 in Tokyo: just after EJ…3JP was posted
    assert {j.number for j in await store.journeys(since=since)} == {"EL015307999JP", "RR100000025JP"}
    assert {j.number for j in await store.journeys(since=T0)} == {"EL015307999JP"}
    assert await store.journeys(since=T0 + dt.timedelta(seconds=1)) == []


async def test_import_is_idempotent_merges_in_time_order_and_sends_nothing(store: Store) -> None:
    first = await store.import_history([record("EJ100000003JP", POSTED, IN, destination="DE")], now=T0)
    assert (first.added, first.events) == (1, 2)
    again = await store.import_history([record("EJ100000003JP", POSTED, IN, destination="DE")], now=T0)
    assert (again.added, again.merged, again.unchanged, again.events) == (0, 0, 1, 0)
    assert await count(store, Event) == 2

    # A later file with the whole history: the missing scans slot in between, by time.
    later = await store.import_history([record("EJ100000003JP", POSTED, OUT, IN, DONE)], now=T0)
    assert (later.merged, later.events) == (1, 2)
    (journey,) = await store.journeys()
    assert [s.stage for s in journey.scans] == [
        Stage.ACCEPTED,
        Stage.DEPARTED_ORIGIN,
        Stage.INWARD_EXCHANGE,
        Stage.DELIVERED,
    ]
    view = await store.get("EJ100000003JP")
    assert view is not None
    assert (view.stage, view.active, view.watched_by, view.next_poll_at) == (
        Stage.DELIVERED,
        False,
        "import",
        None,
    )
    assert view.destination == "DE"
    assert view.last_event_time == "2026-03-08T15:30"

    # Never polled, never mailed.
    assert (
        await store.claim_due(
            owner="t", now=T0 + dt.timedelta(days=999), limit=100, lease=dt.timedelta(minutes=1)
        )
        == []
    )
    assert await count(store, OutboxMessage) == 0
    assert await count(store, Subscription) == 0
    assert await count(store, Shipment) == 1


async def test_a_watched_number_keeps_its_own_history(store: Store) -> None:
    await store.watch(parse_number("EJ100000003JP"), now=T0)
    counts = await store.import_history([record("EJ100000003JP", POSTED, DONE)], now=T0)
    assert counts.watched == ["EJ100000003JP"]
    assert await count(store, Event) == 0
    assert await store.history_imported_at() is None


async def test_an_import_is_noticed_by_the_lane_cache(store: Store) -> None:
    await store.import_history([record("EJ100000003JP", POSTED, DONE, destination="DE")], now=T0)
    cache = LaneCache(store, import_check=dt.timedelta(0), history=dt.timedelta(days=3650))
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    before = await cache.stats(now)
    assert list(before.journeys) == [Lane("ems", "DE")]
    assert await cache.stats(now) is before  # nothing imported since: the same statistics
    await store.import_history([record("EJ100000017JP", POSTED, DONE, destination="US")], now=now)
    assert await store.history_imported_at() == now
    after = await cache.stats(now + dt.timedelta(seconds=1))
    assert set(after.journeys) == {Lane("ems", "DE"), Lane("ems", "US")}


async def test_watching_an_imported_number_polls_it_from_then_on(store: Store) -> None:
    await store.import_history([record("EJ100000003JP", POSTED, IN, destination="DE")], now=T0)
    listed = [ConfiguredWatch(number=parse_number("EJ100000003JP"), label="Order 1", subscribers=())]
    synced = await store.sync_config_watches(listed, now=T0)
    assert synced.added == ("EJ100000003JP",)
    view = await store.get("EJ100000003JP")
    assert view is not None
    assert (view.active, view.watched_by, view.next_poll_at) == (True, "config", T0)
    # The same shipment, its imported history kept: the poller compares the page with it.
    assert await count(store, Shipment) == 1
    assert len(await store.history(view.id)) == 2
    # Now watched, the next import leaves it to the poller.
    again = await store.import_history([record("EJ100000003JP", POSTED, IN, DONE)], now=T0)
    assert again.watched == ["EJ100000003JP"]
