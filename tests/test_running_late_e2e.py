"""Running late by route, end to end: a lane's history polled from the simulator over HTTP into a real
database (each backend), a parcel quieter in customs than 9 in 10 of that lane's parcels, one email
through a real SMTP server and one `running_late` alert naming the figures."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest

from notifier.core.compose import MailSettings
from notifier.core.numbers import parse_number, s10_check_digit
from notifier.core.render import Renderer
from notifier.core.rules import RulesConfig
from notifier.core.sending import OutboxPolicy
from notifier.core.views import ConfiguredWatch
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.net.mailer import SmtpTransport
from notifier.pipeline.lanes import LaneCache
from notifier.pipeline.outbox import drain
from notifier.pipeline.poll import Notifier, poll_detail, queue_operator_digest, queue_timed
from notifier.store import Store
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from notifier.testing.simulator.model import Journey, Scan
from tests import test_outbox
from tests.smtp_server import SmtpServer

store = test_outbox.store

EMS = builtin_journeys()[0]  # Shibuya -> New York ISC -> Brooklyn
MAIL = MailSettings(sender="Sakura <shop@sakura.example>", shop_name="Sakura")
DAY = dt.timedelta(days=1)
# Hours each history parcel spent in customs (presented -> returned): 9 in 10 within 2.5 days.
CUSTOMS_HOURS = (20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44, 46, 48, 50, 52, 56, 60)
LATE_SENTENCE = "9 out of 10 parcels on this route moved on from this step within 3 days."


def number(serial: int) -> str:
    digits = f"{serial:08d}"
    return f"EJ{digits}{s10_check_digit(digits)}JP"


def history_parcel(serial: int, start: dt.datetime, customs_hours: int) -> Journey:
    """An EMS to the United States with the builtin journey's offices, delivered."""
    s = EMS.scans

    def at(scan: Scan, when: dt.datetime) -> Scan:
        return dataclasses.replace(scan, when=when.strftime("%Y-%m-%dT%H:%M"))

    presented = start + dt.timedelta(days=2, hours=8)
    returned = presented + dt.timedelta(hours=customs_hours)
    return Journey(
        number=number(serial),
        item_type_en="EMS",
        item_type_ja="EMS",
        international=True,
        scans=[
            at(s[0], start),
            at(s[1], start + dt.timedelta(hours=11)),
            at(s[2], start + dt.timedelta(days=1, hours=3)),
            at(s[3], start + dt.timedelta(days=2, hours=4)),
            at(s[4], presented),
            at(s[5], returned),
            at(s[6], returned + dt.timedelta(hours=20)),
            at(s[7], returned + dt.timedelta(hours=22)),
            at(s[10], returned + dt.timedelta(hours=28)),
        ],
        contacts=list(EMS.contacts),
        class_code="2130",
    )


# Recent parcels, one posted a day: the model weighs recent history more (a 60-day half-life).
FIRST = dt.datetime(2026, 2, 6, 10, 0)
HISTORY = [history_parcel(100 + i, FIRST + i * DAY, hours) for i, hours in enumerate(CUSTOMS_HOURS)]
# The watched parcel: presented to customs in New York on 2026-03-03 18:45 (local), then quiet.
PRESENTED = dt.datetime(2026, 3, 3, 18, 45)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def new_york(local: dt.datetime) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return local.replace(tzinfo=ZoneInfo("America/New_York")).astimezone(dt.UTC)


@pytest.fixture
async def shop(store: Store) -> AsyncIterator[tuple[Store, Notifier, JapanPostClient, Simulator]]:
    watched = dataclasses.replace(EMS, revealed=5)  # up to "presented to import Customs"
    simulator = Simulator([*HISTORY, watched])
    with SimulatorServer(simulator) as server:
        await store.sync_config_watches(
            [
                *(ConfiguredWatch(number=parse_number(j.number), destination="US") for j in HISTORY),
                ConfiguredWatch(
                    number=parse_number(EMS.number),
                    label="Order 1001",
                    destination="US",
                    subscribers=(("emma@example.com", "en", "America/New_York"),),
                ),
            ],
            now=T0,
        )
        client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0, attempts=1))
        notifier = Notifier(
            rules=RulesConfig(max_event_age=3650 * DAY),
            mail=MAIL,
            renderer=Renderer(),
            lanes=LaneCache(store),
        )
        try:
            for view in await store.shipments():
                await poll_detail(
                    store,
                    client,
                    view,
                    now=new_york(PRESENTED) + dt.timedelta(hours=1),
                    next_poll_at=None,
                    notifier=notifier,
                )
            yield store, notifier, client, simulator
        finally:
            await client.aclose()


def customer_mail(smtp: SmtpServer) -> list[EmailMessage]:
    parsed = [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp.messages]
    return [m for m in parsed if isinstance(m, EmailMessage) and m["To"] == "emma@example.com"]


def text_of(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def send(store: Store, smtp: SmtpServer, now: dt.datetime) -> None:
    async with SmtpTransport(smtp.settings()) as transport:
        await drain(store, transport, owner="test", policy=OutboxPolicy(), clock=lambda: now)


async def test_a_parcel_quieter_than_its_lane_gets_one_email_and_one_alert(
    shop: tuple[Store, Notifier, JapanPostClient, Simulator],
) -> None:
    store, notifier, client, _ = shop
    journeys = {j.number: j for j in await store.journeys()}
    assert sum(j.delivered_at is not None for j in journeys.values()) == len(HISTORY)
    first_messages = {m.dedup_key for m in await store.outbox()}

    # Two days in customs: within the lane's p90, and the fixed rule waits 7 days.
    assert await queue_timed(store, notifier, now=new_york(PRESENTED + 2 * DAY), client=client) == 0
    # Four days: quieter than 9 in 10 of the route's parcels were.
    assert await queue_timed(store, notifier, now=new_york(PRESENTED + 4 * DAY), client=client) == 1
    (stall,) = [m for m in await store.outbox() if m.dedup_key not in first_messages]
    assert (stall.template, stall.stage, stall.rule) == (
        "stalled",
        "customs_presented",
        "stalled:customs_presented",
    )
    (alert,) = [a for a in await store.alerts() if a.kind == "running_late"]
    assert alert.subject == EMS.number
    assert alert.message.startswith(
        f"{EMS.number} (Order 1001) is running late for its route: no new scan for 4.0 days in "
        "customs_presented, where 9 in 10 parcels on lane ems:US moved on within "
    )
    told = r"within 2\.\d days; (9|10) in 10 of them moved on sooner than this parcel has waited\. 1 customer"
    assert re.search(told, alert.message), alert.message
    assert [a.kind for a in await store.alerts()] == ["running_late"]  # abroad: no stalled_in_japan

    # Past the fixed 7 days, and again later: the same stall, never a second email or alert.
    for days in (7, 8, 20):
        assert await queue_timed(store, notifier, now=new_york(PRESENTED + days * DAY), client=client) == 0
    assert [(a.kind, a.count) for a in await store.alerts()] == [("running_late", 1)]

    # The operator's digest lists it.
    assert (
        await queue_operator_digest(store, notifier, "ops@sakura.example", now=new_york(PRESENTED + 5 * DAY))
        == 1
    )
    (digest,) = [m for m in await store.outbox() if m.rule == "operator_digest"]
    assert b"running_late" in digest.raw
    # Its list of stalled parcels follows the same verdict: five days, short of the fixed seven.
    assert "- EJ 202 603 021 JP (Order 1001): customs_presented, 5 days" in text_of(digest.raw)

    with SmtpServer() as smtp:
        # One message per parcel and subscriber per drain, in order: the customs news, then the stall.
        for _ in range(3):
            await send(store, smtp, new_york(PRESENTED + 20 * DAY))
        mail = customer_mail(smtp)
    assert [str(m["Subject"]) for m in mail] == [
        "With customs: your parcel (Order 1001)",
        "Your parcel is still with customs (Order 1001)",
    ]
    stalls = mail[1:]
    body = stalls[0].get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert LATE_SENTENCE in text
    assert "no new tracking information for 4 days while your parcel is with customs" in text


async def test_the_alert_closes_when_the_parcel_moves(
    shop: tuple[Store, Notifier, JapanPostClient, Simulator],
) -> None:
    store, notifier, client, simulator = shop
    assert await queue_timed(store, notifier, now=new_york(PRESENTED + 4 * DAY), client=client) == 1
    assert [a.kind for a in await store.alerts()] == ["running_late"]
    simulator.reveal(EMS.number, 6)  # returned from customs
    view = next(v for v in await store.shipments() if v.number == EMS.number)
    await poll_detail(
        store, client, view, now=new_york(PRESENTED + 5 * DAY), next_poll_at=None, notifier=notifier
    )
    assert [a.kind for a in await store.alerts()] == []


async def test_without_lane_history_the_fixed_day_count_decides(store: Store) -> None:
    watched = dataclasses.replace(EMS, revealed=5)
    with SimulatorServer(Simulator([watched])) as server:
        await store.sync_config_watches(
            [
                ConfiguredWatch(
                    number=parse_number(EMS.number),
                    destination="US",
                    subscribers=(("emma@example.com", "en", "America/New_York"),),
                )
            ],
            now=T0,
        )
        client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0, attempts=1))
        notifier = Notifier(
            rules=RulesConfig(max_event_age=3650 * DAY),
            mail=MAIL,
            renderer=Renderer(),
            lanes=LaneCache(store),
        )
        try:
            (view,) = await store.shipments()
            await poll_detail(
                store,
                client,
                view,
                now=new_york(PRESENTED) + dt.timedelta(hours=1),
                next_poll_at=None,
                notifier=notifier,
            )
            assert await queue_timed(store, notifier, now=new_york(PRESENTED + 4 * DAY), client=client) == 0
            assert await queue_timed(store, notifier, now=new_york(PRESENTED + 8 * DAY), client=client) == 1
        finally:
            await client.aclose()
    (stall,) = [m for m in await store.outbox() if m.template == "stalled"]
    assert LATE_SENTENCE.encode() not in stall.raw
    assert [a.kind for a in await store.alerts()] == []
