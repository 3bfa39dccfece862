"""Watch management in the store, on real SQLite and PostgreSQL: the configuration's watchlist
against CLI watches, due times moved by a policy change, `poll --now`, and the poll lease."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.policy import PollingPolicy
from notifier.core.reschedule import moves, window
from notifier.core.stages import Stage
from notifier.core.views import WATCHED_BY_CLI, WATCHED_BY_CONFIG, ConfiguredWatch, ScheduledRow
from notifier.store import Store
from notifier.store.orm import Shipment

T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def s10(serial: int) -> str:
    body = f"{serial:08d}"
    return f"EJ{body}{s10_check_digit(body)}JP"


def configured(number: str, *subscribers: str, label: str = "", locale: str = "en") -> ConfiguredWatch:
    return ConfiguredWatch(
        number=parse_number(number),
        label=label,
        subscribers=tuple((email, locale, None) for email in subscribers),
    )


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


async def active(store: Store) -> dict[str, str]:
    return {v.number: v.watched_by for v in await store.shipments()}


async def emails(store: Store, number: str) -> list[str]:
    view = await store.get(number)
    assert view is not None
    return sorted(email for _, email, _, _ in await store.recipients(view.id))


async def test_config_sync_never_unwatches_cli_watches(store: Store) -> None:
    a, b, cli = s10(1), s10(2), s10(3)
    await store.watch(parse_number(cli), now=T0, label="added by hand")
    first = await store.sync_config_watches([configured(a, "x@example.com"), configured(b)], now=T0)
    assert sorted(first.added) == sorted([a, b])
    assert await active(store) == {a: WATCHED_BY_CONFIG, b: WATCHED_BY_CONFIG, cli: WATCHED_BY_CLI}
    # b leaves the configuration: it alone stops, and the sync says which.
    second = await store.sync_config_watches([configured(a, "x@example.com")], now=T0 + HOUR)
    assert second.unwatched == (b,)
    assert await active(store) == {a: WATCHED_BY_CONFIG, cli: WATCHED_BY_CLI}
    # An empty watchlist stops the configuration's numbers, never the CLI's.
    third = await store.sync_config_watches([], now=T0 + 2 * HOUR)
    assert third.unwatched == (a,)
    assert await active(store) == {cli: WATCHED_BY_CLI}


async def test_sync_is_idempotent_and_sets_subscribers_exactly(store: Store) -> None:
    a = s10(10)
    await store.sync_config_watches(
        [configured(a, "One@Example.com", "two@example.com", label="Order 1")], now=T0
    )
    assert await emails(store, a) == ["one@example.com", "two@example.com"]
    again = await store.sync_config_watches(
        [configured(a, "One@Example.com", "two@example.com", label="Order 1")], now=T0
    )
    assert (again.added, again.updated, again.unwatched) == ((), 0, ())
    await store.sync_config_watches(
        [configured(a, "two@example.com", "three@example.com", label="Order 1b")], now=T0
    )
    assert await emails(store, a) == ["three@example.com", "two@example.com"]
    view = await store.get(a)
    assert view is not None
    assert view.label == "Order 1b"


async def test_config_takes_over_a_cli_watch_and_a_removed_number_comes_back_due(store: Store) -> None:
    a = s10(20)
    view = await store.watch(parse_number(a), now=T0)
    await store.subscribe(view.id, "cli@example.com", locale="en", now=T0)
    result = await store.sync_config_watches([configured(a, "config@example.com")], now=T0)
    assert result.taken_over == (a,)
    assert await emails(store, a) == ["config@example.com"]
    await store.sync_config_watches([], now=T0 + HOUR)
    assert await active(store) == {}
    back = await store.sync_config_watches([configured(a, "config@example.com")], now=T0 + 2 * HOUR)
    assert back.added == (a,)
    again = await store.get(a)
    assert again is not None
    assert again.active
    assert again.next_poll_at == T0 + 2 * HOUR
    # Watched again from the CLI after the config dropped it: the CLI's now.
    await store.sync_config_watches([], now=T0 + 3 * HOUR)
    await store.watch(parse_number(a), now=T0 + 4 * HOUR)
    assert (await store.sync_config_watches([], now=T0 + 5 * HOUR)).unwatched == ()
    assert await active(store) == {a: WATCHED_BY_CLI}


async def test_sync_of_thousands_is_a_handful_of_statements(store: Store) -> None:
    watches = [configured(s10(1000 + i), f"c{i}@example.com") for i in range(3000)]
    await store.sync_config_watches(watches, now=T0)
    assert await store.count_active() == 3000
    assert len(await store.subscribed_shipment_ids()) == 3000
    result = await store.sync_config_watches(watches[:2000], now=T0 + HOUR)
    assert len(result.unwatched) == 1000
    assert await store.count_active() == 2000


async def test_mark_due_and_the_poll_lease(store: Store) -> None:
    a, b = s10(30), s10(31)
    for number in (a, b):
        await store.watch(parse_number(number), now=T0, first_poll_at=T0 + 5 * HOUR)
    assert await store.mark_due([a, s10(99)], now=T0 + HOUR) == [a]
    due = await store.claim_due(owner="daemon", now=T0 + HOUR, limit=10, lease=HOUR)
    assert [v.number for v in due] == [a]
    # The daemon holds a's lease: a second poller is told who, and does not take it.
    assert await store.take_lease(due[0].id, owner="poll", now=T0 + HOUR, lease=HOUR) == "daemon"
    view_b = await store.get(b)
    assert view_b is not None
    assert await store.take_lease(view_b.id, owner="poll", now=T0 + HOUR, lease=HOUR) is None
    assert sorted(await store.mark_due(None, now=T0 + 2 * HOUR)) == sorted([a, b])


def row(stage: Stage, polled: dt.datetime, due: dt.datetime, failures: int = 0) -> ScheduledRow:
    return ScheduledRow(
        id=1,
        stage=stage,
        next_poll_at=due,
        last_polled_at=polled,
        created_at=polled - HOUR,
        last_changed_at=polled - HOUR,
        stage_entered_at=polled - HOUR,
        consecutive_failures=failures,
    )


def test_a_shorter_interval_makes_due_now_or_sooner_and_twice_moves_nothing() -> None:
    old = PollingPolicy(intervals={Stage.IN_TRANSIT: 8 * HOUR}, jitter=0.1)
    new = PollingPolicy(intervals={Stage.IN_TRANSIT: HOUR}, jitter=0.1)
    rng = random.Random(1)
    polled = T0
    waiting = row(Stage.IN_TRANSIT, polled, polled + 8 * HOUR)
    # Half an hour after the poll: due between 0.9 h and 1.1 h after it, not at 8 h.
    [(_, due)] = moves([waiting], new, now=polled + HOUR / 2, rng=rng)
    assert polled + 0.9 * HOUR <= due <= polled + 1.1 * HOUR
    # Three hours after the poll: that time has passed, so due now.
    [(_, due)] = moves([waiting], new, now=polled + 3 * HOUR, rng=rng)
    assert due == polled + 3 * HOUR
    # Already in its window (old policy on old rows; new policy on moved rows): stays put.
    assert moves([waiting], old, now=polled + HOUR, rng=rng) == []
    moved = row(Stage.IN_TRANSIT, polled, polled + HOUR)
    assert moves([moved], new, now=polled + HOUR / 2, rng=rng) == []


def test_a_longer_interval_pushes_due_times_back_and_failures_keep_their_backoff() -> None:
    new = PollingPolicy(intervals={Stage.OUT_FOR_DELIVERY: 4 * HOUR}, jitter=0.0)
    [(_, due)] = moves(
        [row(Stage.OUT_FOR_DELIVERY, T0, T0 + HOUR / 2)], new, now=T0 + HOUR / 4, rng=random.Random(2)
    )
    assert due == T0 + 4 * HOUR
    failing = row(Stage.OUT_FOR_DELIVERY, T0, T0 + 8 * HOUR, failures=1)
    assert window(failing, new) == (T0 + 8 * HOUR, T0 + 8 * HOUR)  # doubled once, as the cycle did
    assert moves([failing], new, now=T0, rng=random.Random(3)) == []


async def test_a_listed_number_retired_as_reused_is_not_watched_again(store: Store) -> None:
    """Japan Post shows a stranger's parcel under the number now: the watchlist's entry was for
    the old one, so a reload must not start a new incarnation and mail its subscribers."""
    number = parse_number("EJ123456785JP")
    listed = [ConfiguredWatch(number=number, label="Order 1", subscribers=(("a@example.com", "en", None),))]
    first = await store.sync_config_watches(listed, now=T0)
    assert first.added == (number.value,)
    shipment = await store.get(number.value)
    assert shipment is not None
    # What a poll does on a number_reused anomaly (tests/test_store.py drives it from pages).
    async with store.engine.begin() as connection:
        await connection.execute(
            update(Shipment)
            .where(Shipment.id == shipment.id)
            .values(active=False, retired_at=T0 + dt.timedelta(days=1), next_poll_at=None)
        )
    again = await store.sync_config_watches(listed, now=T0 + dt.timedelta(days=2))
    assert again.added == ()
    assert again.reused == (number.value,)
    # No new incarnation, nothing polled: nobody hears about a stranger's parcel.
    assert [(v.incarnation, v.active) for v in await store.shipments(include_inactive=True)] == [(1, False)]
    # The shop's way back, for a new parcel of its own: out of the watchlist, then watched by hand.
    await store.sync_config_watches([], now=T0 + dt.timedelta(days=3))
    fresh = await store.watch(number, now=T0 + dt.timedelta(days=3))
    assert fresh.incarnation == 2
