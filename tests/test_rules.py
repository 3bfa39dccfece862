"""The rules engine: which messages a change or the passing of time calls for, and for whom."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from notifier.core.diff import diff_detail
from notifier.core.messages import Template
from notifier.core.model import TOKYO, EventTime, ItemResult, Layout, Locale, Outcome, Page, TrackingEvent
from notifier.core.parser import parse_page
from notifier.core.render import Renderer
from notifier.core.rules import (
    DEFAULT_STALLS,
    SHOP_FOLLOWS_UP,
    Baseline,
    MultiStage,
    Recipient,
    Rule,
    RulesConfig,
    ShipmentFacts,
    merge_rules,
    notifications_for_change,
    notifications_for_time,
    old_news,
    quiet_until,
    stall_alert,
)
from notifier.core.stages import Stage
from notifier.testing.samples import sample_context

NUMBER = "EJ202603021JP"
NOW = dt.datetime(2026, 3, 10, 3, 0, tzinfo=dt.UTC)
ALICE = Recipient(subscription_id=1, email="alice@example.com", locale="en")
BOB = Recipient(subscription_id=2, email="bob@example.jp", locale="ja", time_zone=TOKYO)
SHIP = ShipmentFacts(
    id=7, number=NUMBER, label="Order 1001", item_type="EMS", destination="US", tags=frozenset({"vip"})
)


def ev(day: int, stage: Stage, hour: int = 10) -> TrackingEvent:
    return TrackingEvent(
        when=EventTime(date=dt.date(2026, 3, day), time=dt.time(hour, 0), zone=TOKYO),
        status=f"status of {stage}",
        stage=stage,
        office="OFFICE",
    )


def page(*events: TrackingEvent) -> Page:
    return Page(
        layout=Layout.DETAIL,
        locale=Locale.EN,
        items=(ItemResult(number=NUMBER, outcome=Outcome.FOUND, events=events),),
    )


HISTORY = [
    ev(2, Stage.ACCEPTED),
    ev(3, Stage.OUTWARD_EXCHANGE),
    ev(4, Stage.DEPARTED_ORIGIN),
    ev(6, Stage.INWARD_EXCHANGE),
    ev(7, Stage.CUSTOMS_PRESENTED),
    ev(8, Stage.CUSTOMS_CLEARED),
    ev(9, Stage.OUT_FOR_DELIVERY),
    ev(9, Stage.DELIVERED, hour=15),
]


def run(stored: int, shown: int, config: RulesConfig | None = None, recipients=(ALICE,), now=NOW):
    change = diff_detail(HISTORY[:stored], page(*HISTORY[:shown]), NUMBER)
    return notifications_for_change(change, SHIP, list(recipients), config or RulesConfig(), now)


def test_one_message_per_subscriber_for_a_stage_that_matters() -> None:
    sent = run(2, 3, recipients=(ALICE, BOB))
    assert [(n.template, n.recipient.email) for n in sent] == [
        (Template.DEPARTED_ORIGIN, "alice@example.com"),
        (Template.DEPARTED_ORIGIN, "bob@example.jp"),
    ]
    assert sent[0].event == HISTORY[2]
    assert sent[0].dedup_key == f"1:7:departed_origin:{HISTORY[2].key}"
    assert sent[0].dedup_key != sent[1].dedup_key


def test_stages_that_do_not_matter_send_nothing() -> None:
    assert run(1, 2) == []  # outward exchange: no default rule


def test_first_sight_sends_at_most_the_current_stage() -> None:
    sent = run(0, 5)
    assert [n.template for n in sent] == [Template.CUSTOMS_PRESENTED]
    assert sent[0].passed == ()  # a baseline is not a list of everything that happened
    assert run(0, 5, RulesConfig(baseline=Baseline.NONE)) == []
    every = run(0, 5, RulesConfig(baseline=Baseline.ALL, multi_stage=MultiStage.EACH))
    assert [n.template for n in every] == [
        Template.DEPARTED_ORIGIN,
        Template.INWARD_EXCHANGE,
        Template.CUSTOMS_PRESENTED,
    ]


def test_first_sight_of_a_stage_without_a_rule_sends_nothing() -> None:
    # Current stage is outward_exchange (no rule): the older accepted stage is not announced.
    assert (
        run(
            0,
            2,
            RulesConfig(
                rules=merge_rules(
                    RulesConfig().rules,
                    [Rule(name="accepted", template=Template.ACCEPTED, stages=frozenset({Stage.ACCEPTED}))],
                )
            ),
        )
        == []
    )


def test_several_stages_between_polls_latest_or_each() -> None:
    latest = run(3, 7)
    assert [n.template for n in latest] == [Template.OUT_FOR_DELIVERY]
    assert [e.stage for e in latest[0].passed] == [
        Stage.INWARD_EXCHANGE,
        Stage.CUSTOMS_PRESENTED,
        Stage.CUSTOMS_CLEARED,
    ]
    each = run(3, 7, RulesConfig(multi_stage=MultiStage.EACH))
    assert [n.template for n in each] == [
        Template.INWARD_EXCHANGE,
        Template.CUSTOMS_PRESENTED,
        Template.CUSTOMS_CLEARED,
        Template.OUT_FOR_DELIVERY,
    ]
    assert len({n.dedup_key for n in each}) == 4


def test_old_events_are_not_announced() -> None:
    late = NOW + dt.timedelta(days=30)
    assert run(2, 3, now=late) == []
    assert run(2, 3, RulesConfig(max_event_age=dt.timedelta(days=60)), now=late) != []


def test_old_news_counts_what_max_event_age_keeps_from_being_announced() -> None:
    late = NOW + dt.timedelta(days=30)
    change = diff_detail(HISTORY[:2], page(*HISTORY[:5]), NUMBER)  # departed, arrived, customs
    assert old_news(change, SHIP, RulesConfig(), late) == 3
    assert old_news(change, SHIP, RulesConfig(), NOW) == 0
    assert old_news(change, SHIP, RulesConfig(max_event_age=dt.timedelta(days=60)), late) == 0
    # A stage no rule announces is not news either way.
    quiet = diff_detail(HISTORY[:1], page(*HISTORY[:2]), NUMBER)  # outward exchange: no rule
    assert old_news(quiet, SHIP, RulesConfig(), late) == 0


def test_backwards_changes_send_nothing() -> None:
    change = diff_detail(HISTORY[:7], page(*HISTORY[:7], ev(9, Stage.IN_TRANSIT, hour=18)), NUMBER)
    assert notifications_for_change(change, SHIP, [ALICE], RulesConfig(), NOW) == []


def test_unknown_wording_never_reaches_customers() -> None:
    odd = TrackingEvent(
        when=EventTime(date=dt.date(2026, 3, 5), time=dt.time(9), zone=TOKYO),
        status="???",
        stage=Stage.UNKNOWN,
    )
    change = diff_detail(HISTORY[:3], page(*HISTORY[:3], odd), NUMBER)
    assert change.new_events == (odd,)
    assert notifications_for_change(change, SHIP, [ALICE], RulesConfig(), NOW) == []


def test_the_same_change_twice_gives_the_same_keys() -> None:
    assert [n.dedup_key for n in run(2, 4)] == [n.dedup_key for n in run(2, 4)]


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        (Rule(name="x", template=Template.DELIVERED, stages=frozenset({Stage.DELIVERED})), True),
        (
            Rule(name="x", template=Template.DELIVERED, stages=frozenset({Stage.DELIVERED}), enabled=False),
            False,
        ),
        (
            Rule(
                name="x",
                template=Template.DELIVERED,
                stages=frozenset({Stage.DELIVERED}),
                item_types=frozenset({"ems"}),
            ),
            True,
        ),
        (
            Rule(
                name="x",
                template=Template.DELIVERED,
                stages=frozenset({Stage.DELIVERED}),
                item_types=frozenset({"parcel"}),
            ),
            False,
        ),
        (
            Rule(
                name="x",
                template=Template.DELIVERED,
                stages=frozenset({Stage.DELIVERED}),
                destinations=frozenset({"US"}),
            ),
            True,
        ),
        (
            Rule(
                name="x",
                template=Template.DELIVERED,
                stages=frozenset({Stage.DELIVERED}),
                destinations=frozenset({"DE"}),
            ),
            False,
        ),
        (
            Rule(
                name="x",
                template=Template.DELIVERED,
                stages=frozenset({Stage.DELIVERED}),
                tags=frozenset({"vip", "b2b"}),
            ),
            True,
        ),
        (
            Rule(
                name="x",
                template=Template.DELIVERED,
                stages=frozenset({Stage.DELIVERED}),
                tags=frozenset({"b2b"}),
            ),
            False,
        ),
    ],
)
def test_rule_filters(rule: Rule, matches: bool) -> None:
    assert rule.matches(Stage.DELIVERED, SHIP) is matches


def test_operator_rules_override_defaults_by_name() -> None:
    rules = merge_rules(
        RulesConfig().rules,
        [
            Rule(
                name="delivered",
                template=Template.DELIVERED,
                stages=frozenset({Stage.DELIVERED}),
                enabled=False,
            )
        ],
    )
    assert run(7, 8, RulesConfig(rules=rules)) == []
    assert [n.template for n in run(7, 8)] == [Template.DELIVERED]


def test_stall_messages_once_per_stage_entry_with_the_right_tone() -> None:
    departed = ShipmentFacts(id=7, number=NUMBER, stage=Stage.DEPARTED_ORIGIN, last_changed_at=NOW)
    assert (
        notifications_for_time(departed, HISTORY[2], [ALICE], RulesConfig(), NOW + dt.timedelta(days=9)) == []
    )
    (stall,) = notifications_for_time(
        departed, HISTORY[2], [ALICE], RulesConfig(), NOW + dt.timedelta(days=10)
    )
    assert stall.template is Template.STALLED
    assert stall.stall_is_normal is True
    assert stall.stalled_days == 10
    later = notifications_for_time(departed, HISTORY[2], [ALICE], RulesConfig(), NOW + dt.timedelta(days=20))
    assert [n.dedup_key for n in later] == [stall.dedup_key]  # the same key: the outbox keeps one
    out = ShipmentFacts(id=7, number=NUMBER, stage=Stage.OUT_FOR_DELIVERY, last_changed_at=NOW)
    (worry,) = notifications_for_time(out, HISTORY[6], [ALICE], RulesConfig(), NOW + dt.timedelta(days=2))
    assert worry.stall_is_normal is False
    delivered = ShipmentFacts(id=7, number=NUMBER, stage=Stage.DELIVERED, last_changed_at=NOW)
    assert (
        notifications_for_time(delivered, HISTORY[7], [ALICE], RulesConfig(), NOW + dt.timedelta(days=90))
        == []
    )


def test_retention_reminder_before_the_holding_period_ends() -> None:
    held = TrackingEvent(when=EventTime(date=dt.date(2026, 3, 10)), status="Retention", stage=Stage.RETENTION)
    facts = ShipmentFacts(id=7, number=NUMBER, stage=Stage.RETENTION, last_changed_at=NOW)
    config = RulesConfig(retention_hold=dt.timedelta(days=7), retention_remind_before=dt.timedelta(days=2))

    def on(day: int) -> dt.datetime:
        return dt.datetime(2026, 3, day, 1, tzinfo=dt.UTC)

    assert notifications_for_time(facts, held, [ALICE], config, on(14)) == []
    (reminder,) = notifications_for_time(facts, held, [ALICE], config, on(15))
    assert reminder.template is Template.RETENTION_REMINDER
    assert reminder.retention_deadline == dt.date(2026, 3, 17)
    assert notifications_for_time(facts, held, [ALICE], config, on(18)) == []  # too late to help


def test_retention_message_carries_the_deadline() -> None:
    history = [
        *HISTORY[:6],
        TrackingEvent(when=EventTime(date=dt.date(2026, 3, 9)), status="Retention", stage=Stage.RETENTION),
    ]
    (held,) = notifications_for_change(
        diff_detail(history[:6], page(*history), NUMBER), SHIP, [ALICE], RulesConfig(), NOW
    )
    assert held.template is Template.RETENTION
    # An EMS to the United States: USPS keeps inbound EMS 5 days (the country table).
    assert held.retention_deadline == dt.date(2026, 3, 14)
    assert held.holding is not None
    assert (held.holding.country, held.holding.item_class, held.holding.amount) == ("US", "ems", 5)
    # A country the table lacks: no period, no deadline.
    (elsewhere,) = notifications_for_change(
        diff_detail(history[:6], page(*history), NUMBER),
        dataclasses.replace(SHIP, destination="DE"),
        [ALICE],
        RulesConfig(),
        NOW,
    )
    assert (elsewhere.holding, elsewhere.retention_deadline) == (None, None)


@pytest.mark.parametrize(
    ("utc", "zone", "expected"),
    [
        (
            dt.datetime(2026, 3, 10, 13, 0, tzinfo=dt.UTC),
            TOKYO,
            dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC),
        ),  # 22:00 JST
        (dt.datetime(2026, 3, 10, 3, 0, tzinfo=dt.UTC), TOKYO, None),  # 12:00 JST
        (
            dt.datetime(2026, 3, 10, 20, 0, tzinfo=dt.UTC),
            TOKYO,
            dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC),
        ),  # 05:00 JST
        (
            dt.datetime(2026, 3, 10, 3, 0, tzinfo=dt.UTC),
            "America/New_York",
            dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC),
        ),
    ],
)
def test_quiet_hours_defer_to_the_end_of_the_window(
    utc: dt.datetime, zone: str, expected: dt.datetime | None
) -> None:
    assert quiet_until(utc, zone, (dt.time(21), dt.time(8))) == expected
    assert quiet_until(utc, zone, None) is None


def test_genuine_capture_first_sight_announces_only_the_current_stage() -> None:
    capture = parse_page(
        (Path(__file__).parent / "data" / "pages" / "en_ems_detail_intransit_2014.html").read_bytes()
    )
    change = diff_detail((), capture, "EL015307999JP")
    shipment = ShipmentFacts(id=1, number="EL015307999JP")
    old = notifications_for_change(
        change, shipment, [ALICE], RulesConfig(), dt.datetime(2014, 11, 6, tzinfo=dt.UTC)
    )
    # Current stage inland_transit has no rule, and first sight never digs up older stages.
    assert old == []


def test_the_return_leg_only_speaks_of_the_return() -> None:
    back = [
        *HISTORY[:5],
        ev(12, Stage.RETURNING),
        ev(15, Stage.INWARD_EXCHANGE),
        ev(16, Stage.INLAND_TRANSIT),
        ev(17, Stage.RETURNED),
    ]
    later = dt.datetime(2026, 3, 18, tzinfo=dt.UTC)
    change = diff_detail(back[:5], page(*back), NUMBER)
    sent = notifications_for_change(change, SHIP, [ALICE], RulesConfig(multi_stage=MultiStage.EACH), later)
    assert [n.template for n in sent] == [Template.RETURNING, Template.RETURNED]
    # Polled step by step, the arrival back in Japan still says nothing to the customer.
    step = diff_detail(back[:6], page(*back[:7]), NUMBER)
    assert notifications_for_change(step, SHIP, [ALICE], RulesConfig(), later) == []


def test_return_seen_together_with_the_next_exchange_scan_still_notifies() -> None:
    back = [*HISTORY[:5], ev(12, Stage.RETURNING), ev(15, Stage.INWARD_EXCHANGE)]
    change = diff_detail(back[:5], page(*back), NUMBER)
    sent = notifications_for_change(
        change, SHIP, [ALICE], RulesConfig(), dt.datetime(2026, 3, 16, tzinfo=dt.UTC)
    )
    assert [n.template for n in sent] == [Template.RETURNING]


def test_quiet_hours_with_an_unknown_zone_fall_back_to_utc() -> None:
    late = dt.datetime(2026, 3, 10, 22, 0, tzinfo=dt.UTC)
    assert quiet_until(late, "Tokyo", (dt.time(21), dt.time(8))) == dt.datetime(
        2026, 3, 11, 8, 0, tzinfo=dt.UTC
    )


def test_a_stall_in_japan_alerts_the_operator_and_a_normal_silence_does_not() -> None:
    later = NOW + dt.timedelta(days=8)
    quiet_in = {
        stage: ShipmentFacts(id=7, number=NUMBER, label="Order 1001", stage=stage, last_changed_at=NOW)
        for stage in DEFAULT_STALLS
    }
    alerted = {
        stage
        for stage, facts in quiet_in.items()
        if stall_alert(facts, notifications_for_time(facts, HISTORY[0], [ALICE, BOB], RulesConfig(), later))
    }
    assert alerted == {Stage.ACCEPTED, Stage.IN_TRANSIT, Stage.OUTWARD_EXCHANGE}
    accepted = quiet_in[Stage.ACCEPTED]
    alert = stall_alert(
        accepted, notifications_for_time(accepted, HISTORY[0], [ALICE, BOB], RulesConfig(), later)
    )
    assert alert is not None
    assert (alert.kind, alert.subject) == ("stalled_in_japan", NUMBER)
    assert alert.message.startswith(
        f"{NUMBER} (Order 1001) has had no new scan for 8 days while still in Japan"
    )
    assert "(stage: accepted). 2 customer(s) were told" in alert.message
    # Not yet quiet long enough: no message, so no alert either.
    assert (
        stall_alert(accepted, notifications_for_time(accepted, HISTORY[0], [ALICE], RulesConfig(), NOW))
        is None
    )


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_the_stalls_that_alert_are_exactly_those_whose_email_promises_the_shop_asks(locale: str) -> None:
    promise = {
        "en": "only we can ask Japan Post about it, and we will",
        "ja": "当店から日本郵便に確認いたします",
    }
    renderer = Renderer()
    for stage in [*DEFAULT_STALLS, Stage.PENDING]:
        context = dataclasses.replace(
            sample_context(Template.STALLED, locale), stage=str(stage), stall_is_normal=False
        )
        text = renderer.render(context).html
        assert (promise[locale] in text) is (stage in SHOP_FOLLOWS_UP), (stage, locale)
