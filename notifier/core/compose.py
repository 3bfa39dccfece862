"""Turning a Notification into the exact bytes to queue: message context, rendering, MIME."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import traceback
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jinja2

from notifier.core.contacts import shown_contacts
from notifier.core.eta import Estimate, Window
from notifier.core.links import Links
from notifier.core.localize import PageWording
from notifier.core.messages import ContactLine, DigestLine, EventLine, MessageContext, StallLine
from notifier.core.mime import build_message, make_message_id
from notifier.core.model import DEFAULT_BASE_URL, DETAIL_PATH, ContactOffice, Locale, TrackingEvent
from notifier.core.numbers import parse_number
from notifier.core.posts import post_for
from notifier.core.render import Renderer
from notifier.core.rules import Notification, ShipmentFacts, recipient_zone, within_days
from notifier.core.stages import Stage, stage_info
from notifier.core.views import OutboxDraft
from notifier.core.windows import WindowSettings, for_mail, local_today, window_line
from notifier.core.zones import country_zones
from notifier.errors import NotifierError

logger = logging.getLogger(__name__)

HISTORY_LINES = 12
# The language polls read (poll.POLL_LOCALE; poll imports this module).
POLL_LOCALE = Locale.EN


@dataclass(frozen=True, slots=True, kw_only=True)
class MailSettings:
    """Who messages come from and what they link to."""

    sender: str
    shop_name: str
    reply_to: str | None = None
    shop_phone: str = ""
    # `{email}` and `{number}` are filled in (URL-encoded); a mailto: or https: URI.
    unsubscribe: str | None = None
    tracking_base_url: str = DEFAULT_BASE_URL
    # The web face's signed links ([http]): when set, the tracking button opens our tracking
    # page and every customer message carries a one-click unsubscribe link.
    web: Links | None = None
    # Branding ([notifications] logo_url, brand_color, shop_url); None: the defaults, no logo or link.
    logo_url: str | None = None
    brand_color: str | None = None
    shop_url: str | None = None
    # The operator board (public_url + "/admin/") when [http] and its password are set: the
    # operator digest links to it.
    board_url: str | None = None

    @property
    def domain(self) -> str:
        address = self.sender.rsplit("<", 1)[-1].rstrip(">")
        return address.rsplit("@", 1)[-1] or "localhost"


def tracking_url(base_url: str, number: str, locale: str) -> str:
    query = urllib.parse.urlencode({"reqCodeNo1": number, "locale": locale})
    return f"{base_url.rstrip('/')}{DETAIL_PATH}?{query}"


def unsubscribe_uri(template: str | None, email: str, number: str) -> str:
    if not template:
        return ""
    return template.replace("{email}", urllib.parse.quote(email, safe="")).replace(
        "{number}", urllib.parse.quote(number, safe="")
    )


def unsubscribe_link(mail: MailSettings, email: str, number: str) -> str:
    """The link a message's footer shows: the web face's page, else [notifications] unsubscribe."""
    if mail.web is not None:
        return mail.web.unsubscribe(email, number)
    return unsubscribe_uri(mail.unsubscribe, email, number)


def unsubscribe_header(mail: MailSettings, email: str, number: str) -> tuple[str, ...]:
    """The List-Unsubscribe URIs: the web face's one-click link, and a mailto: beside it when
    [notifications] unsubscribe is one (clients that cannot POST write instead)."""
    configured = unsubscribe_uri(mail.unsubscribe, email, number)
    if mail.web is None:
        return (configured,) if configured else ()
    web = mail.web.unsubscribe(email, number)
    # Both must fit one header line; the one-click link is the one that matters.
    mailto = (configured,) if configured.startswith("mailto:") and len(web) + len(configured) < 880 else ()
    return (web, *mailto)


def tracking_link(mail: MailSettings, email: str, number: str, locale: str) -> str:
    """Where a message's tracking button goes: our tracking page with [http], else Japan Post's."""
    if mail.web is not None:
        return mail.web.tracking(email, number)
    return tracking_url(mail.tracking_base_url, number, locale)


def meaning(stage: Stage, locale: str) -> str:
    info = stage_info(stage)
    return info.meaning_ja if locale == "ja" else info.meaning_en


def event_line(event: TrackingEvent, locale: str) -> EventLine:
    return EventLine(
        time=event.when.iso_local().replace("T", " "),
        status=event.status,
        stage=str(event.stage),
        stage_meaning=meaning(event.stage, locale),
        office=event.office,
        region=event.region,
        postal_code=event.postal_code,
    )


def display_number(number: str) -> str:
    try:
        return parse_number(number).display
    except ValueError:
        return number


def passed_through(notification: Notification, waiting: Sequence[str] = ()) -> tuple[str, ...]:
    """The stages the customer was not told about, oldest first: those of their superseded
    messages, then those passed within this poll; never the stage announced now."""
    seen: list[str] = []
    for stage in (*waiting, *(str(e.stage) for e in notification.passed)):
        if stage != str(notification.stage) and stage not in seen:
            seen.append(stage)
    return tuple(seen)


def context_for(
    notification: Notification,
    shipment: ShipmentFacts,
    history: Sequence[TrackingEvent],
    contacts: Sequence[ContactOffice],
    mail: MailSettings,
    *,
    wording: PageWording | None = None,
    waiting: Sequence[str] = (),
    name: str = "",
    window: str = "",
) -> MessageContext:
    """The message's facts. Japan Post's wording (status, office, region, class of goods, contact
    offices) is the customer's language's page when `wording` is that page and covers every
    event shown; otherwise the polled English page's, and a non-English customer is told so."""
    locale = notification.recipient.locale
    shown = history[-HISTORY_LINES:]
    item_type = shipment.item_type or ""
    wording_locale, unavailable = str(POLL_LOCALE), False
    if locale != str(POLL_LOCALE):
        quoted = [*shown, *notification.passed, *([notification.event] if notification.event else [])]
        if wording is not None and wording.locale == locale and wording.covers(quoted):
            history = [wording.events[e.key] for e in shown]
            shown = history
            notification = dataclasses.replace(
                notification,
                event=wording.events[notification.event.key] if notification.event else None,
                passed=tuple(wording.events[e.key] for e in notification.passed),
            )
            item_type = wording.item_type or item_type
            contacts = wording.contacts or contacts
            wording_locale = locale
        else:
            unavailable = True
    international = shipment.origin != "JP" or not shipment.number.isdigit()
    post = post_for(shipment.destination or "", shipment.number) if international else None
    return MessageContext(
        template=notification.template,
        locale=locale,
        shop_name=mail.shop_name,
        shop_phone=mail.shop_phone,
        number=shipment.number,
        number_display=display_number(shipment.number),
        label=shipment.label,
        item_type=item_type,
        stage=str(notification.stage),
        stage_meaning=meaning(notification.stage, locale),
        tracking_url=tracking_link(mail, notification.recipient.email, shipment.number, locale),
        tracking_page=mail.web is not None,
        event=event_line(notification.event, locale) if notification.event else None,
        passed=tuple(event_line(e, locale) for e in notification.passed),
        history=tuple(event_line(e, locale) for e in shown),
        contacts=shown_contacts(
            [ContactLine(role=c.role, office=c.office, phone=c.phone) for c in contacts],
            international=international,
            stages=[*(str(e.stage) for e in history), str(notification.stage)],
        ),
        destination=shipment.destination or "",
        destination_post=post.name(locale) if post else "",
        destination_post_url=post.tracking_url(shipment.number) if post else "",
        international=international,
        stalled_days=notification.stalled_days,
        stall_is_normal=notification.stall_is_normal,
        retention_deadline=notification.retention_deadline,
        late_within_days=(
            within_days(notification.lateness.lane_p90)
            if notification.lateness is not None and notification.lateness.lane_p90 is not None
            else None
        ),
        hold_amount=notification.holding.amount if notification.holding else None,
        hold_unit=notification.holding.unit if notification.holding else "",
        hold_class=notification.holding.item_class if notification.holding else "",
        hold_country=notification.holding.country_name(locale) if notification.holding else "",
        unsubscribe_url=unsubscribe_link(mail, notification.recipient.email, shipment.number),
        reply_to=mail.reply_to or "",
        logo_url=mail.logo_url or "",
        brand_color=mail.brand_color or "",
        shop_url=mail.shop_url or "",
        name=name,
        passed_through=passed_through(notification, waiting),
        wording_locale=wording_locale,
        wording_unavailable=unavailable,
        window_line=window,
    )


def draft(
    context: MessageContext,
    *,
    renderer: Renderer,
    mail: MailSettings,
    recipient: str,
    dedup_key: str,
    rule: str,
    now: dt.datetime,
    shipment_id: int | None = None,
    subscription_id: int | None = None,
    time_zone: str | None = None,
    supersedes: bool = False,
) -> OutboxDraft:
    """Render once and fix the Message-ID now; the outbox sets the Date at the first send
    attempt, and every resend repeats those exact bytes."""
    rendered = renderer.render(context)
    message_id = make_message_id(mail.domain)
    raw = build_message(
        rendered,
        sender=mail.sender,
        recipient=recipient,
        message_id=message_id,
        date=now,
        locale=context.locale,
        number=context.number,
        stage=context.stage,
        rule=rule,
        unsubscribe=unsubscribe_header(mail, recipient, context.number)
        if mail.web is not None and context.unsubscribe_url
        else context.unsubscribe_url or None,
        reply_to=mail.reply_to,
    )
    return OutboxDraft(
        dedup_key=dedup_key,
        recipient=recipient,
        sender=mail.sender,
        locale=context.locale,
        rule=rule,
        template=str(context.template),
        stage=context.stage,
        number=context.number,
        subject=rendered.subject,
        message_id=message_id,
        raw=raw,
        shipment_id=shipment_id,
        subscription_id=subscription_id,
        time_zone=time_zone,
        supersedes=supersedes,
    )


def build_error(exc: Exception) -> str:
    """One line saying why a message could not be built, naming the template file and line if any."""
    where = ""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"{exc.filename or exc.name}, line {exc.lineno}: "
    else:
        # Jinja2 rewrites tracebacks so that template code shows as the template's own lines.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            where = f"{frames[-1].filename}, line {frames[-1].lineno}: "
    text = " ".join(str(exc).split()) or "(no detail)"
    return f"{where}{type(exc).__name__}: {text}"


def failed_draft(
    exc: Exception,
    *,
    mail: MailSettings,
    recipient: str,
    dedup_key: str,
    rule: str,
    template: str,
    locale: str,
    stage: str,
    number: str,
    shipment_id: int | None = None,
    subscription_id: int | None = None,
    time_zone: str | None = None,
) -> OutboxDraft:
    """What is queued for a message that could not be built: a failed row with the reason, no bytes."""
    reason = build_error(exc)
    # A bug (not a template or a value we refused) deserves its traceback in the journal.
    expected = isinstance(exc, NotifierError | jinja2.TemplateError)
    logger.error(
        "message could not be built to=%s number=%s template=%s/%s: %s",
        recipient,
        number or "-",
        locale,
        template,
        reason,
        exc_info=None if expected else exc,
        extra={"action": "build_failed", "to": recipient, "number": number, "error": reason},
    )
    try:
        message_id = make_message_id(mail.domain)
    except NotifierError:
        message_id = f"<{secrets.token_hex(16)}@invalid>"
    return OutboxDraft(
        dedup_key=dedup_key,
        recipient=recipient,
        sender=mail.sender,
        locale=locale[:2],
        rule=rule,
        template=template,
        stage=stage,
        number=number,
        subject="",
        message_id=message_id,
        raw=b"",
        shipment_id=shipment_id,
        subscription_id=subscription_id,
        time_zone=time_zone,
        error=reason,
    )


def draft_or_failure(
    context: MessageContext,
    *,
    renderer: Renderer,
    mail: MailSettings,
    recipient: str,
    dedup_key: str,
    rule: str,
    now: dt.datetime,
) -> OutboxDraft:
    """`draft`, but a message that cannot be built becomes a failed draft instead of an exception."""
    try:
        return draft(
            context,
            renderer=renderer,
            mail=mail,
            recipient=recipient,
            dedup_key=dedup_key,
            rule=rule,
            now=now,
        )
    except Exception as exc:
        return failed_draft(
            exc,
            mail=mail,
            recipient=recipient,
            dedup_key=dedup_key,
            rule=rule,
            template=str(context.template),
            locale=context.locale,
            stage=context.stage,
            number=context.number,
        )


def drafts_for(
    notifications: Sequence[Notification],
    shipment: ShipmentFacts,
    history: Sequence[TrackingEvent],
    contacts: Sequence[ContactOffice],
    *,
    mail: MailSettings,
    renderer: Renderer,
    now: dt.datetime,
    wordings: Mapping[str, PageWording] | None = None,
    waiting: Mapping[int, Sequence[str]] | None = None,
    names: Mapping[int, str] | None = None,
    supersede: bool = False,
    estimate: Estimate | None = None,
    windows: WindowSettings | None = None,
) -> list[OutboxDraft]:
    """One draft per notification. One that cannot be built (any error in its context, template
    or MIME) is a failed draft, so it cannot take its poll and the other messages down with it.

    `wordings` are the other locales' pages by locale, `waiting` the stages of each subscription's
    messages still waiting, `names` each subscription's greeting name; `supersede` makes each
    draft retire what still waits for its subscription (a stage change: news of where it is now).
    `estimate` is the parcel's delivery estimate now; `windows` decides which messages carry it.
    """
    drafts: list[OutboxDraft] = []
    for n in notifications:
        sid = n.recipient.subscription_id
        # Stored with the message: quiet hours then follow it, whatever the watch says later.
        zone = recipient_zone(n.recipient.time_zone, shipment.destination, country_zones())
        try:
            context = context_for(
                n,
                shipment,
                history,
                contacts,
                mail,
                wording=(wordings or {}).get(n.recipient.locale),
                waiting=(waiting or {}).get(sid, ()) if supersede else (),
                name=(names or {}).get(sid, ""),
                window=message_window_line(n, estimate, windows, now=now, zone=zone),
            )
            drafts.append(
                draft(
                    context,
                    renderer=renderer,
                    mail=mail,
                    recipient=n.recipient.email,
                    dedup_key=n.dedup_key,
                    rule=n.rule,
                    now=now,
                    shipment_id=shipment.id,
                    subscription_id=n.recipient.subscription_id,
                    time_zone=zone,
                    supersedes=supersede,
                )
            )
        except Exception as exc:
            drafts.append(
                failed_draft(
                    exc,
                    mail=mail,
                    recipient=n.recipient.email,
                    dedup_key=n.dedup_key,
                    rule=n.rule,
                    template=str(n.template),
                    locale=n.recipient.locale,
                    stage=str(n.stage),
                    number=shipment.number,
                    shipment_id=shipment.id,
                    subscription_id=n.recipient.subscription_id,
                    time_zone=zone,
                )
            )
    return drafts


def message_window(
    notification: Notification,
    estimate: Estimate | None,
    windows: WindowSettings | None,
    *,
    now: dt.datetime,
    zone: str | None,
) -> Window | None:
    """The window this message carries: per [estimates] mail, never for a parcel that is not in
    transit, never once its latest date has passed where the customer reads it."""
    if windows is None:
        return None
    return for_mail(estimate, notification.stage, notification.template, windows, local_today(now, zone))


def message_window_line(
    notification: Notification,
    estimate: Estimate | None,
    windows: WindowSettings | None,
    *,
    now: dt.datetime,
    zone: str | None,
) -> str:
    today = local_today(now, zone)
    window = message_window(notification, estimate, windows, now=now, zone=zone)
    return window_line(window, locale=notification.recipient.locale, today=today)


def shown_window(
    notifications: Sequence[Notification],
    shipment: ShipmentFacts,
    estimate: Estimate | None,
    windows: WindowSettings | None,
    *,
    now: dt.datetime,
) -> Window | None:
    """The window that `drafts_for` puts in at least one of these messages (to be recorded)."""
    for n in notifications:
        zone = recipient_zone(n.recipient.time_zone, shipment.destination, country_zones())
        window = message_window(n, estimate, windows, now=now, zone=zone)
        if window is not None:
            return window
    return None


def digest_context(
    lines: Sequence[DigestLine], mail: MailSettings, locale: str = "en", stalls: Sequence[StallLine] = ()
) -> MessageContext:
    return MessageContext.digest_for(
        tuple(lines),
        shop_name=mail.shop_name,
        locale=locale,
        stalls=tuple(stalls),
        board_url=mail.board_url or "",
    )
