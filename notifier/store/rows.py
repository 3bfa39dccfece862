"""Row to view conversions and the Core column sets they read, shared by the repositories."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func

from notifier.core.model import EventTime, TrackingEvent
from notifier.core.stages import Stage
from notifier.core.views import (
    AlertView,
    OutboxItem,
    OutboxState,
    ShipmentView,
)
from notifier.store.orm import (
    Alert,
    Event,
    OutboxMessage,
    Shipment,
    Subscription,
)


def outbox_item_of(row: OutboxMessage) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        dedup_key=row.dedup_key,
        recipient=row.recipient,
        sender=row.sender,
        locale=row.locale,
        time_zone=row.time_zone,
        rule=row.rule,
        template=row.template,
        stage=row.stage,
        number=row.number,
        subject=row.subject,
        message_id=row.message_id,
        raw=row.raw,
        state=OutboxState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
        first_attempt_at=row.first_attempt_at,
        shipment_id=row.shipment_id,
        subscription_id=row.subscription_id,
    )


def view_of_orm(row: Shipment, open_alerts: int = 0) -> ShipmentView:
    return ShipmentView(
        id=row.id,
        number=row.number,
        incarnation=row.incarnation,
        label=row.label,
        item_type=row.item_type,
        origin=row.origin,
        destination=row.destination,
        tags=frozenset(row.tags.split()),
        stage=Stage(row.stage),
        stage_entered_at=row.stage_entered_at,
        last_event_time=row.last_event_time,
        active=row.active,
        next_poll_at=row.next_poll_at,
        last_polled_at=row.last_polled_at,
        last_changed_at=row.last_changed_at,
        consecutive_failures=row.consecutive_failures,
        last_error=row.last_error,
        created_at=row.created_at,
        open_alerts=open_alerts,
        watched_by=row.watched_by,
    )


STAGES = {str(stage): stage for stage in Stage}


def event_of(
    local_time: str,
    zone: str | None,
    status: str,
    stage: str,
    details: str,
    office: str,
    region: str,
    postal_code: str,
) -> TrackingEvent:
    return TrackingEvent(
        when=EventTime.from_iso(local_time, zone),
        status=status,
        stage=STAGES.get(stage, Stage.UNKNOWN),
        details=details,
        office=office,
        region=region,
        postal_code=postal_code,
    )


# The hot path of a poll cycle (claim, history reads, unchanged polls) runs Core statements
# built once here: SQLAlchemy then finds them in its compiled cache by identity, and no ORM
# objects are made for rows that are only read or bumped.
SHIPMENTS = cast(Table, Shipment.__table__)
EVENTS = cast(Table, Event.__table__)
VIEW_COLUMNS = (
    SHIPMENTS.c.id,
    SHIPMENTS.c.number,
    SHIPMENTS.c.incarnation,
    SHIPMENTS.c.label,
    SHIPMENTS.c.item_type,
    SHIPMENTS.c.origin,
    SHIPMENTS.c.destination,
    SHIPMENTS.c.tags,
    SHIPMENTS.c.stage,
    SHIPMENTS.c.stage_entered_at,
    SHIPMENTS.c.last_event_time,
    SHIPMENTS.c.active,
    SHIPMENTS.c.next_poll_at,
    SHIPMENTS.c.last_polled_at,
    SHIPMENTS.c.last_changed_at,
    SHIPMENTS.c.consecutive_failures,
    SHIPMENTS.c.last_error,
    SHIPMENTS.c.created_at,
    SHIPMENTS.c.watched_by,
)
EVENT_COLUMNS = (
    EVENTS.c.local_time,
    EVENTS.c.zone,
    EVENTS.c.status,
    EVENTS.c.stage,
    EVENTS.c.details,
    EVENTS.c.office,
    EVENTS.c.region,
    EVENTS.c.postal_code,
)


def view_of_columns(row: Any, open_alerts: int = 0) -> ShipmentView:
    """A ShipmentView from a row of VIEW_COLUMNS."""
    (
        id_,
        number,
        incarnation,
        label,
        item_type,
        origin,
        destination,
        tags,
        stage,
        stage_entered_at,
        last_event_time,
        active,
        next_poll_at,
        last_polled_at,
        last_changed_at,
        consecutive_failures,
        last_error,
        created_at,
        watched_by,
    ) = row
    return ShipmentView(
        id=id_,
        number=number,
        incarnation=incarnation,
        label=label,
        item_type=item_type,
        origin=origin,
        destination=destination,
        tags=frozenset(str(tags).split()),
        stage=Stage(stage),
        stage_entered_at=stage_entered_at,
        last_event_time=last_event_time,
        active=bool(active),
        next_poll_at=next_poll_at,
        last_polled_at=last_polled_at,
        last_changed_at=last_changed_at,
        consecutive_failures=consecutive_failures,
        last_error=last_error,
        created_at=created_at,
        open_alerts=open_alerts,
        watched_by=watched_by,
    )


def alert_view_of(row: Alert) -> AlertView:
    return AlertView(
        id=row.id,
        kind=row.kind,
        subject=row.subject,
        message=row.message,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        count=row.count,
        acknowledged_at=row.acknowledged_at,
    )


# The language a subscription's mail is in: the customer's own choice, else the watchlist's.
READS_IN = func.coalesce(Subscription.chosen_locale, Subscription.locale)


@dataclass(frozen=True, slots=True)
class Latest:
    id: int
    number: str
    incarnation: int
    label: str
    destination: str | None
    tags: str
    active: bool
    retired_at: dt.datetime | None
    watched_by: str


def event_row(shipment_id: int, seq: int, event: TrackingEvent, now: dt.datetime) -> dict[str, object]:
    """The events table's row of one event, first seen `now`."""
    return {
        "shipment_id": shipment_id,
        "seq": seq,
        "key": event.key,
        "local_time": event.when.iso_local(),
        "zone": event.when.zone,
        "occurred_at": event.when.aware(),
        "status": event.status,
        "stage": str(event.stage),
        "details": event.details,
        "office": event.office,
        "region": event.region,
        "postal_code": event.postal_code,
        "first_seen_at": now,
    }
