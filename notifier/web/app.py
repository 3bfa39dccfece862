"""The Starlette application of the web face: routes, security headers, limits and error pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.config import Settings
from notifier.core.render import mailto, split_address
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
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
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
            if size > self.limit:
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
        if scope["type"] != "http":
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


_ERRORS = {
    400: ("Bad request", "リクエストが正しくありません"),
    404: ("Page not found", "ページが見つかりません"),
    405: ("Method not allowed", "この操作はできません"),
    413: ("Request too large", "リクエストが大きすぎます"),
    429: ("Too many requests: please wait a moment", "アクセスが多すぎます。しばらくしてからお試しください"),
    500: ("Something went wrong on our side", "サーバーで問題が発生しました"),
}


@dataclass(frozen=True, slots=True)
class ShopContact:
    """Where a customer on a dead end can turn: the shop's reply address and site ([notifications])."""

    shop_name: str
    reply_to: str | None = None
    shop_url: str | None = None


def shop_contact(settings: Settings) -> ShopContact:
    n = settings.notifications
    return ShopContact(n.shop_name, n.reply_to, n.shop_url)


# Most 404s a customer meets are an old or cut-off link from one of our emails: say so, and
# where to go instead (the same page for every unknown link, so it tells nothing of any token).
_NOT_FOUND_HELP = (
    "The link may be incomplete or out of date. Please open the link in the latest email about "
    "your order, or simply reply to that email and we will help.",
    "リンクが途中で切れているか、古くなっている可能性があります。ご注文についての最新のメールのリンクを"
    "お使いいただくか、そのメールにご返信ください。確認のうえご案内いたします。",
)


def _contact_html(contact: ShopContact) -> str:
    parts: list[str] = []
    if contact.reply_to:
        name, address = split_address(contact.reply_to)
        if address:
            label = escape(name or address)
            parts.append(f'<a href="{escape(mailto(contact.reply_to))}">{label}</a>')
    if contact.shop_url:
        parts.append(f'<a href="{escape(contact.shop_url)}">{escape(contact.shop_name)}</a>')
    return f"<p>{' · '.join(parts)}</p>" if parts else ""


def error_page(status: int, path: str = "/", contact: ShopContact | None = None) -> HTMLResponse:
    """A small bilingual page that says only what the status says; a 404 also says what to do
    and, with `contact`, links the shop. `path` is the request's: the stylesheet is linked
    relative to it, so it loads under a proxy's path prefix too."""
    english, japanese = _ERRORS.get(status, ("Error", "エラー"))
    stylesheet = "../" * max(0, path.count("/") - 1) + "static/page.css"
    help_html = ""
    if status == 404:
        help_html = f'<p>{_NOT_FOUND_HELP[0]}</p><p lang="ja">{_NOT_FOUND_HELP[1]}</p>'
        help_html += _contact_html(contact) if contact is not None else ""
    body = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{english}</title><link rel="stylesheet" href="{stylesheet}"></head>'
        f'<body><main class="page"><h1>{english}</h1><p lang="ja">{japanese}</p>{help_html}</main></body></html>\n'
    )
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


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
    from notifier.web import customer

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
