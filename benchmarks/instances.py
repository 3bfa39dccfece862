"""Several instances on one PostgreSQL database: cycle time, CPU and transactions per poll, budget cost, failover.

    python benchmarks/instances.py [--shipments N] [--failover-interval 0.5]

1. Throughput, at `request_interval = 0`: for 1, 2 and 3 `notifier run` processes on a fresh
   database holding the same N watched numbers (unknown to the simulator, so each poll is its
   share of one ten-number list request, with no detail request and no email), the time from
   start until every shipment has been polled once (`fixed_interval = "1h"`: each is polled
   once), the processes' CPU (user + system, from /proc) per shipment-poll, and PostgreSQL
   transactions (`pg_stat_database.xact_commit`) per shipment-poll. The simulator runs in a
   thread of this process, on loopback.
2. The shared budget's own cost: 1, 2 and 3 `SharedPacer`s (one engine each) taking slots at
   interval 0 from one row for a few seconds: round trips and mean latency per slot.
3. Failover, at a polite interval: three instances, `[polling] lease = "10s"`; one is killed
   (SIGKILL) while it holds claimed shipments; the time until every shipment it held has been
   polled by another instance, and until the daily work has another owner.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notifier.core.numbers import s10_check_digit
from notifier.store.database import make_engine
from notifier.store.instances import SharedPacer
from notifier.testing.simulator import Simulator, SimulatorServer
from tests.databases import _admin, _migrate, postgres_unavailable, postgres_url


def number(i: int) -> str:
    serial = f"{i:08d}"
    return f"EB{serial}{s10_check_digit(serial)}JP"


def config(path: Path, url: str, base_url: str, count: int, interval: float, lease: str = "") -> Path:
    watches = "".join(
        f'[[watch]]\nnumber = "{number(i)}"\nsubscribers = ["c{i}@example.com"]\n' for i in range(count)
    )
    path.write_text(
        f"""
[database]
url = "{url}"
[japanpost]
base_url = "{base_url}"
request_interval = {interval}
[polling]
fixed_interval = "1h"
jitter = 0
tick = "0.5s"
{lease}
[notifications]
outbox_dir = "{path.parent / "outbox"}"
{watches}""",
        encoding="utf-8",
    )
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scalar(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text(sql))).scalar() or 0)
    finally:
        await engine.dispose()


def fresh(name: str) -> str:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'))
    url = postgres_url(name)
    asyncio.run(_migrate(url))
    return url


def drop(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def spawn(path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "notifier", "run", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env=env,
        )


def throughput(instances: int, count: int, base_url: str, folder: Path) -> None:
    name = f"nt_bench_instances_{instances}"
    url = fresh(name)
    try:
        path = config(folder / f"n{instances}.toml", url, base_url, count, 0)
        xacts = f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{name}'"
        before = asyncio.run(scalar(url, xacts))
        started = time.monotonic()
        procs = [spawn(path, folder / f"n{instances}.log") for _ in range(instances)]
        cpu: dict[int, float] = {}
        polled = 0
        while polled < count:
            time.sleep(0.2)
            for proc in procs:
                cpu[proc.pid] = cpu_seconds(proc.pid)
            polled = asyncio.run(
                scalar(url, "SELECT count(*) FROM shipments WHERE last_polled_at IS NOT NULL")
            )
            if time.monotonic() - started > 900:
                raise SystemExit(f"{instances} instances: only {polled} of {count} polled in 900 s")
        elapsed = time.monotonic() - started
        after = asyncio.run(scalar(url, xacts))
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        # Start-up (config load, watchlist sync) is inside the cycle time and the CPU.
        print(
            f"{instances} instance(s): {count} shipments polled once in {elapsed:.1f} s "
            f"(start-up included); CPU {sum(cpu.values()) / count * 1000:.2f} ms per shipment-poll; "
            f"{(after - before) / count:.2f} PostgreSQL transactions per shipment-poll",
            flush=True,
        )
    finally:
        drop(name)


async def budget_cost(takers: int, seconds: float) -> None:
    name = "nt_bench_budget"
    url = await asyncio.to_thread(fresh, name)
    try:
        engines = [make_engine(url) for _ in range(takers)]
        pacers = [SharedPacer(engine, "bench", 0.0, f"taker{i}") for i, engine in enumerate(engines)]
        await pacers[0].ensure()
        end = time.monotonic() + seconds

        async def take(pacer: SharedPacer) -> int:
            slots = 0
            while time.monotonic() < end:
                await pacer.wait()
                slots += 1
            return slots

        slots = sum(await asyncio.gather(*(take(p) for p in pacers)))
        trips = sum(p.round_trips for p in pacers)
        spent = sum(p.budget_seconds for p in pacers)
        print(
            f"shared budget, {takers} taker(s) at interval 0: {slots / seconds:.0f} slots/s, "
            f"{trips / slots:.2f} round trips and {spent / slots * 1000:.2f} ms per slot",
            flush=True,
        )
        for engine in engines:
            await engine.dispose()
    finally:
        await asyncio.to_thread(drop, name)


def failover(base_url: str, folder: Path, interval: float, count: int) -> None:
    name = "nt_bench_failover"
    url = fresh(name)
    try:
        path = config(folder / "failover.toml", url, base_url, count, interval, 'lease = "10s"')
        procs = [spawn(path, folder / "failover.log") for _ in range(3)]
        time.sleep(6)
        victim = procs[0]
        owner_sql = f"SELECT count(*) FROM shipments WHERE leased_by LIKE '%\\:{victim.pid}' AND lease_until > now() at time zone 'utc'"
        deadline = time.monotonic() + 60
        while asyncio.run(scalar(url, owner_sql)) == 0:
            if time.monotonic() > deadline:
                raise SystemExit("the victim never held a claim")
            time.sleep(0.05)
        daily = asyncio.run(
            scalar(url, f"SELECT count(*) FROM work_leases WHERE owner LIKE '%\\:{victim.pid}'")
        )
        held_ids = f"SELECT id FROM shipments WHERE leased_by LIKE '%\\:{victim.pid}'"
        engine_url = url

        async def held() -> list[int]:
            engine = make_engine(engine_url)
            try:
                async with engine.connect() as connection:
                    return [int(i) for (i,) in await connection.execute(text(held_ids))]
            finally:
                await engine.dispose()

        victim.kill()
        killed = time.monotonic()
        victim.wait(timeout=10)
        ids = asyncio.run(held())
        id_list = ",".join(str(i) for i in ids) or "0"
        waiting = (
            f"SELECT count(*) FROM shipments WHERE id IN ({id_list}) AND "
            f"(last_polled_at IS NULL OR leased_by LIKE '%\\:{victim.pid}')"
        )
        daily_moved = None
        while asyncio.run(scalar(url, waiting)) > 0:
            moved_sql = f"SELECT count(*) FROM work_leases WHERE owner NOT LIKE '%\\:{victim.pid}'"
            if daily_moved is None and daily and asyncio.run(scalar(url, moved_sql)):
                daily_moved = time.monotonic() - killed
            if time.monotonic() - killed > 120:
                raise SystemExit("the killed instance's shipments were not taken over in 120 s")
            time.sleep(0.1)
        taken = time.monotonic() - killed
        if daily and daily_moved is None:
            while not asyncio.run(
                scalar(url, f"SELECT count(*) FROM work_leases WHERE owner NOT LIKE '%\\:{victim.pid}'")
            ):
                time.sleep(0.1)
            daily_moved = time.monotonic() - killed
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
        for proc in procs[1:]:
            proc.wait(timeout=60)
        print(
            f"failover at request_interval {interval} s, shipment lease 10 s: the killed instance held "
            f"{len(ids)} claimed shipments, all taken over by the others {taken:.1f} s after the kill"
            + (
                f"; its daily work moved after {daily_moved:.1f} s (lease 3 s)"
                if daily_moved is not None
                else ""
            ),
            flush=True,
        )
    finally:
        drop(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shipments", type=int, default=2000, metavar="N")
    parser.add_argument("--failover-interval", type=float, default=0.5)
    parser.add_argument("--only", choices=["throughput", "budget", "failover"])
    args = parser.parse_args(argv)
    reason = postgres_unavailable()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    simulator = Simulator()
    with SimulatorServer(simulator) as jp, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for instances in (1, 2, 3) if args.only in (None, "throughput") else ():
            simulator.reset_requests()
            throughput(instances, args.shipments, jp.base_url, folder)
            print(f"  simulator answered {simulator.request_count} requests", flush=True)
        for takers in (1, 2, 3) if args.only in (None, "budget") else ():
            asyncio.run(budget_cost(takers, 3.0))
        if args.only in (None, "failover"):
            failover(jp.base_url, folder, args.failover_interval, 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
