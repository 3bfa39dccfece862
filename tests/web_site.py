"""A real web face for tests: uvicorn on a loopback port, in its own thread, over a real SQLite
store that holds a genuine capture's shipment with its events and two subscribers (en and ja)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from notifier.config import Settings, parse_settings
from notifier.core.diff import diff_detail
from notifier.core.links import Links
from notifier.core.numbers import parse_number
from notifier.core.parser import parse_page
from notifier.pipeline.activity import Activity
from notifier.pipeline.cycle import CircuitBreaker
from notifier.pipeline.poll import Notifier
from notifier.pipeline.wiring import notifier_for, web_links
from notifier.store import Store
from notifier.web.app import build_app
from notifier.web.server import WebServer, bind
from tests.test_store import CAPTURE, NUMBER

T = TypeVar("T")
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
SECRET = "a secret for the web tests, long enough"
ENGLISH = "customer@example.com"
JAPANESE = "hanako@example.jp"


@dataclass
class View:
    """What a running Daemon shows the web face (notifier.web.state.DaemonView), for real."""

    store: Store
    settings: Settings
    notifier: Notifier
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    last_tick: dt.datetime | None = None
    last_good_cycle: dt.datetime | None = None
    activity: Activity = field(default_factory=lambda: Activity(started_at=dt.datetime.now(dt.UTC)))


@dataclass
class Site:
    base_url: str
    links: Links
    database: Path
    number: str = NUMBER

    def tracking(self, recipient: str = ENGLISH) -> str:
        return self.links.tracking(recipient, self.number).replace(self.links.public_url, self.base_url)

    def unsubscribe(self, recipient: str = ENGLISH) -> str:
        return self.links.unsubscribe(recipient, self.number).replace(self.links.public_url, self.base_url)

    def store_call(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Run `work(store)` against the site's database from the test's thread."""

        async def run() -> T:
            store = await Store.open(f"sqlite:///{self.database}")
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(run())


def settings_for(tmp_path: Path, database: Path) -> Settings:
    secret = tmp_path / "http-secret"
    secret.write_text(SECRET, encoding="utf-8")
    text = f"""
[database]
url = "sqlite:///{database}"
[notifications]
shop_name = "Sakura Ceramics"
reply_to = "shop@sakura.example"
shop_phone = "+81 3-1234-5678"
unsubscribe = "mailto:shop@sakura.example?subject=unsubscribe"
[http]
listen = "127.0.0.1:8080"
public_url = "https://track.sakura.example"
secret_file = "{secret}"
"""
    return parse_settings(text, tmp_path / "notifier.toml")


async def _csp_probe(request: Request) -> Response:
    # A page that breaks the policy on purpose: the browser tests prove they would see it.
    return HTMLResponse(
        '<!DOCTYPE html><html><head><title>probe</title></head><body><p style="color:red">x</p>'
        "<script>document.title = 'ran';</script></body></html>"
    )


PROBE = "/csp-probe"


async def seed(store: Store) -> None:
    shipment = await store.watch(parse_number(NUMBER), now=T0, label="Order 1001")
    page = parse_page(CAPTURE)
    change = diff_detail((), page, NUMBER)
    await store.record_poll(shipment.id, change=change, item=page.items[0], now=T0, next_poll_at=None)
    await store.subscribe(shipment.id, ENGLISH, locale="en", now=T0)
    await store.subscribe(shipment.id, JAPANESE, locale="ja", now=T0, time_zone="Asia/Tokyo")


@contextlib.contextmanager
def running(settings: Settings, prepare: Callable[[Store], Awaitable[None]] | None = None) -> Iterator[str]:
    """The web face over `settings`' database, served on a loopback port: yields its base URL.
    `prepare` runs on the store first (seeding)."""
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        store = await Store.open(settings.database.url)
        try:
            if prepare is not None:
                await prepare(store)
            view = View(store=store, settings=settings, notifier=notifier_for(settings))
            server = WebServer(build_app(view, extra_routes=[Route(PROBE, _csp_probe)]), sock)
            await server.start()
            ready.set()
            await stop.wait()
            await server.stop()
        finally:
            await store.close()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the test, not lost in the thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="web-site", daemon=True)
    thread.start()
    started = ready.wait(30)
    if failure or not started:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        sock.close()
        raise failure[0] if failure else AssertionError("the web site did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
    if failure:
        raise failure[0]


@pytest.fixture
def site(tmp_path: Path, sqlite_template: Path) -> Iterator[Site]:
    database = tmp_path / "web.db"
    shutil.copyfile(sqlite_template, database)
    settings = settings_for(tmp_path, database)
    links = web_links(settings)
    assert links is not None
    with running(settings, seed) as base_url:
        yield Site(base_url=base_url, links=links, database=database)
