"""The value types the store takes and returns: plain frozen records, no database in them."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from notifier.core.numbers import TrackingNumber
from notifier.core.stages import Stage

# Who put a shipment on the watchlist: the configuration's [[watch]] entries or `notifier watch`.
WATCHED_BY_CONFIG = "config"
WATCHED_BY_CLI = "cli"
# Nobody: past history brought in by `notifier history import`, never polled until watched.
WATCHED_BY_IMPORT = "import"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipmentView:
    """A shipment as commands and the daemon see it."""

    id: int
    number: str
    incarnation: int
    label: str
    item_type: str | None
    origin: str
    destination: str | None
    tags: frozenset[str]
    stage: Stage
    stage_entered_at: dt.datetime | None
    last_event_time: str | None
    active: bool
    next_poll_at: dt.datetime | None
    last_polled_at: dt.datetime | None
    last_changed_at: dt.datetime | None
    consecutive_failures: int
    last_error: str | None
    created_at: dt.datetime | None = None
    open_alerts: int = 0
    watched_by: str = "cli"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertView:
    id: int
    kind: str
    subject: str
    message: str
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    count: int
    acknowledged_at: dt.datetime | None

    def as_json(self) -> dict[str, object]:
        """The alert as the operator webhook posts it and `notifier alerts --json` prints it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "count": self.count,
            "first_seen_at": self.first_seen_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsCounts:
    """What /metrics reports of the database, read in four grouped statements.

    Attributes:
        stages: watched (active) shipments by stage.
        due: watched shipments whose next poll time has come.
        overdue: those due since before the `overdue_before` asked for.
        outbox: messages by state, all of them.
        oldest_waiting: when the oldest message not yet sent or given up (held, pending,
            sending) was queued; None when there is none.
        open_alerts: operator alerts not acknowledged.
    """

    stages: dict[str, int]
    due: int
    overdue: int
    outbox: dict[str, int]
    oldest_waiting: dt.datetime | None
    open_alerts: int


# Messages still on their way: queued, held by the kill switch, or being sent.
WAITING_STATES = frozenset({"pending", "held", "sending"})


@dataclass(frozen=True, slots=True, kw_only=True)
class PageCapture:
    """What was fetched, kept as a snapshot when it changed something or could not be read."""

    body: bytes
    url: str = ""
    layout: str = ""
    note: str = ""


class OutboxState(enum.StrEnum):
    # Queued while the kill switch was on: decided, kept, and made pending when it lifts.
    HELD = "held"
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    # Still waiting when a later message about the same shipment was queued for the same
    # subscription: never sent, the later one says where the parcel is now.
    SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDraft:
    """A rendered message ready to queue; Message-ID, Date and bytes are final here."""

    dedup_key: str
    recipient: str
    sender: str
    locale: str
    rule: str
    template: str
    stage: str
    number: str
    subject: str
    message_id: str
    raw: bytes
    shipment_id: int | None = None
    subscription_id: int | None = None
    time_zone: str | None = None
    # Why the message could not be built: it is stored as failed (raw empty, never sent) and
    # raises one "message_build_failed" alert, so the rest of its poll still commits.
    error: str | None = None
    # Messages of the same shipment and subscription still waiting (pending, held) when this
    # one is queued are superseded by it (see Store.waiting_stages).
    supersedes: bool = False
    # Not sent before this time (news waiting for the next scan, see rules.send_after).
    not_before: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    id: int
    dedup_key: str
    recipient: str
    sender: str
    locale: str
    time_zone: str | None
    rule: str
    template: str
    stage: str
    number: str
    subject: str
    message_id: str
    raw: bytes
    state: OutboxState
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    first_attempt_at: dt.datetime | None = None
    shipment_id: int | None = None
    subscription_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfiguredWatch:
    """One number of the configuration's watchlist, as the store syncs it."""

    number: TrackingNumber
    label: str = ""
    destination: str | None = None
    tags: frozenset[str] = frozenset()
    subscribers: tuple[tuple[str, str, str | None], ...] = ()
    """(email, locale, time zone) of each subscriber."""
    name: str = ""
    """The customer's name, greeting each subscriber's messages; "" for none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSync:
    """What a watchlist sync changed."""

    added: tuple[str, ...]
    updated: int
    unwatched: tuple[str, ...]
    taken_over: tuple[str, ...]
    reused: tuple[str, ...] = ()
    """Listed, but retired because Japan Post now shows another parcel under the number."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledRow:
    """What the polling policy needs to know to place a shipment's next poll."""

    id: int
    stage: Stage
    next_poll_at: dt.datetime
    last_polled_at: dt.datetime
    created_at: dt.datetime | None
    last_changed_at: dt.datetime | None
    stage_entered_at: dt.datetime | None
    consecutive_failures: int
