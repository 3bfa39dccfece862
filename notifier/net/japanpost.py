"""HTTP shell around Japan Post's tracking pages: polite, bounded, and typed in its failures."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from notifier import __version__
from notifier.core.model import DEFAULT_BASE_URL, DETAIL_PATH, Locale, Page
from notifier.core.parser import parse_page
from notifier.errors import FetchError, PermanentFetchError, TransientFetchError

logger = logging.getLogger(__name__)

LIST_PATH = "/services/srv/search/"
MAX_BATCH = 10
DEFAULT_USER_AGENT = (
    f"notifier/{__version__} (Japan Post tracking notifier; polls politely; python-httpx/{httpx.__version__})"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """How to talk to Japan Post. Defaults are deliberately gentle."""

    base_url: str = DEFAULT_BASE_URL
    request_interval: float = 5.0
    deadline: float = 30.0
    connect_timeout: float = 10.0
    max_body_bytes: int = 2 * 2**20
    attempts: int = 3
    backoff_base: float = 2.0
    backoff_cap: float = 60.0
    max_retry_after: float = 900.0
    max_redirects: int = 3
    user_agent: str = DEFAULT_USER_AGENT
    extra_hosts: tuple[str, ...] = ()

    def allows_host(self, host: str) -> bool:
        """Japan Post hosts, the configured base host, and any extra hosts the operator names."""
        host = host.lower().rstrip(".")
        base_host = (urlsplit(self.base_url).hostname or "").lower()
        return (
            host == base_host
            or host == "japanpost.jp"
            or host.endswith(".japanpost.jp")
            or host in self.extra_hosts
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """One successful response: the parsed page and the bytes it came from (kept for snapshots)."""

    url: str
    status: int
    body: bytes
    page: Page
    attempts: int
    elapsed: float


class Pacer(Protocol):
    """What the client needs of a pacer: this process's `RequestPacer`, or a budget shared
    with other instances (notifier.store.instances.SharedPacer)."""

    async def wait(self) -> None: ...

    async def pause(self, seconds: float, reason: str = ...) -> None: ...


@dataclass(slots=True)
class RequestPacer:
    """Spaces request starts at least `interval` seconds apart, across every caller sharing it."""

    interval: float
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _last: float = float("-inf")
    _hold_until: float = float("-inf")

    def hold(self, seconds: float) -> None:
        """The server asked us to wait (Retry-After): nobody sharing this pacer asks before then."""
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    async def pause(self, seconds: float, reason: str = "Retry-After") -> None:
        self.hold(seconds)

    async def wait(self) -> None:
        async with self._lock:
            delay = max(self._last + self.interval, self._hold_until) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._last = time.monotonic()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(
    attempt: int, settings: ClientSettings, retry_after: float | None, rng: random.Random
) -> float:
    """Full-jitter exponential back-off, unless the server said how long to wait."""
    if retry_after is not None:
        return retry_after
    return rng.uniform(0, min(settings.backoff_cap, settings.backoff_base * 2**attempt))


class JapanPostClient:
    """Fetches detail pages and batched latest-status lists.

    Use as an async context manager. One client, one pacer: every request it makes, retries
    included, respects the global minimum interval.
    """

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        pacer: Pacer | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or ClientSettings()
        self.pacer: Pacer = pacer or RequestPacer(self.settings.request_interval)
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            headers={
                "User-Agent": self.settings.user_agent,
                "Accept": "text/html",
                "Accept-Language": "ja,en",
            },
            timeout=httpx.Timeout(self.settings.deadline, connect=self.settings.connect_timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        )
        self.requests_sent = 0

    async def __aenter__(self) -> JapanPostClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def detail_url(self, number: str, locale: Locale) -> tuple[str, dict[str, str]]:
        # The 2014 capture was fetched without searchKind and got the right page for an
        # international item; sending S002 for everything is a scraper habit we need not copy.
        return self._url(DETAIL_PATH), {"reqCodeNo1": number, "locale": str(locale)}

    def list_url(self, numbers: Sequence[str], locale: Locale) -> tuple[str, dict[str, str]]:
        if not 1 <= len(numbers) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} numbers, got {len(numbers)}")
        params = {f"requestNo{i}": (numbers[i - 1] if i <= len(numbers) else "") for i in range(1, 11)}
        params.update({"search.x": "52", "search.y": "18", "startingUrlPatten": "", "locale": str(locale)})
        return self._url(LIST_PATH), params

    def _url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + path

    async def fetch_detail(self, number: str, locale: Locale = Locale.EN) -> Fetched:
        """The full history of one number (or the list layout, when Japan Post answers with it)."""
        url, params = self.detail_url(number, locale)
        return await self._fetch(url, params, requested=(number,))

    async def fetch_latest(self, numbers: Sequence[str], locale: Locale = Locale.EN) -> Fetched:
        """The latest status of up to ten numbers in one request."""
        url, params = self.list_url(numbers, locale)
        return await self._fetch(url, params, requested=tuple(numbers))

    async def _fetch(self, url: str, params: dict[str, str], requested: Sequence[str]) -> Fetched:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                status, final_url, body = await self._get(url, params)
            except TransientFetchError as exc:
                wait = backoff_delay(attempt - 1, self.settings, exc.retry_after, self._rng)
                if attempt >= self.settings.attempts or wait > self.settings.max_retry_after:
                    raise
                logger.info(
                    "Japan Post: %s; retry %d in %.1fs",
                    exc,
                    attempt,
                    wait,
                    extra={"action": "fetch_retry", "url": url, "error": str(exc), "wait": round(wait, 2)},
                )
                await asyncio.sleep(wait)
                continue
            page = parse_page(body, requested=requested)
            return Fetched(
                url=final_url,
                status=status,
                body=body,
                page=page,
                attempts=attempt,
                elapsed=time.monotonic() - started,
            )

    async def _get(self, url: str, params: dict[str, str] | None) -> tuple[int, str, bytes]:
        """One request with its redirects, under one total deadline."""
        try:
            async with asyncio.timeout(self.settings.deadline):
                for _ in range(self.settings.max_redirects + 1):
                    await self.pacer.wait()
                    self.requests_sent += 1
                    async with self._http.stream("GET", url, params=params) as response:
                        if response.is_redirect:
                            url = self._redirect_target(response)
                            params = None
                            continue
                        if response.status_code != 200:
                            await self._honour_retry_after(response)
                        self._check_status(response)
                        body = await self._read_capped(response)
                        return response.status_code, str(response.url), body
                raise PermanentFetchError(f"more than {self.settings.max_redirects} redirects", url=url)
        except TimeoutError as exc:
            raise TransientFetchError(
                f"no complete answer within {self.settings.deadline:g}s", url=url
            ) from exc
        except httpx.TransportError as exc:
            raise TransientFetchError(f"{type(exc).__name__}: {exc}", url=url) from exc
        except httpx.DecodingError as exc:
            raise PermanentFetchError(f"undecodable body: {exc}", url=url) from exc

    def _redirect_target(self, response: httpx.Response) -> str:
        location = str(response.headers.get("location", ""))
        target = urljoin(str(response.url), location)
        host = urlsplit(target).hostname or ""
        if not self.settings.allows_host(host):
            raise PermanentFetchError(
                f"refusing redirect to {host or location!r}: not a Japan Post host",
                url=str(response.url),
                status=response.status_code,
            )
        return target

    async def _honour_retry_after(self, response: httpx.Response) -> None:
        retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        if retry_after is not None:
            await self.pacer.pause(
                min(retry_after, self.settings.max_retry_after), f"Retry-After on HTTP {response.status_code}"
            )

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 200:
            content_type = response.headers.get("content-type", "")
            if "html" not in content_type.lower():
                raise PermanentFetchError(
                    f"expected HTML, got {content_type!r}", url=str(response.url), status=200
                )
            return
        retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        if status in (408, 425, 429) or status >= 500:
            raise TransientFetchError(
                f"HTTP {status}", url=str(response.url), status=status, retry_after=retry_after
            )
        raise PermanentFetchError(f"HTTP {status}", url=str(response.url), status=status)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        # Count decoded bytes: a cap on the wire size would let a gzip bomb through.
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise PermanentFetchError(
                    f"body exceeds {self.settings.max_body_bytes} bytes", url=str(response.url), status=200
                )
            chunks.append(chunk)
        return b"".join(chunks)


__all__ = [
    "DEFAULT_BASE_URL",
    "ClientSettings",
    "FetchError",
    "Fetched",
    "JapanPostClient",
    "Pacer",
    "PermanentFetchError",
    "RequestPacer",
    "TransientFetchError",
]
