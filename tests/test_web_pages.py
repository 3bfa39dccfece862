"""The page builders: the tracking page says what an email about the same stage says, for every
stage in both languages, and the web pages carry no script and no style attribute."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from markupsafe import escape

from notifier.core.compose import MailSettings, context_for
from notifier.core.contacts import international_phone
from notifier.core.links import Links, Purpose, Signer
from notifier.core.messages import RenderedMessage, Template
from notifier.core.mime import build_message
from notifier.core.model import ContactOffice, EventTime, TrackingEvent
from notifier.core.render import Renderer, journey
from notifier.core.rules import Notification, Recipient
from notifier.core.stages import Stage, stage_info
from notifier.core.views import ShipmentView
from notifier.pipeline.poll import facts
from notifier.web.pages import UnsubscribePage, tracking_page

SIGNER = Signer("a secret for the page tests, long enough")
MAIL = MailSettings(
    sender="Sakura <shop@sakura.example>",
    shop_name="Sakura Ceramics",
    reply_to="shop@sakura.example",
    shop_phone="+81 3-1234-5678",
    unsubscribe="mailto:shop@sakura.example?subject=unsubscribe",
    web=Links(public_url="https://track.sakura.example", signer=SIGNER),
)
RENDERER = Renderer(web=True)
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
ADDRESS = "customer@example.com"


def shipment(stage: Stage, number: str = "EJ123456785JP") -> ShipmentView:
    return ShipmentView(
        id=1,
        number=number,
        incarnation=1,
        label="Order <1001>",
        item_type="EMS",
        origin="JP",
        destination="US",
        tags=frozenset(),
        stage=stage,
        stage_entered_at=T0,
        last_event_time=None,
        active=True,
        next_poll_at=None,
        last_polled_at=None,
        last_changed_at=None,
        consecutive_failures=0,
        last_error=None,
    )


def history(stage: Stage) -> tuple[TrackingEvent, ...]:
    return (
        TrackingEvent(
            when=EventTime(date=dt.date(2026, 11, 28), time=dt.time(10, 5)),
            status="Posting/Collection",
            stage=Stage.ACCEPTED,
            office="SHINJUKU",
            region="TOKYO",
        ),
        TrackingEvent(
            when=EventTime(date=dt.date(2026, 11, 30), time=dt.time(18, 40)),
            status=f"Scan <{stage}>",
            stage=stage,
            office="LOS ANGELES",
            region="USA",
        ),
    )


CONTACTS = (ContactOffice(role="Delivery", office="LOS ANGELES", phone="03-0000-0000"),)


@pytest.mark.parametrize("locale", ["en", "ja"])
@pytest.mark.parametrize("stage", list(Stage))
def test_every_stage_renders_a_page_without_scripts_or_style_attributes(stage: Stage, locale: str) -> None:
    page = tracking_page(shipment(stage), history(stage), CONTACTS, MAIL, recipient=ADDRESS, locale=locale)
    html = RENDERER.render_page("tracking.html.j2", {**page.values(), "static_url": "../static/page.css"})
    assert f'<html lang="{locale}">' in html
    assert "<script" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers either
    info = stage_info(stage)
    assert str(escape(info.meaning_ja if locale == "ja" else info.meaning_en)) in html
    assert "Order &lt;1001&gt;" in html  # scraped and configured text is escaped
    assert "Scan &lt;" in html
    assert "https://track.sakura.example/u/" in html


@pytest.mark.parametrize("locale", ["en", "ja"])
@pytest.mark.parametrize("stage", [Stage.ATTEMPTED_DELIVERY, Stage.CUSTOMS_PRESENTED, Stage.DELIVERED])
def test_the_page_says_what_the_email_about_that_stage_says(stage: Stage, locale: str) -> None:
    events = history(stage)
    page = tracking_page(shipment(stage), events, CONTACTS, MAIL, recipient=ADDRESS, locale=locale)
    notification = Notification(
        dedup_key="k",
        template=Template(stage.value),
        rule=stage.value,
        stage=stage,
        recipient=Recipient(subscription_id=1, email=ADDRESS, locale=locale),
        event=events[-1],
    )
    email = context_for(notification, facts(shipment(stage)), events, CONTACTS, MAIL)
    # The same facts, by the same code: meaning, history, journey.
    assert page.message.stage_meaning == email.stage_meaning
    assert page.message.history == email.history
    assert journey(page.message.stage, page.message.history, page.message.international) == journey(
        email.stage, email.history, email.international
    )
    rendered = Renderer().render(email)
    html = RENDERER.render_page("tracking.html.j2", {**page.values(), "static_url": "x.css"})
    # The email's title and its "what to do" heading are on the page too.
    title = re.search(r"<h1[^>]*>(.*?)</h1>", rendered.html, re.S)
    assert title
    assert title.group(1).strip() in html
    if stage is Stage.ATTEMPTED_DELIVERY:
        # "What to do", as the email's box says it, and Japan Post's redelivery form is not
        # offered abroad (this parcel is in the US).
        heading = "What to do" if locale == "en" else "お客様へのご案内"
        assert heading in rendered.html
        assert f'<section class="card todo">\n<h2>{heading}</h2>' in html
        assert "trackings.post.japanpost.jp/delivery/deli/" not in html


def test_the_page_links_to_japan_post_and_the_email_to_the_page() -> None:
    page = tracking_page(
        shipment(Stage.DELIVERED), history(Stage.DELIVERED), (), MAIL, recipient=ADDRESS, locale="en"
    )
    assert page.japan_post_url.startswith("https://trackings.post.japanpost.jp/")
    assert page.message.tracking_page is False  # on the page, "track" means Japan Post's site
    notification = Notification(
        dedup_key="k",
        template=Template.DELIVERED,
        rule="delivered",
        stage=Stage.DELIVERED,
        recipient=Recipient(subscription_id=1, email=ADDRESS, locale="en"),
    )
    email = context_for(notification, facts(shipment(Stage.DELIVERED)), (), (), MAIL)
    assert email.tracking_page is True
    token = email.tracking_url.removeprefix("https://track.sakura.example/t/")
    claim = SIGNER.check(Purpose.TRACK, token)
    assert claim is not None
    assert (claim.recipient, claim.scope) == (ADDRESS, "EJ123456785JP")
    assert "See where your parcel is" in Renderer().render(email).html


def test_with_http_every_email_carries_one_click_and_the_mailto_beside_it() -> None:
    notification = Notification(
        dedup_key="k",
        template=Template.DELIVERED,
        rule="delivered",
        stage=Stage.DELIVERED,
        recipient=Recipient(subscription_id=1, email=ADDRESS, locale="en"),
    )
    from notifier.core.compose import draft

    drafted = draft(
        context_for(notification, facts(shipment(Stage.DELIVERED)), (), (), MAIL),
        renderer=Renderer(),
        mail=MAIL,
        recipient=ADDRESS,
        dedup_key="k",
        rule="delivered",
        now=T0,
    )
    headers = drafted.raw.split(b"\r\n\r\n", 1)[0].decode()
    found = re.search(
        r"List-Unsubscribe: <(https://track\.sakura\.example/u/[^>]+)>, <(mailto:[^>]+)>", headers
    )
    assert found, headers
    assert found.group(2) == "mailto:shop@sakura.example?subject=unsubscribe"
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers
    claim = SIGNER.check(Purpose.UNSUBSCRIBE, found.group(1).rsplit("/", 1)[1])
    assert claim is not None
    assert (claim.recipient, claim.scope) == (ADDRESS, "EJ123456785JP")
    # Without [http] nothing changes: the mailto alone, and no one-click header.
    plain = build_message(
        RenderedMessage(subject="s", text="t", html="<p>h</p>"),
        sender=MAIL.sender,
        recipient=ADDRESS,
        message_id="<a@sakura.example>",
        date=T0,
        locale="en",
        number="",
        stage="",
        rule="r",
        unsubscribe=dataclasses.replace(MAIL, web=None).unsubscribe,
    )
    assert b"List-Unsubscribe-Post" not in plain


@pytest.mark.parametrize("locale", ["en", "ja"])
@pytest.mark.parametrize(
    ("all_stopped", "parcel_stopped", "number"),
    [
        (False, False, "EJ123456785JP"),
        (False, True, "EJ123456785JP"),
        (True, False, "EJ123456785JP"),
        (False, False, ""),
    ],
)
def test_the_unsubscribe_page_offers_what_can_be_done(
    locale: str, all_stopped: bool, parcel_stopped: bool, number: str
) -> None:
    page = UnsubscribePage(
        locale=locale,
        shop_name="Sakura <Ceramics>",
        recipient=ADDRESS,
        number=number,
        number_display="EJ 123 456 785 JP" if number else "",
        label="Order 1001",
        all_stopped=all_stopped,
        parcel_stopped=parcel_stopped,
    )
    html = RENDERER.render_page("unsubscribe.html.j2", {**page.values(), "static_url": "x.css"})
    assert "<script" not in html
    assert not re.search(r"\sstyle=", html)
    assert "Sakura &lt;Ceramics&gt;" in html
    buttons = set(re.findall(r'<button[^>]*value="([a-z-]+)"', html))
    expected = set()
    if not all_stopped:
        expected.add("all")
        if number and not parcel_stopped:
            expected.add("parcel")
    if all_stopped:
        expected.add("resubscribe-all")
    if parcel_stopped:
        expected.add("resubscribe-parcel")
    assert buttons == expected


# ------------------------------------------------------------------ offices a customer abroad is given

TOKYO_AND_BROOKLYN = (
    ContactOffice(role="Acceptance", office="SHIBUYA", phone="03-0000-0150"),
    ContactOffice(role="Delivery", office="BROOKLYN NY", phone="+1 718-555-0143"),
)


def _journey_to(stages: list[Stage]) -> tuple[TrackingEvent, ...]:
    return tuple(
        TrackingEvent(
            when=EventTime(date=dt.date(2026, 11, 20 + i), time=dt.time(9, 0)),
            status=s.value,
            stage=s,
            office="BROOKLYN NY",
            region="UNITED STATES",
        )
        for i, s in enumerate(stages)
    )


def _page_html(stages: list[Stage], locale: str, number: str = "EJ123456785JP") -> str:
    view = dataclasses.replace(
        shipment(stages[-1], number), destination="US" if number[0].isalpha() else "JP"
    )
    page = tracking_page(
        view, _journey_to(stages), TOKYO_AND_BROOKLYN, MAIL, recipient=ADDRESS, locale=locale
    )
    return RENDERER.render_page("tracking.html.j2", {**page.values(), "static_url": "x.css"})


ARRIVED = [Stage.ACCEPTED, Stage.DEPARTED_ORIGIN, Stage.INWARD_EXCHANGE, Stage.AT_DELIVERY_OFFICE]


@pytest.mark.parametrize(
    ("locale", "advice", "joined"),
    [
        ("en", "please ask your local post office", "BROOKLYN NY, <a"),
        ("ja", "お近くの郵便局へお問い合わせください", "BROOKLYN NY、<a"),
    ],
)
def test_once_arrived_abroad_the_page_names_the_local_post_office_not_japans(
    locale: str, advice: str, joined: str
) -> None:
    html = _page_html(ARRIVED, locale)
    assert "SHIBUYA" not in html
    assert "03-0000-0150" not in html
    assert "tel:03" not in html
    assert advice in html
    assert joined in html  # Japanese pages join with 、 not ", "
    assert 'href="tel:+17185550143"' in html


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_before_arrival_japanese_numbers_are_given_in_international_form(locale: str) -> None:
    html = _page_html([Stage.ACCEPTED, Stage.DEPARTED_ORIGIN], locale)
    assert "+81 3-0000-0150" in html
    assert 'href="tel:+81300000150"' in html
    assert "tel:03" not in html
    assert "local post office" not in html
    assert "お近くの郵便局" not in html


def test_a_customer_in_japan_gets_the_offices_as_japan_post_prints_them() -> None:
    html = _page_html([Stage.ACCEPTED, Stage.AT_DELIVERY_OFFICE], "ja", number="123456789012")
    assert "03-0000-0150" in html
    assert 'href="tel:0300000150"' in html
    assert "渋谷" in html or "SHIBUYA" in html


@pytest.mark.parametrize(
    ("phone", "abroad"),
    [
        ("03-0000-0150", "+81 3-0000-0150"),
        ("090-1234-5678", "+81 90-1234-5678"),
        ("+1 718-555-0143", "+1 718-555-0143"),
        ("0570-001-736", ""),  # navi-dial: not callable from abroad
        ("0120-23-2886", ""),  # free-dial: neither
        ("718-555-0143", ""),  # another country's national form: its code is not known
        ("", ""),
    ],
)
def test_phone_numbers_for_customers_abroad(phone: str, abroad: str) -> None:
    assert international_phone(phone) == abroad


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_emails_abroad_give_no_tokyo_number_either(locale: str) -> None:
    stages = [*ARRIVED, Stage.RETENTION]
    events = _journey_to(stages)
    notification = Notification(
        dedup_key="k",
        template=Template.RETENTION,
        rule="retention",
        stage=Stage.RETENTION,
        recipient=Recipient(subscription_id=1, email=ADDRESS, locale=locale),
        event=events[-1],
    )
    context = context_for(notification, facts(shipment(Stage.RETENTION)), events, TOKYO_AND_BROOKLYN, MAIL)
    assert [c.office for c in context.contacts] == ["BROOKLYN NY"]
    message = Renderer().render(context)
    assert "03-0000-0150" not in message.text + message.html
    assert "+1 718-555-0143" in message.text


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_the_pages_email_link_is_the_bare_address_and_reads_the_display_name(locale: str) -> None:
    mail = dataclasses.replace(MAIL, reply_to="Sakura Ceramics Support <support@sakura.example>")
    stage = Stage.DELIVERED
    page = tracking_page(shipment(stage), history(stage), CONTACTS, mail, recipient=ADDRESS, locale=locale)
    html = RENDERER.render_page("tracking.html.j2", {**page.values(), "static_url": "x.css"})
    hrefs = re.findall(r'href="(mailto:[^"]*)"', html)
    assert hrefs
    assert set(hrefs) == {"mailto:support@sakura.example"}, hrefs
    assert '<a href="mailto:support@sakura.example">Sakura Ceramics Support</a>' in html
    assert "&lt;support@" not in html
