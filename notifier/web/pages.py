"""What the customer pages say, as data: built by the same pure code as the emails (compose.context_for)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from notifier.core.compose import MailSettings, context_for, tracking_url
from notifier.core.contacts import arrived_abroad
from notifier.core.eta import Window
from notifier.core.localize import PageWording
from notifier.core.messages import EventLine, MessageContext, Template
from notifier.core.model import ContactOffice, TrackingEvent
from notifier.core.rules import Notification, Recipient
from notifier.core.views import ShipmentView
from notifier.core.windows import NO_WINDOW_STAGES, window_line
from notifier.pipeline.poll import facts

LOCALES = ("en", "ja")
# The stages whose message wording explains them; others show the stage's meaning alone.
_ADVICE = frozenset(t.value for t in Template) - {Template.OPERATOR_DIGEST, Template.TEST, Template.STALLED}
EVENTS_SHOWN = 12


def page_locale(locale: str | None) -> str:
    return locale if locale in LOCALES else "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingPage:
    """The tracking page: the message context the emails use, and what only the page shows."""

    message: MessageContext
    # The message (Template value) whose title, explanation and "what to do" fit the stage now,
    # or "" when no message speaks of it.
    advice: str
    events: tuple[EventLine, ...]  # newest first
    japan_post_url: str
    unsubscribe_url: str
    # Arrived in the destination country: its local post office answers from now on, not Japan's.
    local_post_office: bool = False
    # The window shown (message.window_line) is from Japan Post's published times, not the lane's.
    window_prior: bool = False

    def values(self) -> dict[str, Any]:
        """The names the page template sees: every message field, and the page's own."""
        names = {f.name: getattr(self.message, f.name) for f in dataclasses.fields(self.message)}
        names.update(
            advice=self.advice,
            events=self.events,
            japan_post_url=self.japan_post_url,
            page_unsubscribe_url=self.unsubscribe_url,
            local_post_office=self.local_post_office,
            window_prior=self.window_prior,
        )
        return names


def tracking_page(
    shipment: ShipmentView,
    history: Sequence[TrackingEvent],
    contacts: Sequence[ContactOffice],
    mail: MailSettings,
    *,
    recipient: str,
    locale: str,
    wording: PageWording | None = None,
    window: Window | None = None,
    today: dt.date | None = None,
) -> TrackingPage:
    """The page for `recipient` about `shipment`, as an email about its current stage would say it:
    in Japan Post's words of `wording` (the page last read in the customer's language) where it
    covers the events shown, else the English page's, saying so. `window` is the delivery window
    shown (any basis, see windows.for_page), read on the reader's `today`."""
    locale = page_locale(locale)
    stage = shipment.stage
    advice = stage.value if stage.value in _ADVICE else ""
    notification = Notification(
        dedup_key="page",
        template=Template(advice) if advice else Template.STALLED,
        rule="page",
        stage=stage,
        recipient=Recipient(subscription_id=0, email=recipient, locale=locale),
        event=history[-1] if history else None,
    )
    # On the page itself the links are to Japan Post and to the unsubscribe page, never to itself.
    context = context_for(
        notification, facts(shipment), history, contacts, dataclasses.replace(mail, web=None), wording=wording
    )
    unsubscribe = mail.web.unsubscribe(recipient, shipment.number) if mail.web else context.unsubscribe_url
    if stage in NO_WINDOW_STAGES or today is None:
        window = None
    line = window_line(window, locale=locale, today=today) if today is not None else ""
    context = dataclasses.replace(context, unsubscribe_url=unsubscribe, passed=(), window_line=line)
    return TrackingPage(
        message=context,
        advice=advice,
        events=tuple(reversed(context.history[-EVENTS_SHOWN:])),
        japan_post_url=tracking_url(mail.tracking_base_url, shipment.number, locale),
        unsubscribe_url=unsubscribe,
        local_post_office=arrived_abroad(
            [*(str(e.stage) for e in history), str(stage)], context.international
        ),
        window_prior=bool(line) and window is not None and window.basis != "lane",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribePage:
    """The unsubscribe page: for whom, about which parcel, and what is stopped now."""

    locale: str
    shop_name: str
    recipient: str
    # The tracking number the link came with ("" for a link about all mail) and how it reads.
    number: str
    number_display: str
    label: str
    all_stopped: bool
    parcel_stopped: bool
    # What the last POST did ("unsubscribed", "resubscribed"), for the confirmation line.
    done: str = ""

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
