"""Local Japan Post simulator: a loopback HTTP server that answers in the genuine page markup."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import email.utils
import enum
import functools
import html
import importlib.resources
import math
import random
import re
import signal
import socket
import socketserver
import string
import struct
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import jinja2

__all__ = [
    "ALL_SCANS",
    "DIRECT_PATH",
    "MESSAGE_NOT_FOUND",
    "MESSAGE_WRONG_DIGITS",
    "OFFSITE_REDIRECT",
    "SEARCH_PATH",
    "ContactRow",
    "Fault",
    "Journey",
    "RequestRecord",
    "Scan",
    "Simulator",
    "SimulatorServer",
    "builtin_journeys",
    "capture_journey",
    "catalog_journeys",
    "compact_number",
    "display_number",
    "serve",
]

DIRECT_PATH: Final = "/services/srv/search/direct"
SEARCH_PATH: Final = "/services/srv/search/"
OFFSITE_REDIRECT: Final = "https://example.invalid/track"
MAX_NUMBERS: Final = 10
ALL_SCANS: Final = -1
"""`Journey.revealed` default: every scan is visible."""

# FORMAT.md §8. The English wrong-digits text is genuine (2014 capture); the rest come from parsers.
MESSAGE_WRONG_DIGITS: Final = {
    "en": "** There is a mistake in the number of digits for the item number. The number should be 11-13 digits.",
    "ja": "＊＊ お問い合わせ番号の入力桁数に誤りがあります。11桁から13桁で入力してください。",
}
MESSAGE_NOT_FOUND: Final = {
    "en": "** Your item was not found. Confirm your item number and ask at your local office.",
    "ja": "＊＊ お問い合わせ番号が見つかりません。お問い合わせ番号をご確認の上、お近くの取扱店にお問い合わせください。",
}

_S10_RE: Final = re.compile(r"[A-Z]{2}\d{9}[A-Z]{2}")
_WHEN_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2})?")
_SEPARATORS_RE: Final = re.compile(r"[-\s\u3000‐－]")
# Jinja turns every line end into "\n"; the captures mix CRLF and LF, so carriage returns travel
# through the template engine as this private-use character and are restored afterwards.
_CR: Final = "\ue000"


def compact_number(number: str) -> str:
    """The tracking number without hyphens or spaces, upper-cased: the form the site looks up."""
    return _SEPARATORS_RE.sub("", number).upper()


def display_number(number: str) -> str:
    """The number as the detail page prints it.

    S10 numbers are grouped like the 2014 capture ("EL 015 307 999 JP"). Domestic 12-digit numbers
    are printed 4-4-4 with hyphens, as parsers of the live site report; other lengths have no known
    grouping and are printed as plain digits.
    """
    n = compact_number(number)
    if _S10_RE.fullmatch(n):
        return f"{n[:2]} {n[2:5]} {n[5:8]} {n[8:11]} {n[11:]}"
    if len(n) == 12 and n.isdigit():
        return f"{n[:4]}-{n[4:8]}-{n[8:]}"
    return n


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """One history event as the page shows it: both languages, so either locale can be served."""

    when: str
    """Local wall time `YYYY-MM-DDTHH:MM`, or `YYYY-MM-DD` for a date-only row."""
    status_en: str
    status_ja: str
    office_en: str = ""
    office_ja: str = ""
    region_en: str = ""
    """Prefecture, or the country when the event happened abroad."""
    region_ja: str = ""
    postal_code: str = ""
    """Empty abroad; the page then shows `&nbsp;`."""
    details: str = ""

    def __post_init__(self) -> None:
        if not _WHEN_RE.fullmatch(self.when):
            raise ValueError(f"scan time must be YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {self.when!r}")
        dt.date.fromisoformat(self.when[:10])
        if "T" in self.when:
            dt.time.fromisoformat(self.when[11:])

    @property
    def date(self) -> dt.date:
        return dt.date.fromisoformat(self.when[:10])

    @property
    def clock(self) -> str:
        """`HH:MM`, or "" for a date-only row."""
        return self.when[11:] if "T" in self.when else ""

    def shown_when(self, locale: str) -> str:
        """The date cell: `MM/DD/YYYY HH:MM` in English, `YYYY/MM/DD HH:MM` in Japanese."""
        day = f"{self.date:%m/%d/%Y}" if locale == "en" else f"{self.date:%Y/%m/%d}"
        return f"{day} {self.clock}" if self.clock else day


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRow:
    """A row of the office contact table (`窓口店`)."""

    role_en: str
    role_ja: str
    office_en: str
    office_ja: str
    phone: str
    office_id: str = ""
    """Japan Post office id; when set, the office name links to the office search like the capture."""


@dataclass(slots=True, kw_only=True)
class Journey:
    """A scripted shipment: all its scans, of which the first `revealed` are visible now."""

    number: str
    item_type_en: str
    item_type_ja: str
    international: bool
    scans: list[Scan]
    contacts: list[ContactRow] = field(default_factory=list)
    revealed: int = ALL_SCANS
    """How many scans are visible; 0 means "not found yet"; negative means all of them."""
    additional_services_en: str = ""
    additional_services_ja: str = ""
    type_code: str = ""
    """Hidden `trackingNoTypeCode`; "" means "4" (as captured) for international items, "1" otherwise."""
    class_code: str = ""
    """Hidden `pslClsfctCod` (postal class code, "2130" for the captured EMS)."""
    accepted_seconds: int = 0
    """Seconds of the acceptance time, which only the hidden `proposalHandDateTimeString` shows."""

    def __post_init__(self) -> None:
        self.number = compact_number(self.number)
        self.scans = list(self.scans)
        self.contacts = list(self.contacts)
        if self.revealed < 0:
            self.revealed = len(self.scans)
        self.revealed = min(self.revealed, len(self.scans))
        if not 0 <= self.accepted_seconds < 60:
            raise ValueError("accepted_seconds must be 0-59")

    @property
    def visible(self) -> list[Scan]:
        return self.scans[: self.revealed]

    @property
    def hidden_type_code(self) -> str:
        return self.type_code or ("4" if self.international else "1")


class Fault(enum.StrEnum):
    """Misbehaviour the simulator can be told to show, one request at a time or until cleared."""

    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    SLOW = "slow"
    TRICKLE = "trickle"
    OVERSIZED = "oversized"
    GZIP_BOMB = "gzip_bomb"
    MAINTENANCE = "maintenance"
    CHANGED_LAYOUT = "changed_layout"
    RESET = "reset"
    REDIRECT_OFFSITE = "redirect_offsite"
    REDIRECT_ONSITE = "redirect_onsite"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the simulator saw it. `status` is 0 when the connection was reset unanswered."""

    at: float
    """`time.monotonic()` when the request arrived."""
    path: str
    numbers: tuple[str, ...]
    """The non-empty number slots, compacted (see `compact_number`), in slot order."""
    locale: str
    status: int
    fault: Fault | None
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class _FaultSpec:
    fault: Fault
    retry_after: float | None
    delay: float
    size: int


@dataclass(slots=True)
class _Reply:
    """A response before it meets a socket; the server turns the fault fields into timing."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    spec: _FaultSpec | None = None
    padding: int = 0
    """OVERSIZED: filler bytes streamed after `body`, so a large `size` never sits in memory."""

    @property
    def fault(self) -> Fault | None:
        return self.spec.fault if self.spec else None


class _Entry(NamedTuple):
    """One requested number, resolved: a snapshot of a visible journey, or an error message key."""

    typed: str
    journey: Journey | None
    error: str


# --------------------------------------------------------------------------------------------- labels

_LABELS: Final[dict[str, dict[str, str]]] = {
    # English: exactly the genuine 2014 text. Japanese: FORMAT.md §4-5 where known (table headers,
    # list h1); titles, headings and the contact table are reconstructed, as no Japanese capture exists.
    "en": {
        "detail_title": "Detailed Search Results - Japan Post",
        "list_title": "Individual Search Results - Japan Post",
        "detail_h1": "Details of search result",
        "list_h1": "Individual number search results",
        "kind_international": "International",
        "kind_domestic": "Domestic",
        "h2_item": "Delivery Status Details",
        "h2_history": "History information",
        "h2_contacts": "Office contact information",
        "th_number": "Item number",
        "th_class": "Class of goods",
        "th_services": "Additional services",
        "th_status": "Shipping track record",
        "th_details": "Details",
        "th_office": "Office",
        "th_zip": "ZIP code（Postal code number）",
        "th_role": "Case class",
        "th_contact_office": "Office",
        "th_phone": "Phone number",
        "th_latest_date": "Latest date",
        "th_latest_status": "Latest status",
        "th_latest_office": "Latest handling office",
        "th_prefecture": "Prefecture",
        "contact_note": "* Please click the handling office in case of inquiry. (Japanese only)",
        "mail_button": "E-mail notification of completed delivery",
        "office_search_alt": "Check the local office (Japanese only).",
        "page_top": "▲ Back to page top",
        "count": "Reference results for {n} postal items",
    },
    "ja": {
        "detail_title": "詳細検索結果 - 日本郵便",
        "list_title": "個別番号検索結果 - 日本郵便",
        "detail_h1": "検索結果詳細",
        "list_h1": "個別番号検索結果",
        "kind_international": "国際",
        "kind_domestic": "国内",
        "h2_item": "配達状況詳細",
        "h2_history": "履歴情報",
        "h2_contacts": "お問い合わせ窓口",
        "th_number": "お問い合わせ番号",
        "th_class": "商品種別",
        "th_services": "付加サービス",
        "th_status": "配送履歴",
        "th_details": "詳細",
        "th_office": "取扱局",
        "th_zip": "郵便番号",
        "th_role": "取扱区分",
        "th_contact_office": "取扱局",
        "th_phone": "電話番号",
        "th_latest_date": "最新年月日",
        "th_latest_status": "最新状態",
        "th_latest_office": "最新取扱局",
        "th_prefecture": "県名等",
        "contact_note": "※お問い合わせの際は、取扱局をクリックしてください。",
        "mail_button": "配達完了メールのお申し込み",
        "office_search_alt": "お近くの郵便局を探す",
        "page_top": "▲ ページの先頭へ",
        "count": "照会結果は{n}件です",
    },
}


def _locale(value: str) -> str:
    return "en" if value == "en" else "ja"


# ------------------------------------------------------------------------------------------ templates


class _PageLoader(jinja2.BaseLoader):
    """Loads `simulator_pages/*.html` from the package, keeping carriage returns (see `_CR`)."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        resource = importlib.resources.files("notifier.testing").joinpath("simulator_pages", template)
        try:
            source = resource.read_bytes().decode("utf-8")
        except FileNotFoundError as exc:
            raise jinja2.TemplateNotFound(template) from exc
        return source.replace("\r", _CR), None, lambda: True


def _drop_cr_marker(value: Any) -> Any:
    # Keeps inserted text from smuggling the marker in and turning into a stray carriage return.
    return value.replace(_CR, "") if isinstance(value, str) else value


@functools.cache
def _environment(genuine: bool) -> jinja2.Environment:
    # Genuine templates keep every whitespace byte of the JSP output (block tags sit where the JSP
    # tags were); invented pages are tidied instead.
    return jinja2.Environment(
        loader=_PageLoader(),
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=not genuine,
        lstrip_blocks=not genuine,
        finalize=_drop_cr_marker,
        undefined=jinja2.StrictUndefined,
    )


def _render(name: str, genuine: bool, **context: Any) -> str:
    text = _environment(genuine).get_template(name).render(**context)
    return text.replace(_CR, "\r")


@functools.lru_cache(maxsize=8)
def _gzip_bomb(size: int) -> bytes:
    """A gzip stream of `size` spaces, compressed piecewise so the inflated size is never in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * min(size, 1 << 20)
    parts: list[bytes] = []
    left = size
    while left > 0:
        n = min(left, len(block))
        parts.append(packer.compress(memoryview(block)[:n]))
        left -= n
    parts.append(packer.flush())
    return b"".join(parts)


# ------------------------------------------------------------------------------------------ simulator


class Simulator:
    """The simulated site's state: journeys, queued faults and a request log. Thread-safe.

    It knows nothing of sockets; `SimulatorServer` serves it over HTTP and `respond` answers a
    request in-process. `seed` makes the per-session values (cookies, hashes) reproducible.
    """

    def __init__(self, journeys: Iterable[Journey] = (), *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._journeys: dict[str, Journey] = {}
        self._queue: deque[list[Any]] = deque()  # [spec, remaining uses]
        self._persistent: _FaultSpec | None = None
        self._every = 1
        self._unqueued = 0  # requests answered after the queue ran dry, for `every`
        self._requests: list[RequestRecord] = []
        self._random = random.Random(seed)
        for journey in journeys:
            self.add(journey)

    # -- journeys

    def add(self, journey: Journey) -> None:
        """Add or replace a journey (a copy is stored)."""
        copy = _copy_journey(journey)
        with self._lock:
            self._journeys[copy.number] = copy

    def journey(self, number: str) -> Journey:
        """A copy of the journey for `number` (any spacing); KeyError if unknown."""
        with self._lock:
            return _copy_journey(self._journeys[compact_number(number)])

    @property
    def numbers(self) -> list[str]:
        with self._lock:
            return list(self._journeys)

    def reveal(self, number: str, count: int) -> None:
        """Make exactly the first `count` scans visible (clamped to what the journey has)."""
        with self._lock:
            journey = self._journeys[compact_number(number)]
            journey.revealed = max(0, min(count, len(journey.scans)))

    def advance(self, number: str | None = None, steps: int = 1) -> list[str]:
        """Reveal the next `steps` scans of one journey, or of every journey; return those that changed."""
        changed: list[str] = []
        with self._lock:
            targets = [self._journeys[compact_number(number)]] if number else list(self._journeys.values())
            for journey in targets:
                before = journey.revealed
                journey.revealed = max(0, min(before + steps, len(journey.scans)))
                if journey.revealed != before:
                    changed.append(journey.number)
        return changed

    # -- faults

    def inject(
        self,
        fault: Fault | None,
        *,
        times: int = 1,
        retry_after: float | None = None,
        delay: float = 0.0,
        size: int = 5 * 2**20,
    ) -> None:
        """Give the next `times` requests this fault (after any already queued).

        `None` queues good answers, so a script of good and bad requests can be laid out in order.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        spec = None if fault is None else _fault_spec(fault, retry_after=retry_after, delay=delay, size=size)
        with self._lock:
            self._queue.append([spec, times])

    def set_fault(
        self,
        fault: Fault | None,
        *,
        retry_after: float | None = None,
        delay: float = 0.0,
        size: int = 5 * 2**20,
        every: int = 1,
    ) -> None:
        """Give every request this fault until it is set to None. Queued faults go first.

        With `every=N` only every Nth request gets it (the Nth, 2Nth, ...): a flapping site.
        """
        if every < 1:
            raise ValueError("every must be at least 1")
        spec = None if fault is None else _fault_spec(fault, retry_after=retry_after, delay=delay, size=size)
        with self._lock:
            self._persistent = spec
            self._every = every
            self._unqueued = 0

    def clear_faults(self) -> None:
        """Drop queued faults and the persistent one."""
        with self._lock:
            self._queue.clear()
            self._persistent = None
            self._every = 1

    def _next_fault(self) -> _FaultSpec | None:
        with self._lock:
            if self._queue:
                head = self._queue[0]
                head[1] -= 1
                if head[1] <= 0:
                    self._queue.popleft()
                spec: _FaultSpec | None = head[0]
                return spec
            self._unqueued += 1
            if self._unqueued % self._every:
                return None
            return self._persistent

    # -- request log

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- pages

    def render_detail(self, number: str, locale: str) -> str:
        """The detail page for a known number with at least one visible scan (LookupError otherwise)."""
        entry = self._resolve([number])[0]
        if entry.journey is None:
            raise LookupError(f"{number!r} has no detail page: {entry.error}")
        return self._detail_page(entry.journey, _locale(locale))

    def render_list(self, numbers: Sequence[str], locale: str) -> str:
        """The list page: latest status per found number, an error row for every other one."""
        return self._list_page(self._resolve(numbers), _locale(locale))

    def respond(
        self, path: str, query: str, *, host: str | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one GET in-process, faults included, as (status, headers, body).

        SLOW and TRICKLE sleep for their delay, RESET raises ConnectionResetError and OVERSIZED
        returns the whole body. `host` makes an on-site redirect absolute, as the server does.
        """
        reply = self._dispatch(path, query, host=host)
        spec = reply.spec
        if spec is not None and spec.fault is Fault.RESET:
            raise ConnectionResetError("simulated connection reset")
        if spec is not None and spec.fault in (Fault.SLOW, Fault.TRICKLE):
            time.sleep(spec.delay)
        body = reply.body + b" " * reply.padding
        return reply.status, list(reply.headers), body

    def _dispatch(self, path: str, query: str, *, host: str | None = None, user_agent: str = "") -> _Reply:
        arrived = time.monotonic()
        params = parse_qsl(query, keep_blank_values=True)
        locale = _locale(next((value for key, value in reversed(params) if key == "locale"), "ja"))
        route = _route(path)
        typed = _numbers_from(params, route)
        spec = self._next_fault()
        reply = self._reply(route, typed, locale, spec, path, query, host)
        record = RequestRecord(
            arrived,
            path,
            tuple(compact_number(n) for n in typed),
            locale,
            reply.status,
            reply.fault,
            user_agent,
        )
        with self._lock:
            self._requests.append(record)
        return reply

    def _reply(
        self,
        route: str | None,
        typed: list[str],
        locale: str,
        spec: _FaultSpec | None,
        path: str,
        query: str,
        host: str | None,
    ) -> _Reply:
        fault = spec.fault if spec else None
        if fault is Fault.RESET:
            return _Reply(0, [], b"", spec)
        if fault is Fault.SERVER_ERROR:
            return self._error(500, "The server encountered an unexpected condition.", spec)
        if fault is Fault.RATE_LIMITED:
            assert spec is not None
            reply = self._error(429, "Too many requests. Please wait and try again.", spec)
            seconds = 1 if spec.retry_after is None else math.ceil(spec.retry_after)
            reply.headers.insert(1, ("Retry-After", str(seconds)))
            return reply
        if fault in (Fault.REDIRECT_OFFSITE, Fault.REDIRECT_ONSITE):
            if fault is Fault.REDIRECT_OFFSITE:
                target = OFFSITE_REDIRECT
            else:
                target = path + (f"?{query}" if query else "")
                target = f"http://{host}{target}" if host else target
            link = f'<a href="{html.escape(target)}">here</a>'
            page = f"<html><head><title>302 Found</title></head><body><p>Moved {link}.</p></body></html>"
            headers = [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Location", target),
                ("Content-Type", "text/html; charset=UTF-8"),
            ]
            return _Reply(302, headers, page.encode(), spec)
        if fault is Fault.MAINTENANCE:
            page = _render(
                "maintenance.html",
                False,
                en=locale == "en",
                window_ja="2026年1月1日（木）0時00分～6時00分",
                window_en="January 1, 2026 (Thu) 0:00 - 6:00 (Japan time)",
            )
            return _Reply(200, self._page_headers(), page.encode(), spec)
        if route is None:
            return self._error(404, "The server has not found anything matching the Request-URI.", spec)
        entries = self._resolve(typed)
        if fault is Fault.CHANGED_LAYOUT:
            page = self._redesigned_page(entries, locale)
        elif len(entries) == 1 and entries[0].journey is not None:
            page = self._detail_page(entries[0].journey, locale)
        else:
            page = self._list_page(entries, locale)
        body = page.encode()
        if fault is Fault.GZIP_BOMB:
            assert spec is not None
            headers = self._page_headers()
            headers.insert(-1, ("Content-Encoding", "gzip"))
            return _Reply(200, headers, _gzip_bomb(spec.size), spec)
        if fault is Fault.OVERSIZED:
            assert spec is not None
            body = body[: spec.size]
            return _Reply(200, self._page_headers(), body, spec, padding=spec.size - len(body))
        return _Reply(200, self._page_headers(), body, spec)

    def _error(self, status: int, explanation: str, spec: _FaultSpec | None) -> _Reply:
        reason = HTTPStatus(status).phrase
        page = _render("error.html", False, status=status, reason=reason, explanation=explanation)
        headers = [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", "text/html; charset=UTF-8"),
        ]
        return _Reply(status, headers, page.encode(), spec)

    def _page_headers(self) -> list[tuple[str, str]]:
        """Headers as recorded in 2014, with fresh session cookies; Content-Length is added on send."""
        with self._lock:
            r = self._random
            session = "".join(r.choices(string.ascii_letters + string.digits, k=52))
            node = r.randrange(10**8, 2**31)
            balancer = r.randrange(10**8, 10**9)
            ts_a = f"{r.getrandbits(352):088x}"
            ts_b = f"{r.getrandbits(288):072x}"
        return [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Set-Cookie", f"JSESSIONID={session}!{node}; path=/services/; secure; HttpOnly"),
            ("Set-Cookie", f"trackings.3={balancer}.23835.0000; path=/"),
            ("Set-Cookie", "trackings=2206574784.37151.0000; path=/"),
            ("Set-Cookie", f"TS75c202={ts_a}; Path=/"),
            ("Set-Cookie", f"TS4d1b44={ts_b}; path=/services/"),
            ("Content-Language", "ja-JP"),
            ("X-Powered-By", "Servlet/2.5 JSP/2.1"),
            ("Content-Type", "text/html; charset=UTF-8"),
        ]

    def _resolve(self, typed: Sequence[str]) -> list[_Entry]:
        entries: list[_Entry] = []
        with self._lock:
            for raw in typed:
                number = compact_number(raw)
                journey = self._journeys.get(number)
                if not 11 <= len(number) <= 13:
                    entries.append(_Entry(raw.strip(), None, "digits"))
                elif journey is None or journey.revealed == 0:
                    entries.append(_Entry(raw.strip(), None, "not_found"))
                else:
                    snapshot = dataclasses.replace(
                        journey, scans=journey.visible, contacts=list(journey.contacts)
                    )
                    entries.append(_Entry(raw.strip(), snapshot, ""))
        return entries

    def _session_values(self) -> tuple[str, str]:
        with self._lock:
            return str(self._random.randrange(100)), f"{self._random.getrandbits(128):032x}"

    def _detail_page(self, journey: Journey, locale: str) -> str:
        labels = _LABELS[locale]
        first = journey.scans[0]
        clock = first.clock or "00:00"
        number_hash, page_hash = self._session_values()
        view = _item_view(journey, locale)
        return _render(
            "detail.html",
            True,
            en=locale == "en",
            locale=locale,
            L=labels,
            item=view,
            events=view["events"],
            contacts=view["contacts"],
            hidden={
                "type_code": journey.hidden_type_code,
                "number_hash": number_hash,
                "accepted": f"{first.date:%Y/%m/%d} {clock}:{journey.accepted_seconds:02d}",
                "class_code": journey.class_code,
                "name_ja_b64": base64.b64encode(journey.item_type_ja.encode()).decode(),
                "name_en_b64": base64.b64encode(_padded_class(journey.item_type_en).encode()).decode(),
                "page_hash": page_hash,
            },
        )

    def _list_page(self, entries: Sequence[_Entry], locale: str) -> str:
        return _render(
            "list.html",
            True,
            en=locale == "en",
            locale=locale,
            L=_LABELS[locale],
            count_text=_LABELS[locale]["count"].format(n=len(entries)),
            rows=[_list_row(entry, locale) for entry in entries],
        )

    def _redesigned_page(self, entries: Sequence[_Entry], locale: str) -> str:
        detail = len(entries) == 1 and entries[0].journey is not None
        rows: list[dict[str, Any]] = []
        for entry in entries:
            if entry.journey is None:
                rows.append({"message": _message(entry.error, locale), "typed": entry.typed})
                continue
            view = _item_view(entry.journey, locale) | {"message": ""}
            if not detail:
                view["events"] = view["events"][-1:]
                view["contacts"] = []
            rows.append(view)
        return _render(
            "redesign.html",
            False,
            en=locale == "en",
            locale=locale,
            L=_LABELS[locale],
            detail=detail,
            count_text=_LABELS[locale]["count"].format(n=len(entries)),
            rows=rows,
        )


def _fault_spec(fault: Fault, *, retry_after: float | None, delay: float, size: int) -> _FaultSpec:
    if delay < 0 or size < 0 or (retry_after is not None and retry_after < 0):
        raise ValueError("delay, size and retry_after must not be negative")
    return _FaultSpec(Fault(fault), retry_after, delay, size)


def _copy_journey(journey: Journey) -> Journey:
    return dataclasses.replace(journey, scans=list(journey.scans), contacts=list(journey.contacts))


def _route(path: str) -> str | None:
    if path == DIRECT_PATH:
        return "direct"
    if path in (SEARCH_PATH, SEARCH_PATH.rstrip("/")):
        return "search"
    return None


def _numbers_from(params: list[tuple[str, str]], route: str | None) -> list[str]:
    prefix = "reqCodeNo" if route == "direct" else "requestNo"
    slots = dict(params)
    typed = (slots.get(f"{prefix}{i}", "") for i in range(1, MAX_NUMBERS + 1))
    return [value for value in typed if value.strip()]


def _message(error: str, locale: str) -> str:
    return (MESSAGE_WRONG_DIGITS if error == "digits" else MESSAGE_NOT_FOUND)[locale]


def _padded_class(item_type_en: str) -> str:
    # The capture pads "EMS" to six characters ("EMS   "), as a fixed-width database column would.
    return item_type_en.ljust(6)


def _item_view(journey: Journey, locale: str) -> dict[str, Any]:
    en = locale == "en"
    labels = _LABELS[locale]
    return {
        "number": journey.number,
        "view_number": display_number(journey.number),
        "international": journey.international,
        "kind": labels["kind_international" if journey.international else "kind_domestic"],
        "item_class": _padded_class(journey.item_type_en) if en else journey.item_type_ja,
        # FORMAT.md §5.1: one parser saw w_480 on domestic pages; the capture (international) has w_380.
        "class_cell": "w_380" if journey.international else "w_480",
        "services": journey.additional_services_en if en else journey.additional_services_ja,
        "events": [_event_view(scan, locale) for scan in journey.scans],
        "contacts": [
            {
                "role": c.role_en if en else c.role_ja,
                "office": c.office_en if en else c.office_ja,
                "office_id": c.office_id,
                "phone": c.phone,
            }
            for c in journey.contacts
        ],
    }


def _event_view(scan: Scan, locale: str) -> dict[str, str]:
    en = locale == "en"
    return {
        "date": scan.shown_when(locale),
        "status": scan.status_en if en else scan.status_ja,
        "details": scan.details,
        "office": scan.office_en if en else scan.office_ja,
        "region": scan.region_en if en else scan.region_ja,
        "postal": scan.postal_code,
    }


def _list_row(entry: _Entry, locale: str) -> dict[str, str]:
    journey = entry.journey
    if journey is None:
        empty = {"type_code": "", "trcnum": "", "first_handled": "", "dup": ""}
        return {"message": _message(entry.error, locale), "typed": entry.typed, **empty}
    latest = _event_view(journey.scans[-1], locale)
    first = journey.scans[0]
    return {
        "message": "",
        "number": journey.number,
        "item_class": _padded_class(journey.item_type_en) if locale == "en" else journey.item_type_ja,
        **latest,
        "type_code": journey.hidden_type_code,
        "trcnum": journey.number,
        "first_handled": f"{first.date:%Y/%m/%d} {first.clock or '00:00'}:{journey.accepted_seconds:02d}",
        "dup": "0",
    }


def _iter_filler(size: int, block: int = 1 << 16) -> Iterable[bytes]:
    """Whitespace that keeps an OVERSIZED page valid HTML however much of it is sent."""
    unit = b" " * block
    while size > 0:
        n = min(size, block)
        yield unit[:n]
        size -= n


# --------------------------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        try:
            reply = self.server.simulator._dispatch(
                split.path,
                split.query,
                host=self.headers.get("Host"),
                user_agent=self.headers.get("User-Agent", ""),
            )
        except Exception:
            # A simulator bug must still be answered, or the client under test would see a reset
            # and blame itself; the traceback goes to stderr through handle_error.
            self.close_connection = True
            self._send(_Reply(500, [("Content-Type", "text/plain; charset=UTF-8")], b"simulator error\n"))
            raise
        self._send(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: one stderr line per request would drown test and benchmark output."""

    def _send(self, reply: _Reply) -> None:
        spec = reply.spec
        stopping = self.server.stopping
        if spec is not None and spec.fault is Fault.RESET:
            # Linger 0 makes close() send RST instead of FIN: a reset, not a polite hang-up.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if spec is not None and spec.fault is Fault.SLOW and stopping.wait(spec.delay):
            self.close_connection = True
            return
        length = len(reply.body) + reply.padding
        lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if spec is not None and spec.fault is Fault.TRICKLE:
            self.wfile.write(head)
            self._trickle(reply.body, spec.delay)
        elif reply.padding:
            self.wfile.write(head + reply.body)
            for chunk in _iter_filler(reply.padding):
                if stopping.is_set():
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
        else:
            # One write: headers and body in separate segments would meet delayed ACKs on keep-alive.
            self.wfile.write(head + reply.body)

    def _trickle(self, body: bytes, delay: float) -> None:
        piece = 64
        count = max(1, math.ceil(len(body) / piece))
        pause = delay / count
        for i in range(count):
            if self.server.stopping.wait(pause):
                self.close_connection = True
                return
            self.wfile.write(body[i * piece : (i + 1) * piece])


class _HTTPServer(HTTPServer):
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: Simulator, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.simulator = simulator
        self.stopping = threading.Event()
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True, name="simulator-conn"
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (or was reset on purpose): nothing to report
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Wake every kept-alive connection's thread and wait for it to finish."""
        with self._connections_lock:
            open_now = list(self._connections.items())
        for sock, _ in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))


class SimulatorServer:
    """Serves a `Simulator` over real HTTP/1.1 (keep-alive) on loopback, from a daemon thread."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        httpd = _HTTPServer((self.host, self._port), self.simulator, family)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="simulator"
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator server is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """E.g. `http://127.0.0.1:43211` (available once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections(timeout=5.0)
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    *,
    step_seconds: float | None,
    journeys: list[Journey],
    fault: Fault | None = None,
    retry_after: float | None = None,
) -> None:
    """Serve until KeyboardInterrupt or SIGTERM; reveal one more scan of every journey each step.

    `fault` makes every answer fail that way, to rehearse what an operator would see.
    """
    simulator = Simulator(journeys)
    if fault is not None:
        simulator.set_fault(fault, retry_after=retry_after, delay=60.0)
    stop = threading.Event()
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if in_main:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with SimulatorServer(simulator, host, port) as server:
            # The real address matters when port 0 let the system choose one.
            print(f"Japan Post simulator listening on {server.base_url}", file=sys.stderr, flush=True)
            next_step = time.monotonic() + step_seconds if step_seconds else math.inf
            try:
                while not stop.is_set():
                    # Short waits keep Ctrl-C responsive while the main thread blocks here.
                    stop.wait(min(0.5, max(0.0, next_step - time.monotonic())))
                    if time.monotonic() >= next_step and step_seconds:
                        simulator.advance()
                        next_step += step_seconds
            except KeyboardInterrupt:
                pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------- journeys


class _Place(NamedTuple):
    office_en: str
    office_ja: str
    region_en: str
    region_ja: str
    postal_code: str = ""


def _at(place: _Place, when: str, status_en: str, status_ja: str, details: str = "") -> Scan:
    return Scan(
        when=when,
        status_en=status_en,
        status_ja=status_ja,
        office_en=place.office_en,
        office_ja=place.office_ja,
        region_en=place.region_en,
        region_ja=place.region_ja,
        postal_code=place.postal_code,
        details=details,
    )


def _acceptance(place: _Place, phone: str, office_id: str = "") -> ContactRow:
    return ContactRow(
        role_en="Acceptance",
        role_ja="引受",
        office_en=place.office_en,
        office_ja=place.office_ja,
        phone=phone,
        office_id=office_id,
    )


def _delivery(place: _Place, phone: str, office_id: str = "") -> ContactRow:
    return ContactRow(
        role_en="Delivery",
        role_ja="配達",
        office_en=place.office_en,
        office_ja=place.office_ja,
        phone=phone,
        office_id=office_id,
    )


# Offices abroad keep their romaji name in Japanese too (the site prints what the foreign post
# reports); only the country is translated. Phone numbers are made up: Japanese subscriber numbers
# never start with 0, so none of them can ring anyone.
_HIGASHIKURUME = _Place("HIGASHIKURUME", "東久留米郵便局", "TOKYO", "東京都", "203-8799")
_TOKYO_INT = _Place("TOKYO INT", "東京国際郵便局", "TOKYO", "東京都", "138-8799")
_FRANKFURT = _Place("FRANKFURT A/M FLUGHAFEN", "FRANKFURT A/M FLUGHAFEN", "GERMANY", "ドイツ")
_SHIBUYA = _Place("SHIBUYA", "渋谷郵便局", "TOKYO", "東京都", "150-8799")
_NEW_YORK_ISC = _Place("NEW YORK NY ISC", "NEW YORK NY ISC", "UNITED STATES", "アメリカ合衆国")
_BROOKLYN = _Place("BROOKLYN NY", "BROOKLYN NY", "UNITED STATES", "アメリカ合衆国")
_SHINJUKU = _Place("SHINJUKU", "新宿郵便局", "TOKYO", "東京都", "163-8799")
_SHIN_TOKYO = _Place("SHIN-TOKYO", "新東京郵便局", "TOKYO", "東京都", "135-8799")
_OSAKA_KITA = _Place("OSAKA-KITA", "大阪北郵便局", "OSAKA", "大阪府", "531-8799")
_SAKAI = _Place("SAKAI", "堺郵便局", "OSAKA", "大阪府", "590-8799")
_OSAKA_INT = _Place("OSAKA INT", "大阪国際郵便局", "OSAKA", "大阪府", "549-8799")
_SHANGHAI = _Place("SHANGHAI EMS", "SHANGHAI EMS", "CHINA", "中華人民共和国")


def capture_journey() -> Journey:
    """EL015307999JP exactly as the genuine 2014 capture shows it, fully revealed."""
    return Journey(
        number="EL015307999JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(_HIGASHIKURUME, "2014-11-03T20:37", "Posting/Collection", "引受"),
            _at(_TOKYO_INT, "2014-11-04T11:49", "Arrival at outward office of exchange", "国際交換局に到着"),
            _at(
                _TOKYO_INT,
                "2014-11-04T13:40",
                "Dispatch from outward office of exchange",
                "国際交換局から発送",
            ),
            _at(_FRANKFURT, "2014-11-05T13:46", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(
                _FRANKFURT,
                "2014-11-05T14:03",
                "Departure from inward office of exchange",
                "国際交換局から発送",
            ),
        ],
        contacts=[_acceptance(_HIGASHIKURUME, "042-473-8141", "200121008120")],
        type_code="4",
        class_code="2130",
        accepted_seconds=11,
    )


def builtin_journeys() -> list[Journey]:
    """The scripted demo journeys (2026), one scan revealed each; the last is never found."""
    ems = Journey(
        number="EJ202603021JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(_SHIBUYA, "2026-03-02T10:15", "Posting/Collection", "引受"),
            _at(_TOKYO_INT, "2026-03-02T21:40", "Arrival at outward office of exchange", "国際交換局に到着"),
            _at(
                _TOKYO_INT,
                "2026-03-03T13:05",
                "Dispatch from outward office of exchange",
                "国際交換局から発送",
            ),
            # Local New York time: looks earlier than the Tokyo dispatch, as FORMAT.md §6 warns.
            _at(
                _NEW_YORK_ISC, "2026-03-03T14:20", "Arrival at inward office of exchange", "国際交換局に到着"
            ),
            _at(
                _NEW_YORK_ISC,
                "2026-03-03T18:45",
                "Item presented to import Customs",
                "税関検査のため税関へ提示",
            ),
            _at(_NEW_YORK_ISC, "2026-03-04T09:30", "Item returned from import Customs", "税関から受領"),
            _at(_BROOKLYN, "2026-03-05T06:10", "Processing at delivery Post Office", "到着"),
            _at(_BROOKLYN, "2026-03-05T08:25", "Item out for physical delivery", "持ち出し中"),
            _at(_BROOKLYN, "2026-03-05T14:50", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(_BROOKLYN, "2026-03-06", "Retention", "保管"),
            _at(_BROOKLYN, "2026-03-07T11:35", "Final delivery", "お届け先にお届け済み"),
        ],
        contacts=[_acceptance(_SHIBUYA, "03-0000-0150", "000000000150")],
        revealed=1,
        class_code="2130",
        accepted_seconds=42,
    )
    yupack = Journey(
        number="314159265350",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(_SHINJUKU, "2026-03-10T16:40", "Posting/Collection", "引受"),
            _at(_SHIN_TOKYO, "2026-03-10T23:55", "En route", "中継"),
            _at(_OSAKA_KITA, "2026-03-11T07:30", "Arrival", "到着"),
            _at(_OSAKA_KITA, "2026-03-11T09:05", "Allocated to delivery staff", "持ち出し中"),
            _at(_OSAKA_KITA, "2026-03-11", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(_OSAKA_KITA, "2026-03-11T20:12", "A request for re-delivery was received.", "配達希望受付"),
            _at(_OSAKA_KITA, "2026-03-12T13:30", "Allocated to delivery staff", "持ち出し中"),
            _at(_OSAKA_KITA, "2026-03-12T15:02", "Final delivery", "お届け先にお届け済み"),
        ],
        contacts=[
            _acceptance(_SHINJUKU, "03-0000-0163", "000000000163"),
            _delivery(_OSAKA_KITA, "06-0000-0531", "000000000531"),
        ],
        revealed=1,
        accepted_seconds=5,
    )
    returned = Journey(
        number="CP314159268JP",
        item_type_en="Parcel",
        item_type_ja="国際小包",
        international=True,
        scans=[
            _at(_SAKAI, "2026-04-06T16:20", "Posting/Collection", "引受"),
            _at(_OSAKA_INT, "2026-04-07T05:10", "Arrival at outward office of exchange", "国際交換局に到着"),
            _at(
                _OSAKA_INT,
                "2026-04-07T18:45",
                "Dispatch from outward office of exchange",
                "国際交換局から発送",
            ),
            _at(_SHANGHAI, "2026-04-09T10:30", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(
                _SHANGHAI, "2026-04-09T15:00", "Item presented to import Customs", "税関検査のため税関へ提示"
            ),
            _at(_SHANGHAI, "2026-04-10T11:20", "Held by import Customs", "税関保留"),
            _at(_SHANGHAI, "2026-04-20T09:00", "Return to Sender", "差出人に返送"),
            _at(_OSAKA_INT, "2026-04-24T07:40", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(
                _OSAKA_INT,
                "2026-04-24T13:15",
                "Departure from inward office of exchange",
                "国際交換局から発送",
            ),
            _at(_SAKAI, "2026-04-25T11:30", "Returned to sender", "差出人に返送済み"),
        ],
        contacts=[_acceptance(_SAKAI, "072-000-0590", "000000000590")],
        revealed=1,
        accepted_seconds=30,
    )
    never_found = Journey(
        number="EJ271828189JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[],
        revealed=0,
    )
    return [ems, yupack, returned, never_found]


RECENT_DAYS_AGO = 2
"""`--now`: each journey's last scan is this many days before today. Two, not zero: abroad a scan
is a wall time without a zone, and a day's margin keeps it in the past wherever it was scanned."""


def shifted_scan(scan: Scan, days: int) -> Scan:
    """The scan `days` later, at the same wall clock (a date-only row stays date-only)."""
    day = (scan.date + dt.timedelta(days=days)).isoformat()
    return dataclasses.replace(scan, when=f"{day}T{scan.clock}" if scan.clock else day)


def recent_journeys(journeys: list[Journey], today: dt.date) -> list[Journey]:
    """The journeys moved in whole days so that each ends RECENT_DAYS_AGO days before `today`:
    their news is fresh for the rules' max_event_age, as a parcel shipped this week would be.
    The spacing of each journey's scans, their clocks and everything else stay as scripted."""
    moved = []
    for journey in journeys:
        if not journey.scans:
            moved.append(dataclasses.replace(journey))
            continue
        days = (today - dt.timedelta(days=RECENT_DAYS_AGO) - journey.scans[-1].date).days
        moved.append(dataclasses.replace(journey, scans=[shifted_scan(s, days) for s in journey.scans]))
    return moved


def catalog_journeys() -> list[Journey]:
    """Fully revealed journeys that together show every status wording of STATUSES.md tables A-D.

    Wordings with no counterpart in the other language are paired with the nearest real wording
    of the same stage family (STATUSES.md §F), never with invented text.
    """
    singapore_ex = _Place("SINGAPORE EMS", "SINGAPORE EMS", "SINGAPORE", "シンガポール")
    singapore_mc = _Place("SINGAPORE MAIL CENTRE", "SINGAPORE MAIL CENTRE", "SINGAPORE", "シンガポール")
    tampines = _Place("TAMPINES", "TAMPINES", "SINGAPORE", "シンガポール")
    los_angeles = _Place("LOS ANGELES CA 90052", "LOS ANGELES CA 90052", "UNITED STATES", "アメリカ合衆国")
    los_angeles_isc = _Place("LOS ANGELES CA ISC", "LOS ANGELES CA ISC", "UNITED STATES", "アメリカ合衆国")
    kawasaki = _Place("KAWASAKI-HIGASHI", "川崎東郵便局", "KANAGAWA", "神奈川県", "210-8799")
    setagaya = _Place("SETAGAYA", "世田谷郵便局", "TOKYO", "東京都", "154-8799")
    sapporo = _Place("SAPPORO-CHUO", "札幌中央郵便局", "HOKKAIDO", "北海道", "060-8799")
    sapporo_east = _Place("SAPPORO-HIGASHI", "札幌東郵便局", "HOKKAIDO", "北海道", "065-8799")
    nakano = _Place("NAKANO", "中野郵便局", "TOKYO", "東京都", "164-8799")
    fukuoka = _Place("FUKUOKA-CHUO", "福岡中央郵便局", "FUKUOKA", "福岡県", "810-8799")
    shin_fukuoka = _Place("SHIN-FUKUOKA", "新福岡郵便局", "FUKUOKA", "福岡県", "812-8799")
    kokura = _Place("KOKURA", "小倉郵便局", "FUKUOKA", "福岡県", "802-8799")
    nagoya = _Place("NAGOYA-CHUO", "名古屋中央郵便局", "AICHI", "愛知県", "450-8799")
    kyoto = _Place("KYOTO-CHUO", "京都中央郵便局", "KYOTO", "京都府", "600-8799")
    sendai = _Place("SENDAI-CHUO", "仙台中央郵便局", "MIYAGI", "宮城県", "980-8799")
    morioka = _Place("MORIOKA-CHUO", "盛岡中央郵便局", "IWATE", "岩手県", "020-8799")

    export_pickup = Journey(
        number="EJ161803397JP",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(_SHIBUYA, "2026-05-11T09:30", "Posting/Collection", "引受"),
            _at(
                _TOKYO_INT, "2026-05-11T20:05", "Arrival at outward office of exchange", "国際交換支店に到着"
            ),
            _at(
                _TOKYO_INT,
                "2026-05-12T10:40",
                "Dispatch from outward office of exchange",
                "国際交換支店から発送",
            ),
            _at(singapore_ex, "2026-05-12T19:15", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(singapore_ex, "2026-05-12T21:00", "Item held at inward Office of Exchange", "税関保留"),
            _at(
                singapore_ex,
                "2026-05-13T08:10",
                "Item presented to import Customs",
                "税関検査のため税関へ提示",
            ),
            _at(singapore_ex, "2026-05-13T15:30", "Held by import Customs", "税関保留"),
            _at(singapore_ex, "2026-05-14T10:20", "Item returned from import Customs", "税関から受領"),
            _at(
                singapore_ex,
                "2026-05-14T12:00",
                "Departure from inward office of exchange",
                "国際交換局から発送",
            ),
            _at(singapore_mc, "2026-05-14T18:45", "Item out of sorting centre", "中継"),
            _at(tampines, "2026-05-15T07:30", "Arrival at delivery office", "到着"),
            _at(
                tampines,
                "2026-05-15T09:00",
                "Item arrival at collection point for pick-up",
                "コンビニエンスストア等に引渡",
            ),
            _at(tampines, "2026-05-16T14:10", "Final delivery - Collected at counter", "窓口でお渡し"),
        ],
        contacts=[_acceptance(_SHIBUYA, "03-0000-0150", "000000000150")],
        class_code="2130",
    )
    import_bond = Journey(
        number="EX141421354US",
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            _at(los_angeles, "2026-06-01T14:20", "Posting/Collection", "引受"),
            _at(
                los_angeles_isc,
                "2026-06-02T09:45",
                "Arrival at outward office of exchange",
                "国際交換局に到着",
            ),
            _at(
                los_angeles_isc,
                "2026-06-02T23:50",
                "Departure from outward office of exchange",
                "国際交換局から発送",
            ),
            _at(_TOKYO_INT, "2026-06-04T06:15", "Arrival at inward office of exchange", "国際交換局に到着"),
            _at(_TOKYO_INT, "2026-06-04T08:30", "Transported in bond", "保税運送中"),
            _at(kawasaki, "2026-06-04T13:10", "Arrived in bond", "保税運送到着"),
            _at(kawasaki, "2026-06-04T15:00", "In Customs", "輸入申告手続中"),
            _at(kawasaki, "2026-06-05T10:30", "Held by import Customs", "税関から名宛人に照会中"),
            _at(kawasaki, "2026-06-08T11:00", "In Customs", "通関手続中"),
            _at(kawasaki, "2026-06-09T09:40", "Item returned from import Customs", "通関完了"),
            _at(kawasaki, "2026-06-09T17:20", "Dispatched from Exchange Office", "国際交換局から発送"),
            _at(setagaya, "2026-06-10T07:05", "Processing at delivery Post Office", "到着"),
            _at(setagaya, "2026-06-10T08:40", "Allocated to delivery staff", "配達局から出発"),
            _at(setagaya, "2026-06-10T11:25", "Final delivery", "お届け済み"),
        ],
        contacts=[_delivery(setagaya, "03-0000-0154", "000000000154")],
    )
    holds = Journey(
        number="271828182846",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(sapporo, "2026-07-01T17:45", "Posting/Collection", "引受"),
            _at(sapporo_east, "2026-07-01T22:10", "En route", "通過"),
            _at(sapporo_east, "2026-07-02T04:30", "En route", "通過（車又は船輸送に変更）"),
            _at(_SHIN_TOKYO, "2026-07-02T18:00", "En route", "発送"),
            _at(nakano, "2026-07-03T06:20", "Arrival", "到着"),
            _at(nakano, "2026-07-03T09:15", "Item out for physical delivery", "持ち出し中"),
            _at(nakano, "2026-07-03", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(nakano, "2026-07-03", "Retention", "保管"),
            _at(nakano, "2026-07-06T10:00", "Retention", "保管期間延長受付"),
            _at(nakano, "2026-07-08T08:30", "Office closed. Retention.", "お届け先休日等のため保管"),
            _at(nakano, "2026-07-09T08:30", "Office closed. Retention.", "お届け先 休日のため保管"),
            _at(nakano, "2026-07-10T12:00", "Retention", "保管中"),
            _at(nakano, "2026-07-10T16:00", "Retention", "私書箱保管"),
            _at(nakano, "2026-07-11T09:00", "En route", "転送"),
            _at(nakano, "2026-07-11T15:30", "Investigation", "調査中"),
            _at(nakano, "2026-07-12T19:20", "A request for re-delivery was received.", "配達希望受付"),
            _at(nakano, "2026-07-13T09:10", "Allocated to delivery staff", "持ち出し中"),
            _at(nakano, "2026-07-13T14:45", "Final delivery", "お届け先にお届け済み"),
        ],
        contacts=[
            _acceptance(sapporo, "011-000-0060", "000000000060"),
            _delivery(nakano, "03-0000-0164", "000000000164"),
        ],
    )
    pickup = Journey(
        number="161803398875",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(fukuoka, "2026-08-03T11:00", "Posting/Collection", "引受"),
            _at(shin_fukuoka, "2026-08-03T23:40", "En route", "中継"),
            _at(kokura, "2026-08-04T07:10", "Arrival", "到着"),
            _at(
                kokura,
                "2026-08-04T07:30",
                "Item arrival at collection point for pick-up",
                "最寄局・最寄店送付",
            ),
            _at(
                kokura,
                "2026-08-05T10:00",
                "Item arrival at collection point for pick-up",
                "コンビニエンスストアに引渡",
            ),
        ],
        contacts=[_acceptance(fukuoka, "092-000-0810")],
    )
    returned = Journey(
        number="141421356230",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(nagoya, "2026-09-01T10:00", "Posting/Collection", "引受"),
            _at(nagoya, "2026-09-01T21:00", "En route", "中継"),
            _at(kyoto, "2026-09-02T07:00", "Arrival", "到着"),
            _at(kyoto, "2026-09-02T10:30", "Item out for physical delivery", "持ち出し中"),
            _at(kyoto, "2026-09-02T15:00", "Return to Sender", "あて所にたずねあたりません"),
            _at(kyoto, "2026-09-03T09:00", "Returned to Sender", "差出人に返送"),
            _at(kyoto, "2026-09-03T18:00", "Return to Sender", "返戻"),
            _at(nagoya, "2026-09-04T12:30", "Returned to sender", "差出人に返送済み"),
        ],
        contacts=[_acceptance(nagoya, "052-000-0450", "000000000450")],
    )
    unreturnable = Journey(
        number="173205080753",
        item_type_en="Yu-Pack",
        item_type_ja="ゆうパック",
        international=False,
        scans=[
            _at(sendai, "2026-10-05T15:10", "Posting/Collection", "引受"),
            _at(morioka, "2026-10-06T07:45", "Arrival", "到着"),
            _at(morioka, "2026-10-06", "Absence. Attempted delivery.", "ご不在のため持ち戻り"),
            _at(morioka, "2026-10-07", "Retention", "保管"),
            _at(morioka, "2026-10-14T09:00", "Return to Sender", "差出人に返送"),
            _at(morioka, "2026-10-20T16:30", "Returned to sender", "返送できません"),
        ],
        contacts=[_acceptance(sendai, "022-000-0980", "000000000980")],
    )
    return [export_pickup, import_bond, holds, pickup, returned, unreturnable]
