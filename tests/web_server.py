"""A web face app served by the daemon's own WebServer (real uvicorn) on a free loopback port, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from starlette.types import ASGIApp

from notifier.web.server import WebServer, bind


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL (http://127.0.0.1:PORT)."""
    server = WebServer(app, bind("127.0.0.1", 0))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@contextlib.contextmanager
def serving_in_thread(make: Callable[[], contextlib.AbstractAsyncContextManager[ASGIApp]]) -> Iterator[str]:
    """Serve the app `make()` yields from its own event loop in a thread, for synchronous tests
    (a browser driven by Selenium); yields the base URL. Whatever fails there fails here."""
    started: queue.Queue[str | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with make() as app, serving(app) as url:
                started.put(url)
                await stop.wait()
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), name="web-test", daemon=True)
    thread.start()
    try:
        first = started.get(timeout=60)
        if isinstance(first, BaseException):
            raise first
        yield first
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
