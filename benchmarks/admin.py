"""The operator board's cost with many shipments: store snapshot, page data, rendering, a whole GET.

    python -m benchmarks.admin [--shipments N] [--runs R]

A SQLite file in a temporary directory, migrated to head; N shipments watched, each with one
subscriber (1 in 10 suppressed), one alert per 100 shipments and one failed message per 50.
Then, R times each: `load_snapshot` (the store reads), `build_board` (pure), rendering the
template, and GET /admin/ with a session over a real uvicorn on loopback (all of it, the HTML
through httpx). Also the time of one password check (scrypt), which a login runs off the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx

from notifier.config import HttpSettings, Settings
from notifier.config.password import PasswordHash
from notifier.core.mime import make_message_id
from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.rules import DEFAULT_STALLS
from notifier.core.sending import OutboxPolicy
from notifier.core.views import OutboxDraft
from notifier.store import Store
from notifier.store.database import make_engine, upgrade
from notifier.web.admin import AdminBoard, Filters, build_board, load_snapshot
from notifier.web.app import build_app
from notifier.web.state import DaemonView
from tests.web_server import serving

PASSWORD = "a benchmark password"
SECRET = "a benchmark secret, long enough"


def number(i: int) -> str:
    serial = f"{i:08d}"
    return f"EJ{serial}{s10_check_digit(serial)}JP"


async def fill(store: Store, count: int, now: dt.datetime) -> None:
    for i in range(count):
        view = await store.watch(
            parse_number(number(i)), now=now, label=f"Order {i}", tags=frozenset({f"batch{i % 7}"})
        )
        await store.set_subscribers(view.id, [(f"customer{i}@example.com", "en", None)], now=now)
        if i % 10 == 0:
            await store.suppress(f"customer{i}@example.com", now=now)
        if i % 100 == 0:
            await store.raise_alert("poll_failed", f"page {i} unreadable", now=now, subject=number(i))
        if i % 50 == 0:
            await store.enqueue(
                [
                    OutboxDraft(
                        dedup_key=f"bench-{i}",
                        recipient=f"customer{i}@example.com",
                        sender="shop@example.com",
                        locale="en",
                        rule="delivered",
                        template="delivered",
                        stage="delivered",
                        number=number(i),
                        subject="Delivered",
                        message_id=make_message_id("example.com"),
                        raw=b"",
                        error="template broke",
                    )
                ],
                now=now,
            )


async def timed(runs: int, work: Callable[[], Awaitable[Any]]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return times


def figure(name: str, times: list[float]) -> None:
    print(
        f"{name:<38} median {statistics.median(times) * 1000:8.1f} ms  [{min(times) * 1000:.1f}-{max(times) * 1000:.1f}]"
    )


async def main(count: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'board.db'}"
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        store = await Store.open(url)
        try:
            now = dt.datetime.now(dt.UTC)
            started = time.perf_counter()
            await fill(store, count, now)
            print(f"{count} shipments filled in {time.perf_counter() - started:.1f}s (untimed setup)")
            settings = Settings(
                http=HttpSettings(
                    host="127.0.0.1",
                    port=0,
                    public_url="http://127.0.0.1",
                    secret=SECRET,
                    admin_password=PasswordHash.of(PASSWORD),
                )
            )
            view = cast(DaemonView, SimpleNamespace(store=store, settings=settings))
            snapshot = await load_snapshot(store)
            figure("load_snapshot (store reads)", await timed(runs, lambda: load_snapshot(store)))
            figure("… of which store.shipments()", await timed(runs, store.shipments))
            figure("… of which store.active_subscribers()", await timed(runs, store.active_subscribers))

            async def build() -> None:
                build_board(snapshot, Filters(), now=now, policy=OutboxPolicy(), stalls=DEFAULT_STALLS)

            figure("build_board (pure)", await timed(runs, build))
            board = build_board(snapshot, Filters(), now=now, policy=OutboxPolicy(), stalls=DEFAULT_STALLS)
            admin = AdminBoard(view)

            async def render() -> None:
                admin.templates.get_template("board.html.j2").render(board=board, csrf="x", back="", flash="")

            figure("render board.html.j2", await timed(runs, render))
            app = build_app(view, extra_routes=admin.routes())
            async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
                form = await client.get("/admin/login")
                token = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert token
                await client.post("/admin/login", data={"csrf": token.group(1), "password": PASSWORD})
                sizes: list[int] = []

                async def get() -> None:
                    page = await client.get("/admin/")
                    assert page.status_code == 200
                    sizes.append(len(page.content))

                figure("GET /admin/ (whole, over loopback)", await timed(runs, get))

                async def filtered() -> None:
                    page = await client.get("/admin/", params={"q": "customer4242@"})
                    assert page.status_code == 200

                figure("GET /admin/?q=... (one match)", await timed(runs, filtered))
                print(
                    f"page size: {sizes[-1] / 1024:.0f} KiB ({board.matching} shipments, {len(board.shipments)} shown)"
                )
            kept = PasswordHash.of(PASSWORD)
            figure(
                "password check (scrypt)",
                await timed(runs, lambda: asyncio.to_thread(kept.matches, PASSWORD)),
            )
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipments", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.shipments, args.runs))
