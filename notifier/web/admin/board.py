"""The operator board's pages as data: filters, rows in order of need, one parcel's page and the health banners."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from notifier.core.model import TrackingEvent
from notifier.core.rules import StallRule
from notifier.core.sending import OutboxPolicy, RecordedPause, expected_send, goes_note, recorded_pause
from notifier.core.stages import Stage, stage_info
from notifier.core.views import AlertView, OutboxItem, OutboxState, ShipmentView
from notifier.core.windows import Shown, window_text
from notifier.pipeline.estimates import Estimator, shown_windows
from notifier.store import Store
from notifier.web.ops import circuit_open, health, health_snapshot
from notifier.web.state import DaemonView

# What the outbox section lists: every message still to go, and those that failed.
WAITING = (OutboxState.FAILED, OutboxState.HELD, OutboxState.PENDING, OutboxState.SENDING)
MAX_TEXT = 200
# Rows per list: past this the filters narrow it (a page of 10,000 rows helps nobody).
SHOWN = 200


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
    # Each shipment's delivery window now, by id (pipeline.estimates.shown_windows).
    windows: Mapping[int, Shown] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberCell:
    email: str
    suppressed: bool


# Where a watch came from (ShipmentView.watched_by), as the parcel page says it.
_WATCHED_BY = {
    "config": "the configuration's watchlist",
    "cli": "the command line",
    "api": "the JSON API",
    "shopify": "Shopify's fulfillment webhook",
    "woocommerce": "WooCommerce's order webhook",
    "import": "a history import",
}


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
    # The delivery window shown now, or why there is none (windows.window_text).
    window: str = ""
    # Where the watch came from, in words (_WATCHED_BY).
    watched_by: str = ""
    # Where the watch came from: config, cli, shopify, woocommerce.
    source: str = ""


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
    window: Shown = (None, "disabled"),
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
        window=window_text(window, now.date()),
        watched_by=_WATCHED_BY.get(view.watched_by, view.watched_by),
        source=view.watched_by,
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
            shipment_row(
                view,
                snapshot.subscribers.get(view.id, ()),
                snapshot.suppressed,
                stalls,
                now,
                snapshot.windows.get(view.id, (None, "disabled")),
            )
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
    window: Shown = (None, "disabled"),
) -> ShipmentPage:
    """One parcel's page: its row, its events newest first, every message about it, its open alerts."""
    return ShipmentPage(
        row=shipment_row(view, subscribers, suppressed, stalls, now, window),
        active=view.active,
        destination=view.destination or "",
        last_polled=when(view.last_polled_at, now),
        events=tuple(event_row(event) for event in reversed(history)),
        messages=tuple(message_row(item, now) for item in messages),
        alerts=tuple(alert_row(alert, now) for alert in alerts if alert.subject == view.number),
    )


async def load_snapshot(store: Store, estimator: Estimator | None = None) -> BoardSnapshot:
    shipments = await store.shipments()
    windows: dict[int, Shown] = {}
    if estimator is not None:
        shown = [v for v in shipments if v.active]
        histories = await store.histories([v.id for v in shown])
        windows = await shown_windows(estimator, shown, histories, now=dt.datetime.now(dt.UTC))
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
        windows=windows,
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
