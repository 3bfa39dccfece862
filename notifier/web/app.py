"""The Starlette application of the web face: routes, security headers, limits and error pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.web import customer
from notifier.web.errors import error_page, shop_contact
from notifier.web.state import DaemonView

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

# No script runs on any page (forms are plain POSTs), styles come only from /static, nothing is
# loaded from elsewhere, and no other site may frame the pages (clickjacking of the buttons).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    # Tokens are in the paths: no other site may learn them from a Referer.
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)
# The largest request body read: the forms here are a few dozen bytes.
MAX_BODY = 16 * 1024
# Shop webhooks (web/intake.py): bodies are whole orders, senders are the platforms' shared
# servers (signed, so not held to the per-client limit that protects the customer pages).
INTAKE_PREFIX = "/intake/"
INTAKE_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Per client: a bucket of `burst` requests refilled at `per_minute`."""

    per_minute: float = 120.0
    burst: int = 60


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response, error pages included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(header for header in SECURITY_HEADERS if header[0] not in names),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


class ErrorPageMiddleware:
    """An unexpected exception is logged with its traceback and answered with a generic 500
    page: nothing of the code, the data or the error reaches the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            # The path holds a token (an address): the route's name is enough to find the code.
            route = scope.get("route")
            logger.exception(
                "web request failed: %s %s",
                scope.get("method", "?"),
                getattr(route, "path", None) or "(no route)",
                extra={"action": "web_error"},
            )
            if not started:
                await error_page(500, scope.get("path", "/"))(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses a request body over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = INTAKE_MAX_BODY if str(scope.get("path", "")).startswith(INTAKE_PREFIX) else self.limit
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await error_page(413, scope.get("path", "/"))(scope, receive, send)
            return
        # Bodies are small: read them whole here, so a chunked upload is held to the limit too.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await error_page(413, scope.get("path", "/"))(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RateLimitMiddleware:
    """A simple per-client token bucket; over it, 429 with Retry-After.

    The client is the connection's address, which uvicorn takes from X-Forwarded-For when the
    connection comes from a trusted proxy (see server.py): behind the reverse proxy each
    customer has their own bucket."""

    def __init__(
        self, app: ASGIApp, limit: RateLimit | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.limit = limit or RateLimit()
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def allow(self, client: str) -> float:
        """0 when the request may go on, else the seconds until it could."""
        now = self.clock()
        rate = self.limit.per_minute / 60.0
        tokens, at = self.buckets.get(client, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + (now - at) * rate)
        if tokens < 1.0:
            self.buckets[client] = (tokens, now)
            return (1.0 - tokens) / rate if rate > 0 else 60.0
        self.buckets[client] = (tokens - 1.0, now)
        if len(self.buckets) > 10_000:
            self._forget_idle(now, rate)
        return 0.0

    def _forget_idle(self, now: float, rate: float) -> None:
        # A client whose bucket has filled up again is the same as one never seen.
        full = float(self.limit.burst)
        for client, (tokens, at) in list(self.buckets.items()):
            if tokens + (now - at) * rate >= full:
                del self.buckets[client]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(INTAKE_PREFIX):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.allow(client[0] if client else "?")
        if wait > 0:
            response = error_page(429, scope.get("path", "/"))
            response.headers["Retry-After"] = str(max(1, round(wait)))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error_handler(view: DaemonView) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        response = error_page(status, request.url.path, shop_contact(view.settings))
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)
        return response

    return handle


def build_app(view: DaemonView, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The web face over the running daemon `view`; `extra_routes` (health, metrics, the
    operator board) are served beside the customer pages, under the same middleware."""
    routes: list[BaseRoute] = [
        *customer.routes(view),
        *extra_routes,
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        debug=False,
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(ErrorPageMiddleware),
            Middleware(RateLimitMiddleware),
            Middleware(BodyLimitMiddleware),
        ],
        exception_handlers={HTTPException: _error_handler(view)},
    )
