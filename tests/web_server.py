"""Real servers for web tests: an ASGI app under the daemon's own uvicorn server on loopback, a recording HTTP endpoint, and a TCP proxy that can be cut."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.types import ASGIApp

from notifier.web.server import WebServer, bind


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` with the daemon's own WebServer (real uvicorn) on a free loopback port, in the
    running loop, until the block ends; yields its base URL (http://127.0.0.1:PORT)."""
    server = WebServer(app, bind("127.0.0.1", 0))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


serve_asgi = serving


@pytest.fixture
def asgi_server() -> Callable[[ASGIApp], contextlib.AbstractAsyncContextManager[str]]:
    """`async with asgi_server(app) as base_url:` a real uvicorn serving `app` on loopback."""
    return serve_asgi


async def wait_until(condition: Callable[[], Any], seconds: float = 20, what: str = "") -> None:
    """Poll `condition` (sync, or returning an awaitable) until it is truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass(frozen=True, slots=True)
class Hit:
    """One request the recording endpoint received, and the status it answered."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    status: int
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """An HTTP endpoint in a thread that records every request; answers `script` in order
    (one status per request), then `default`."""

    script: list[int] = field(default_factory=list)
    default: int = 200
    hits: list[Hit] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._lock:
                    status = recorder.script.pop(0) if recorder.script else recorder.default
                    recorder.hits.append(
                        Hit(
                            self.command,
                            self.path,
                            body,
                            {k.lower(): v for k, v in self.headers.items()},
                            status,
                            time.monotonic(),
                        )
                    )
                payload = b"ok" if status < 300 else b"error"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """Forwards a loopback port to `target`, in the running loop. `cut()` closes every
    connection and stops listening (clients see resets, then refused connections);
    `restore()` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(
            self._connect, "127.0.0.1", self.port or 0, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            # An abort, not a graceful close: the client sees its connection reset.
            transport.abort()
        self._writers.clear()
        await asyncio.sleep(0.05)

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()


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
