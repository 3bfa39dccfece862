"""The time model on a real store: Store.journeys() feeds lane_stats() and estimate()."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from notifier.core.diff import diff_detail
from notifier.core.eta import Lane, estimate, lane_stats
from notifier.core.numbers import parse_number
from notifier.core.stages import Stage
from notifier.core.views import PageCapture
from notifier.store import Store
from tests.test_store import CAPTURE, NUMBER, page_with

T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


async def test_a_stored_shipment_becomes_a_journey_on_its_lane_with_a_prior_window(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0, destination="US")
    page = page_with(5)
    await store.record_poll(
        shipment.id,
        change=diff_detail((), page, NUMBER),
        item=page.item(NUMBER),
        now=T0,
        next_poll_at=None,
        capture=PageCapture(body=CAPTURE, url="http://jp/test", layout=str(page.layout), note=page.reason),
    )
    (journey,) = await store.journeys()
    assert journey.number == NUMBER
    assert journey.lane == Lane("ems", "US")
    assert [scan.stage for scan in journey.scans][:2] == [Stage.ACCEPTED, Stage.OUTWARD_EXCHANGE]
    assert len(journey.scans) == 5
    last = journey.scans[-1].at
    stats = lane_stats([journey], as_of=last)
    shown = estimate(journey, stats, now=last)
    assert shown.window is not None
    assert shown.window.basis == "prior"
    assert shown.window.earliest >= last.date()
    # The capture is from 2014: asked today, that window has long passed.
    late = estimate(journey, stats, now=T0.replace(tzinfo=None))
    assert late.withheld == "passed"
    assert late.running_late
    # A shipment watched before `since` is left out.
    assert await store.journeys(since=T0 + dt.timedelta(days=1)) == []
