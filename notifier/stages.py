"""The stage vocabulary: Japan Post status wordings mapped to stages customers understand."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Stage(enum.StrEnum):
    """Where a shipment is, in words rules and config refer to. The names are a contract."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    IN_TRANSIT = "in_transit"
    OUTWARD_EXCHANGE = "outward_exchange"
    DEPARTED_ORIGIN = "departed_origin"
    INWARD_EXCHANGE = "inward_exchange"
    CUSTOMS_PRESENTED = "customs_presented"
    CUSTOMS_CLEARED = "customs_cleared"
    INLAND_TRANSIT = "inland_transit"
    AT_DELIVERY_OFFICE = "at_delivery_office"
    OUT_FOR_DELIVERY = "out_for_delivery"
    ATTEMPTED_DELIVERY = "attempted_delivery"
    REDELIVERY_REQUESTED = "redelivery_requested"
    RETENTION = "retention"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"
    INVESTIGATION = "investigation"
    FORWARDED = "forwarded"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class StageInfo:
    """What a stage means and what it implies."""

    stage: Stage
    rank: int
    terminal: bool
    customer_action: bool
    meaning_en: str
    meaning_ja: str
