"""Where the delivery window shows: the mail policy, the one customer line (en/ja), and dates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from notifier.core.eta import Calibration, Estimate, Journey, Scan, Window, lane_of
from notifier.core.messages import Template
from notifier.core.model import TrackingEvent
from notifier.core.stages import Stage
from notifier.core.zones import country_zones


class MailWindows(enum.StrEnum):
    """Which windows go into customer mail ([estimates] mail)."""

    # Only windows learnt from the shop's own delivered parcels of the lane (the model switches a
    # lane from the prior to its history once it has enough of them): on by default, per lane.
    HISTORY = "history"
    # Also windows from Japan Post's published standard days alone (widened): the shop opts in.
    ALWAYS = "always"
    NEVER = "never"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WindowSettings:
    """[estimates]: how wide windows are and which of them customers read in their mail."""

    calibration: Calibration = Calibration.BALANCED
    mail: MailWindows = MailWindows.HISTORY


# Messages about a parcel still travelling towards the customer. Not: delivered, going back to
# the shop or back (nothing to expect), waiting for the customer (attempted delivery, retention,
# pickup: the date is theirs to choose), an investigation (Japan Post itself does not know),
# and the operator's messages.
IN_TRANSIT_TEMPLATES = frozenset(
    {
        Template.ACCEPTED,
        Template.DEPARTED_ORIGIN,
        Template.INWARD_EXCHANGE,
        Template.CUSTOMS_PRESENTED,
        Template.CUSTOMS_CLEARED,
        Template.AT_DELIVERY_OFFICE,
        Template.OUT_FOR_DELIVERY,
        Template.STALLED,
    }
)

# Stages after which no window is ever shown, whatever the message (a stall in one of them too).
NO_WINDOW_STAGES = frozenset(
    {
        Stage.ATTEMPTED_DELIVERY,
        Stage.REDELIVERY_REQUESTED,
        Stage.RETENTION,
        Stage.READY_FOR_PICKUP,
        Stage.DELIVERED,
        Stage.RETURNING,
        Stage.RETURNED,
        Stage.INVESTIGATION,
    }
)

# A window shown now (any basis), or None and why it is withheld (Estimate.withheld's words).
Shown = tuple[Window | None, str | None]

_WITHHELD_EN = {
    "delivered": "none: delivered",
    "not_in_transit": "none: not on its way to the customer",
    "no_prior": "withheld: no published transit time for this route and no history of it yet",
    "thin_data": "withheld: too little history of this route to say",
    "passed": "passed: its last day is behind, the parcel is running late",
    "disabled": "off",
}

_EN_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EN_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_JA_DAYS = "月火水木金土日"


def shown(window: Window | None, today: dt.date) -> Window | None:
    """The window as shown on `today`: None once its latest date has passed (the parcel is then
    running late), and never starting before today (a parcel not yet delivered cannot arrive
    yesterday: a reader would take a past first day for a mistake)."""
    if window is None or window.latest < today:
        return None
    return dataclasses.replace(window, earliest=today) if window.earliest < today else window


def for_page(estimate: Estimate | None, stage: Stage, today: dt.date) -> Window | None:
    """The window the tracking page, status and board show: any basis (the basis is shown too)."""
    if estimate is None or stage in NO_WINDOW_STAGES:
        return None
    return shown(estimate.window, today)


def for_mail(
    estimate: Estimate | None,
    stage: Stage,
    template: Template | str,
    settings: WindowSettings,
    today: dt.date,
) -> Window | None:
    """The window a customer message carries under `settings`, or None."""
    if settings.mail is MailWindows.NEVER or str(template) not in IN_TRANSIT_TEMPLATES:
        return None
    window = for_page(estimate, stage, today)
    if window is None or (window.basis != "lane" and settings.mail is not MailWindows.ALWAYS):
        return None
    return window


def withheld_reason(estimate: Estimate | None, stage: Stage, today: dt.date) -> str | None:
    """Why no window is shown (Estimate.withheld's words), or None when one is."""
    if estimate is None:
        return "disabled"
    if stage in NO_WINDOW_STAGES:
        return "delivered" if stage is Stage.DELIVERED else "not_in_transit"
    if estimate.window is not None and estimate.window.latest < today:
        return "passed"
    return estimate.withheld if estimate.window is None else None


def _en_day(day: dt.date, *, month: bool, year: bool) -> str:
    text = f"{_EN_DAYS[day.weekday()]} {day.day}"
    if month:
        text += f" {_EN_MONTHS[day.month - 1]}"
    if year:
        text += f" {day.year}"
    return text


def _ja_day(day: dt.date, *, year: bool) -> str:
    return f"{f'{day.year}年' if year else ''}{day.month}月{day.day}日({_JA_DAYS[day.weekday()]})"


def _en_pair(first: dt.date, last: dt.date, today: dt.date) -> tuple[str, str]:
    """The two dates in English: the month once when both share it, a year only where it is
    not `today`'s."""
    same_month = (first.year, first.month) == (last.year, last.month)
    first_text = _en_day(first, month=not same_month, year=not same_month and first.year != today.year)
    return first_text, _en_day(last, month=True, year=last.year != today.year)


def window_dates(window: Window, *, locale: str, today: dt.date) -> str:
    """The dates alone, for pages and tables: "Tue 14 – Fri 17 October", 「10月14日(火)〜10月17日(金)」
    (years only when they differ from `today`'s)."""
    first, last = window.earliest, window.latest
    if locale == "ja":
        if first == last:
            return _ja_day(first, year=first.year != today.year)
        return (
            f"{_ja_day(first, year=first.year != today.year)}〜{_ja_day(last, year=last.year != today.year)}"
        )
    if first == last:
        return _en_day(last, month=True, year=last.year != today.year)
    first_text, last_text = _en_pair(first, last, today)
    return f"{first_text} – {last_text}"


def window_line(window: Window | None, *, locale: str, today: dt.date) -> str:
    """The one line a customer message shows; "" for no window or a passed one.

    English names the month once when both dates share it and adds a year only where it is not
    the message's; Japanese uses the customary 月日(曜) form with 〜 and the polite お届け見込み.
    """
    window = shown(window, today)
    if window is None:
        return ""
    first, last = window.earliest, window.latest
    if locale == "ja":
        return f"{window_dates(window, locale='ja', today=today)}のお届け見込みです。"
    if first == last:
        return f"Expected on {window_dates(window, locale='en', today=today)}"
    first_text, last_text = _en_pair(first, last, today)
    return f"Expected between {first_text} and {last_text}"


def local_today(now: dt.datetime, zone: str | None) -> dt.date:
    """Today's date where the reader is (`zone`), else in Japan."""
    return now.astimezone(ZoneInfo(zone or "Asia/Tokyo")).date()


def model_now(now: dt.datetime, destination: str | None) -> dt.datetime:
    """`now` as the model reads it: naive, in the calendar the last scans are printed in. Scans
    abroad are in the destination's local time; in Japan and for unknown places, Japan's."""
    zone = country_zones().get((destination or "").upper()) or "Asia/Tokyo"
    return now.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def journey_of(
    *,
    number: str,
    item_type: str | None,
    origin: str,
    destination: str | None,
    events: Sequence[TrackingEvent],
) -> Journey:
    """A shipment's history as the model reads it (the same as Store.journeys builds)."""
    lane = lane_of(number=number, item_type=item_type, origin=origin, destination=destination)
    scans = tuple(
        Scan(at=dt.datetime.combine(e.when.date, e.when.time or dt.time(0)), stage=e.stage) for e in events
    )
    return Journey(number=number, lane=lane, scans=tuple(sorted(scans, key=lambda s: s.at)))


def window_json(window: Window | None) -> dict[str, str] | None:
    """`{"earliest", "latest", "basis"}` as `--json` and the API print it, or None."""
    if window is None:
        return None
    return {
        "earliest": window.earliest.isoformat(),
        "latest": window.latest.isoformat(),
        "basis": window.basis,
    }


def window_text(shown: Shown, today: dt.date) -> str:
    """The window for the operator (board, status): its dates and basis, or why there is none."""
    window, withheld = shown
    if window is None:
        return _WITHHELD_EN.get(withheld or "", f"withheld: {withheld}")
    basis = "from this route's deliveries" if window.basis == "lane" else "from Japan Post's published times"
    return f"{window_dates(window, locale='en', today=today)} ({basis})"
