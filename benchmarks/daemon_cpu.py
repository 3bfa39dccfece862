"""The daemon's CPU per unchanged shipment-poll, read from outside: `notifier run` as a child process.

    python benchmarks/daemon_cpu.py [--tree PATH] [--shipments N] [--runs K] [--idle-seconds S]

benchmarks/cycle.py times `run_cycle` inside the benchmark's own process; this one measures the
daemon as it runs in production, a whole process with its scheduler, status line and logging,
so the plumbing around a cycle counts too. Per run:

1. a SQLite database of N shipments (default 5,000) already polled once: prepared once with
   cycle.py's set-up (`fleet`, `Store.watch`, `Store.record_poll`, SQL copies), then copied, and
   every shipment's next poll put in 2100 so the daemon starts with nothing due;
2. the simulator serving those N journeys (unchanged: nothing is advanced) over HTTP on loopback,
   in this process, so its CPU is not the child's;
3. `python -m notifier run --config …` as a child, with `cwd` and `PYTHONPATH` set to `--tree`
   (default: this checkout), so the same script measures any checkout whose daemon reads the
   same configuration and database: request pacing off, `[polling] tick = "0.1s"`, a fixed
   interval of an hour (a polled shipment is not due again);
4. after its READY line, `--idle-seconds` (default 10) of idle at the 0.1 s tick: its CPU share;
5. then every shipment is made due with one UPDATE from outside, and the child's user+sys CPU
   (/proc/PID/stat) is read before and after the cycle: the cycle ends when the `poll cycle:
   claimed=…` log lines add up to N, plus 0.5 s so the tick's status line counts; CPU / N is
   the CPU per unchanged shipment-poll;
6. a second child, at the default tick (5 s), on an idle database: its CPU share over 20 s.

The floor is measured in this process between runs, as the project defines it: a bare selectolax
parse of a 10-item list page, a bare httpx request for one (minus the simulator threads' CPU),
and one sqlite3 batch of 10 unchanged polls (cycle.py's), their sum divided by 10.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from selectolax.lexbor import LexborHTMLParser

from benchmarks.cycle import (
    FLOOR_ROUNDS,
    READY_LINE,
    READY_TIMEOUT,
    Shipment,
    _sqlite_batch_cpu,
    clone,
    fill,
    fleet,
    load,
    process_cpu,
    scratch_database,
    summary,
    thread_cpu,
    vm_hwm_mib,
    watch_all,
)
from notifier.core.stages import Stage
from notifier.net.japanpost import MAX_BATCH, ClientSettings, JapanPostClient
from notifier.pipeline.poll import POLL_LOCALE
from notifier.store import Store
from notifier.testing.simulator import Simulator, SimulatorServer

ROOT = Path(__file__).resolve().parent.parent
CLAIMED = re.compile(r"poll cycle: claimed=(\d+)")
CYCLE_TIMEOUT = 600.0
DEFAULT_TICK_IDLE = 20.0
NOTHING_DUE = "2100-01-01 00:00:00.000000"
DUE = "2000-01-01 00:00:00.000000"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROFILE = "NOTIFIER_BENCH_PROFILE"
PROFILE_CHILD = Path(__file__).resolve().parent / "profile_child.py"


def child_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass(slots=True)
class Child:
    """A running `notifier run`, its stderr collected by a thread."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    claimed: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, stream: IO[str]) -> None:
        for line in stream:
            with self.lock:
                self.lines.append(line.rstrip("\n"))
                match = CLAIMED.search(line)
                if match:
                    self.claimed += int(match.group(1))
            if READY_LINE in line:
                self.ready.set()
        self.ready.set()  # end of file: it exited

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def spawn(config: Path, tree: Path, env_extra: dict[str, str]) -> Child:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree), **env_extra}
    # With a profile asked for, the same daemon under benchmarks/profile_child.py.
    launcher = [str(PROFILE_CHILD)] if PROFILE in env_extra else ["-m", "notifier"]
    process = subprocess.Popen(
        [sys.executable, *launcher, "run", "--config", str(config)],
        cwd=tree,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    child = Child(process)
    threading.Thread(target=child.read, args=(process.stderr,), daemon=True).start()
    child.ready.wait(READY_TIMEOUT)
    if process.poll() is not None or not child.ready.is_set():
        child.stop()
        tail = "\n".join(f"  | {line}" for line in summary(child.lines)[-20:])
        raise RuntimeError(f"the daemon did not reach READY:\n{tail}")
    return child


# How the children poll: one fixed interval of an hour; `--adaptive` gives every stage an
# hour as its interval instead, so adaptive polling (on by default) asks the lanes at each poll.
FIXED = 'fixed_interval = "1h"\n'
ADAPTIVE = "[polling.intervals]\n" + "".join(f'{stage} = "1h"\n' for stage in Stage)
schedule = {"polling": FIXED}


def write_config(path: Path, database: Path, base_url: str, tick: str | None) -> None:
    polling = f'tick = "{tick}"\n' if tick else ""
    fixed, table = (FIXED, "") if schedule["polling"] == FIXED else ("", ADAPTIVE)
    path.write_text(
        "# generated by benchmarks/daemon_cpu.py: no watchlist, the shipments are in the database\n"
        f'[database]\nurl = "sqlite:///{database}"\n\n'
        f'[japanpost]\nbase_url = "{base_url}"\nrequest_interval = "0s"\n\n'
        f"[polling]\n{fixed}{polling}{table}\n"
        f'[notifications]\noutbox_dir = "{path.parent / "outbox"}"\n',
        encoding="utf-8",
    )


def set_due(database: Path, when: str) -> None:
    """Every shipment's next poll at `when`; when that is far ahead, polled just now too, or the
    daemon's start-up reschedule (last poll + the fixed interval) would make them due at once."""
    connection = sqlite3.connect(database, timeout=30)
    try:
        with connection:
            connection.execute("UPDATE shipments SET next_poll_at = ?", (when,))
            if when == NOTHING_DUE:
                now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                connection.execute("UPDATE shipments SET last_polled_at = ?", (now,))
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class Run:
    cycle_cpu: float  # seconds, the child, over the unchanged cycle
    cycle_wall: float
    idle_fast: float  # share of one core, idle at the 0.1 s tick
    idle_default: float  # share of one core, idle at the default tick
    floor: float  # seconds per shipment-poll
    parse: float
    request: float
    batch: float
    rss_mib: float
    load: str


def measure_cycle(
    folder: Path,
    prepared: Path,
    base_url: str,
    tree: Path,
    count: int,
    idle_seconds: float,
    profile: Path | None,
) -> tuple[float, float, float, float]:
    """(cycle CPU s, cycle wall s, idle share at 0.1 s tick, peak RSS MiB) of one child."""
    database = folder / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(prepared, database)
    set_due(database, NOTHING_DUE)
    config = folder / "fast.toml"
    write_config(config, database, base_url, "0.1s")
    env = {PROFILE: str(profile)} if profile else {}
    child = spawn(config, tree, env)
    try:
        # Start-up jobs (housekeeping reads every shipment) settle first.
        time.sleep(3.0)
        cpu, wall = child_cpu(child.process.pid), time.perf_counter()
        time.sleep(idle_seconds)
        idle = (child_cpu(child.process.pid) - cpu) / (time.perf_counter() - wall)
        with child.lock:
            if child.claimed:
                raise RuntimeError(f"the daemon polled {child.claimed} before they were due")
            first_line = len(child.lines)
        if profile:
            child.process.send_signal(signal.SIGUSR1)
        cpu, wall = child_cpu(child.process.pid), time.perf_counter()
        set_due(database, DUE)
        deadline = wall + CYCLE_TIMEOUT
        while child.claimed < count:
            if child.process.poll() is not None or time.perf_counter() > deadline:
                tail = "\n".join(f"  | {line}" for line in summary(child.lines)[-20:])
                raise RuntimeError(f"the cycle did not finish ({child.claimed} of {count}):\n{tail}")
            time.sleep(0.05)
        time.sleep(0.5)  # the tick's status line, after its last batch
        cycle_cpu, cycle_wall = child_cpu(child.process.pid) - cpu, time.perf_counter() - wall
        if profile:
            child.process.send_signal(signal.SIGUSR2)
            time.sleep(2.0)  # the dump
        rss = vm_hwm_mib(child.process.pid)
        expect_unchanged(child, count, first_line)
    finally:
        code = child.stop()
    if code != 0:
        raise RuntimeError(f"the daemon exited with {code}")
    return cycle_cpu, cycle_wall, idle, rss


def expect_unchanged(child: Child, count: int, first_line: int) -> None:
    with child.lock:
        lines = [line for line in child.lines[first_line:] if CLAIMED.search(line)]
    for line in lines:
        if "detail_requests=0" not in line or "changed=0" not in line or "failed=0" not in line:
            raise RuntimeError(f"not an unchanged poll: {line}")
    if sum(int(m.group(1)) for line in lines if (m := CLAIMED.search(line))) != count:
        raise RuntimeError(f"the cycle claimed other than {count}: {lines}")


def measure_idle_default(folder: Path, prepared: Path, base_url: str, tree: Path) -> float:
    """Share of one core the daemon uses idle at its default tick, over DEFAULT_TICK_IDLE s."""
    database = folder / "idle.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(prepared, database)
    set_due(database, NOTHING_DUE)
    config = folder / "default.toml"
    write_config(config, database, base_url, None)
    child = spawn(config, tree, {})
    try:
        time.sleep(3.0)
        cpu, wall = child_cpu(child.process.pid), time.perf_counter()
        time.sleep(DEFAULT_TICK_IDLE)
        return (child_cpu(child.process.pid) - cpu) / (time.perf_counter() - wall)
    finally:
        child.stop()


async def measure_floor(
    base_url: str, ships: Sequence[Shipment], database: Path
) -> tuple[float, float, float]:
    """(parse, request, batch) CPU seconds: the bare libraries' part of a 10-item list page."""
    client = JapanPostClient(ClientSettings(base_url=base_url, request_interval=0.0))
    try:
        numbers = [s.number.value for s in ships[:MAX_BATCH]]
        url, params = client.list_url(numbers, POLL_LOCALE)
    finally:
        await client.aclose()
    async with httpx.AsyncClient() as http:
        body = (await http.get(url, params=params)).content
        cpu = process_cpu()
        for _ in range(FLOOR_ROUNDS):
            tree = LexborHTMLParser(body)
            for row in tree.css("tr"):
                row.text()
        parse = (process_cpu() - cpu) / FLOOR_ROUNDS
        sim_before, cpu = thread_cpu("simulator"), process_cpu()
        for _ in range(FLOOR_ROUNDS):
            (await http.get(url, params=params)).raise_for_status()
        simulator = sum(c - sim_before.get(tid, 0.0) for tid, c in thread_cpu("simulator").items())
        request = (process_cpu() - cpu - simulator) / FLOOR_ROUNDS
    batch = await asyncio.to_thread(_sqlite_batch_cpu, str(database))
    return parse, request, batch


async def prepare(url: str, ships: Sequence[Shipment], base_url: str) -> None:
    """Every shipment watched and polled once (cycle.py's set-up, without a timed first sight)."""
    polled_at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    store = await Store.open(url)
    try:
        first_of_step = {id(ship.step): ship for ship in reversed(ships)}
        representatives = list(first_of_step.values())
        ids = await watch_all(store, representatives, polled_at - dt.timedelta(hours=1))
        await fill(store, representatives, ids, polled_at, base_url)
        by_step = {id(ship.step): sid for ship, sid in zip(representatives, ids, strict=True)}
        chosen = {id(ship) for ship in representatives}
        await clone(
            store, [(ship, by_step[id(ship.step)]) for ship in ships if id(ship) not in chosen], polled_at
        )
        if len(await store.shipments()) != len(ships):
            raise RuntimeError("the set-up did not make every shipment")
    finally:
        await store.close()


def head_of(tree: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "?"


def spread(values: Sequence[float], scale: float = 1e3, digits: int = 3) -> str:
    scaled = [v * scale for v in values]
    return f"{statistics.median(scaled):.{digits}f} [{min(scaled):.{digits}f}–{max(scaled):.{digits}f}]"


async def main_async(args: argparse.Namespace) -> int:
    tree: Path = args.tree.resolve()
    count = args.shipments
    ships = fleet(count)
    simulator = Simulator((s.journey for s in ships), seed=1)
    print(
        f"tree {tree} at {head_of(tree)}; {count:,} shipments, unchanged; {args.runs} runs; "
        f"{'adaptive polling on, hourly intervals' if args.adaptive else 'fixed interval'}; "
        f"{os.cpu_count()} CPUs, load average {load()}",
        flush=True,
    )
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="notifier-daemon-cpu-") as directory,
        SimulatorServer(simulator) as server,
    ):
        folder = Path(directory)
        async with scratch_database(folder, None) as url:
            started = time.perf_counter()
            await prepare(url, ships, server.base_url)
            prepared = folder / "notifier.db"
            # One file: the WAL folded in, so a plain copy is the whole database.
            connection = sqlite3.connect(prepared)
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.close()
            print(f"set-up: {time.perf_counter() - started:.1f} s", flush=True)
            for index in range(args.runs):
                profile = args.profile if index == 0 else None
                before = load()
                parse, request, batch = await measure_floor(server.base_url, ships, prepared)
                cycle_cpu, cycle_wall, idle_fast, rss = await asyncio.to_thread(
                    measure_cycle, folder, prepared, server.base_url, tree, count, args.idle_seconds, profile
                )
                idle_default = await asyncio.to_thread(
                    measure_idle_default, folder, prepared, server.base_url, tree
                )
                run = Run(
                    cycle_cpu,
                    cycle_wall,
                    idle_fast,
                    idle_default,
                    (parse + request + batch) / MAX_BATCH,
                    parse,
                    request,
                    batch,
                    rss,
                    f"{before} → {load()}",
                )
                runs.append(run)
                per = cycle_cpu / count
                print(
                    f"run {index + 1}: cycle CPU {cycle_cpu:.2f} s in {cycle_wall:.1f} s wall -> "
                    f"{per * 1e3:.3f} ms per shipment-poll = {per / run.floor:.1f}x the floor "
                    f"({run.floor * 1e3:.3f} ms: parse {parse * 1e3:.3f} + request {request * 1e3:.3f} + "
                    f"batch {batch * 1e3:.3f}, / {MAX_BATCH}); idle {idle_fast:.1%} of a core at the 0.1 s tick, "
                    f"{idle_default:.1%} at the default tick; peak RSS {rss:.0f} MiB; load average {run.load}",
                    flush=True,
                )
    per = [r.cycle_cpu / count for r in runs]
    ratios = [r.cycle_cpu / count / r.floor for r in runs]
    rows = [
        ("CPU per unchanged shipment-poll, ms", spread(per)),
        ("floor per shipment-poll, ms", spread([r.floor for r in runs])),
        ("  bare selectolax parse, 10-item page, ms", spread([r.parse for r in runs])),
        ("  bare httpx request, ms", spread([r.request for r in runs])),
        ("  sqlite3 batch of 10, ms", spread([r.batch for r in runs])),
        ("ratio to the floor", spread(ratios, 1, 1) + "x"),
        ("cycle wall, s", spread([r.cycle_wall for r in runs], 1, 1)),
        ("idle, share of a core, 0.1 s tick", spread([r.idle_fast for r in runs], 100, 1) + " %"),
        ("idle, share of a core, default tick", spread([r.idle_default for r in runs], 100, 1) + " %"),
        ("daemon peak RSS, MiB", spread([r.rss_mib for r in runs], 1, 0)),
    ]
    print(f"\n{count:,} unchanged shipments, {len(runs)} runs, median [min–max]; tree at {head_of(tree)}")
    for name, value in rows:
        print(f"  {name:<42} {value}")
    print(f"load average at the end {load()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="checkout whose daemon runs (default: this one)"
    )
    parser.add_argument("--shipments", type=int, default=5_000, help="watched shipments (default 5,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="idle at the 0.1 s tick (default 10)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the first run's cycle in the child with cProfile into this file (benchmarks/profile_child.py); "
        "that run's CPU includes the profiler's, so profile in a run of its own (--runs 1)",
    )
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="per-stage intervals of an hour instead of a fixed interval: adaptive polling asks the lanes",
    )
    args = parser.parse_args(argv)
    if args.adaptive:
        schedule["polling"] = ADAPTIVE
    if args.runs < 1 or args.shipments < 20:
        parser.error("--runs must be at least 1 and --shipments at least 20")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
