"""What a notification says, as data: the message catalogue and the context templates render from."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class Template(enum.StrEnum):
    """Every message notifier can send. Template files are named after these values."""

    ACCEPTED = "accepted"
    DEPARTED_ORIGIN = "departed_origin"
    INWARD_EXCHANGE = "inward_exchange"
    CUSTOMS_PRESENTED = "customs_presented"
    CUSTOMS_CLEARED = "customs_cleared"
    AT_DELIVERY_OFFICE = "at_delivery_office"
    OUT_FOR_DELIVERY = "out_for_delivery"
    ATTEMPTED_DELIVERY = "attempted_delivery"
    RETENTION = "retention"
    RETENTION_REMINDER = "retention_reminder"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"
    INVESTIGATION = "investigation"
    STALLED = "stalled"
    OPERATOR_DIGEST = "operator_digest"
    TEST = "test"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventLine:
    """One tracking event as a message shows it (scraped text: untrusted, escape in HTML)."""

    time: str
    status: str
    stage: str
    stage_meaning: str
    office: str = ""
    region: str = ""
    postal_code: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactLine:
    role: str
    office: str
    phone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestLine:
    """One line of the operator digest."""

    kind: str
    subject: str
    message: str
    count: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class StallLine:
    """A stalled parcel in the operator digest: silent in `stage` (its meaning) for `days`."""

    number: str
    label: str
    stage: str
    days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageContext:
    """Everything a template may use. Templates fail on any other name (StrictUndefined).

    Fields that do not apply to a message are None or empty, never missing.
    """

    template: Template
    locale: str
    shop_name: str
    number: str
    number_display: str
    label: str
    item_type: str
    stage: str
    stage_meaning: str
    tracking_url: str
    # True when tracking_url is the web face's tracking page ([http]), not Japan Post's.
    tracking_page: bool = False
    event: EventLine | None = None
    passed: tuple[EventLine, ...] = ()
    history: tuple[EventLine, ...] = ()
    contacts: tuple[ContactLine, ...] = ()
    destination: str = ""
    # The post that delivers the parcel in its destination country and its tracking page for
    # this number (notifier/destination_posts.toml), in the customer's language; "" when unknown.
    destination_post: str = ""
    destination_post_url: str = ""
    international: bool = False
    stalled_days: int | None = None
    stall_is_normal: bool | None = None
    retention_deadline: dt.date | None = None
    # A stall judged by the lane's history: 9 in 10 of the route's parcels moved on from this
    # stage within this many whole days (rounded up); None for the fixed day-count stall.
    late_within_days: int | None = None
    # The destination's holding period when a source gives it (notifier/core/retention_periods.csv):
    # amount and unit ("days", "months"), the class ("registered", "parcel", "ems", "all",
    # "domestic") and the country's name in the customer's language; hold_amount None: unknown.
    hold_amount: int | None = None
    hold_unit: str = ""
    hold_class: str = ""
    hold_country: str = ""
    unsubscribe_url: str = ""
    reply_to: str = ""
    # Branding: the logo's https URL, the accent colour (#rrggbb, checked for contrast) and the
    # shop's https URL for the footer; "" for the defaults (no logo, #1d4f91, no link).
    logo_url: str = ""
    brand_color: str = ""
    shop_url: str = ""
    digest: tuple[DigestLine, ...] = ()
    # Operator digest: the stalled parcels, and the operator board's address ("" without one).
    stalls: tuple[StallLine, ...] = ()
    board_url: str = ""
    # The customer's name from the watch (`name`), for the greeting; "" greets without a name.
    name: str = ""
    # The shop's phone for the footer ("" leaves it out); the reply address is `reply_to`.
    shop_phone: str = ""
    # Stages this shipment went through since the customer's last message that they were not
    # told about (messages superseded while waiting, stages passed within one poll), oldest
    # first, as Stage values ("attempted_delivery", "retention", ...). Never the current stage.
    passed_through: tuple[str, ...] = ()
    # The language of Japan Post's wording quoted in event lines, item_type and contacts
    # ("en" or "ja"): the customer's, or "en" when their page could not be had.
    wording_locale: str = "en"
    # True when the customer reads another language than English but Japan Post's page in it
    # could not be had or paired, so the Japan Post wording shown is the English page's.
    wording_unavailable: bool = False
    # The expected delivery window as one line in the customer's language
    # (notifier.core.windows.window_line); "" when none is shown.
    window_line: str = ""

    @classmethod
    def digest_for(
        cls,
        lines: tuple[DigestLine, ...],
        *,
        shop_name: str,
        locale: str = "en",
        stalls: tuple[StallLine, ...] = (),
        board_url: str = "",
    ) -> MessageContext:
        """The operator digest: about the shop's shipments in general, so no shipment fields."""
        return cls(
            stalls=stalls,
            board_url=board_url,
            template=Template.OPERATOR_DIGEST,
            locale=locale,
            shop_name=shop_name,
            number="",
            number_display="",
            label="",
            item_type="",
            stage="",
            stage_meaning="",
            tracking_url="",
            digest=lines,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedMessage:
    subject: str
    text: str
    html: str
