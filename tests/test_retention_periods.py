"""Holding periods abroad from the sourced country table: the retention email's period and date, and the reminder."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from notifier.core.compose import MailSettings, context_for
from notifier.core.messages import Template
from notifier.core.model import EventTime, TrackingEvent
from notifier.core.render import DOMESTIC_HOLD_DAYS, Renderer
from notifier.core.retention import DOMESTIC, holding_period, holding_table, parse_table
from notifier.core.rules import (
    Notification,
    Recipient,
    RulesConfig,
    ShipmentFacts,
    dedup_key,
    holding_of,
    notifications_for_time,
    retention_deadline,
)
from notifier.core.stages import Stage

ALICE = Recipient(subscription_id=1, email="alice@example.com", locale="en")
HANAKO = Recipient(subscription_id=2, email="hanako@example.jp", locale="ja")
HELD = TrackingEvent(
    when=EventTime(date=dt.date(2026, 3, 10)), status="Retention", stage=Stage.RETENTION, office="BANJUL"
)
MAIL = MailSettings(sender="shop@example.com", shop_name="Sakura")


def held(number: str, destination: str | None, item_type: str | None = None) -> ShipmentFacts:
    return ShipmentFacts(
        id=7,
        number=number,
        item_type=item_type,
        destination=destination,
        stage=Stage.RETENTION,
        last_changed_at=dt.datetime(2026, 3, 10, tzinfo=dt.UTC),
    )


def on(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(1), tzinfo=dt.UTC)


def test_the_table_holds_only_sourced_rows() -> None:
    table = holding_table()
    assert sorted(table) == [("GM", "parcel"), ("GM", "registered"), ("US", "all"), ("US", "ems")]
    for row in table.values():
        assert row.source.startswith("https://")
        assert row.retrieved == "2026-12"
    assert {row.quality for key, row in table.items() if key[0] == "GM"} == {"official"}
    assert {row.quality for key, row in table.items() if key[0] == "US"} == {"archived"}
    assert (table[("GM", "registered")].amount, table[("GM", "registered")].unit) == (90, "days")
    assert (table[("GM", "parcel")].amount, table[("GM", "parcel")].unit) == (2, "months")
    assert (table[("US", "all")].amount, table[("US", "ems")].amount) == (30, 5)


def test_the_domestic_period_is_the_one_the_templates_state() -> None:
    assert DOMESTIC.amount == DOMESTIC_HOLD_DAYS


def test_a_bad_row_is_refused_naming_the_line() -> None:
    text = "# comment\ncountry,class,amount,unit,name_en,name_ja,source,retrieved,quality,note\n"
    good = "GM,parcel,2,months,the Gambia,ガンビア,https://post.japanpost.jp/x,2026-12,official,\n"
    assert parse_table(text + good)
    with pytest.raises(ValueError, match=r"t.csv line 4: amount must be a whole number"):
        parse_table(
            text + good + "GM,ems,soon,days,the Gambia,ガンビア,https://x,2026-12,official,\n", "t.csv"
        )
    with pytest.raises(ValueError, match=r"line 3: class 'box' is not one of"):
        parse_table(text + good.replace("parcel", "box"))
    with pytest.raises(ValueError, match=r"line 4: GM parcel is listed twice"):
        parse_table(text + good + good)
    with pytest.raises(ValueError, match=r"source must be an https URL"):
        parse_table(text + good.replace("https://post.japanpost.jp/x", "a blog"))


@pytest.mark.parametrize(
    ("number", "item_type", "destination", "expected"),
    [
        ("CP314159268JP", "Parcel", "GM", ("GM", "parcel", 2, "months")),
        ("CP314159268JP", "Air Parcel", "GM", ("GM", "parcel", 2, "months")),
        ("CP314159268JP", "SAL Parcel", "GM", ("GM", "parcel", 2, "months")),
        ("RR123456785JP", None, "GM", ("GM", "registered", 90, "days")),
        ("EJ202603021JP", "EMS", "US", ("US", "ems", 5, "days")),
        ("CP314159268JP", "Parcel", "US", ("US", "all", 30, "days")),
        ("LX123456785JP", None, "US", ("US", "all", 30, "days")),
        ("EJ202603021JP", "EMS", "GM", None),  # no EMS row for the Gambia, and no "all" row
        ("CP314159268JP", "Parcel", "DE", None),  # not in the table
        ("CP314159268JP", "Parcel", None, None),
        ("314159265350", None, None, ("JP", "domestic", 7, "days")),
    ],
)
def test_which_period_applies(
    number: str, item_type: str | None, destination: str | None, expected: tuple[str, str, int, str] | None
) -> None:
    found = holding_period(number=number, item_type=item_type, destination=destination)
    assert (
        None if found is None else (found.country, found.item_class, found.amount, found.unit)
    ) == expected


def test_months_count_in_calendar_months() -> None:
    parcels = holding_table()[("GM", "parcel")]
    assert parcels.until(dt.date(2026, 3, 10)) == dt.date(2026, 5, 10)
    assert parcels.until(dt.date(2026, 12, 31)) == dt.date(2027, 2, 28)


def test_a_country_in_the_table_gets_a_reminder_before_its_deadline() -> None:
    shipment = held("CP314159268JP", "US", "Parcel")  # 30 days
    assert notifications_for_time(shipment, HELD, [ALICE], RulesConfig(), on(dt.date(2026, 4, 6))) == []
    (reminder,) = notifications_for_time(shipment, HELD, [ALICE], RulesConfig(), on(dt.date(2026, 4, 7)))
    assert reminder.template is Template.RETENTION_REMINDER
    assert reminder.retention_deadline == dt.date(2026, 4, 9)
    assert reminder.holding == holding_table()[("US", "all")]
    assert notifications_for_time(shipment, HELD, [ALICE], RulesConfig(), on(dt.date(2026, 4, 10))) == []


def test_a_country_not_in_the_table_gets_no_reminder_unless_the_shop_sets_its_own_hold() -> None:
    shipment = held("CP314159268JP", "DE", "Parcel")
    for day in range(10, 60):
        now = on(dt.date(2026, 3, 1) + dt.timedelta(days=day))
        assert notifications_for_time(shipment, HELD, [ALICE], RulesConfig(), now) == []
    own = RulesConfig(retention_hold=dt.timedelta(days=14))
    (reminder,) = notifications_for_time(shipment, HELD, [ALICE], own, on(dt.date(2026, 3, 22)))
    # The shop's figure times the reminder; the message states no period (holding is None).
    assert (reminder.retention_deadline, reminder.holding) == (dt.date(2026, 3, 24), None)


def test_a_domestic_parcel_keeps_its_reminder_on_japan_posts_7_days() -> None:
    shipment = held("314159265350", None)
    (reminder,) = notifications_for_time(shipment, HELD, [ALICE], RulesConfig(), on(dt.date(2026, 3, 15)))
    assert reminder.retention_deadline == dt.date(2026, 3, 17)


def render(shipment: ShipmentFacts, recipient: Recipient, template: Template, now: dt.datetime) -> str:
    if template is Template.RETENTION_REMINDER:
        (notification,) = notifications_for_time(shipment, HELD, [recipient], RulesConfig(), now)
    else:
        holding = holding_of(shipment)
        notification = Notification(
            dedup_key=dedup_key(recipient, shipment, "retention", HELD.key),
            template=Template.RETENTION,
            rule="retention",
            stage=Stage.RETENTION,
            recipient=recipient,
            event=HELD,
            retention_deadline=retention_deadline(HELD, holding),
            holding=holding,
        )
    message = Renderer().render(context_for(notification, shipment, [HELD], [], MAIL))
    return message.text + message.html


@pytest.mark.parametrize(
    ("locale", "template", "when", "wording"),
    [
        (
            "en",
            Template.RETENTION,
            on(dt.date(2026, 3, 10)),
            "Post offices in the Gambia usually keep parcels for 2 months: counted from the day your "
            "parcel was held, that is until about Sunday 10 May 2026.",
        ),
        (
            "ja",
            Template.RETENTION,
            on(dt.date(2026, 3, 10)),
            "ガンビアの郵便局での小包の保管期間は、通常2か月です。お荷物が保管された日から数えますと、"
            "2026年5月10日（日）頃までとなります。",
        ),
        (
            "en",
            Template.RETENTION_REMINDER,
            on(dt.date(2026, 5, 8)),
            "Post offices in the Gambia usually keep parcels for 2 months: counted from the day your "
            "parcel was held, that is until about Sunday 10 May 2026.",
        ),
        (
            "ja",
            Template.RETENTION_REMINDER,
            on(dt.date(2026, 5, 9)),
            "ガンビアの郵便局での小包の保管期間は、通常2か月です。",
        ),
    ],
)
def test_the_email_states_the_period_and_the_date(
    locale: str, template: Template, when: dt.datetime, wording: str
) -> None:
    recipient = ALICE if locale == "en" else HANAKO
    text = render(held("CP314159268JP", "GM", "Parcel"), recipient, template, when)
    assert wording in text


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_a_country_not_in_the_table_keeps_todays_wording(locale: str) -> None:
    recipient = ALICE if locale == "en" else HANAKO
    text = render(
        held("CP314159268JP", "DE", "Parcel"), recipient, Template.RETENTION, on(dt.date(2026, 3, 10))
    )
    today = {
        "en": "How long the post office keeps the parcel depends on your country: please check the notice card",
        "ja": "郵便局での保管期間は国によって異なりますので、不在連絡票でご確認ください。",
    }[locale]
    assert today in text
    assert "2026" not in text.split("Latest tracking update")[0].split("最新の配送状況")[0]


def test_the_sample_previews_follow_the_table() -> None:
    from notifier.testing.samples import sample_context

    context = sample_context(Template.RETENTION, "en")
    assert (context.hold_amount, context.hold_class, context.hold_country) == (5, "ems", "the United States")
    assert dataclasses.replace(context, hold_amount=None).hold_amount is None
