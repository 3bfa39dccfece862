"""Database tables (SQLAlchemy 2 declarative models); Alembic's target metadata."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from notifier.core import limits

# Named constraints keep Alembic's batch mode on SQLite and plain ALTERs on PostgreSQL
# addressing the same objects; unnamed ones get dialect-specific names that cannot be dropped.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend.

    SQLite has no time zone type and hands back naive values; storing naive UTC and
    re-attaching UTC on the way out keeps comparisons in Python and in SQL consistent.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}  # noqa: RUF012 (SQLAlchemy reads it as a ClassVar)


class Shipment(Base):
    """One parcel. A tracking number can be reused after about a year, so the identity is
    (number, incarnation): a reused number starts a new row and the old history stays intact."""

    __tablename__ = "shipments"
    __table_args__ = (UniqueConstraint("number", "incarnation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), index=True)
    incarnation: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    label: Mapped[str] = mapped_column(String(200), default="")
    item_type: Mapped[str | None] = mapped_column(String(limits.ITEM_TYPE))
    origin: Mapped[str] = mapped_column(String(2))
    destination: Mapped[str | None] = mapped_column(String(2))
    tags: Mapped[str] = mapped_column(String(400), default="", server_default=text("''"))
    stage: Mapped[str] = mapped_column(String(32), default="pending", server_default="pending")
    stage_entered_at: Mapped[dt.datetime | None]
    last_event_time: Mapped[str | None] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[dt.datetime]
    retired_at: Mapped[dt.datetime | None]

    next_poll_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    last_polled_at: Mapped[dt.datetime | None]
    last_changed_at: Mapped[dt.datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[dt.datetime | None]
    # "config": the configuration's watchlist decides (a reload that drops the number unwatches
    # it); "cli": added with `notifier watch` or `poll`, never unwatched by the configuration.
    watched_by: Mapped[str] = mapped_column(String(16), default="cli", server_default=text("'cli'"))
    # The delivery window a customer was last shown (mail or tracking page): /metrics counts the
    # deliveries that fell inside it, by lane. Dates in the calendar Japan Post prints.
    window_earliest: Mapped[dt.date | None]
    window_latest: Mapped[dt.date | None]
    window_basis: Mapped[str | None] = mapped_column(String(8))
    window_shown_at: Mapped[dt.datetime | None]


class Event(Base):
    """One event as Japan Post printed it, with the stage it maps to. Never deleted."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("shipment_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(32))
    local_time: Mapped[str] = mapped_column(String(16))
    zone: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(limits.STATUS))
    stage: Mapped[str] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text, default="")
    office: Mapped[str] = mapped_column(String(limits.OFFICE), default="")
    region: Mapped[str] = mapped_column(String(limits.REGION), default="")
    postal_code: Mapped[str] = mapped_column(String(limits.POSTAL_CODE), default="")
    first_seen_at: Mapped[dt.datetime]
    missing_since: Mapped[dt.datetime | None]


class ContactOfficeRow(Base):
    """The office contacts (`窓口店`) last shown for a shipment; retention emails quote them."""

    __tablename__ = "contact_offices"
    __table_args__ = (UniqueConstraint("shipment_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(limits.CONTACT_ROLE))
    office: Mapped[str] = mapped_column(String(limits.CONTACT_OFFICE))
    phone: Mapped[str] = mapped_column(String(limits.CONTACT_PHONE), default="")
    seen_at: Mapped[dt.datetime]


class Subscriber(Base):
    """A person who gets messages, by address."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    locale: Mapped[str] = mapped_column(String(2), default="en", server_default="en")
    created_at: Mapped[dt.datetime]


class Subscription(Base):
    """Who watches which shipment, in which language and time zone."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("subscriber_id", "shipment_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    locale: Mapped[str] = mapped_column(String(2), default="en", server_default="en")
    # The language the customer chose on the tracking page; wins over `locale`, which the
    # watchlist (config, CLI, import) sets and its next sync would set back.
    chosen_locale: Mapped[str | None] = mapped_column(String(2))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[dt.datetime]
    # How the customer is greeted (the watch's `name`); None greets without a name.
    name: Mapped[str | None] = mapped_column(String(100))


class Snapshot(Base):
    """Raw HTML (zlib-compressed) of a page that changed something or could not be read, kept to
    replay parser fixes."""

    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_shipment_id_fetched_at", "shipment_id", "fetched_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipments.id", ondelete="SET NULL"))
    number: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(String(20))
    layout: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    fetched_at: Mapped[dt.datetime] = mapped_column(index=True)


class Alert(Base):
    """Something the operator should know. One open alert per (kind, subject); repeats count up."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open_kind_subject",
            "kind",
            "subject",
            unique=True,
            sqlite_where=text("acknowledged_at IS NULL"),
            postgresql_where=text("acknowledged_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(40), default="")
    shipment_id: Mapped[int | None] = mapped_column(
        ForeignKey("shipments.id", ondelete="SET NULL"), index=True
    )
    message: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    count: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    acknowledged_at: Mapped[dt.datetime | None]


class OutboxMessage(Base):
    """A notification rendered once, stored as the exact bytes to send, and its delivery state.

    States: pending -> sending (leased) -> sent; failures go back to pending with a later
    `next_attempt_at`, or to failed. suppressed: the address unsubscribed before it went out.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    shipment_id: Mapped[int | None] = mapped_column(
        ForeignKey("shipments.id", ondelete="SET NULL"), index=True
    )
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"))
    recipient: Mapped[str] = mapped_column(String(320))
    sender: Mapped[str] = mapped_column(String(400))
    locale: Mapped[str] = mapped_column(String(2))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(80))
    template: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(20), default="")
    subject: Mapped[str] = mapped_column(String(limits.OUTBOX_SUBJECT))
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(12), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime]
    leased_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]
    server_reply: Mapped[str | None] = mapped_column(Text)
    # When the message was first offered for sending: its Date header, fixed in `raw` then so
    # that every retry repeats the same bytes.
    first_attempt_at: Mapped[dt.datetime | None]


class Suppression(Base):
    """An address that must get no more mail (unsubscribed), checked at send time."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(200), default="unsubscribed")
    created_at: Mapped[dt.datetime]


class ShipmentSuppression(Base):
    """An address that must get no more mail about one tracking number (unsubscribed from that
    parcel on the web face), checked at send time. Keyed by the number, not a row: it outlives
    watchlist syncs that recreate subscriptions."""

    __tablename__ = "shipment_suppressions"
    __table_args__ = (UniqueConstraint("email", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    number: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime]


class PageWordingRow(Base):
    """The last page read in another language than the polled one, as it pairs with the stored
    (English) events: what the tracking page shows a customer who reads that language."""

    __tablename__ = "page_wordings"
    __table_args__ = (UniqueConstraint("shipment_id", "locale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"))
    locale: Mapped[str] = mapped_column(String(2))
    fetched_at: Mapped[dt.datetime]
    # JSON (localize.wording_json): English event key -> that scan's words, item type, contacts.
    body: Mapped[str] = mapped_column(Text)


class RequestBudget(Base):
    """One remote site's request budget, shared by every instance on this database: the
    earliest time the next request may start (`next_slot`) and a pause (`not_before`, from a
    Retry-After or an open circuit) that every instance honours, restarts included."""

    __tablename__ = "request_budget"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_slot: Mapped[dt.datetime]
    not_before: Mapped[dt.datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    paused_by: Mapped[str | None] = mapped_column(String(200))
    last_grant: Mapped[str | None] = mapped_column(String(250))
    """Who took the last slot (instance and a serial): how a taker learns it won."""


class Instance(Base):
    """One running daemon, as its heartbeat shows it."""

    __tablename__ = "instances"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[dt.datetime]
    heartbeat_at: Mapped[dt.datetime]
    version: Mapped[str] = mapped_column(String(50))


class WorkLease(Base):
    """Work that one instance at a time does (the daily jobs): who holds it and until when."""

    __tablename__ = "work_leases"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    lease_until: Mapped[dt.datetime]
    acquired_at: Mapped[dt.datetime]


class IntakeEvent(Base):
    """A shop platform's event id already taken in, kept a few days: its retries are ignored."""

    __tablename__ = "intake_events"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(index=True)


class IntakeNumber(Base):
    """A number the intake watches for one fulfillment or order: an update that drops it, or a
    cancellation, unwatches what the intake itself started."""

    __tablename__ = "intake_numbers"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    reference: Mapped[str] = mapped_column(String(100), primary_key=True)
    number: Mapped[str] = mapped_column(String(20), primary_key=True)
    created_at: Mapped[dt.datetime]


class IntakeCall(Base):
    """One recent webhook call and what became of it, for the operator board (capped)."""

    __tablename__ = "intake_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime]
    platform: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(10))
    topic: Mapped[str] = mapped_column(String(60), default="")
    detail: Mapped[str] = mapped_column(String(300), default="")


def column_size(model: type[Base], name: str) -> int:
    """The declared length of a string column (characters: what PostgreSQL's varchar counts)."""
    kind = inspect(model).columns[name].type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"{model.__name__}.{name} is not a sized string column")
    return kind.length
