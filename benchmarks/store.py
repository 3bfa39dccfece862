"""Store throughput and size: polls recorded per second, lease claims, and bytes per 10,000 shipments.

    python benchmarks/store.py [--shipments N] [--backend sqlite|postgresql|both] [--sample S]

Per backend: a fresh database (a file in a temporary directory; a PostgreSQL database created
and dropped here), migrated to head; N shipments watched; N - S of them filled to their full
history with one `record_poll` each (the fastest path the Store offers: the Change is computed
once per journey, no history read); then every poll of the other S shipments, one scan at a
time, is timed the way the daemon records one (history, diff_detail, record_poll), once with
the new page ("changed": new events and a snapshot) and once with the same page again
("unchanged"). Pages are rendered by the simulator and parsed once per journey and step,
outside the timed section. Then lease claims in batches of 100, and the database size with and
without the snapshots.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

import asyncpg
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url

from notifier.core.diff import Change, diff_detail
from notifier.core.model import DEFAULT_BASE_URL, DETAIL_PATH, ItemResult, Layout, Page
from notifier.core.numbers import TrackingNumber, parse_number, s10_check_digit
from notifier.core.parser import parse_page
from notifier.core.views import PageCapture
from notifier.pipeline.poll import POLL_LOCALE
from notifier.store import Store
from notifier.store.database import make_engine, upgrade
from notifier.testing.simulator import Journey, Simulator, builtin_journeys, catalog_journeys

POSTGRES_URL = os.environ.get("NOTIFIER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
CLAIM_BATCH = 100
LEASE = dt.timedelta(minutes=10)
PER = 10_000  # sizes are reported per this many shipments
# PostgreSQL overlaps the client's Python work with the server's across connections; SQLite has
# one writer, and extra connections only add lock waits, so it is filled by one.
FILL_WORKERS = {"sqlite": 1, "postgresql": 4}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Step:
    """The detail page of a journey with its first `count` scans visible, parsed once."""

    count: int
    body: bytes
    page: Page
    item: ItemResult


@dataclass(slots=True)
class Route:
    """One scripted journey: its pages step by step and the Change that fills a fresh shipment."""

    journey: Journey
    steps: list[Step]
    fill: Change

    @property
    def number(self) -> str:
        return self.journey.number


@dataclass(slots=True)
class Shipment:
    number: TrackingNumber
    route: Route
    id: int = 0


@dataclass(slots=True)
class Timer:
    """Wall time of timed polls, split into the three calls a poll makes."""

    polls: int = 0
    history: float = 0.0
    diff: float = 0.0
    record: float = 0.0

    @property
    def total(self) -> float:
        return self.history + self.diff + self.record


@dataclass(slots=True)
class Sizes:
    empty: int = 0
    with_snapshots: int = 0
    without_snapshots: int = 0
    events: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    backend: str

    def line(self, what: str, figure: str) -> None:
        print(f"{self.backend:<10} {what:<40} {figure}", flush=True)


def expect(condition: bool, message: str) -> None:
    """A sanity check that `python -O` keeps: figures from a wrong workload are worse than none."""
    if not condition:
        raise RuntimeError(message)


# --- workload ------------------------------------------------------------------------------


def routes() -> list[Route]:
    """The simulator's journeys of 8 to 11 scans, each rendered and parsed at every step."""
    journeys = [j for j in builtin_journeys() + catalog_journeys() if 8 <= len(j.scans) <= 11]
    simulator = Simulator(journeys, seed=1)
    result = []
    for journey in journeys:
        steps = []
        for count in range(1, len(journey.scans) + 1):
            simulator.reveal(journey.number, count)
            body = simulator.render_detail(journey.number, str(POLL_LOCALE)).encode()
            page = parse_page(body, requested=(journey.number,))
            item = page.item(journey.number)
            if page.layout is not Layout.DETAIL or item is None or len(item.events) != count:
                raise RuntimeError(f"{journey.number}: step {count} does not parse as {count} events")
            steps.append(Step(count, body, page, item))
        fill = diff_detail((), steps[-1].page, journey.number)
        expect(fill.changed and not fill.anomalies, f"{journey.number}: the fill Change is not clean")
        result.append(Route(journey, steps, fill))
    return result


def shipments(count: int, routes_: Sequence[Route], seed: int = 20261101) -> list[Shipment]:
    """Valid numbers: S10 ones on the international journeys, 12-digit ones on domestic journeys."""
    rng = random.Random(seed)
    international = [r for r in routes_ if r.journey.international]
    domestic = [r for r in routes_ if not r.journey.international]
    serials = rng.sample(range(10_000_000, 100_000_000), count)
    result = []
    for index, serial in enumerate(serials):
        # One in four is domestic; within each kind the journeys take turns.
        if index % 4 == 3 and domestic:
            route = domestic[index // 4 % len(domestic)]
            value = f"{serial:08d}{rng.randrange(10_000):04d}"
        else:
            route = international[(index - index // 4) % len(international)]
            value = f"{route.number[:2]}{serial:08d}{s10_check_digit(f'{serial:08d}')}JP"
        result.append(Shipment(parse_number(value), route))
    expect(len({s.number.value for s in result}) == count, "duplicate tracking numbers")
    return result


def capture(shipment: Shipment, step: Step) -> PageCapture:
    query = urlencode({"reqCodeNo1": shipment.number.value, "locale": str(POLL_LOCALE)})
    return PageCapture(
        body=step.body,
        url=f"{DEFAULT_BASE_URL}{DETAIL_PATH}?{query}",
        layout=str(step.page.layout),
        note=step.page.reason,
    )


async def in_parallel(items: Iterable[T], workers: int, action: Callable[[T], Awaitable[None]]) -> None:
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await action(item)

    await asyncio.gather(*(worker() for _ in range(workers)))


# --- phases --------------------------------------------------------------------------------


async def watch_all(store: Store, fleet: Sequence[Shipment], workers: int) -> float:
    async def watch(shipment: Shipment) -> None:
        view = await store.watch(shipment.number, now=T0, label=f"order {shipment.number.value[-6:]}")
        shipment.id = view.id

    started = time.perf_counter()
    await in_parallel(fleet, workers, watch)
    return time.perf_counter() - started


async def fill(store: Store, fleet: Sequence[Shipment], workers: int) -> float:
    """Full history in one record_poll per shipment, with the Change computed once per journey."""
    now = T0 + dt.timedelta(days=1)

    async def record(shipment: Shipment) -> None:
        route = shipment.route
        await store.record_poll(
            shipment.id,
            change=route.fill,
            item=route.steps[-1].item,
            now=now,
            next_poll_at=now + dt.timedelta(hours=6),
            capture=capture(shipment, route.steps[-1]),
        )

    started = time.perf_counter()
    await in_parallel(fleet, workers, record)
    return time.perf_counter() - started


async def timed_polls(store: Store, sample: Sequence[Shipment]) -> tuple[Timer, Timer]:
    """Every step of every sampled shipment, as the daemon records it; each page twice."""
    changed, unchanged = Timer(), Timer()
    longest = max(len(s.route.steps) for s in sample)
    for index in range(longest):
        for shipment in sample:
            if index >= len(shipment.route.steps):
                continue
            step = shipment.route.steps[index]
            for timer, minutes in ((changed, 0), (unchanged, 30)):
                now = T0 + dt.timedelta(days=2, hours=index, minutes=minutes)
                page_capture = capture(shipment, step)
                started = time.perf_counter()
                history = await store.history(shipment.id)
                read = time.perf_counter()
                # Pages are rendered once per journey and step, so they carry the journey's number.
                change = diff_detail(history, step.page, shipment.route.number)
                diffed = time.perf_counter()
                await store.record_poll(
                    shipment.id,
                    change=change,
                    item=step.item,
                    now=now,
                    next_poll_at=now + dt.timedelta(hours=1),
                    capture=page_capture,
                )
                done = time.perf_counter()
                expect(change.changed is (timer is changed), f"{shipment.number}: unexpected {change}")
                expect(not change.anomalies, f"{shipment.number}: anomalies {change.anomalies}")
                timer.polls += 1
                timer.history += read - started
                timer.diff += diffed - read
                timer.record += done - diffed
    return changed, unchanged


async def claims(store: Store) -> tuple[list[float], int]:
    """Lease every shipment, CLAIM_BATCH at a time: (time of each claim, shipments leased)."""
    now = T0 + dt.timedelta(days=30)
    durations: list[float] = []
    leased = 0
    while True:
        started = time.perf_counter()
        batch = await store.claim_due(owner="bench", now=now, limit=CLAIM_BATCH, lease=LEASE)
        if not batch:
            return durations, leased
        durations.append(time.perf_counter() - started)
        leased += len(batch)


async def scalar(store: Store, query: str) -> int:
    async with store.engine.connect() as connection:
        return int((await connection.execute(text(query))).scalar_one())


async def count_rows(store: Store, sizes: Sizes) -> None:
    sizes.events = await scalar(store, "SELECT count(*) FROM events")
    sizes.snapshots = await scalar(store, "SELECT count(*) FROM snapshots")
    sizes.snapshot_bytes = await scalar(store, "SELECT coalesce(sum(length(body)), 0) FROM snapshots")


async def drop_snapshots(store: Store) -> None:
    removed = await store.prune_snapshots(
        now=T0 + dt.timedelta(days=365), max_age=dt.timedelta(0), keep_per_shipment=0
    )
    expect(removed > 0, "prune_snapshots removed nothing")


# --- backends ------------------------------------------------------------------------------


def sqlite_size(path: Path) -> int:
    """File size after a checkpoint, the -wal included (a truncating checkpoint leaves it empty)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        expect(busy == 0, "the checkpoint was blocked")
    finally:
        connection.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def sqlite_vacuum(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("VACUUM")
    finally:
        connection.close()


async def connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )


async def admin(url: str, *statements: str) -> None:
    """Statements outside any transaction (CREATE DATABASE, VACUUM)."""
    connection = await connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def query(url: str, statement: str) -> str:
    connection = await connect(url)
    try:
        return str(await connection.fetchval(statement))
    finally:
        await connection.close()


async def database_size(url: str, sqlite_path: Path | None) -> int:
    """SQLite: the file and its -wal after a checkpoint. PostgreSQL: pg_database_size."""
    if sqlite_path is not None:
        return sqlite_size(sqlite_path)
    return int(await query(url, "SELECT pg_database_size(current_database())"))


async def run_backend(
    backend: str, url: str, fleet: list[Shipment], sample_size: int, report: Report
) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    sizes = Sizes()
    sqlite_path = Path(make_url(url).database or "") if backend == "sqlite" else None
    sizes.empty = await database_size(url, sqlite_path)

    workers = FILL_WORKERS[backend]
    sample = random.Random(7).sample(fleet, min(sample_size, len(fleet)))
    chosen = {id(s) for s in sample}
    rest = [s for s in fleet if id(s) not in chosen]
    store = await Store.open(url)
    try:
        elapsed = await watch_all(store, fleet, workers)
        report.line(
            "watch",
            f"{len(fleet) / elapsed:8,.0f} shipments/s  ({len(fleet):,} watched, {workers} connection(s))",
        )
        elapsed = await fill(store, rest, workers)
        if rest:
            report.line(
                "fill: record_poll of a full page",
                f"{len(rest) / elapsed:8,.0f} polls/s      ({len(rest):,} shipments, Change precomputed, "
                f"{workers} connection(s), untimed path of the size figures)",
            )
        changed, unchanged = await timed_polls(store, sample)
        for label, timer in (("changed", changed), ("unchanged", unchanged)):
            report.line(
                f"poll {label} (history+diff+record)",
                f"{timer.polls / timer.total:8,.0f} polls/s      "
                f"{timer.total / timer.polls * 1e3:5.2f} ms = history {timer.history / timer.polls * 1e3:.2f}"
                f" + diff {timer.diff / timer.polls * 1e3:.2f} + record_poll "
                f"{timer.record / timer.polls * 1e3:.2f}  ({timer.polls:,} polls timed, "
                f"{len(sample):,} shipments x every step)",
            )
        durations, claimed = await claims(store)
        expect(claimed == len(fleet), f"claimed {claimed} of {len(fleet)} shipments")
        report.line(
            f"claim_due, batches of {CLAIM_BATCH} + lease",
            f"{len(durations) / sum(durations):8,.0f} claims/s     = {claimed / sum(durations):,.0f} "
            f"shipments/s; median {statistics.median(durations) * 1e3:.1f} ms, first "
            f"{durations[0] * 1e3:.1f} ms, last {durations[-1] * 1e3:.1f} ms ({len(durations)} claims)",
        )
        await count_rows(store, sizes)
    finally:
        await store.close()
    sizes.with_snapshots = await database_size(url, sqlite_path)
    store = await Store.open(url)
    try:
        await drop_snapshots(store)
    finally:
        await store.close()
    if sqlite_path is not None:
        sqlite_vacuum(sqlite_path)
    else:
        await admin(url, "VACUUM")
    sizes.without_snapshots = await database_size(url, sqlite_path)
    report_sizes(report, sizes, fleet)


def report_sizes(report: Report, sizes: Sizes, fleet: Sequence[Shipment]) -> None:
    scale = PER / len(fleet)

    def per(size: int) -> str:
        return f"{(size - sizes.empty) * scale / 2**20:8,.1f} MiB"

    changed_polls = sum(len(s.route.steps) for s in fleet)
    per_snapshot = (sizes.with_snapshots - sizes.without_snapshots) / sizes.snapshots
    report.line(
        f"size per {PER:,} shipments, as filled",
        f"{per(sizes.with_snapshots)}  ({sizes.events / len(fleet):.1f} events and "
        f"{sizes.snapshots / len(fleet):.2f} snapshots per shipment, "
        f"{sizes.snapshot_bytes / sizes.snapshots / 1024:.1f} KiB of HTML each; "
        f"empty schema {sizes.empty / 2**20:.1f} MiB not counted)",
    )
    report.line(
        f"size per {PER:,} shipments, no snapshots",
        f"{per(sizes.without_snapshots)}  (snapshots deleted, VACUUM)",
    )
    projected = sizes.without_snapshots + per_snapshot * changed_polls
    report.line(
        f"size per {PER:,}, snapshot per changed poll",
        f"{per(int(projected))}  projected: {per_snapshot / 1024:.1f} KiB on disk per snapshot x "
        f"{changed_polls / len(fleet):.2f} changed polls per shipment",
    )


async def postgres_database(base_url: str) -> tuple[str, str] | str:
    """(URL of a fresh database, server version), or why PostgreSQL cannot be used."""
    name = f"notifier_bench_{os.getpid()}"
    try:
        version = await query(base_url, "SHOW server_version")
        await admin(base_url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        return f"unreachable at {make_url(base_url).render_as_string()}: {exc}"
    return make_url(base_url).set(database=name).render_as_string(hide_password=False), version


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    prepared = routes()
    fleet_template = shipments(args.shipments, prepared)
    print(
        f"python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"{os.cpu_count()} CPUs; {args.shipments:,} shipments, {len(prepared)} journeys of "
        f"{'/'.join(str(len(r.steps)) for r in prepared)} scans; pages parsed in advance "
        f"({sum(len(r.steps) for r in prepared)} pages)"
    )
    sampled = min(args.sample, args.shipments)
    print(
        f"poll rates: every step of {sampled:,} sampled shipments, timed (a sample, not all "
        f"{args.shipments:,} shipments' polls); the other {args.shipments - sampled:,} are filled untimed "
        "with one record_poll each (full history, one snapshot)"
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        backend_started = time.perf_counter()
        report = Report(backend)
        fleet = [Shipment(s.number, s.route) for s in fleet_template]
        if backend == "sqlite":
            print(f"\n{backend}: SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, file in a temp dir")
            with tempfile.TemporaryDirectory(prefix="notifier-bench-") as directory:
                url = f"sqlite:///{Path(directory) / 'notifier.db'}"
                await run_backend(backend, url, fleet, args.sample, report)
            print(f"{backend} done in {time.perf_counter() - backend_started:.0f} s")
            continue
        created = await postgres_database(args.postgres_url)
        if isinstance(created, str):
            print(f"\n{backend}: skipped, PostgreSQL {created}")
            continue
        url, version = created
        print(f"\n{backend}: PostgreSQL {version}, database {make_url(url).database} (dropped afterwards)")
        try:
            await run_backend(backend, url, fleet, args.sample, report)
        finally:
            await admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        print(f"{backend} done in {time.perf_counter() - backend_started:.0f} s")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shipments", type=int, default=10_000, help="shipments to watch (default 10,000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--sample",
        type=int,
        default=150,
        help="shipments whose every poll is timed, changed and unchanged (default 150: ~1,500 polls "
        "of each kind; the rest of a default run is the untimed fill)",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="admin connection the benchmark database is created from (default: NOTIFIER_TEST_POSTGRES_URL "
        "or postgresql://postgres@127.0.0.1:5432/test)",
    )
    args = parser.parse_args(argv)
    if args.shipments < 1 or args.sample < 1:
        parser.error("--shipments and --sample must be at least 1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
