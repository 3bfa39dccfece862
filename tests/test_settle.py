"""The settle window: non-urgent news waits for the next scan and merges into one message.

A whole EMS journey (the simulator's default, EJ202603021JP) polled as the daemon polls it (its
stage intervals, no jitter) on a controlled clock, against the simulator over HTTP, a real
database and a real SMTP server on loopback; each scan appears shortly after its time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notifier.config import parse_settings
from notifier.core.compose import MailSettings, draft
from notifier.core.diff import diff_detail
from notifier.core.messages import Template
from notifier.core.model import TOKYO, EventTime, ItemResult, Layout, Locale, Outcome, Page, TrackingEvent
from notifier.core.numbers import parse_number
from notifier.core.policy import PollingPolicy
from notifier.core.render import Renderer
from notifier.core.rules import (
    URGENT_STAGES,
    MultiStage,
    Notification,
    Recipient,
    RulesConfig,
    ShipmentFacts,
    notifications_for_change,
    poll_again_by,
    send_after,
)
from notifier.core.sending import OutboxPolicy, expected_send
from notifier.core.stages import Stage
from notifier.core.views import ConfiguredWatch, OutboxDraft, OutboxState
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.net.mailer import SmtpTransport
from notifier.pipeline.cycle import CircuitBreaker, run_cycle
from notifier.pipeline.outbox import drain
from notifier.pipeline.poll import Notifier
from notifier.store import Store
from notifier.testing.previews import _scan_time
from notifier.testing.samples import sample_context
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests import test_outbox
from tests.smtp_server import SmtpServer
from tests.test_fresh import Recording

EMS = builtin_journeys()[0]
MAIL = MailSettings(sender="Sakura <shop@sakura.example>", shop_name="Sakura")
CUSTOMER = "emma@example.com"
STEP = dt.timedelta(minutes=10)
HOUR = dt.timedelta(hours=1)

store = test_outbox.store
smtp = test_outbox.smtp


@pytest.fixture
async def sqlite_store(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Store]:
    """For the journeys that only compare timings (40 s each): what they store is the same."""
    shutil.copyfile(sqlite_template, tmp_path / "journey.db")
    store = await Store.open(f"sqlite:///{tmp_path / 'journey.db'}")
    yield store
    await store.close()


Clock = test_outbox.Clock


async def journey(
    store: Store,
    smtp: SmtpServer,
    rules: RulesConfig,
    quiet: tuple[dt.time, dt.time] | None = None,
    polling: PollingPolicy | None = None,
) -> list[tuple[str, dt.datetime, str]]:
    """(stage, arrival time, the scans it lists as passed) of each email the customer got for the EMS."""
    reveal_at = [_scan_time(EMS, i) for i in range(len(EMS.scans))]
    start = reveal_at[0] - HOUR
    clock = Clock(start)
    simulator = Simulator([dataclasses.replace(EMS, revealed=0)])
    arrivals: dict[int, dt.datetime] = {}
    with SimulatorServer(simulator) as server:
        client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0, attempts=1))
        renderer = Recording()
        notifier = Notifier(rules=rules, mail=MAIL, renderer=renderer)
        watch = ConfiguredWatch(
            number=parse_number(EMS.number), subscribers=((CUSTOMER, "en", "America/New_York"),)
        )
        await store.sync_config_watches([watch], now=start)
        try:
            while clock.now < reveal_at[-1] + 2 * dt.timedelta(days=1):
                simulator.reveal(EMS.number, sum(1 for t in reveal_at if t <= clock.now))
                await run_cycle(
                    store,
                    client,
                    notifier,
                    owner="me",
                    policy=polling or PollingPolicy(jitter=0),
                    breaker=CircuitBreaker(threshold=1_000_000),
                    clock=clock,
                    rng=random.Random(7),
                )
                async with SmtpTransport(smtp.settings()) as transport:
                    await drain(
                        store, transport, owner="me", policy=OutboxPolicy(quiet_hours=quiet), clock=clock
                    )
                for n in range(len(arrivals), len(smtp.messages)):
                    arrivals[n] = clock.now
                clock.now += STEP
        finally:
            await client.aclose()
    # What each message lists under "Since our last message".
    told = {c.stage: tuple(e.status for e in c.passed) for c in renderer.contexts}
    out = []
    for n, raw in enumerate(smtp.messages):
        message = email.message_from_bytes(raw.data, policy=email.policy.default)
        assert message["To"] == CUSTOMER
        stage = str(message["X-Notifier-Stage"])
        out.append((stage, arrivals[n], ",".join(told[stage])))
    return out


def stages(sent: list[tuple[str, dt.datetime, str]]) -> list[str]:
    return [stage for stage, _, _ in sent]


RULES = RulesConfig(max_event_age=dt.timedelta(days=3650))


FAST = PollingPolicy(fixed_interval=STEP, jitter=0)  # every scan seen within minutes (the 8)
FIVE = ["customs_presented", "customs_cleared", "out_for_delivery", "attempted_delivery", "delivered"]


@pytest.mark.parametrize(
    ("polling", "count"),
    [
        # The daemon's 8-hour interval after "left Japan" already folds the arrival into the
        # customs message; every other stage polled is an email.
        (None, 7),
        (FAST, 8),
    ],
)
async def test_before_each_stage_seen_is_its_own_email(
    sqlite_store: Store, smtp: SmtpServer, polling: PollingPolicy | None, count: int
) -> None:
    sent = await journey(
        sqlite_store, smtp, dataclasses.replace(RULES, settle=dt.timedelta(0)), polling=polling
    )
    everything = [
        "departed_origin",
        "inward_exchange",
        "customs_presented",
        "customs_cleared",
        "out_for_delivery",
        "attempted_delivery",
        "retention",
        "delivered",
    ]
    assert stages(sent) == (everything if count == 8 else [s for s in everything if s != "inward_exchange"])


async def test_polled_every_few_minutes_the_journey_is_five_emails_too(
    sqlite_store: Store, smtp: SmtpServer
) -> None:
    assert stages(await journey(sqlite_store, smtp, RULES, polling=FAST)) == FIVE


async def test_the_default_settle_sends_five_emails_for_the_ems_journey_and_every_urgent_one(
    store: Store, smtp: SmtpServer
) -> None:
    sent = await journey(store, smtp, RULES)
    assert stages(sent) == FIVE  # the first: left Japan, arrived, with customs
    # The urgent ones went within a poll of their scan (the polls' pace, not the window).
    scans = {EMS.scans[i].status_en: _scan_time(EMS, i) for i in range(len(EMS.scans))}
    arrived = {stage: at for stage, at, _ in sent}
    assert arrived["out_for_delivery"] - scans["Item out for physical delivery"] <= HOUR
    assert arrived["attempted_delivery"] - scans["Absence. Attempted delivery."] <= HOUR
    assert arrived["delivered"] - scans["Final delivery"] <= HOUR
    # What waited was replaced, and the message that replaced it says what it passed.
    states = {i.stage: i.state for i in await store.outbox()}
    assert states["departed_origin"] is OutboxState.SUPERSEDED
    assert sent[0][2] == "Dispatch from outward office of exchange,Arrival at inward office of exchange"


async def test_quiet_hours_still_hold_a_settled_message(sqlite_store: Store, smtp: SmtpServer) -> None:
    sent = await journey(sqlite_store, smtp, RULES, quiet=(dt.time(21), dt.time(8)))
    for _, at, _ in sent:
        local = at.astimezone(ZoneInfo("America/New_York")).time()
        assert dt.time(8) <= local < dt.time(21)
    assert "out_for_delivery" in stages(sent)
    assert "delivered" in stages(sent)


# --- the pure decisions ---------------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 10, 3, 0, tzinfo=dt.UTC)
ALICE = Recipient(subscription_id=1, email="alice@example.com", locale="en")
SHIP = ShipmentFacts(id=7, number=EMS.number, item_type="EMS", destination="US")


def ev(day: int, stage: Stage, hour: int = 10) -> TrackingEvent:
    return TrackingEvent(
        when=EventTime(date=dt.date(2026, 3, day), time=dt.time(hour, 0), zone=TOKYO),
        status=f"status of {stage}",
        stage=stage,
    )


def run(stored: list[TrackingEvent], shown: list[TrackingEvent], rules: RulesConfig) -> list[str]:
    page = Page(
        layout=Layout.DETAIL,
        locale=Locale.EN,
        items=(ItemResult(number=EMS.number, outcome=Outcome.FOUND, events=tuple(shown)),),
    )
    change = diff_detail(tuple(stored), page, EMS.number)
    return [str(n.stage) for n in notifications_for_change(change, SHIP, [ALICE], rules, NOW)]


def test_urgent_news_goes_at_once_and_the_rest_waits_the_window() -> None:
    rules = RulesConfig(settle=6 * HOUR)
    assert {
        Stage.OUT_FOR_DELIVERY,
        Stage.ATTEMPTED_DELIVERY,
        Stage.RETENTION,
        Stage.DELIVERED,
        Stage.RETURNED,
    } <= URGENT_STAGES
    for stage in Stage:
        notification = dataclasses.replace(_note(), stage=stage)
        due = send_after(notification, rules, NOW)
        assert due == (NOW if stage in URGENT_STAGES else NOW + 6 * HOUR), stage
        assert send_after(notification, dataclasses.replace(rules, settle=dt.timedelta(0)), NOW) == NOW
    # "each" promises every stage its own message: nothing waits to be merged.
    each = parse_settings('[notifications]\nmulti_stage = "each"\n').notifications.rules
    assert send_after(_note(), each, NOW) == NOW
    # The shipment is looked at again before a waiting message goes.
    assert poll_again_by(NOW + 8 * HOUR, NOW + 6 * HOUR) == NOW + 6 * HOUR - dt.timedelta(minutes=10)
    assert poll_again_by(NOW + HOUR, NOW + 6 * HOUR) == NOW + HOUR
    assert poll_again_by(None, NOW + 6 * HOUR) is None


def _note() -> Notification:
    return Notification(
        dedup_key="k",
        template=Template.DEPARTED_ORIGIN,
        rule="r",
        stage=Stage.DEPARTED_ORIGIN,
        recipient=ALICE,
    )


def test_a_second_redelivery_request_for_the_same_attempt_is_not_sent() -> None:
    out = ev(9, Stage.OUT_FOR_DELIVERY, 8)
    attempted = ev(9, Stage.ATTEMPTED_DELIVERY, 14)
    held = ev(10, Stage.RETENTION, 9)
    again = ev(11, Stage.OUT_FOR_DELIVERY, 8)
    attempted_again = ev(11, Stage.ATTEMPTED_DELIVERY, 15)
    rules = RulesConfig(settle=6 * HOUR)
    assert run([out], [out, attempted], rules) == ["attempted_delivery"]
    assert run([out, attempted], [out, attempted, held], rules) == []  # asked already
    assert run([out], [out, attempted, held], rules) == ["retention"]  # one poll: one message
    # A new attempt is news again.
    assert run([out, attempted, held, again], [out, attempted, held, again, attempted_again], rules) == [
        "attempted_delivery"
    ]
    each = dataclasses.replace(rules, multi_stage=MultiStage.EACH)
    assert run([out, attempted], [out, attempted, held], each) == ["retention"]
    # "0s": as before, each is sent.
    assert run(
        [out, attempted], [out, attempted, held], dataclasses.replace(rules, settle=dt.timedelta(0))
    ) == ["retention"]


def test_settle_is_read_from_the_config_and_a_bad_one_is_named(tmp_path: Path) -> None:
    assert RulesConfig().settle == 6 * HOUR
    assert parse_settings("").notifications.rules.settle == 6 * HOUR
    assert parse_settings('[notifications]\nsettle = "0s"\n').notifications.rules.settle == dt.timedelta(0)
    assert parse_settings('[notifications]\nsettle = "90m"\n').notifications.rules.settle == dt.timedelta(
        minutes=90
    )
    with pytest.raises(Exception, match=r"notifications\.settle"):
        parse_settings('[notifications]\nsettle = "soon"\n')


async def test_a_waiting_message_is_due_after_the_window_and_says_so(store: Store) -> None:
    view = await store.watch(parse_number(EMS.number), now=NOW)
    queued = draft(
        sample_context(Template.DEPARTED_ORIGIN, "en"),
        renderer=Renderer(), mail=MAIL, recipient=CUSTOMER, dedup_key="w", rule="departed_origin", now=NOW,
        shipment_id=view.id,
    )  # fmt: skip
    assert await store.enqueue([dataclasses.replace(queued, not_before=NOW + 6 * HOUR)], now=NOW) == 1
    (item,) = await store.outbox()
    assert item.next_attempt_at == NOW + 6 * HOUR
    assert expected_send(item, OutboxPolicy(), NOW) == (NOW + 6 * HOUR, "settle window")
    assert await store.claim_outbox(owner="me", now=NOW + 5 * HOUR, limit=10, lease=HOUR) == []
    assert len(await store.claim_outbox(owner="me", now=NOW + 6 * HOUR, limit=10, lease=HOUR)) == 1


async def test_merged_news_goes_no_later_than_the_first_of_it_would_have(store: Store) -> None:
    """A parcel scanned every few hours: each scan's message replaces the waiting one, but the
    merged message keeps the first one's time, so news never waits window after window."""
    view = await store.watch(parse_number(EMS.number), now=NOW)
    await store.subscribe(view.id, CUSTOMER, locale="en", now=NOW)
    ((subscription_id, *_),) = await store.recipients(view.id)

    def news(key: str, template: Template, at: dt.datetime) -> OutboxDraft:
        queued = draft(
            sample_context(template, "en"), renderer=Renderer(), mail=MAIL, recipient=CUSTOMER,
            dedup_key=key, rule=str(template), now=at, shipment_id=view.id, subscription_id=subscription_id,
            supersedes=True,
        )  # fmt: skip
        return dataclasses.replace(queued, not_before=at + 6 * HOUR)

    assert await store.enqueue([news("left", Template.DEPARTED_ORIGIN, NOW)], now=NOW) == 1
    later = NOW + 4 * HOUR
    assert await store.enqueue([news("arrived", Template.INWARD_EXCHANGE, later)], now=later) == 1
    (item,) = await store.outbox(states=[OutboxState.PENDING])
    assert item.rule == str(Template.INWARD_EXCHANGE)
    assert item.next_attempt_at == NOW + 6 * HOUR  # not later + 6 h
    # Urgent news merged in goes at once, as before.
    urgent = dataclasses.replace(news("out", Template.OUT_FOR_DELIVERY, later), not_before=later)
    assert await store.enqueue([urgent], now=later) == 1
    (item,) = await store.outbox(states=[OutboxState.PENDING])
    assert item.next_attempt_at == later
