"""What one /metrics scrape costs with 10,000 shipments: milliseconds and database statements.

    python -m benchmarks.metrics [--shipments N] [--messages M] [--backend sqlite|postgresql|both] [--rounds R]

Per backend: a fresh database (a file in a temporary directory; a PostgreSQL database created
and dropped here), migrated to head; N shipments inserted in bulk across every stage (95%
watched, due times spread two hours either side of now) and M outbox messages of 1 KiB
(90% sent, 6% pending, 2% failed, 2% held), then VACUUM ANALYZE (ANALYZE on SQLite), as a
long-lived database would have had. Then R scrapes, after 3 untimed ones: first
in-process (`metrics_snapshot` + `render_metrics`, what the route does), then through uvicorn
on loopback with httpx (the whole HTTP round trip). Statements are counted with SQLAlchemy's
`before_cursor_execute` event. Median and 95th percentile are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy
import uvicorn
from sqlalchemy import event, insert
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from notifier.config import Settings, parse_settings
from notifier.core.stages import Stage
from notifier.pipeline.activity import Activity
from notifier.pipeline.cycle import CircuitBreaker
from notifier.pipeline.poll import Notifier
from notifier.pipeline.wiring import notifier_for
from notifier.store import Store
from notifier.store.database import make_engine, upgrade
from notifier.store.orm import OutboxMessage, Shipment
from notifier.web.ops import metrics_snapshot, ops_routes, render_metrics

POSTGRES_URL = os.environ.get("NOTIFIER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 1000


@dataclass
class View:
    """A DaemonView over a real store, as the daemon's own attributes would be after a while."""

    store: Store
    settings: Settings
    breaker: CircuitBreaker
    notifier: Notifier
    last_tick: dt.datetime | None
    last_good_cycle: dt.datetime | None
    activity: Activity = field(default_factory=Activity)


async def fill(store: Store, shipments: int, messages: int, now: dt.datetime) -> None:
    rng = random.Random(1)
    stages = list(Stage)
    async with store.engine.begin() as connection:
        for start in range(0, shipments, CHUNK):
            rows = [
                {
                    "number": f"EJ{i:09d}JP",
                    "origin": "JP",
                    "stage": str(rng.choice(stages)),
                    "active": rng.random() < 0.95,
                    "created_at": now - dt.timedelta(days=rng.uniform(0, 30)),
                    "next_poll_at": now + dt.timedelta(minutes=rng.uniform(-120, 120)),
                }
                for i in range(start, min(shipments, start + CHUNK))
            ]
            await connection.execute(insert(Shipment), rows)
        raw = b"x" * 1024
        for start in range(0, messages, CHUNK):
            rows = []
            for i in range(start, min(messages, start + CHUNK)):
                draw = rng.random()
                state = (
                    "sent"
                    if draw < 0.90
                    else "pending"
                    if draw < 0.96
                    else "failed"
                    if draw < 0.98
                    else "held"
                )
                created = now - dt.timedelta(hours=rng.uniform(0, 24 * 30))
                rows.append(
                    {
                        "dedup_key": f"bench:{i}",
                        "recipient": f"c{i}@example.com",
                        "sender": "shop <shop@example.com>",
                        "locale": "en",
                        "rule": "default",
                        "template": "stage",
                        "stage": "delivered",
                        "number": f"EJ{i % max(1, shipments):09d}JP",
                        "subject": "Your parcel",
                        "message_id": f"<{i}@bench.example>",
                        "raw": raw,
                        "state": state,
                        "next_attempt_at": created,
                        "created_at": created,
                        "sent_at": created if state == "sent" else None,
                    }
                )
            await connection.execute(insert(OutboxMessage), rows)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(url: str, shipments: int, messages: int, rounds: int) -> dict[str, Any]:
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    store = await Store.open(url)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    try:
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        await fill(store, shipments, messages, now)
        filled_in = time.perf_counter() - started
        # What autovacuum (PostgreSQL) and a long-lived database's statistics would have done.
        async with store.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("VACUUM ANALYZE" if store.dialect == "postgresql" else "ANALYZE")
        settings = parse_settings("")
        view = View(
            store=store,
            settings=settings,
            breaker=CircuitBreaker(),
            notifier=notifier_for(settings),
            last_tick=now,
            last_good_cycle=now,
            activity=Activity(started_at=now),
        )
        event.listen(store.engine.sync_engine, "before_cursor_execute", count)
        in_process: list[float] = []
        per_scrape: list[int] = []
        body = b""
        for index in range(rounds + 3):
            before = statements
            started = time.perf_counter()
            body = render_metrics(await metrics_snapshot(view, dt.datetime.now(dt.UTC)))
            elapsed = time.perf_counter() - started
            if index >= 3:
                in_process.append(elapsed * 1000)
                per_scrape.append(statements - before)
        over_http = await scrape_over_http(view, rounds)
        samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        return {
            "filled_s": filled_in,
            "in_process_median": statistics.median(in_process),
            "in_process_p95": percentile(in_process, 0.95),
            "http_median": statistics.median(over_http),
            "http_p95": percentile(over_http, 0.95),
            "statements": sorted(set(per_scrape)),
            "bytes": len(body),
            "samples": samples,
        }
    finally:
        await store.close()


async def scrape_over_http(view: View, rounds: int) -> list[float]:
    # IPPROTO_TCP, so that asyncio sets TCP_NODELAY on each connection (see tests/web_server.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=ops_routes(view)),
            log_level="warning",
            lifespan="off",
            ws="none",
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn sets a flag, no event)
            await asyncio.sleep(0.01)
        times: list[float] = []
        async with httpx.AsyncClient() as client:
            for index in range(rounds + 3):
                started = time.perf_counter()
                response = await client.get(f"http://127.0.0.1:{port}/metrics")
                response.raise_for_status()
                if index >= 3:
                    times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        server.should_exit = True
        await task
        sock.close()


async def admin(statement: str) -> None:
    target = make_url(POSTGRES_URL)
    connection = await asyncpg.connect(
        host=target.host, port=target.port or 5432, user=target.username, database=target.database
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            return await measure(
                f"sqlite:///{Path(folder) / 'bench.db'}", args.shipments, args.messages, args.rounds
            )
    name = f"nt_bench_{uuid.uuid4().hex[:10]}"
    await admin(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        return await measure(url, args.shipments, args.messages, args.rounds)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipments", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, {os.cpu_count()} cores; "
        f"{args.shipments:,} shipments, {args.messages:,} outbox messages, {args.rounds} scrapes"
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        result = asyncio.run(run_backend(backend, args))
        print(
            f"{backend:10} in-process {result['in_process_median']:.1f} ms (p95 {result['in_process_p95']:.1f}); "
            f"over HTTP {result['http_median']:.1f} ms (p95 {result['http_p95']:.1f}); "
            f"statements per scrape {result['statements']}; {result['samples']} samples, "
            f"{result['bytes']:,} bytes (filled in {result['filled_s']:.1f} s)"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
