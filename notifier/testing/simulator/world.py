"""The simulated site's state (`Simulator`): journeys, queued faults and a request log, no sockets."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import html
import math
import random
import string
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from notifier.testing.simulator.model import (
    OFFSITE_REDIRECT,
    Fault,
    Journey,
    RequestRecord,
    _Entry,
    _FaultSpec,
    _Reply,
    compact_number,
)
from notifier.testing.simulator.pages import (
    _LABELS,
    _copy_journey,
    _fault_spec,
    _gzip_bomb,
    _item_view,
    _list_row,
    _locale,
    _message,
    _numbers_from,
    _padded_class,
    _render,
    _route,
)

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
