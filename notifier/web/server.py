"""Serving the web face from the daemon's own event loop: uvicorn as a task, the signals left to the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from notifier.errors import NotifierError

logger = logging.getLogger(__name__)

# Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: a reverse proxy on this
# machine. Anyone else could claim any address and escape the per-client rate limit.
TRUSTED_PROXIES = "127.0.0.1,::1"


class ListenError(NotifierError):
    """The [http] listen address cannot be bound."""


def bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket for `host:port`, taken before anything else starts, so that a port in
    use is one clear error at start-up rather than a failure deep inside the server."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"http.listen: cannot resolve {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(f"http.listen: cannot listen on {shown}: {exc.strerror}") from None
    return sock


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: the daemon owns SIGTERM, SIGINT and SIGHUP and
    stops the server itself (uvicorn would otherwise replace the daemon's handlers while it runs)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


class WebServer:
    """The web face served on an already bound socket, until `stop`."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(
            app,
            lifespan="off",
            # The daemon configured logging; uvicorn must not reconfigure it.
            log_config=None,
            # Paths carry signed tokens (addresses): they are not written to the journal.
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=TRUSTED_PROXIES,
            server_header=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=5,
            limit_concurrency=200,
        )
        self.server = _EmbeddedServer(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def start(self) -> asyncio.Task[None]:
        """Start serving; returns the serving task (it ends only by `stop` or a failure)."""
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="web")
        listening = asyncio.ensure_future(self.server.listening.wait())
        await asyncio.wait({self.task, listening}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if self.task.done():
            self.task.result()  # a failure to start, raised here
            raise ListenError("the web server stopped while starting")
        return self.task

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (a few seconds at most), close."""
        if self.task is None:
            self.sock.close()
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=10)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        except Exception:
            logger.exception("web server failed while stopping", extra={"action": "web_failed"})
        finally:
            self.sock.close()
