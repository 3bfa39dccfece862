"""Adaptive polling wired into the poll cycle: against the simulator over HTTP and a real database
(SQLite and PostgreSQL), a parcel in a lane with history is scheduled by the time model."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from notifier.core import eta
from notifier.core.adaptive import AdaptivePolling, adaptive_interval
from notifier.core.numbers import parse_number
from notifier.core.policy import DEFAULT_INTERVALS, PollingPolicy
from notifier.core.stages import Stage
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.cycle import CircuitBreaker, run_cycle
from notifier.pipeline.lanes import LaneCache
from notifier.pipeline.poll import Notifier
from notifier.store import Store
from notifier.testing.simulator import Journey, Scan, Simulator, SimulatorServer, builtin_journeys
from tests.test_cycle import MAIL, RENDERER, RULES, Clock, s10
from tests.test_daemon import Run, wait_for

# 12:00 in Tokyo: the parcel left Japan at 11:00 (printed in Japan's time), an hour ago.
T = dt.datetime(2026, 6, 10, 3, 0, tzinfo=dt.UTC)
DEPARTED = dt.datetime(2026, 6, 10, 11, 0)
EMS = builtin_journeys()[0]
DISPATCH = 2  # EMS's scans: accepted, at the outward office, dispatched (departed_origin), ...
POLICY = PollingPolicy(jitter=0)


def moved(scan: Scan, by: dt.timedelta) -> Scan:
    if "T" in scan.when:
        return dataclasses.replace(
            scan, when=(dt.datetime.fromisoformat(scan.when) + by).strftime("%Y-%m-%dT%H:%M")
        )
    return dataclasses.replace(
        scan, when=(dt.date.fromisoformat(scan.when) + dt.timedelta(days=by.days)).isoformat()
    )


def copy(serial: int, *, departs: dt.datetime, flight: dt.timedelta, revealed: int = -1) -> Journey:
    """The EMS journey leaving Japan at `departs`, arriving `flight` later than it did."""
    shift = departs - dt.datetime.fromisoformat(EMS.scans[DISPATCH].when)
    scans = [moved(s, shift + (flight if i > DISPATCH else dt.timedelta(0))) for i, s in enumerate(EMS.scans)]
    return dataclasses.replace(EMS, number=s10(serial), scans=scans, revealed=revealed)


async def test_a_parcel_in_a_lane_with_history_is_polled_when_the_model_says(db_url: str) -> None:
    # Twelve EMS parcels of the same lane delivered in May, each silent after leaving Japan
    # for a different time (2 h more each): the lane's history of that stage.
    history = [
        copy(
            32_000_000 + k, departs=DEPARTED - dt.timedelta(days=20 + k), flight=2 * k * dt.timedelta(hours=1)
        )
        for k in range(12)
    ]
    parcel = copy(32_100_000, departs=DEPARTED, flight=dt.timedelta(0), revealed=DISPATCH + 1)
    simulator = Simulator([*history, parcel], seed=1)
    with SimulatorServer(simulator) as server:
        store = await Store.open(db_url)
        client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0, attempts=1))
        notifier = Notifier(rules=RULES, mail=MAIL, renderer=RENDERER)
        clock = Clock(T - dt.timedelta(days=1))
        lanes = LaneCache(store)
        try:
            for journey in [*history, parcel]:
                await store.watch(parse_number(journey.number), now=clock.now)

            async def cycle() -> None:
                await run_cycle(
                    store,
                    client,
                    notifier,
                    owner="me",
                    policy=POLICY,
                    breaker=CircuitBreaker(),
                    clock=clock,
                    rng=random.Random(3),
                    lanes=lanes,
                )

            # A day before, the history is read (and the parcel seen for the first time).
            await cycle()
            # The parcel's next poll: by the fixed schedule, as the lane had no history yet.
            [view] = [v for v in await store.shipments() if v.number == parcel.number]
            assert view.stage is Stage.DEPARTED_ORIGIN
            assert view.next_poll_at == clock.now + DEFAULT_INTERVALS[Stage.DEPARTED_ORIGIN]
            clock.now = T
            await cycle()
            [view] = [v for v in await store.shipments() if v.number == parcel.number]
            # What the model says, asked directly: an hour quiet after leaving Japan (the
            # statistics as the daemon's LaneCache builds them at T).
            utc = T.replace(tzinfo=None)
            stats = eta.lane_stats(
                await store.journeys(),
                as_of=utc + dt.timedelta(days=1),
                censor_at=utc - dt.timedelta(hours=12),
            )
            lane = eta.lane_of(number=view.number, item_type=view.item_type, origin="JP", destination=None)
            seen = eta.Journey(
                number=view.number, lane=lane, scans=(eta.Scan(at=DEPARTED, stage=Stage.DEPARTED_ORIGIN),)
            )
            local_now = DEPARTED + dt.timedelta(hours=1)
            expected = adaptive_interval(
                Stage.DEPARTED_ORIGIN,
                DEFAULT_INTERVALS[Stage.DEPARTED_ORIGIN],
                lambda w: eta.change_probability(seen, stats, now=local_now, within=w),
                AdaptivePolling(),
            )
            assert expected is not None
            assert expected != DEFAULT_INTERVALS[Stage.DEPARTED_ORIGIN]
            assert view.next_poll_at == T + expected, expected
        finally:
            await client.aclose()
            await store.close()


def test_the_daemon_polls_a_parcel_of_a_lane_with_history_when_the_model_says(tmp_path: Path) -> None:
    """End to end: the history recorded by `notifier poll`, the daemon as a subprocess with
    adaptive polling on (the default), the parcel made due with `notifier poll --now`."""
    tokyo = ZoneInfo("Asia/Tokyo")
    departed = (dt.datetime.now(tokyo) - dt.timedelta(hours=1)).replace(second=0, microsecond=0, tzinfo=None)
    # Silent after leaving Japan for 1 h 15 min more each: a few hours are the likely ones.
    history = [
        copy(33_000_000 + k, departs=departed - dt.timedelta(days=20 + k), flight=k * dt.timedelta(hours=1))
        for k in range(12)
    ]
    parcel = copy(33_100_000, departs=departed, flight=dt.timedelta(0), revealed=DISPATCH + 1)
    database = tmp_path / "notifier.db"
    with SimulatorServer(Simulator([*history, parcel], seed=1)) as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{database}"\n'
            f'[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n'
            '[polling]\ntick = "0.3s"\njitter = 0\n'
            f'[notifications]\noutbox_dir = "{tmp_path / "outbox"}"\n',
            encoding="utf-8",
        )

        def cli(*args: str) -> None:
            done = subprocess.run(
                [sys.executable, "-m", "notifier", *args, "--config", str(config)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr

        cli("db", "upgrade")
        cli("poll", *(j.number for j in [*history, parcel]))

        def polled() -> tuple[dt.datetime, dt.datetime]:
            with contextlib.closing(sqlite3.connect(database)) as connection:
                last, due = connection.execute(
                    "SELECT last_polled_at, next_poll_at FROM shipments WHERE number = ?", (parcel.number,)
                ).fetchone()
            return dt.datetime.fromisoformat(last), dt.datetime.fromisoformat(due)

        first, due = polled()
        # `notifier poll` places the next poll by the fixed interval (its clock read twice).
        assert abs(due - first - DEFAULT_INTERVALS[Stage.DEPARTED_ORIGIN]) < dt.timedelta(seconds=5)
        run = Run(config)
        try:
            wait_for(lambda: "notifier running" in run.output(), 60, run.output)
            cli("poll", "--now", parcel.number)
            wait_for(lambda: polled()[0] > first, 60, lambda: f"the daemon's poll\n{run.output()}")
        finally:
            assert run.stop() == 0, run.output()
        last, due = polled()
    # What the model says, asked directly, at the daemon's poll: an hour or so quiet (the
    # statistics as its LaneCache built them, seconds earlier).
    stats = eta.lane_stats(
        asyncio.run(_journeys(f"sqlite:///{database}")),
        as_of=last + dt.timedelta(days=1),
        censor_at=last - dt.timedelta(hours=12),
    )
    lane = eta.lane_of(number=parcel.number, item_type="EMS", origin="JP", destination=None)
    seen = eta.Journey(
        number=parcel.number, lane=lane, scans=(eta.Scan(at=departed, stage=Stage.DEPARTED_ORIGIN),)
    )
    local_now = last.replace(tzinfo=dt.UTC).astimezone(tokyo).replace(tzinfo=None)
    expected = adaptive_interval(
        Stage.DEPARTED_ORIGIN,
        DEFAULT_INTERVALS[Stage.DEPARTED_ORIGIN],
        lambda w: eta.change_probability(seen, stats, now=local_now, within=w),
        AdaptivePolling(),
    )
    assert expected is not None
    assert expected < 6 * dt.timedelta(hours=1)
    # The daemon's clock read a few milliseconds apart from the recorded poll time: within the
    # search's 10% resolution.
    assert expected / 1.15 <= due - last <= expected * 1.15, (due - last, expected)


async def _journeys(url: str) -> list[eta.Journey]:
    store = await Store.open(url)
    try:
        return await store.journeys()
    finally:
        await store.close()
