"""The web face's costs: tokens, the tracking page built and rendered, and pages served over HTTP.

    python benchmarks/web.py [--requests N] [--concurrency C]

Pure parts first (no I/O): making and checking a token; building the tracking page's context
(`pages.tracking_page`, the emails' `context_for` underneath) and rendering it with Jinja2.
Then the served path, for real: a migrated SQLite file holding a genuine capture's shipment
(5 events) and its subscriber, `build_app` served by `WebServer` (uvicorn) on 127.0.0.1 in
this process, and an httpx client sending N GETs of /t/TOKEN, first one at a time (latency)
and then C at a time (throughput). Each request claims its own X-Forwarded-For address, as
customers behind the reverse proxy do, so the per-client rate limit does not throttle the run.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def per_second(seconds: float, count: int) -> str:
    return f"{count / seconds:,.0f}/s ({seconds / count * 1e6:,.1f} µs each)"


def pure(rounds: int) -> None:
    from notifier.core.links import Purpose, Signer
    from notifier.core.render import Renderer
    from notifier.pipeline.wiring import mail_settings
    from notifier.web.pages import tracking_page
    from tests.web_site import T0, settings_for

    signer = Signer("a benchmark secret, long enough")
    started = time.perf_counter()
    tokens = [signer.make(Purpose.TRACK, f"c{i}@example.com", "EJ123456785JP") for i in range(rounds)]
    made = time.perf_counter() - started
    started = time.perf_counter()
    assert all(signer.check(Purpose.TRACK, t) for t in tokens)
    checked = time.perf_counter() - started
    print(f"token make: {per_second(made, rounds)}")
    print(f"token check: {per_second(checked, rounds)}")

    from notifier.core.parser import parse_page
    from notifier.core.views import ShipmentView
    from tests.test_store import CAPTURE, NUMBER

    item = parse_page(CAPTURE).items[0]
    shipment = ShipmentView(
        id=1, number=NUMBER, incarnation=1, label="Order 1001", item_type=item.item_type, origin="JP",
        destination=None, tags=frozenset(), stage=item.stage, stage_entered_at=T0, last_event_time=None,
        active=True, next_poll_at=None, last_polled_at=None, last_changed_at=None, consecutive_failures=0,
        last_error=None,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        mail = mail_settings(settings_for(Path(folder), Path(folder) / "x.db"))
    renderer = Renderer(web=True)
    times_build, times_render = [], []
    for _ in range(rounds // 10):
        started = time.perf_counter()
        page = tracking_page(
            shipment, item.events, item.offices, mail, recipient="c@example.com", locale="en"
        )
        built = time.perf_counter()
        renderer.render_page("tracking.html.j2", {**page.values(), "static_url": "x.css"})
        times_build.append(built - started)
        times_render.append(time.perf_counter() - built)
    print(f"tracking page context (median): {statistics.median(times_build) * 1e3:.3f} ms")
    print(f"tracking page render (median): {statistics.median(times_render) * 1e3:.3f} ms")


async def served(requests: int, concurrency: int) -> None:
    import shutil

    import httpx

    from notifier.pipeline.wiring import notifier_for, web_links
    from notifier.store import Store
    from notifier.web.app import build_app
    from notifier.web.server import WebServer, bind
    from tests.databases import _migrate
    from tests.test_store import NUMBER
    from tests.web_site import ENGLISH, View, seed, settings_for

    with tempfile.TemporaryDirectory() as folder:
        template = Path(folder) / "template.db"
        await _migrate(f"sqlite:///{template}")
        database = Path(folder) / "web.db"
        shutil.copyfile(template, database)
        settings = settings_for(Path(folder), database)
        links = web_links(settings)
        assert links is not None
        store = await Store.open(settings.database.url)
        await seed(store)
        server = WebServer(
            build_app(View(store=store, settings=settings, notifier=notifier_for(settings))),
            bind("127.0.0.1", 0),
        )
        await server.start()
        path = links.tracking(ENGLISH, NUMBER).removeprefix(links.public_url)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:

                async def get(i: int) -> float:
                    started = time.perf_counter()
                    answer = await client.get(
                        path, headers={"X-Forwarded-For": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}
                    )
                    assert answer.status_code == 200, answer.status_code
                    return time.perf_counter() - started

                for i in range(20):  # warm up: templates compiled, connections open
                    await get(i)
                latencies = sorted([await get(i) for i in range(requests)])
                print(
                    f"GET /t/TOKEN one at a time: median {statistics.median(latencies) * 1e3:.2f} ms, "
                    f"p95 {latencies[int(len(latencies) * 0.95)] * 1e3:.2f} ms"
                )
                started = time.perf_counter()
                queue = iter(range(requests))

                async def worker() -> None:
                    for i in queue:
                        await get(i)

                await asyncio.gather(*(worker() for _ in range(concurrency)))
                print(
                    f"GET /t/TOKEN {concurrency} at a time: {requests / (time.perf_counter() - started):,.0f} pages/s"
                )
        finally:
            await server.stop()
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    # `python benchmarks/web.py` puts benchmarks/, not the repository, on sys.path.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    print(f"Python {platform.python_version()}, {platform.machine()}")
    pure(20_000)
    asyncio.run(served(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
