"""Poll cycle: requests per shipment, time and CPU of a full cycle, peak RSS, start-up to READY.

    python benchmarks/cycle.py [--shipments N] [--first-sight S] [--database-url URL] [--repeat K]
                               [--unchanged-only]

A SQLite database in a temporary directory (or, with `--database-url postgresql://…`, a scratch
PostgreSQL database created beside the one named and dropped at the end), migrated to head; N shipments (3 in 4 with S10
numbers, 1 in 4 with 12-digit domestic ones), each with its own journey in one in-process
`Simulator` (the scans of the three builtin journeys that get found, under the shipment's
number, 1 to len-2 scans revealed), served over real HTTP on loopback by `SimulatorServer`.
The client runs with no request pacing (`request_interval` 0) and every timed phase calls
`run_cycle` the way the daemon does (default `limit` 500) in a loop until it claims nothing,
under a clock moved far enough ahead to make every shipment due:

1. first sight of S shipments (default 1,000), watched with `Store.watch`: nothing stored yet,
   so one detail request each. The other N - S start in the state first sight leaves, untimed:
   one shipment per journey step is watched and filled by `Store.record_poll` (the step's
   Change, item and page as snapshot), and the rest are SQL copies of its rows (shipment,
   events, contacts, snapshot) under their own numbers, which takes seconds where a
   `record_poll` each would take minutes;
2. unchanged: all N due, nothing new: one list request per 10 shipments; run K times (default
   3), each under a clock two intervals later, and reported with the median;
3. 5% changed: 5% of the journeys advanced by one scan first; those need a detail request each.

Next to the unchanged cycle's CPU per shipment-poll the run measures its floor, on the same
machine at the same moment: the CPU of parsing a 10-item list page, of the HTTP client per
request (a list request minus its parse), and of recording 10 unchanged polls with the bare
driver (sqlite3's or asyncpg's executemany of the same UPDATE, in a transaction); their sum
divided by 10 is the least a shipment-poll can cost, and the ratio to it is what the cycle
spends on plumbing.

Unless `--unchanged-only`: then two things the daemon does besides cycles, at this size: the status line it rebuilds
after every poll tick (`Store.shipments` + `Store.outbox_depth`, as `Daemon._status`), and the
five-minute housekeeping's `queue_timed`, run for at most 15 s and extrapolated.

Last, the daemon itself: `python -m notifier run --config <generated>` on this database (no
watchlist: the shipments are already in it, and none is due), timed from spawn to the
"notifier running" log line (READY); 5 s later its peak RSS (VmHWM) is read and it gets
SIGTERM, timed to its exit.

CPU is that of this whole process minus the simulator's threads (measured per thread), so it is
what the daemon would spend: notifier, SQLAlchemy, aiosqlite's thread, httpx and the parser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import random
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ParamSpec, TypeVar
from urllib.parse import urlencode

import asyncpg
import sqlalchemy
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

from notifier.config import Settings
from notifier.core.diff import Change, diff_detail
from notifier.core.model import DETAIL_PATH, ItemResult, Layout
from notifier.core.numbers import TrackingNumber, parse_number, s10_check_digit
from notifier.core.parser import parse_page
from notifier.core.policy import PollingPolicy
from notifier.core.views import PageCapture
from notifier.net.japanpost import MAX_BATCH, ClientSettings, JapanPostClient
from notifier.pipeline.cycle import CircuitBreaker, CycleStats, run_cycle
from notifier.pipeline.poll import POLL_LOCALE, Notifier, queue_timed
from notifier.pipeline.wiring import notifier_for
from notifier.store import Store
from notifier.store.database import make_engine, upgrade
from notifier.store.orm import Base
from notifier.testing.simulator import Journey, Simulator, SimulatorServer, builtin_journeys

LIMIT = 500  # the daemon's run_cycle default: shipments claimed per call
INTERVAL = dt.timedelta(hours=1)  # fixed polling interval; each phase's clock is 2 h after the last
CHANGED_SHARE = 0.05
READY_LINE = "notifier running"
READY_TIMEOUT = 120.0
HOUSEKEEPING_BUDGET = 15.0
DAEMON_SETTLE = 5.0  # seconds the daemon runs after READY before its peak RSS is read
# Targets this benchmark is held to, for 10,000 shipments on the 2-core reference machine.
TARGET_CYCLE_WALL = 10.0
TARGET_RSS_MB = 150.0
TARGET_FLOOR_RATIO = 3.0
TARGET_REQUESTS = 0.2

P = ParamSpec("P")
T = TypeVar("T")


def expect(condition: bool, message: str) -> None:
    """A sanity check that `python -O` keeps: figures from a wrong workload are worse than none."""
    if not condition:
        raise RuntimeError(message)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# --- workload ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """A journey's detail page with its first `count` scans shown, parsed, and the Change that
    takes a shipment that has never been seen to it: what first sight records."""

    count: int
    body: bytes
    layout: str
    item: ItemResult
    change: Change


@dataclass(frozen=True, slots=True)
class Shipment:
    number: TrackingNumber
    journey: Journey
    step: Step


def templates() -> list[Journey]:
    """The builtin journeys that get found (the fourth never is)."""
    return [j for j in builtin_journeys() if j.scans]


def steps(journeys: Sequence[Journey]) -> dict[tuple[str, int], Step]:
    simulator = Simulator(journeys, seed=1)
    result = {}
    for journey in journeys:
        for count in range(1, len(journey.scans) + 1):
            simulator.reveal(journey.number, count)
            body = simulator.render_detail(journey.number, str(POLL_LOCALE)).encode()
            page = parse_page(body, requested=(journey.number,))
            item = page.item(journey.number)
            expect(page.layout is Layout.DETAIL and item is not None, f"{journey.number}: step {count}")
            assert item is not None
            change = diff_detail((), page, journey.number)
            expect(change.changed and not change.anomalies, f"{journey.number}: step {count}: {change}")
            result[journey.number, count] = Step(count, body, str(page.layout), item, change)
    return result


def fleet(count: int, seed: int = 20261123) -> list[Shipment]:
    """Distinct valid numbers, each on a copy of a builtin journey with 1 to len-2 scans shown
    (so one more scan never reaches a terminal stage, which would stop polling)."""
    rng = random.Random(seed)
    journeys = templates()
    pages = steps(journeys)
    international = [j for j in journeys if j.international]
    domestic = [j for j in journeys if not j.international]
    serials = rng.sample(range(10_000_000, 100_000_000), count)
    result = []
    for index, serial in enumerate(serials):
        # One in four is domestic; within each kind the journeys take turns.
        if index % 4 == 3 and domestic:
            template = domestic[index // 4 % len(domestic)]
            value = f"{serial:08d}{rng.randrange(10_000):04d}"
        else:
            template = international[(index - index // 4) % len(international)]
            value = f"{template.number[:2]}{serial:08d}{s10_check_digit(f'{serial:08d}')}JP"
        revealed = rng.randint(1, len(template.scans) - 2)
        journey = dataclasses.replace(template, number=value, revealed=revealed)
        result.append(Shipment(parse_number(value), journey, pages[template.number, revealed]))
    expect(len({s.number.value for s in result}) == count, "duplicate tracking numbers")
    return result


# --- measuring -----------------------------------------------------------------------------


def thread_cpu(prefix: str) -> dict[int, float]:
    """CPU seconds of each live thread whose name starts with `prefix`, by native id."""
    result = {}
    for thread in threading.enumerate():
        if thread.name.startswith(prefix) and thread.ident is not None and thread.native_id is not None:
            with contextlib.suppress(OSError):
                clock = time.pthread_getcpuclockid(thread.ident)
                result[thread.native_id] = time.clock_gettime(clock)
    return result


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(slots=True)
class Calls:
    """Wall time spent awaiting each wrapped call (they run one at a time: one cycle, no overlap)."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def wrap(self, name: str, method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
                self.counts[name] = self.counts.get(name, 0) + 1

        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.counts.clear()


@dataclass(slots=True)
class Phase:
    name: str
    shipments: int
    runs: int = 0
    stats: CycleStats = field(default_factory=CycleStats)
    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    simulator_cpu: float = 0.0
    calls: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def notifier_cpu(self) -> float:
        return self.cpu - self.simulator_cpu

    @property
    def per_shipment(self) -> float:
        return self.requests / self.shipments


def accumulate(total: CycleStats, stats: CycleStats) -> None:
    for name in (
        "claimed",
        "list_requests",
        "detail_requests",
        "changed",
        "failed",
        "queued",
        "unrecognized",
        "skipped_open_circuit",
    ):
        setattr(total, name, getattr(total, name) + getattr(stats, name))
    total.gave_up += stats.gave_up


@dataclass(slots=True)
class Bench:
    store: Store
    client: JapanPostClient
    notifier: Notifier
    simulator: Simulator
    calls: Calls
    policy: PollingPolicy = field(default_factory=lambda: PollingPolicy(fixed_interval=INTERVAL))
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    rng: random.Random = field(default_factory=lambda: random.Random(5))

    async def phase(self, name: str, shipments: int, now: dt.datetime) -> Phase:
        """Call run_cycle as the daemon does, until it claims nothing, with the clock at `now`."""
        result = Phase(name, shipments)
        self.simulator.reset_requests()
        self.calls.reset()
        sim_before = thread_cpu("simulator")
        cpu_before = process_cpu()
        started = time.perf_counter()
        while True:
            stats = await run_cycle(
                self.store,
                self.client,
                self.notifier,
                owner="bench",
                policy=self.policy,
                breaker=self.breaker,
                clock=lambda: now,
                rng=self.rng,
                limit=LIMIT,
            )
            if not stats.claimed:
                break
            result.runs += 1
            accumulate(result.stats, stats)
        result.wall = time.perf_counter() - started
        result.cpu = process_cpu() - cpu_before
        sim_after = thread_cpu("simulator")
        result.simulator_cpu = sum(cpu - sim_before.get(tid, 0.0) for tid, cpu in sim_after.items())
        result.requests = self.simulator.request_count
        result.calls = {k: (self.calls.counts[k], v) for k, v in self.calls.seconds.items()}
        expect(result.stats.claimed == shipments, f"{name}: claimed {result.stats.claimed} of {shipments}")
        expect(
            result.stats.failed == 0 and result.stats.unrecognized == 0 and not result.stats.gave_up,
            f"{name}: {result.stats}",
        )
        expect(
            result.requests == result.stats.list_requests + result.stats.detail_requests,
            f"{name}: the simulator saw {result.requests} requests, the cycle counted "
            f"{result.stats.list_requests} + {result.stats.detail_requests}",
        )
        report(result)
        return result


def report(phase: Phase) -> None:
    s = phase.stats
    print(
        f"\n{phase.name}: {phase.shipments:,} shipments due, {phase.runs} run_cycle calls (limit {LIMIT}); "
        f"load average {load()}\n"
        f"  requests  {phase.requests:7,} = {s.list_requests:,} list + {s.detail_requests:,} detail"
        f"  -> {phase.per_shipment:.3f} per shipment; {s.changed:,} changed\n"
        f"  wall      {phase.wall:7.1f} s  ({phase.shipments / phase.wall:,.0f} shipments/s, "
        f"{phase.wall / phase.shipments * 1e3:.2f} ms each)\n"
        f"  CPU       {phase.notifier_cpu:7.1f} s  notifier side ({phase.notifier_cpu / phase.wall:.0%} "
        f"of one core), + {phase.simulator_cpu:.1f} s in the simulator's threads",
        flush=True,
    )
    for name, (count, seconds) in sorted(phase.calls.items(), key=lambda kv: -kv[1][1]):
        print(
            f"    {name:<20} {count:7,} calls {seconds:7.1f} s  {seconds / count * 1e3:6.2f} ms each  "
            f"{seconds / phase.wall:4.0%} of wall"
        )


# --- set-up --------------------------------------------------------------------------------


async def watch_all(store: Store, ships: Sequence[Shipment], now: dt.datetime) -> list[int]:
    ids = []
    for ship in ships:
        view = await store.watch(ship.number, now=now, label=label(ship), first_poll_at=now)
        ids.append(view.id)
    return ids


def label(ship: Shipment) -> str:
    return f"order {ship.number.value[-6:]}"


async def fill(
    store: Store, ships: Sequence[Shipment], ids: Sequence[int], now: dt.datetime, base_url: str
) -> None:
    """What first sight records, without the request: history, contacts, stage, one snapshot."""
    rng = random.Random(3)
    for ship, shipment_id in zip(ships, ids, strict=True):
        step = ship.step
        query = urlencode({"reqCodeNo1": ship.number.value, "locale": str(POLL_LOCALE)})
        await store.record_poll(
            shipment_id,
            change=step.change,
            item=step.item,
            now=now,
            next_poll_at=now + INTERVAL * rng.uniform(0.9, 1.1),
            capture=PageCapture(body=step.body, url=f"{base_url}{DETAIL_PATH}?{query}", layout=step.layout),
        )


async def clone(store: Store, copies: Sequence[tuple[Shipment, int]], now: dt.datetime) -> None:
    """Give each shipment a copy of the rows the Store wrote for its representative (same
    journey step): the shipment row with its own number, label and next poll, and its events,
    contacts and snapshot. Column lists come from the models, values from the Store's own rows,
    so the copies are what `fill` would have written, in seconds instead of minutes (but for
    the page and URL of the snapshot, which still show the representative's number; no cycle
    reads them)."""
    if not copies:
        return
    tables = Base.metadata.tables
    shipments = tables["shipments"]
    rng = random.Random(4)
    async with store.engine.begin() as connection:
        representatives = {int(rep) for _, rep in copies}
        rows = await connection.execute(select(shipments).where(shipments.c.id.in_(representatives)))
        template = {int(row["id"]): dict(row) for row in rows.mappings()}
        fresh = []
        for ship, rep in copies:
            row = {k: v for k, v in template[rep].items() if k != "id"}
            row.update(
                number=ship.number.value,
                label=label(ship),
                origin=ship.number.country,
                next_poll_at=now + INTERVAL * rng.uniform(0.9, 1.1),
            )
            fresh.append(row)
        await connection.execute(insert(shipments), fresh)
        # Not dict(result): a Result has .keys(), so dict() would take it for a mapping.
        ids = dict((await connection.execute(select(shipments.c.number, shipments.c.id))).all())
        await connection.execute(
            text("CREATE TEMP TABLE clone_map (new_id INTEGER PRIMARY KEY, rep_id INTEGER)")
        )
        await connection.execute(
            text("INSERT INTO clone_map (new_id, rep_id) VALUES (:new_id, :rep_id)"),
            [{"new_id": ids[ship.number.value], "rep_id": rep} for ship, rep in copies],
        )
        for name in ("events", "contact_offices", "snapshots"):
            table = tables[name]
            columns = [c.name for c in table.columns if c.name not in ("id", "shipment_id", "number")]
            number = ["number"] if "number" in table.c else []
            target = ", ".join(f'"{c}"' for c in ["shipment_id", *number, *columns])
            source = ", ".join(
                ["m.new_id", *(["s.number"] if number else []), *(f't."{c}"' for c in columns)]
            )
            await connection.execute(
                text(
                    f"INSERT INTO {name} ({target}) SELECT {source} FROM {name} t "
                    "JOIN clone_map m ON t.shipment_id = m.rep_id JOIN shipments s ON s.id = m.new_id"
                )
            )
        await connection.execute(text("DROP TABLE clone_map"))


# --- the floor -----------------------------------------------------------------------------

FLOOR_ROUNDS = 300
# The UPDATE an unchanged poll needs, for the bare drivers: what Store.record_unchanged does.
FLOOR_UPDATE_SQLITE = (
    "UPDATE shipments SET last_polled_at = ?, next_poll_at = ?, consecutive_failures = 0, "
    "last_error = NULL, leased_by = NULL, lease_until = NULL WHERE id = ? AND leased_by IS NULL"
)
FLOOR_UPDATE_POSTGRES = (
    "UPDATE shipments SET last_polled_at = $1, next_poll_at = $2, consecutive_failures = 0, "
    "last_error = NULL, leased_by = NULL, lease_until = NULL WHERE id = $3 AND leased_by IS NULL"
)


@dataclass(frozen=True, slots=True)
class Floor:
    """CPU seconds of the work an unchanged list page cannot do without, measured in this run."""

    parse: float  # parse_page of a 10-item list page
    client: float  # one list request through JapanPostClient, its parse left out
    batch: float  # 10 unchanged polls recorded by the bare driver, in one transaction

    @property
    def per_shipment(self) -> float:
        return (self.parse + self.client + self.batch) / MAX_BATCH


def notifier_cpu_since(cpu_before: float, sim_before: dict[int, float]) -> float:
    sim_after = thread_cpu("simulator")
    simulator = sum(cpu - sim_before.get(tid, 0.0) for tid, cpu in sim_after.items())
    return process_cpu() - cpu_before - simulator


async def measure_floor(client: JapanPostClient, ships: Sequence[Shipment], url: str) -> Floor:
    pages = [
        [s.number.value for s in ships[start : start + MAX_BATCH]]
        for start in range(0, MAX_BATCH * 20, MAX_BATCH)
    ]
    body = (await client.fetch_latest(pages[0])).body
    cpu = process_cpu()
    for _ in range(FLOOR_ROUNDS):
        parse_page(body, requested=tuple(pages[0]))
    parse = (process_cpu() - cpu) / FLOOR_ROUNDS

    sim_before, cpu = thread_cpu("simulator"), process_cpu()
    for index in range(FLOOR_ROUNDS):
        await client.fetch_latest(pages[index % len(pages)])
    request = notifier_cpu_since(cpu, sim_before) / FLOOR_ROUNDS

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        batch = await asyncio.to_thread(_sqlite_batch_cpu, str(parsed.database))
    else:
        batch = await _postgres_batch_cpu(url)
    return Floor(parse=parse, client=max(request - parse, 0.0), batch=batch)


def _sqlite_batch_cpu(path: str) -> float:
    """Thread CPU of recording 10 unchanged polls with sqlite3 itself (same pragmas as ours)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=5000"):
            connection.execute(f"PRAGMA {pragma}")
        rows = connection.execute(
            "SELECT id, next_poll_at, last_polled_at FROM shipments WHERE leased_by IS NULL ORDER BY id LIMIT ?",
            (MAX_BATCH,),
        ).fetchall()
        # The rows keep their own values: the cycles that follow find them as they were.
        params = [(polled, due, sid) for sid, due, polled in rows]
        clock = time.thread_time
        started = clock()
        for _ in range(FLOOR_ROUNDS):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(FLOOR_UPDATE_SQLITE, params)
            connection.execute("COMMIT")
        return (clock() - started) / FLOOR_ROUNDS
    finally:
        connection.close()


async def _postgres_batch_cpu(url: str) -> float:
    """Process CPU of recording 10 unchanged polls with asyncpg itself."""
    connection = await connect_postgres(url)
    try:
        rows = await connection.fetch(
            "SELECT id, next_poll_at, last_polled_at FROM shipments WHERE leased_by IS NULL ORDER BY id LIMIT $1",
            MAX_BATCH,
        )
        params = [(row["last_polled_at"], row["next_poll_at"], row["id"]) for row in rows]
        started = process_cpu()
        for _ in range(FLOOR_ROUNDS):
            async with connection.transaction():
                await connection.executemany(FLOOR_UPDATE_POSTGRES, params)
        return (process_cpu() - started) / FLOOR_ROUNDS
    finally:
        await connection.close()


async def connect_postgres(url: str, database: str | None = None) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=database or parsed.database,
    )


def report_floor(floor: Floor) -> None:
    print(
        f"\nfloor, measured now (CPU, mean of {FLOOR_ROUNDS} rounds; load average {load()}):\n"
        f"  parse of a 10-item list page   {floor.parse * 1e3:6.3f} ms\n"
        f"  HTTP client per list request   {floor.client * 1e3:6.3f} ms (its parse left out)\n"
        f"  bare driver, 10 unchanged polls {floor.batch * 1e3:5.3f} ms (one transaction)\n"
        f"  -> floor per shipment-poll     {floor.per_shipment * 1e3:6.3f} ms",
        flush=True,
    )


# --- what the daemon does besides cycles ---------------------------------------------------


class OutOfTimeError(Exception):
    pass


async def status_line(store: Store) -> list[float]:
    """Daemon._status after every poll tick: every shipment loaded to count them, and the outbox."""
    durations = []
    for _ in range(3):
        started = time.perf_counter()
        watched = len(await store.shipments())
        await store.outbox_depth()
        durations.append(time.perf_counter() - started)
        expect(watched > 0, "no shipments")
    return durations


async def housekeeping(store: Store, notifier: Notifier, now: dt.datetime) -> tuple[int, float, bool]:
    """queue_timed for at most HOUSEKEEPING_BUDGET seconds: (shipments done, seconds, finished)."""
    history = store.history
    done = 0
    started = time.perf_counter()

    async def bounded(shipment_id: int) -> object:
        nonlocal done
        if time.perf_counter() - started > HOUSEKEEPING_BUDGET:
            raise OutOfTimeError
        done += 1
        return await history(shipment_id)

    store.history = bounded  # type: ignore[method-assign,assignment]
    try:
        await queue_timed(store, notifier, now=now)
        finished = True
    except OutOfTimeError:
        finished = False
    finally:
        store.history = history  # type: ignore[method-assign]
    return done, time.perf_counter() - started, finished


# --- the daemon ----------------------------------------------------------------------------


@dataclass(slots=True)
class Startup:
    ready: float | None
    stopped: float
    exit_code: int
    rss_mib: float
    log: list[str]


def vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of a live process (VmHWM), in MiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_daemon(config: Path, cwd: Path) -> Startup:
    """Spawn `notifier run`, time it to READY, SIGTERM it, time it to exit."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "notifier", "run", "--config", str(config)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    lines: list[str] = []
    ready_at: list[float] = []
    seen = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if READY_LINE in line and not ready_at:
                ready_at.append(time.perf_counter() - started)
                seen.set()
        seen.set()  # end of file: it exited before READY

    reader = threading.Thread(target=read, args=(process.stderr,), daemon=True)
    reader.start()
    seen.wait(READY_TIMEOUT)
    # The jobs that start with it (housekeeping reads every shipment) run first; then its own
    # high-water mark, read while it runs (ru_maxrss of RUSAGE_CHILDREN would report this
    # process's size at the fork instead).
    if process.poll() is None:
        time.sleep(DAEMON_SETTLE)
    rss = vm_hwm_mib(process.pid)
    term = time.perf_counter()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    stopped = time.perf_counter() - term
    reader.join(5)
    return Startup(ready_at[0] if ready_at else None, stopped, code, rss, lines)


def summary(log: Sequence[str]) -> list[str]:
    """Log lines, with each traceback folded to its last line."""
    out: list[str] = []
    traceback = 0
    for line in log:
        if line.startswith("Traceback"):
            traceback = 1
            continue
        if traceback and line.startswith((" ", "\t")):
            traceback += 1
            continue
        if traceback:
            out.append(f"[traceback of {traceback} lines] {line}")
            traceback = 0
            continue
        out.append(line)
    return out


def write_config(path: Path, url: str, base_url: str) -> None:
    path.write_text(
        "# generated by benchmarks/cycle.py: no watchlist, the shipments are in the database\n"
        f'[database]\nurl = "{url}"\n\n'
        f'[japanpost]\nbase_url = "{base_url}"\nrequest_interval = 5\n\n'
        f'[notifications]\noutbox_dir = "{path.parent / "outbox"}"\n',
        encoding="utf-8",
    )


# --- main ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_database(folder: Path, base_url: str | None) -> AsyncIterator[str]:
    """A fresh database migrated to head: a SQLite file in `folder`, or a PostgreSQL database
    created beside the one `base_url` names and dropped afterwards."""
    if base_url is None or make_url(base_url).get_backend_name() == "sqlite":
        url = base_url or f"sqlite:///{folder / 'notifier.db'}"
    else:
        name = f"notifier_bench_cycle_{uuid.uuid4().hex[:8]}"
        admin = await connect_postgres(base_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    try:
        yield url
    finally:
        if make_url(url).get_backend_name() == "postgresql":
            admin = await connect_postgres(url, database=make_url(base_url or url).database)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
            finally:
                await admin.close()


def backend_line(url: str) -> str:
    if make_url(url).get_backend_name() == "sqlite":
        return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL)"
    return "PostgreSQL on loopback (asyncpg; its server's CPU is not counted)"


async def main_async(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    count, sample = args.shipments, min(args.first_sight, args.shipments)
    rss_imports = rss_mib()
    ships = fleet(count)
    simulator = Simulator((s.journey for s in ships), seed=1)
    rss_fleet = rss_mib()
    # Real now, so the daemon started at the end finds created_at in the past and nothing due.
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first_sight_at = t0 + dt.timedelta(days=1)
    unchanged_at = [first_sight_at + 2 * INTERVAL * (k + 1) for k in range(args.repeat)]
    changed_at = unchanged_at[-1] + 2 * INTERVAL

    with (
        tempfile.TemporaryDirectory(prefix="notifier-cycle-") as directory,
        SimulatorServer(simulator) as server,
    ):
        folder = Path(directory)
        async with scratch_database(folder, args.database_url) as url:
            print(
                f"python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
                f"{backend_line(url)}, {os.cpu_count()} CPUs, load average {load()}; {count:,} shipments; "
                f"run_cycle limit {LIMIT}, request_interval 0, the simulator in this process over HTTP "
                "on loopback",
                flush=True,
            )
            result = await bench_run(
                args,
                url,
                folder,
                server,
                simulator,
                ships,
                sample,
                t0,
                rss_imports,
                rss_fleet,
                first_sight_at,
                unchanged_at,
                changed_at,
            )
    print(f"\ntotal {time.perf_counter() - began:.0f} s; load average {load()}")
    return result


async def bench_run(
    args: argparse.Namespace,
    url: str,
    folder: Path,
    server: SimulatorServer,
    simulator: Simulator,
    ships: Sequence[Shipment],
    sample: int,
    t0: dt.datetime,
    rss_imports: float,
    rss_fleet: float,
    first_sight_at: dt.datetime,
    unchanged_at: Sequence[dt.datetime],
    changed_at: dt.datetime,
) -> int:
    count = len(ships)
    store = await Store.open(url)
    calls = Calls()
    client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0.0))
    notifier = notifier_for(Settings())
    changed: Phase | None = None
    try:
        started = time.perf_counter()
        # The first-sight sample is watched; of the others, one per journey step goes through
        # Store.watch and record_poll, and the rest are copies of it.
        rest = ships[sample:]
        first_of_step = {id(ship.step): ship for ship in reversed(rest)}
        representatives = list(first_of_step.values())
        ids = await watch_all(store, [*ships[:sample], *representatives], t0)
        watched = time.perf_counter() - started
        await fill(store, representatives, ids[sample:], first_sight_at, server.base_url)
        by_step = {
            id(ship.step): shipment_id
            for ship, shipment_id in zip(representatives, ids[sample:], strict=True)
        }
        chosen = {id(ship) for ship in representatives}
        await clone(
            store,
            [(ship, by_step[id(ship.step)]) for ship in rest if id(ship) not in chosen],
            first_sight_at,
        )
        views = {view.number: view for view in await store.shipments()}
        expect(len(views) == count, "the set-up did not make every shipment")
        for ship in rest[: 4 * len(representatives)]:
            rep = views[first_of_step[id(ship.step)].number.value]
            copy = views[ship.number.value]
            expect(
                (copy.stage, copy.last_event_time, copy.item_type)
                == (rep.stage, rep.last_event_time, rep.item_type)
                and await store.history(copy.id) == await store.history(rep.id),
                f"{copy.number} is not a copy of {rep.number}",
            )
        print(
            f"\nset-up, untimed otherwise: {sample + len(representatives):,} shipments by Store.watch "
            f"({(sample + len(representatives)) / watched:,.0f}/s), {len(representatives)} of them filled "
            f"by Store.record_poll, {len(rest) - len(representatives):,} copies of those; "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        # Timing wrappers on these instances only, to split a cycle's wall time.
        for name in ("claim_due", "histories", "record_unchanged", "history", "record_poll"):
            if hasattr(store, name):
                setattr(store, name, calls.wrap(f"store.{name}", getattr(store, name)))
        for name in ("fetch_latest", "fetch_detail"):
            setattr(client, name, calls.wrap(f"client.{name}", getattr(client, name)))
        bench = Bench(store, client, notifier, simulator, calls)

        first = await bench.phase(f"first sight (sample of {sample:,})", sample, first_sight_at)
        expect(first.stats.changed == sample, f"first sight changed {first.stats.changed} of {sample}")
        floors: list[Floor] = []
        unchanged: list[Phase] = []
        for round_, when in enumerate(unchanged_at, start=1):
            floor = await measure_floor(client, ships, url)
            report_floor(floor)
            floors.append(floor)
            phase = await bench.phase(f"unchanged, run {round_} of {len(unchanged_at)}", count, when)
            expect(phase.stats.detail_requests == 0, "unchanged shipments needed detail pages")
            print(
                f"  CPU per shipment-poll {phase.notifier_cpu / count * 1e3:.3f} ms = "
                f"{phase.notifier_cpu / count / floor.per_shipment:.1f}x the floor "
                f"({floor.per_shipment * 1e3:.3f} ms)",
                flush=True,
            )
            unchanged.append(phase)
        if not args.unchanged_only:
            moved = random.Random(11).sample([s.number.value for s in ships], round(count * CHANGED_SHARE))
            for number in moved:
                expect(simulator.advance(number) == [number], f"{number} did not advance")
            changed = await bench.phase(f"{CHANGED_SHARE:.0%} changed", count, changed_at)
            expect(changed.stats.changed == len(moved), f"{changed.stats.changed} changed of {len(moved)}")
        rss_peak = peak_rss_mib()
        print(
            f"\nRSS of this process (notifier + simulator + benchmark): {rss_imports:.0f} MiB after "
            f"imports, {rss_fleet:.0f} MiB with the fleet and the simulator's {count:,} journeys, "
            f"peak {rss_peak:.0f} MiB after the cycles",
            flush=True,
        )
        if not args.unchanged_only:
            ticks = await status_line(store)
            print(
                f"\ndaemon bookkeeping at {count:,} shipments:\n"
                f"  status line after each poll tick (Store.shipments + outbox_depth): "
                f"{statistics.median(ticks) * 1e3:.0f} ms (median of 3)",
                flush=True,
            )
            done, seconds, finished = await housekeeping(store, notifier, changed_at)
            whole = seconds if finished else seconds / max(done, 1) * count
            print(
                f"  housekeeping queue_timed: {done:,} shipments in {seconds:.1f} s "
                f"({done / seconds:,.0f}/s){'' if finished else f', stopped; all {count:,}: ~{whole:.0f} s'}",
                flush=True,
            )
    finally:
        await client.aclose()
        await store.close()

    startup: Startup | None = None
    if not args.unchanged_only:
        config = folder / "notifier.toml"
        write_config(config, url, server.base_url)
        simulator.reset_requests()
        startup = start_daemon(config, folder)
        ready = "never" if startup.ready is None else f"{startup.ready:.2f} s"
        print(
            f"\ndaemon: `python -m notifier run` on {count:,} shipments (no watchlist, none due): READY "
            f'("{READY_LINE}") after {ready}; SIGTERM to exit {startup.stopped:.2f} s, exit code '
            f"{startup.exit_code}; its peak RSS {startup.rss_mib:.0f} MiB; {simulator.request_count} "
            "requests to the simulator; its stderr:"
        )
        for line in summary(startup.log):
            print(f"  | {line}")

    median = statistics.median
    walls = [p.wall for p in unchanged]
    cpus = [p.notifier_cpu / count for p in unchanged]
    floor_median = median(f.per_shipment for f in floors)
    print(f"\nunchanged cycle over {len(unchanged)} run(s), median [range]:")
    print(f"  wall                  {median(walls):7.2f} s [{min(walls):.2f}–{max(walls):.2f}]")
    print(
        f"  CPU per shipment-poll {median(cpus) * 1e3:7.3f} ms [{min(cpus) * 1e3:.3f}–{max(cpus) * 1e3:.3f}]"
    )
    parts: list[tuple[str, list[float]]] = [
        ("parse, list page", [f.parse for f in floors]),
        ("client, per request", [f.client for f in floors]),
        ("bare batch of 10", [f.batch for f in floors]),
        ("floor per shipment-poll", [f.per_shipment for f in floors]),
    ]
    for label_, part in parts:
        values = [v * 1e3 for v in part]
        print(f"  {label_:<22}{median(values):7.3f} ms [{min(values):.3f}–{max(values):.3f}]")
    ratio = median(cpus) / floor_median
    print(f"  ratio to the floor    {ratio:7.1f}x (target within {TARGET_FLOOR_RATIO:g}x)")

    print(f"\nagainst the targets (for 10,000 shipments; this run: {count:,}):")
    own_mb = peak_rss_mib() * 2**20 / 1e6
    rows = [
        (
            "unchanged cycle, wall",
            f"{median(walls):.1f} s",
            f"< {TARGET_CYCLE_WALL:.0f} s",
            median(walls) < TARGET_CYCLE_WALL,
        ),
        (
            "CPU per shipment-poll / floor",
            f"{ratio:.1f}x",
            f"<= {TARGET_FLOOR_RATIO:g}x",
            ratio <= TARGET_FLOOR_RATIO,
        ),
        ("peak RSS, this process", f"{own_mb:.0f} MB", f"< {TARGET_RSS_MB:.0f} MB", own_mb < TARGET_RSS_MB),
    ]
    if startup is not None:
        daemon_mb = startup.rss_mib * 2**20 / 1e6
        rows.append(
            (
                "peak RSS, the daemon",
                f"{daemon_mb:.0f} MB",
                f"< {TARGET_RSS_MB:.0f} MB",
                daemon_mb < TARGET_RSS_MB,
            )
        )
    for phase in [unchanged[-1], *([changed] if changed is not None else [])]:
        rows.append(
            (
                f"requests/shipment, {phase.name.split(',')[0]}",
                f"{phase.per_shipment:.3f}",
                f"well < {TARGET_REQUESTS}",
                phase.per_shipment < TARGET_REQUESTS,
            )
        )
    for what, figure, target, ok in rows:
        print(f"  {what:<32} {figure:>10}  target {target:<12} {'met' if ok else 'MISSED'}")
    if startup is not None:
        ready = "never" if startup.ready is None else f"{startup.ready:.2f} s"
        print(f"  {'daemon start to READY':<32} {ready:>10}  (no target)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shipments", type=int, default=10_000, help="shipments to watch (default 10,000)")
    parser.add_argument(
        "--first-sight",
        type=int,
        default=1_000,
        help="shipments whose first sight is timed through run_cycle (default 1,000; the others start "
        "in the state it leaves, untimed)",
    )
    parser.add_argument(
        "--database-url",
        help="postgresql://… to run on a scratch database created beside this one (default: a SQLite "
        "file in a temporary folder)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="unchanged cycles to run (default 3)")
    parser.add_argument(
        "--unchanged-only",
        action="store_true",
        help="skip the 5%%-changed cycle, the status line, housekeeping and the daemon start",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.shipments < 20 or args.first_sight < 1:
        parser.error("--shipments must be at least 20 and --first-sight at least 1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
