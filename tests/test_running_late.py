"""Running late by route: a stall judged against the lane's p90, the fixed day counts as fallback, one message."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from notifier.core.compose import MailSettings, context_for
from notifier.core.eta import Lateness
from notifier.core.messages import Template
from notifier.core.model import TOKYO, EventTime, TrackingEvent
from notifier.core.render import Renderer
from notifier.core.rules import (
    RUNNING_LATE_ALERT,
    Recipient,
    RulesConfig,
    ShipmentFacts,
    notifications_for_time,
    running_late_alert,
    stall_alert,
    stall_days,
    within_days,
)
from notifier.core.stages import Stage
from notifier.testing.samples import sample_context

NUMBER = "EJ202603021JP"
DAY = dt.timedelta(days=1)
ENTERED = dt.datetime(2026, 3, 4, 9, 0, tzinfo=dt.UTC)
ALICE = Recipient(subscription_id=1, email="alice@example.com", locale="en")
HANAKO = Recipient(subscription_id=2, email="hanako@example.jp", locale="ja", time_zone=TOKYO)
CUSTOMS = TrackingEvent(
    when=EventTime(date=dt.date(2026, 3, 4), time=dt.time(18, 0)),
    status="Item presented to import Customs",
    stage=Stage.CUSTOMS_PRESENTED,
    office="NEW YORK NY ISC",
)


def facts(stage: Stage = Stage.CUSTOMS_PRESENTED) -> ShipmentFacts:
    return ShipmentFacts(
        id=7,
        number=NUMBER,
        label="Order 1001",
        item_type="EMS",
        destination="US",
        stage=stage,
        last_changed_at=ENTERED,
    )


def late(quiet_days: float, p90_days: float | None = 2.6, stage: Stage = Stage.CUSTOMS_PRESENTED) -> Lateness:
    return Lateness(
        stage=stage,
        quiet=quiet_days * DAY,
        lane_p90=None if p90_days is None else p90_days * DAY,
        quicker_out_of_ten=None if p90_days is None else 9,
    )


def test_where_the_lane_can_judge_it_decides_even_past_the_fixed_day_count() -> None:
    # A slow route: 9 in 10 of its parcels took up to 12 days in customs; the fixed rule says 7.
    slow = late(8, p90_days=12)
    assert not slow.late
    assert (
        notifications_for_time(facts(), CUSTOMS, [ALICE], RulesConfig(), ENTERED + 8 * DAY, lateness=slow)
        == []
    )
    (message,) = notifications_for_time(
        facts(), CUSTOMS, [ALICE], RulesConfig(), ENTERED + 13 * DAY, lateness=late(13, p90_days=12)
    )
    assert message.stalled_days == 13


def test_quieter_than_the_lane_p90_is_a_stall_before_the_fixed_day_count() -> None:
    now = ENTERED + 3 * DAY  # the fixed rule for customs waits 7 days
    assert notifications_for_time(facts(), CUSTOMS, [ALICE], RulesConfig(), now) == []
    (message,) = notifications_for_time(facts(), CUSTOMS, [ALICE], RulesConfig(), now, lateness=late(3))
    assert message.template is Template.STALLED
    assert message.rule == "stalled:customs_presented"
    assert message.lateness == late(3)
    assert message.stalled_days == 3
    # Customs silence is "normal" by the fixed rule; quieter than 9 in 10 of the lane is not.
    assert message.stall_is_normal is False


def test_without_lane_history_the_fixed_day_count_decides() -> None:
    for judged in (None, late(3, p90_days=None)):
        assert (
            notifications_for_time(
                facts(), CUSTOMS, [ALICE], RulesConfig(), ENTERED + 3 * DAY, lateness=judged
            )
            == []
        )
        (fixed,) = notifications_for_time(
            facts(), CUSTOMS, [ALICE], RulesConfig(), ENTERED + 7 * DAY, lateness=judged
        )
        assert fixed.lateness is None
        assert fixed.stall_is_normal is True
        assert running_late_alert(facts(), [fixed]) is None


def test_late_by_lane_and_by_the_fixed_rule_is_one_message() -> None:
    early = notifications_for_time(
        facts(), CUSTOMS, [ALICE, HANAKO], RulesConfig(), ENTERED + 3 * DAY, lateness=late(3)
    )
    later = notifications_for_time(
        facts(), CUSTOMS, [ALICE, HANAKO], RulesConfig(), ENTERED + 8 * DAY, lateness=late(8)
    )
    fixed = notifications_for_time(facts(), CUSTOMS, [ALICE, HANAKO], RulesConfig(), ENTERED + 8 * DAY)
    # One key per subscriber and stage entry, whichever judgement came first: the outbox keeps one.
    assert [n.dedup_key for n in early] == [n.dedup_key for n in later] == [n.dedup_key for n in fixed]
    assert len({n.dedup_key for n in early}) == 2


def test_a_judgement_about_another_stage_or_a_switched_off_stall_sends_nothing() -> None:
    stale = late(3, stage=Stage.INWARD_EXCHANGE)
    assert (
        notifications_for_time(facts(), CUSTOMS, [ALICE], RulesConfig(), ENTERED + 3 * DAY, lateness=stale)
        == []
    )
    config = RulesConfig(stalls={})
    assert (
        notifications_for_time(facts(), CUSTOMS, [ALICE], config, ENTERED + 3 * DAY, lateness=late(3)) == []
    )


def test_the_operator_alert_names_the_figures() -> None:
    messages = notifications_for_time(
        facts(), CUSTOMS, [ALICE, HANAKO], RulesConfig(), ENTERED + 3 * DAY, lateness=late(3.4, 2.6)
    )
    alert = running_late_alert(facts(), messages)
    assert alert is not None
    assert (alert.kind, alert.subject) == (RUNNING_LATE_ALERT, NUMBER)
    assert alert.message == (
        f"{NUMBER} (Order 1001) is running late for its route: no new scan for 3.4 days in "
        "customs_presented, where 9 in 10 parcels on lane ems:US moved on within 2.6 days; 9 in 10 "
        "of them moved on sooner than this parcel has waited. 2 customer(s) were told. "
        "This alert closes when the parcel moves."
    )
    # Abroad the shop promised no inquiry: no stalled_in_japan alert.
    assert stall_alert(facts(), messages) is None


def test_in_japan_both_alerts_are_owed() -> None:
    accepted = dataclasses.replace(CUSTOMS, stage=Stage.ACCEPTED, status="Posting/Collection")
    messages = notifications_for_time(
        facts(Stage.ACCEPTED),
        accepted,
        [ALICE],
        RulesConfig(),
        ENTERED + 2 * DAY,
        lateness=late(2, 1.2, Stage.ACCEPTED),
    )
    alerts = [
        stall_alert(facts(Stage.ACCEPTED), messages),
        running_late_alert(facts(Stage.ACCEPTED), messages),
    ]
    assert [a.kind for a in alerts if a is not None] == ["stalled_in_japan", RUNNING_LATE_ALERT]


@pytest.mark.parametrize(
    ("p90_days", "within"), [(0.2, 1), (1.0, 1), (2.6, 3), (3.0, 3), (3.01, 4), (12.5, 13)]
)
def test_the_customer_is_told_whole_days_rounded_up_so_the_sentence_stays_true(
    p90_days: float, within: int
) -> None:
    assert within_days(p90_days * DAY) == within


@pytest.mark.parametrize(
    ("locale", "sentence"),
    [
        ("en", "9 out of 10 parcels on this route moved on from this step within 3 days."),
        ("ja", "同じ経路のお荷物は、10件中9件がこの段階から3日以内に次へ進んでおります。"),
    ],
)
def test_the_stall_email_says_how_unusual_it_is_with_the_lanes_figure(locale: str, sentence: str) -> None:
    recipient = ALICE if locale == "en" else HANAKO
    (message,) = notifications_for_time(
        facts(), CUSTOMS, [recipient], RulesConfig(), ENTERED + 3 * DAY, lateness=late(3)
    )
    context = context_for(
        message, facts(), [CUSTOMS], [], MailSettings(sender="shop@example.com", shop_name="Sakura")
    )
    assert context.late_within_days == 3
    rendered = Renderer().render(context)
    assert sentence in rendered.text
    assert sentence in rendered.html
    # Customs silence is no longer called "not unusual".
    assert "not unusual" not in rendered.text
    assert "珍しいことではありません" not in rendered.text


@pytest.mark.parametrize("locale", ["en", "ja"])
@pytest.mark.parametrize("stage", ["accepted", "departed_origin", "customs_presented", "inland_transit"])
def test_every_stall_kind_carries_the_sentence_only_when_judged_by_the_lane(locale: str, stage: str) -> None:
    marker = {"en": "9 out of 10 parcels on this route", "ja": "10件中9件"}[locale]
    base = dataclasses.replace(sample_context(Template.STALLED, locale), stage=stage, stall_is_normal=True)
    fixed = Renderer().render(base)
    judged = Renderer().render(dataclasses.replace(base, stall_is_normal=False, late_within_days=5))
    assert marker not in fixed.text
    assert marker in judged.text
    assert "5" in judged.text.split(marker)[1][:40]
    if stage == "departed_origin":
        # "Quiet tracking is normal at this stage" would contradict the figure.
        assert "normal at this stage" not in judged.text
        assert "よくあることです" not in judged.text


def test_the_digest_lists_stalls_by_the_same_verdict() -> None:
    now = ENTERED + 3 * DAY
    assert stall_days(facts(), RulesConfig(), now) is None  # the fixed rule: 7 days
    assert stall_days(facts(), RulesConfig(), now, late(3.4)) == 3
    assert stall_days(facts(), RulesConfig(), ENTERED + 8 * DAY, late(8, p90_days=12)) is None
    assert stall_days(facts(), RulesConfig(), ENTERED + 8 * DAY, late(8, p90_days=None)) == 8
