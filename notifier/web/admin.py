"""The operator board (/admin/): shipments, stalls, alerts and the outbox, and a few actions, behind a password."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import logging
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import jinja2
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.config.password import PasswordHash
from notifier.core.mime import AddressError, validate_address
from notifier.core.model import TrackingEvent
from notifier.core.render import templates_root
from notifier.core.rules import StallRule
from notifier.core.sending import OutboxPolicy, RecordedPause, expected_send, goes_note, recorded_pause
from notifier.core.stages import Stage, stage_info
from notifier.core.views import AlertView, OutboxItem, OutboxState, ShipmentView
from notifier.pipeline.wiring import outbox_policy
from notifier.store import Store
from notifier.web.ops import circuit_open, health, health_snapshot
from notifier.web.state import DaemonView

logger = logging.getLogger(__name__)

SESSION_COOKIE = "notifier_admin"
LOGIN_COOKIE = "notifier_admin_login"
FLASH_COOKIE = "notifier_admin_flash"
COOKIE_PATH = "/admin"
SESSION_LIFETIME = dt.timedelta(hours=12)
# Failed logins a client may make in a minute before it must wait.
LOGIN_FAILURES = 5
LOGIN_WINDOW = 60.0
# What the outbox section lists: every message still to go, and those that failed.
WAITING = (OutboxState.FAILED, OutboxState.HELD, OutboxState.PENDING, OutboxState.SENDING)
MAX_TEXT = 200
# Rows per list: past this the filters narrow it (a page of 10,000 rows helps nobody).
SHOWN = 200
_ID_BYTES = 16
_MAC_BYTES = 16


# --- page data (pure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """The board's GET filters: a stage, a tag, and text found in a number, label or address."""

    stage: str = ""
    tag: str = ""
    text: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        stage = query.get("stage", "").strip()
        return cls(
            stage=stage if stage in Stage.__members__.values() else "",
            tag=query.get("tag", "").strip()[:MAX_TEXT],
            text=query.get("q", "").strip()[:MAX_TEXT],
        )

    def query(self) -> str:
        """The query string that gives these filters back ("" when none is set)."""
        pairs = [
            (key, value)
            for key, value in (("stage", self.stage), ("tag", self.tag), ("q", self.text))
            if value
        ]
        return urllib.parse.urlencode(pairs)

    def board_url(self) -> str:
        query = self.query()
        return f"/admin/?{query}" if query else "/admin/"

    def text_in(self, *values: str | None) -> bool:
        needle = self.text.casefold()
        return not needle or any(needle in value.casefold() for value in values if value)

    def shipment(self, view: ShipmentView, subscribers: Sequence[str]) -> bool:
        return (
            (not self.stage or view.stage == self.stage)
            and (not self.tag or self.tag in view.tags)
            and self.text_in(view.number, view.label, *subscribers)
        )

    def alert(self, alert: AlertView) -> bool:
        return self.text_in(alert.kind, alert.subject, alert.message)

    def message(self, item: OutboxItem) -> bool:
        return self.text_in(item.number, item.recipient, item.subject, item.rule)


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardSnapshot:
    """What the board shows, as read from the store in one go."""

    shipments: Sequence[ShipmentView]
    subscribers: Mapping[int, Sequence[str]]
    suppressed: frozenset[str]
    alerts: Sequence[AlertView]
    outbox: Sequence[OutboxItem]
    depth: Mapping[str, int]
    suppressions: Sequence[tuple[str, str, dt.datetime]]
    # With the alerts, whether sending is paused (see outbox.recorded_pause).
    last_sent_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberCell:
    email: str
    suppressed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipmentRow:
    number: str
    label: str
    stage: str
    meaning: str
    tags: tuple[str, ...]
    last_change: str
    next_poll: str
    subscribers: tuple[SubscriberCell, ...]
    failures: int
    last_error: str
    open_alerts: int
    # Why it counts as stalled ("" when it does not).
    stalled: str
    # Where it sorts (see NEED): 0 open alerts ... 4 finished.
    need: int
    # Delivered, returned or no longer watched: nothing left to poll for.
    finished: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRow:
    id: int
    kind: str
    subject: str
    # The subject is a shipment's tracking number.
    about_shipment: bool
    message: str
    count: int
    first_seen: str
    last_seen: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    id: int
    state: str
    recipient: str
    number: str
    rule: str
    subject: str
    attempts: int
    reason: str
    goes: str
    # A failed message with its bytes can be queued again; one never built cannot.
    can_retry: bool
    unbuilt: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SuppressionRow:
    email: str
    reason: str
    since: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Board:
    filters: Filters
    now: str
    shipments: tuple[ShipmentRow, ...]
    # How many shipments match the filters (more than are shown when over SHOWN).
    matching: int
    stalled: tuple[ShipmentRow, ...]
    stalled_matching: int
    alerts: tuple[AlertRow, ...]
    outbox: tuple[OutboxRow, ...]
    suppressions: tuple[SuppressionRow, ...]
    depth: tuple[tuple[str, int], ...]
    total_shipments: int
    stage_options: tuple[str, ...]
    tag_options: tuple[str, ...]


def when(at: dt.datetime | None, now: dt.datetime) -> str:
    """A time as the board prints it: UTC to the minute, and how far from now."""
    if at is None:
        return "-"
    delta = at - now
    seconds = abs(delta.total_seconds())
    if seconds < 60:
        relative = "now"
    else:
        if seconds < 3600:
            amount = f"{int(seconds // 60)}m"
        elif seconds < 86400 * 2:
            amount = f"{int(seconds // 3600)}h"
        else:
            amount = f"{int(seconds // 86400)}d"
        relative = f"in {amount}" if delta.total_seconds() > 0 else f"{amount} ago"
    return f"{at:%Y-%m-%d %H:%M}Z ({relative})"


def stall_of(view: ShipmentView, stalls: Mapping[Stage, StallRule], now: dt.datetime) -> str:
    """Why a shipment counts as stalled (no news for longer than its stage's stall rule), or ""."""
    rule = stalls.get(view.stage)
    quiet_since = view.last_changed_at or view.stage_entered_at
    if rule is None or quiet_since is None or now - quiet_since < rule.after:
        return ""
    days = (now - quiet_since) / dt.timedelta(days=1)
    limit = rule.after / dt.timedelta(days=1)
    normal = " (often normal here)" if rule.normal else ""
    return f"no news for {days:.0f} days in {view.stage} (stall after {limit:g}){normal}"


# The board's row order, by what needs the operator first:
#   0. open alerts: something already went wrong and says so;
#   1. stalled: no news for longer than the stage's stall rule;
#   2. stages where someone has to act: those stages.py marks customer_action (customs,
#      attempted delivery, retention, ready for pickup, investigation), plus returning (the
#      shop gets the parcel back: refund or re-ship) and unknown (a status nobody mapped yet,
#      to be read by a person);
#   3. everything else still on its way;
#   4. finished: terminal stages (delivered, returned) and shipments no longer watched.
NEED_ALERTS, NEED_STALLED, NEED_ACTION, NEED_MOVING, NEED_FINISHED = range(5)
OPERATOR_STAGES = frozenset({Stage.RETURNING, Stage.UNKNOWN})


def finished(view: ShipmentView) -> bool:
    """Nothing left to ask Japan Post about: delivered, returned, or no longer watched."""
    return stage_info(view.stage).terminal or not view.active


def need(view: ShipmentView, stalled: bool) -> int:
    """The shipment's place in the board's order (NEED_*); pure."""
    if view.open_alerts:
        return NEED_ALERTS
    if finished(view):
        return NEED_FINISHED
    if stalled:
        return NEED_STALLED
    if stage_info(view.stage).customer_action or view.stage in OPERATOR_STAGES:
        return NEED_ACTION
    return NEED_MOVING


def by_need(
    views: Sequence[ShipmentView], stalls: Mapping[Stage, StallRule], now: dt.datetime
) -> list[ShipmentView]:
    """`views` in the board's order: by need, then the longest quiet first (finished ones: the
    latest first), then by number."""

    def key(view: ShipmentView) -> tuple[int, float, str]:
        rank = need(view, bool(stall_of(view, stalls, now)))
        quiet_since = view.last_changed_at or view.stage_entered_at
        stamp = quiet_since.timestamp() if quiet_since is not None else 0.0
        return rank, -stamp if rank == NEED_FINISHED else stamp, view.number

    return sorted(views, key=key)


def shipment_row(
    view: ShipmentView,
    subscribers: Sequence[str],
    suppressed: frozenset[str],
    stalls: Mapping[Stage, StallRule],
    now: dt.datetime,
) -> ShipmentRow:
    stalled = stall_of(view, stalls, now)
    return ShipmentRow(
        number=view.number,
        label=view.label,
        stage=str(view.stage),
        meaning=stage_info(view.stage).meaning_en,
        tags=tuple(sorted(view.tags)),
        last_change=when(view.last_changed_at or view.stage_entered_at, now),
        next_poll=when(view.next_poll_at, now),
        subscribers=tuple(SubscriberCell(email=e, suppressed=e.lower() in suppressed) for e in subscribers),
        failures=view.consecutive_failures,
        last_error=view.last_error or "",
        open_alerts=view.open_alerts,
        stalled=stalled,
        need=need(view, bool(stalled)),
        finished=finished(view),
    )


def alert_row(alert: AlertView, now: dt.datetime, numbers: frozenset[str] = frozenset()) -> AlertRow:
    """An alert as listed; `numbers` are the tracking numbers the board knows (a subject that is
    one links its parcel's page)."""
    return AlertRow(
        id=alert.id,
        kind=alert.kind,
        subject=alert.subject,
        about_shipment=alert.subject in numbers,
        message=alert.message,
        count=alert.count,
        first_seen=when(alert.first_seen_at, now),
        last_seen=when(alert.last_seen_at, now),
    )


def outbox_row(
    item: OutboxItem, policy: OutboxPolicy, now: dt.datetime, pause: RecordedPause | None = None
) -> OutboxRow:
    at, waits_for = expected_send(item, policy, now, pause)
    failed = item.state is OutboxState.FAILED
    return OutboxRow(
        id=item.id,
        state=str(item.state),
        recipient=item.recipient,
        number=item.number,
        rule=item.rule,
        subject=item.subject,
        attempts=item.attempts,
        reason=item.last_error or "",
        goes=_never(item)
        if failed
        else goes_note(at, waits_for, now, zone=policy.zone_of(item.time_zone)).strip(),
        can_retry=failed and bool(item.raw),
        unbuilt=not item.raw,
    )


def _never(item: OutboxItem) -> str:
    return "never: it was not built" if not item.raw else "never, unless retried"


def build_board(
    snapshot: BoardSnapshot,
    filters: Filters,
    *,
    now: dt.datetime,
    policy: OutboxPolicy,
    stalls: Mapping[Stage, StallRule],
) -> Board:
    """The board's rows from a store snapshot, narrowed by `filters`."""
    # Sorted before the SHOWN cut: a long list never hides what needs the operator.
    matching = by_need(
        [
            view
            for view in snapshot.shipments
            if filters.shipment(view, snapshot.subscribers.get(view.id, ()))
        ],
        stalls,
        now,
    )
    stalled = [view for view in matching if stall_of(view, stalls, now)]
    numbers = frozenset(view.number for view in snapshot.shipments)

    def rows(views: Sequence[ShipmentView]) -> tuple[ShipmentRow, ...]:
        return tuple(
            shipment_row(view, snapshot.subscribers.get(view.id, ()), snapshot.suppressed, stalls, now)
            for view in views[:SHOWN]
        )

    # Failed first (they wait for the operator), then by id, oldest first: the order they go in.
    pause = recorded_pause(snapshot.alerts, snapshot.last_sent_at)
    waiting = sorted(
        (item for item in snapshot.outbox if filters.message(item)),
        key=lambda item: (item.state is not OutboxState.FAILED, item.id),
    )
    return Board(
        filters=filters,
        now=f"{now:%Y-%m-%d %H:%M}Z",
        shipments=rows(matching),
        matching=len(matching),
        stalled=rows(stalled),
        stalled_matching=len(stalled),
        alerts=tuple(alert_row(alert, now, numbers) for alert in snapshot.alerts if filters.alert(alert))[
            :SHOWN
        ],
        outbox=tuple(outbox_row(item, policy, now, pause) for item in waiting[:SHOWN]),
        suppressions=tuple(
            SuppressionRow(email=email, reason=reason, since=when(since, now))
            for email, reason, since in snapshot.suppressions
            if filters.text_in(email)
        ),
        depth=tuple((str(state), snapshot.depth.get(str(state), 0)) for state in OutboxState),
        total_shipments=len(snapshot.shipments),
        stage_options=tuple(
            sorted({str(view.stage) for view in snapshot.shipments} | {filters.stage} - {""})
        ),
        tag_options=tuple(
            sorted({tag for view in snapshot.shipments for tag in view.tags} | {filters.tag} - {""})
        ),
    )


# --- one parcel's page (pure) ---------------------------------------------------------------

# A message body shown on the parcel page is cut here (a text part is a few KB).
BODY_CHARS = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow:
    when: str
    status: str
    office: str
    details: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRow:
    id: int
    state: str
    recipient: str
    subject: str
    rule: str
    queued: str
    sent: str
    reason: str
    # The text part as built, to be shown escaped; "" for a message never built.
    body: str
    can_retry: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipmentPage:
    row: ShipmentRow
    active: bool
    destination: str
    last_polled: str
    events: tuple[EventRow, ...]
    messages: tuple[MessageRow, ...]
    alerts: tuple[AlertRow, ...]


def event_row(event: TrackingEvent) -> EventRow:
    """An event as Japan Post printed it: its local time (the zone only where the page gives one)."""
    stamp = event.when.iso_local().replace("T", " ")
    place = " ".join(part for part in (event.office, event.region, event.postal_code) if part)
    return EventRow(
        when=f"{stamp} ({event.when.zone})" if event.when.zone else stamp,
        status=event.status,
        office=place,
        details=event.details,
    )


def text_part(raw: bytes) -> str:
    """The plain-text part of a built message ("" when there is none), for the operator to read."""
    if not raw:
        return ""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return ""
    text = str(body.get_content())
    return text if len(text) <= BODY_CHARS else text[:BODY_CHARS] + "\n[…cut]"


def message_row(item: OutboxItem, now: dt.datetime) -> MessageRow:
    return MessageRow(
        id=item.id,
        state=str(item.state),
        recipient=item.recipient,
        subject=item.subject,
        rule=item.rule,
        queued=when(item.created_at, now),
        sent=when(item.sent_at, now) if item.sent_at else "",
        reason=item.last_error or "",
        body=text_part(item.raw),
        can_retry=item.state is OutboxState.FAILED and bool(item.raw),
    )


def build_shipment_page(
    view: ShipmentView,
    *,
    history: Sequence[TrackingEvent],
    subscribers: Sequence[str],
    suppressed: frozenset[str],
    messages: Sequence[OutboxItem],
    alerts: Sequence[AlertView],
    stalls: Mapping[Stage, StallRule],
    now: dt.datetime,
) -> ShipmentPage:
    """One parcel's page: its row, its events newest first, every message about it, its open alerts."""
    return ShipmentPage(
        row=shipment_row(view, subscribers, suppressed, stalls, now),
        active=view.active,
        destination=view.destination or "",
        last_polled=when(view.last_polled_at, now),
        events=tuple(event_row(event) for event in reversed(history)),
        messages=tuple(message_row(item, now) for item in messages),
        alerts=tuple(alert_row(alert, now) for alert in alerts if alert.subject == view.number),
    )


async def load_snapshot(store: Store) -> BoardSnapshot:
    shipments = await store.shipments()
    subscribers = await store.active_subscribers()
    addresses = sorted({email for emails in subscribers.values() for email in emails})
    return BoardSnapshot(
        shipments=shipments,
        subscribers=subscribers,
        suppressed=frozenset(await store.suppressed_among(addresses)),
        alerts=await store.alerts(),
        outbox=await store.outbox(states=WAITING, limit=500),
        depth=await store.outbox_depth(),
        suppressions=await store.suppressions(),
        last_sent_at=await store.last_sent_at(),
    )


# --- banners: what /healthz reports, said for the operator (pure) --------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Banner:
    """One condition at the top of every board page: what it is, what it means for customers,
    what to do, and the health check's own words."""

    check: str
    title: str
    customers: str
    todo: str
    detail: str


# By /healthz's `check` names: the decision is health()'s, the words for the operator are here.
_BANNER_WORDS: Mapping[str, tuple[str, str, str]] = {
    "customer_mail": (
        "Customer mail is paused (kill switch)",
        "No customer gets any email: Japan Post's pages cannot be read, so nothing read from them "
        "is trusted. Messages are held, not lost, and go out once pages read again.",
        "Read the site_unrecognized alert on the board; open a parcel on the Japan Post site in a browser "
        "(maintenance, a block page or a redesign). It lifts by itself when pages read again; "
        "after a redesign, update notifier.",
    ),
    "smtp": (
        "Email sending is paused",
        "Customer emails wait in the outbox; none is lost, they go when the mail server takes them.",
        "Check the [smtp] settings and the mail server (login, TLS, reachability); the outbox "
        "tries again by itself.",
    ),
    "scheduler": (
        "Parcels are not being checked",
        "No parcel is polled, so customers get no news while their parcels keep moving.",
        "Check the daemon: systemctl status notifier and journalctl -u notifier; restart it if it is stuck.",
    ),
    "database": (
        "The database is not answering",
        "Nothing is polled, queued or sent, and tracking pages may fail to open.",
        "Check the database server, its disk and the [database] url.",
    ),
}
_CIRCUIT_WORDS = (
    "Japan Post's site is not answering (circuit open)",
    "Parcels are not checked until {until}, so customers get no news meanwhile; the next "
    "successful poll catches up.",
    "Usually passes by itself. If it lasts, check this server's network and DNS and whether "
    "the Japan Post tracking site opens in a browser.",
)


def banners(
    problems: Sequence[Mapping[str, str]], *, circuit_until: dt.datetime | None, now: dt.datetime
) -> tuple[Banner, ...]:
    """A banner per problem /healthz reports (`problems` as health() gives them), and one
    while the circuit breaker holds requests to Japan Post back."""
    found = []
    for problem in problems:
        check, reason = problem.get("check", ""), problem.get("reason", "")
        title, customers, todo = _BANNER_WORDS.get(
            check, (f"Health check failing: {check}", "See the reason below.", "See /healthz.")
        )
        found.append(Banner(check=check, title=title, customers=customers, todo=todo, detail=reason))
    if circuit_until is not None and circuit_open(circuit_until, now):
        title, customers, todo = _CIRCUIT_WORDS
        found.append(
            Banner(
                check="circuit",
                title=title,
                customers=customers.format(until=when(circuit_until, now)),
                todo=todo,
                detail=f"requests held back until {circuit_until:%Y-%m-%d %H:%M:%S}Z",
            )
        )
    return tuple(found)


async def load_banners(view: DaemonView, now: dt.datetime) -> tuple[Banner, ...]:
    """The banners at `now`, from the same snapshot and decision as /healthz."""
    _, body = health(await health_snapshot(view, now))
    return banners(body.get("problems", ()), circuit_until=view.breaker.open_until, now=now)


# --- sessions, CSRF and the login throttle -------------------------------------------------


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes | None:
    if not text.isascii() or len(text) > 1000:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if _encode(raw) == text else None


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """Keys derived from the [http] secret and the password's hash: a new secret or a new
    password ends every session and every form token made before."""

    secret: str = field(repr=False)
    password: PasswordHash = field(repr=False)

    def _key(self, purpose: str) -> bytes:
        material = f"notifier/admin/{purpose}\n".encode() + self.password.fingerprint
        return hmac.new(self.secret.encode("utf-8"), material, hashlib.sha256).digest()

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._key(purpose), payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def new_session(self, now: float) -> str:
        """A session cookie's value: a random id, its expiry, and their MAC."""
        payload = os.urandom(_ID_BYTES) + int(now + SESSION_LIFETIME.total_seconds()).to_bytes(8, "big")
        return _encode(payload + self._mac("session", payload))

    def session_id(self, cookie: str | None, now: float) -> str | None:
        """The session's id if the cookie is one of ours and has not expired, else None."""
        raw = _decode(cookie) if cookie else None
        if raw is None or len(raw) != _ID_BYTES + 8 + _MAC_BYTES:
            return None
        payload, mac = raw[: _ID_BYTES + 8], raw[_ID_BYTES + 8 :]
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        if int.from_bytes(payload[_ID_BYTES:], "big") <= now:
            return None
        return _encode(payload[:_ID_BYTES])

    def form_token(self, purpose: str, bound_to: str) -> str:
        """The hidden field of a form, bound to a session (or, for the login form, its cookie)."""
        # A cookie's value may be any text a client sends; it only has to give the same bytes again.
        return _encode(self._mac(f"form/{purpose}", bound_to.encode("utf-8", "surrogateescape")))

    def form_token_ok(self, purpose: str, bound_to: str, token: str) -> bool:
        return hmac.compare_digest(
            token.encode("ascii", "replace"), self.form_token(purpose, bound_to).encode()
        )

    def flash(self, text: str) -> str:
        raw = text.encode("utf-8")[:300]
        return _encode(self._mac("flash", raw) + raw)

    def read_flash(self, cookie: str | None) -> str:
        raw = _decode(cookie) if cookie else None
        if raw is None or len(raw) <= _MAC_BYTES:
            return ""
        mac, text = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac("flash", text)):
            return ""
        return text.decode("utf-8", "replace")


class LoginThrottle:
    """At most LOGIN_FAILURES failed logins per client in LOGIN_WINDOW seconds."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self.failures: dict[str, collections.deque[float]] = {}

    def _recent(self, client: str, now: float) -> collections.deque[float]:
        times = self.failures.get(client, collections.deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def wait(self, client: str, now: float) -> float:
        """0 when `client` may try a password now, else the seconds until it may."""
        times = self._recent(client, now)
        if len(times) < self.limit:
            if not times:
                self.failures.pop(client, None)
            return 0.0
        return times[0] + self.window - now

    def failed(self, client: str, now: float) -> None:
        times = self._recent(client, now)
        times.append(now)
        self.failures[client] = times
        if len(self.failures) > 10_000:
            for other in [c for c, t in self.failures.items() if not t or t[-1] <= now - self.window]:
                del self.failures[other]

    def succeeded(self, client: str) -> None:
        self.failures.pop(client, None)


class _Revoked:
    """Sessions ended by logout, remembered until they would have expired anyway."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}

    def add(self, session_id: str, now: float) -> None:
        self.until = {sid: end for sid, end in self.until.items() if end > now}
        self.until[session_id] = now + SESSION_LIFETIME.total_seconds()

    def __contains__(self, session_id: str) -> bool:
        return session_id in self.until


# --- routes (thin) -------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_root() / "web" / "admin"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_TEXT]


class AdminBoard:
    """The board's routes over a running daemon; the password is read from the current settings
    at each request, so a reload that adds, changes or removes it takes effect at once."""

    def __init__(self, view: DaemonView, *, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.clock = clock
        self.throttle = LoginThrottle()
        self.revoked = _Revoked()
        self.templates = _environment()

    # -- helpers

    def _keys(self) -> SessionKeys:
        """The current keys; without a password the board does not exist (404)."""
        http = self.view.settings.http
        if http is None or http.admin_password is None or not http.secret:
            raise HTTPException(404)
        return SessionKeys(http.secret, http.admin_password)

    def _secure(self) -> bool:
        http = self.view.settings.http
        return http is not None and http.public_url.startswith("https://")

    def _session(self, request: Request, keys: SessionKeys) -> str | None:
        session = keys.session_id(request.cookies.get(SESSION_COOKIE), self.clock())
        return None if session is None or session in self.revoked else session

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            secure=self._secure(),
            httponly=True,
            samesite="strict",
        )

    def _page(self, template: str, status: int = 200, **context: object) -> HTMLResponse:
        body = self.templates.get_template(template).render(**context)
        # No token is in the board's paths: its own forms may say where they come from (under
        # no-referrer a browser posts them with Origin: null), other sites still learn nothing.
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
        return HTMLResponse(body, status_code=status, headers=headers)

    def _same_origin(self, request: Request) -> bool:
        """A POST must come from the board's own pages: checked where the browser says."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        if origin == "null":
            # A page under Referrer-Policy: no-referrer (the rest of the web face) posts with
            # Origin: null; the browser's Sec-Fetch-Site still tells a same-origin form apart.
            return site == "same-origin"
        http = self.view.settings.http
        allowed = {f"{request.url.scheme}://{request.url.netloc}"}
        if http is not None:
            public = urllib.parse.urlsplit(http.public_url)
            allowed.add(f"{public.scheme}://{public.netloc}")
        return origin in allowed

    def _refused(self, request: Request, why: str) -> Response:
        logger.warning(
            "admin: %s %s refused (%s) from %s",
            request.method,
            request.url.path,
            why,
            _client(request),
            extra={"action": "admin_refused", "client": _client(request)},
        )
        return self._page("refused.html.j2", 403, why=why)

    # -- pages

    async def board(self, request: Request) -> Response:
        keys = self._keys()
        session = self._session(request, keys)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        filters = Filters.from_query(request.query_params)
        snapshot = await load_snapshot(self.view.store)
        settings = self.view.settings
        now = dt.datetime.now(dt.UTC)
        board = build_board(
            snapshot,
            filters,
            now=now,
            policy=outbox_policy(settings),
            stalls=settings.notifications.rules.stalls,
        )
        response = self._page(
            "board.html.j2",
            banners=await load_banners(self.view, now),
            page="",
            now=board.now,
            board=board,
            stages=[str(stage) for stage in Stage],
            csrf=keys.form_token("action", session),
            back=filters.query(),
            flash=keys.read_flash(request.cookies.get(FLASH_COOKIE)),
        )
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    async def shipment(self, request: Request) -> Response:
        keys = self._keys()
        session = self._session(request, keys)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        number = str(request.path_params["number"]).strip().upper()[:40]
        store = self.view.store
        view = await store.get(number)
        if view is None:
            raise HTTPException(404)
        subscribers = [email for _, email, _, _ in await store.recipients(view.id)]
        now = dt.datetime.now(dt.UTC)
        page = build_shipment_page(
            view,
            history=await store.history(view.id),
            subscribers=subscribers,
            suppressed=frozenset(await store.suppressed_among(subscribers)),
            messages=await store.outbox_for(view.number),
            alerts=await store.alerts(),
            stalls=self.view.settings.notifications.rules.stalls,
            now=now,
        )
        response = self._page(
            "shipment.html.j2",
            banners=await load_banners(self.view, now),
            shipment=page,
            now=f"{now:%Y-%m-%d %H:%M}Z",
            csrf=keys.form_token("action", session),
            back="",
            page=view.number,
            flash=keys.read_flash(request.cookies.get(FLASH_COOKIE)),
        )
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    async def login_form(self, request: Request) -> Response:
        keys = self._keys()
        if self._session(request, keys) is not None:
            return RedirectResponse("/admin/", status_code=303)
        return self._login_page(keys, "")

    def _login_page(self, keys: SessionKeys, error: str, status: int = 200) -> Response:
        nonce = _encode(os.urandom(_ID_BYTES))
        response = self._page("login.html.j2", status, csrf=keys.form_token("login", nonce), error=error)
        self._cookie(response, LOGIN_COOKIE, nonce, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        keys = self._keys()
        client = _client(request)
        form = await request.form()
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if (
            not self._same_origin(request)
            or not nonce
            or not keys.form_token_ok("login", nonce, _field(form, "csrf"))
        ):
            return self._refused(request, "the login form has expired: open the login page again")
        wait = self.throttle.wait(client, self.clock())
        if wait > 0:
            logger.warning(
                "admin: login from %s throttled after %d failures in a minute",
                client,
                LOGIN_FAILURES,
                extra={"action": "admin_login_throttled", "client": client},
            )
            response = self._login_page(keys, "Too many failed logins: wait a minute and try again.", 429)
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        # Counted as failed until it succeeds: tries sent all at once are held to the limit too.
        self.throttle.failed(client, self.clock())
        # scrypt takes a few dozen milliseconds: off the loop, so polls and sends go on.
        if not await asyncio.to_thread(keys.password.matches, _field(form, "password")):
            logger.warning(
                "admin: failed login from %s",
                client,
                extra={"action": "admin_login_failed", "client": client},
            )
            return self._login_page(keys, "Wrong password.", 403)
        self.throttle.succeeded(client)
        logger.info("admin: login from %s", client, extra={"action": "admin_login", "client": client})
        response = RedirectResponse("/admin/", status_code=303)
        self._cookie(
            response, SESSION_COOKIE, keys.new_session(self.clock()), int(SESSION_LIFETIME.total_seconds())
        )
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return response

    async def logout(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            self.revoked.add(session, self.clock())
            return "admin_logout", "logged out"

        response = await self._act(request, work, redirect="/admin/login")
        if response.status_code == 303:
            response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    # -- actions

    async def _check(self, request: Request) -> tuple[SessionKeys, str, FormData] | Response:
        """A POST's session, origin and form token, or the refusal."""
        keys = self._keys()
        session = self._session(request, keys)
        if session is None:
            return self._refused(request, "not logged in (or the session expired): log in again")
        form = await request.form()
        if not self._same_origin(request):
            return self._refused(request, "the request came from another site")
        if not keys.form_token_ok("action", session, _field(form, "csrf")):
            return self._refused(request, "the form's token is missing or stale: reload the board")
        return keys, session, form

    async def _act(
        self,
        request: Request,
        work: Callable[[FormData, str], Awaitable[tuple[str, str]]],
        redirect: str | None = None,
    ) -> Response:
        """Check the session, the form token and the origin, do `work`, log it, redirect back
        with its one-line result as the flash."""
        checked = await self._check(request)
        if isinstance(checked, Response):
            return checked
        keys, session, form = checked
        action, result = await work(form, session)
        client = _client(request)
        logger.info("admin: %s by %s", result, client, extra={"action": action, "client": client})
        response = RedirectResponse(redirect or _back(form), status_code=303)
        self._cookie(response, FLASH_COOKIE, keys.flash(result), max_age=300)
        return response

    async def acknowledge(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            alert_id = _number(form, "alert")
            if alert_id is None:
                return "admin_ack", "no alert given"
            count = await self.view.store.acknowledge([alert_id], now=dt.datetime.now(dt.UTC))
            return (
                "admin_ack",
                f"alert {alert_id} acknowledged" if count else f"alert {alert_id} was not open",
            )

        return await self._act(request, work)

    async def retry(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            message_id = _number(form, "message")
            item = await self.view.store.outbox_item(message_id) if message_id is not None else None
            if item is None or item.state is not OutboxState.FAILED:
                return "admin_retry", f"message {message_id} is not a failed message"
            if not item.raw:
                # Same rule as `notifier outbox retry`: queueing it again would send nothing.
                return "admin_retry", f"message {item.id} was never built: it cannot be sent again"
            count = await self.view.store.retry_failed([item.id], now=dt.datetime.now(dt.UTC))
            return "admin_retry", (
                f"message {item.id} to {item.recipient} queued again"
                if count
                else f"message {item.id} was not failed"
            )

        return await self._act(request, work)

    async def unsubscribe(self, request: Request) -> Response:
        checked = await self._check(request)
        if isinstance(checked, Response):
            return checked
        keys, session, form = checked
        address = _address(form)
        if address is not None and _field(form, "confirm") != "yes":
            # Every mail from the shop, about every parcel: the operator says so twice.
            return await self._confirm_unsubscribe(request, keys, session, form, address)

        async def work(form: FormData, session: str) -> tuple[str, str]:
            address = _address(form)
            if address is None:
                return "admin_unsubscribe", f"not an email address: {_one_line(_field(form, 'address'))!r}"
            changed = await self.view.store.suppress(address, now=dt.datetime.now(dt.UTC), reason="operator")
            return "admin_unsubscribe", (
                f"{address} unsubscribed: nothing more is sent to it"
                if changed
                else f"{address} was already unsubscribed"
            )

        return await self._act(request, work)

    async def _confirm_unsubscribe(
        self, request: Request, keys: SessionKeys, session: str, form: FormData, address: str
    ) -> Response:
        store = self.view.store
        following = await store.active_subscribers()
        numbers = sorted(
            view.number
            for view in await store.shipments()
            if address.lower() in (e.lower() for e in following.get(view.id, ()))
        )
        now = dt.datetime.now(dt.UTC)
        return self._page(
            "unsubscribe.html.j2",
            banners=await load_banners(self.view, now),
            now=f"{now:%Y-%m-%d %H:%M}Z",
            address=address,
            numbers=numbers,
            csrf=keys.form_token("action", session),
            back=_field(form, "back"),
            page=_page_number(form),
            cancel=_back(form),
        )

    async def resubscribe(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            address = _address(form)
            if address is None:
                return "admin_resubscribe", f"not an email address: {_one_line(_field(form, 'address'))!r}"
            changed = await self.view.store.unsuppress(address)
            return (
                "admin_resubscribe",
                f"{address} resubscribed" if changed else f"{address} was not unsubscribed",
            )

        return await self._act(request, work)

    async def poll_now(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            number = _field(form, "number").strip()[:40]
            # As `notifier poll --now`: due now, the daemon polls it at its next tick, at its pace.
            marked = await self.view.store.mark_due([number], now=dt.datetime.now(dt.UTC)) if number else []
            if not marked:
                return "admin_poll_now", f"{_one_line(number)!r} is not watched"
            return "admin_poll_now", f"{marked[0]} due now: polled at the next tick"

        return await self._act(request, work)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/", self.board, methods=["GET"]),
            Route("/admin/shipments/{number}", self.shipment, methods=["GET"]),
            Route("/admin/login", self.login_form, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", self.logout, methods=["POST"]),
            Route("/admin/ack", self.acknowledge, methods=["POST"]),
            Route("/admin/retry", self.retry, methods=["POST"]),
            Route("/admin/unsubscribe", self.unsubscribe, methods=["POST"]),
            Route("/admin/resubscribe", self.resubscribe, methods=["POST"]),
            Route("/admin/poll", self.poll_now, methods=["POST"]),
        ]


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _page_number(form: FormData) -> str:
    """The parcel page a form was posted from ("" for the board): letters and digits only."""
    number = _field(form, "page").strip()
    return number if number.isascii() and number.isalnum() and len(number) <= 40 else ""


def _back(form: FormData) -> str:
    """Where an action returns: the parcel page it came from, else the board with its filters."""
    number = _page_number(form)
    if number:
        return f"/admin/shipments/{number}"
    return Filters.from_query(dict(urllib.parse.parse_qsl(_field(form, "back")))).board_url()


def _number(form: FormData, name: str) -> int | None:
    value = _field(form, name).strip()
    return int(value) if value.isdigit() and len(value) < 19 else None


def _address(form: FormData) -> str | None:
    try:
        return validate_address(_field(form, "address").strip())
    except AddressError:
        return None


def admin_routes(view: DaemonView) -> list[BaseRoute]:
    """The operator board's routes, for build_app(..., extra_routes=...)."""
    http = view.settings.http
    if http is not None and http.admin_password is not None:
        logger.info("operator board on at %s/admin/", http.public_url, extra={"action": "admin_on"})
    else:
        logger.info(
            "operator board off: no password in http.admin_password_file, $NOTIFIER_HTTP_ADMIN_PASSWORD "
            'or the systemd credential "http-admin-password" (/admin/ answers 404)',
            extra={"action": "admin_off"},
        )
    return AdminBoard(view).routes()
