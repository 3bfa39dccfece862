"""Messages as the customer gets them: Japan Post's wording in their language, and fresh when sent.

Against the simulator over HTTP, a real database and a real SMTP server on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import email.utils
import json
import random
import re
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from notifier.core.compose import MailSettings, context_for, draft
from notifier.core.diff import Change
from notifier.core.localize import pair_wording
from notifier.core.messages import MessageContext, RenderedMessage, Template
from notifier.core.mime import with_date
from notifier.core.model import Locale
from notifier.core.numbers import parse_number
from notifier.core.parser import parse_page
from notifier.core.policy import PollingPolicy
from notifier.core.render import Renderer
from notifier.core.rules import Notification, Recipient, RulesConfig, ShipmentFacts
from notifier.core.sending import OutboxPolicy, expected_send
from notifier.core.stages import Stage
from notifier.core.views import ConfiguredWatch, OutboxDraft, OutboxItem, OutboxState
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.net.mailer import SmtpTransport
from notifier.pipeline.cycle import CircuitBreaker, CycleStats, run_cycle
from notifier.pipeline.outbox import drain, reevaluate_quiet_hours
from notifier.pipeline.poll import Notifier
from notifier.store import Store
from notifier.testing.samples import sample_context
from notifier.testing.simulator import Fault, Simulator, SimulatorServer, builtin_journeys
from tests import test_outbox
from tests.smtp_server import SmtpServer

T0 = dt.datetime(2026, 3, 10, 8, 0, tzinfo=dt.UTC)  # 17:00 in Tokyo
MAIL = MailSettings(sender="Sakura <shop@sakura.example>", shop_name="Sakura")
RENDERER = Renderer()
POLICY = PollingPolicy(fixed_interval=dt.timedelta(minutes=1), jitter=0)
QUIET = (dt.time(21), dt.time(8))
YUPACK = builtin_journeys()[1]
EN_WORDS = ("Final delivery", "OSAKA-KITA", "OSAKA", "Yu-Pack")
JA_WORDS = ("お届け先にお届け済み", "大阪北郵便局", "大阪府", "ゆうパック")


class Recording(Renderer):
    """The real renderer, keeping each context it rendered: the facts the templates were given."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[MessageContext] = []

    def render(self, context: MessageContext) -> RenderedMessage:
        self.contexts.append(context)
        return super().render(context)


# The outbox tests' store (each backend), SMTP server and settable clock.
store = test_outbox.store
smtp = test_outbox.smtp
Clock = test_outbox.Clock


@pytest.fixture
def served() -> Iterator[tuple[Simulator, str]]:
    simulator = Simulator([dataclasses.replace(YUPACK, revealed=0)])
    with SimulatorServer(simulator) as server:
        yield simulator, server.base_url


class Shop:
    """One Yu-Pack watched by the given subscribers, polled and drained on a fake clock."""

    def __init__(self, store: Store, simulator: Simulator, base_url: str, smtp: SmtpServer) -> None:
        self.store, self.simulator, self.smtp = store, simulator, smtp
        self.client = JapanPostClient(ClientSettings(base_url=base_url, request_interval=0, attempts=1))
        self.renderer = Recording()
        self.notifier = Notifier(rules=RulesConfig(), mail=MAIL, renderer=self.renderer)
        self.clock = Clock(T0)
        self.policy = OutboxPolicy(quiet_hours=QUIET)

    async def watch(self, *subscribers: tuple[str, str], name: str = "") -> None:
        watched = ConfiguredWatch(
            number=parse_number(YUPACK.number),
            subscribers=tuple((address, locale, "Asia/Tokyo") for address, locale in subscribers),
            name=name,
        )
        await self.store.sync_config_watches([watched], now=T0)

    async def poll(self, revealed: int) -> CycleStats:
        self.simulator.reveal(YUPACK.number, revealed)
        self.clock.now += dt.timedelta(minutes=5)
        return await run_cycle(
            self.store,
            self.client,
            self.notifier,
            owner="me",
            policy=POLICY,
            breaker=CircuitBreaker(threshold=1_000_000),
            clock=self.clock,
            rng=random.Random(7),
        )

    async def drain(self) -> None:
        async with SmtpTransport(self.smtp.settings()) as transport:
            await drain(self.store, transport, owner="me", policy=self.policy, clock=self.clock)

    def received(self, address: str) -> list[EmailMessage]:
        parsed = [email.message_from_bytes(m.data, policy=email.policy.default) for m in self.smtp.messages]
        return [m for m in parsed if isinstance(m, EmailMessage) and m["To"] == address]


@pytest.fixture
async def shop(store: Store, served: tuple[Simulator, str], smtp: SmtpServer) -> AsyncIterator[Shop]:
    simulator, base_url = served
    shop = Shop(store, simulator, base_url, smtp)
    yield shop
    await shop.client.aclose()


def text_of(message: EmailMessage) -> str:
    text = "\n".join(str(part.get_content()) for part in message.walk() if not part.is_multipart())
    return text


# --- the customer's language ---------------------------------------------------------------------


async def test_each_customer_reads_japan_posts_wording_in_their_own_language(
    store: Store, shop: Shop, smtp: SmtpServer
) -> None:
    simulator = shop.simulator
    await shop.watch(("en@example.com", "en"), ("ja@example.com", "ja"), name="Hanako Yamada")
    stats = await shop.poll(len(YUPACK.scans))  # delivered, first seen: one message each
    facts = {c.locale: c for c in shop.renderer.contexts}
    assert (facts["ja"].wording_locale, facts["ja"].wording_unavailable) == ("ja", False)
    assert (facts["en"].wording_locale, facts["en"].wording_unavailable) == ("en", False)
    assert {c.name for c in facts.values()} == {"Hanako Yamada"}
    assert (stats.detail_requests, stats.wording_requests) == (1, 1)
    assert [r.locale for r in simulator.requests if r.path.endswith("direct")] == ["en", "ja"]
    await shop.drain()
    (english,) = shop.received("en@example.com")
    (japanese,) = shop.received("ja@example.com")
    assert all(word in text_of(english) for word in EN_WORDS)
    assert not any(word in text_of(english) for word in JA_WORDS)
    assert all(word in text_of(japanese) for word in JA_WORDS)
    assert not any(word in text_of(japanese) for word in EN_WORDS)


async def test_the_other_page_is_fetched_only_for_a_message_to_its_language(
    store: Store, shop: Shop, smtp: SmtpServer
) -> None:
    simulator = shop.simulator
    await shop.watch(("en@example.com", "en"))
    stats = await shop.poll(len(YUPACK.scans))
    assert (stats.queued, stats.wording_requests) == (1, 0)
    assert {r.locale for r in simulator.requests} == {"en"}


async def test_a_japanese_page_that_cannot_be_had_gives_the_english_wording_and_says_so(
    store: Store, shop: Shop, smtp: SmtpServer
) -> None:
    simulator = shop.simulator
    await shop.watch(("ja@example.com", "ja"))
    simulator.set_fault(Fault.SERVER_ERROR, every=2)  # the English page reads, the Japanese fails
    stats = await shop.poll(len(YUPACK.scans))
    assert (stats.queued, stats.wording_requests, stats.failed) == (1, 1, 0)
    (context,) = shop.renderer.contexts
    assert (context.wording_locale, context.wording_unavailable) == ("en", True)
    assert context.event is not None
    assert context.event.status == "Final delivery"  # English throughout, and the template knows it
    (item,) = await store.outbox()
    assert item.state is OutboxState.PENDING  # the poll and its message stand


async def test_a_silence_message_to_a_japanese_customer_quotes_the_japanese_page(
    store: Store, shop: Shop, smtp: SmtpServer
) -> None:
    from notifier.pipeline.poll import queue_timed

    await shop.watch(("en@example.com", "en"), ("ja@example.com", "ja"))
    await shop.poll(2)  # En route / 中継: silence here is news after five days
    shop.renderer.contexts.clear()
    before = len(shop.simulator.requests)
    later = shop.clock.now + dt.timedelta(days=6)
    assert await queue_timed(store, shop.notifier, now=later, client=shop.client) == 2
    contexts = {c.locale: c for c in shop.renderer.contexts}
    assert {c.template for c in contexts.values()} == {Template.STALLED}
    assert (contexts["ja"].wording_locale, contexts["ja"].wording_unavailable) == ("ja", False)
    assert contexts["ja"].event is not None
    assert contexts["ja"].event.status == "中継"
    assert contexts["en"].event is not None
    assert contexts["en"].event.status == "En route"
    # One request, for the Japanese customer's message only, and only because it was queued.
    assert [r.locale for r in shop.simulator.requests[before:]] == ["ja"]
    assert await queue_timed(store, shop.notifier, now=later, client=shop.client) == 0
    assert len(shop.simulator.requests) == before + 1
    shop.clock.now = later
    await shop.drain()
    (japanese,) = shop.received("ja@example.com")
    assert "中継" in text_of(japanese)
    assert "En route" not in text_of(japanese)


async def test_a_silence_message_without_the_japanese_page_says_it_quotes_the_english_one(
    store: Store, shop: Shop, smtp: SmtpServer
) -> None:
    from notifier.pipeline.poll import queue_timed

    await shop.watch(("ja@example.com", "ja"))
    await shop.poll(2)
    shop.renderer.contexts.clear()
    shop.simulator.set_fault(Fault.SERVER_ERROR)
    later = shop.clock.now + dt.timedelta(days=6)
    assert await queue_timed(store, shop.notifier, now=later, client=shop.client) == 1
    (context,) = shop.renderer.contexts
    assert (context.wording_locale, context.wording_unavailable) == ("en", True)
    assert context.event is not None
    assert context.event.status == "En route"


def test_contexts_quote_one_page_only_and_flag_a_missing_one() -> None:
    journey = dataclasses.replace(YUPACK, revealed=len(YUPACK.scans))
    simulator = Simulator([journey])
    en = parse_page(simulator.render_detail(journey.number, "en").encode()).item(journey.number)
    ja = parse_page(simulator.render_detail(journey.number, "ja").encode()).item(journey.number)
    assert en is not None
    assert ja is not None
    wording = pair_wording(en, ja, "ja")
    assert wording is not None
    shipment = ShipmentFacts(
        id=1, number=journey.number, label="", item_type="Yu-Pack", origin="JP", destination=None,
        tags=frozenset(), stage=Stage.DELIVERED, stage_entered_at=None, last_changed_at=None,
    )  # fmt: skip
    notification = Notification(
        dedup_key="k",
        template=Template.DELIVERED,
        rule="delivered",
        stage=Stage.DELIVERED,
        recipient=Recipient(subscription_id=1, email="ja@example.com", locale="ja"),
        event=en.events[-1],
        passed=(en.events[4],),
    )
    context = context_for(notification, shipment, en.events, en.offices, MAIL, wording=wording)
    assert (context.wording_locale, context.wording_unavailable) == ("ja", False)
    assert context.event is not None
    assert (context.event.status, context.event.office, context.event.region) == (
        "お届け先にお届け済み",
        "大阪北郵便局",
        "大阪府",
    )
    assert [line.status for line in context.passed] == ["ご不在のため持ち戻り"]
    assert {line.office for line in context.history} <= {"新宿郵便局", "新東京郵便局", "大阪北郵便局"}
    assert context.item_type == "ゆうパック"
    assert {c.office for c in context.contacts} == {"新宿郵便局", "大阪北郵便局"}
    # Not paired: English throughout, and the template is told so; never a mixture.
    for missing in (None, pair_wording(en, dataclasses.replace(ja, events=ja.events[:-1]), "ja")):
        context = context_for(notification, shipment, en.events, en.offices, MAIL, wording=missing)
        assert (context.wording_locale, context.wording_unavailable) == ("en", True)
        assert context.event is not None
        assert context.event.status == "Final delivery"
        assert context.item_type == "Yu-Pack"
    # An English customer never needs it.
    english = dataclasses.replace(notification, recipient=Recipient(subscription_id=1, email="e@x.example"))
    context = context_for(english, shipment, en.events, en.offices, MAIL)
    assert (context.wording_locale, context.wording_unavailable) == ("en", False)


def test_pages_of_another_snapshot_do_not_pair() -> None:
    journey = dataclasses.replace(YUPACK, revealed=len(YUPACK.scans))
    simulator = Simulator([journey])
    en = parse_page(simulator.render_detail(journey.number, "en").encode()).item(journey.number)
    simulator.reveal(journey.number, 5)
    ja = parse_page(simulator.render_detail(journey.number, "ja").encode()).item(journey.number)
    assert en is not None
    assert ja is not None
    assert pair_wording(en, ja, "ja") is None  # the Japanese page shows fewer scans
    # A scan added between the two requests: the earlier ones still pair, the new one waits.
    later = pair_wording(ja, en, "en")
    assert later is not None
    assert [e.status for e in later.events.values()] == [s.status_en for s in journey.scans[:5]]
    moved = dataclasses.replace(ja, events=(*ja.events[:-1], dataclasses.replace(ja.events[0])))
    assert pair_wording(en, moved, "ja") is None
    assert str(Locale.JA) == "ja"


# --- fresh at send time --------------------------------------------------------------------------


async def test_held_out_for_delivery_is_superseded_by_delivered_one_email(
    store: Store, shop: Shop, smtp: SmtpServer
) -> None:
    await shop.watch(("ja@example.com", "ja"))
    shop.clock.now = dt.datetime(2026, 3, 11, 13, 0, tzinfo=dt.UTC)  # 22:00 in Tokyo: quiet
    await shop.poll(4)  # out for delivery, held by quiet hours
    await shop.drain()
    assert smtp.messages == []
    (waiting,) = await store.outbox()
    assert waiting.stage == "out_for_delivery"
    assert waiting.last_error == "quiet hours"
    assert await store.waiting_stages(waiting.shipment_id or 0) == {
        waiting.subscription_id: ("out_for_delivery",)
    }
    await shop.poll(len(YUPACK.scans))  # attempted, redelivered, delivered, overnight
    shop.clock.now = dt.datetime(2026, 3, 12, 23, 30, tzinfo=dt.UTC)  # 08:30 in Tokyo
    await shop.drain()
    await shop.drain()
    (received,) = shop.received("ja@example.com")  # "delivered" alone, no stale "out for delivery"
    assert received["X-Notifier-Stage"] == "delivered"
    # It says what happened on the way: the superseded stage, and the attempt the poll passed.
    assert shop.renderer.contexts[-1].passed_through == ("out_for_delivery", "attempted_delivery")
    states = {i.stage: i.state for i in await store.outbox()}
    assert states["out_for_delivery"] is OutboxState.SUPERSEDED
    assert states["delivered"] is OutboxState.SENT


async def test_superseding_message_names_the_stages_passed_through(store: Store) -> None:
    view = await store.watch(parse_number(YUPACK.number), now=T0)
    await store.subscribe(view.id, "a@example.com", locale="en", now=T0)
    ((sid, *_),) = await store.recipients(view.id)
    journey = dataclasses.replace(YUPACK, revealed=len(YUPACK.scans))
    en = parse_page(Simulator([journey]).render_detail(journey.number, "en").encode()).item(journey.number)
    assert en is not None
    shipment = ShipmentFacts(
        id=view.id, number=journey.number, label="", item_type="Yu-Pack", origin="JP", destination=None,
        tags=frozenset(), stage=Stage.DELIVERED, stage_entered_at=None, last_changed_at=None,
    )  # fmt: skip
    delivered = Notification(
        dedup_key="d",
        template=Template.DELIVERED,
        rule="delivered",
        stage=Stage.DELIVERED,
        recipient=Recipient(subscription_id=sid, email="a@example.com"),
        event=en.events[-1],
        passed=(en.events[4], en.events[-2]),
    )
    context = context_for(delivered, shipment, en.events, (), MAIL, waiting=("out_for_delivery", "retention"))
    assert context.passed_through == ("out_for_delivery", "retention", "attempted_delivery")


async def test_supersede_spares_messages_being_sent_and_other_subscriptions(store: Store) -> None:
    view = await store.watch(parse_number(YUPACK.number), now=T0)
    await store.subscribe(view.id, "a@example.com", locale="en", now=T0)
    await store.subscribe(view.id, "b@example.com", locale="en", now=T0)
    (a, _, _, _), (b, _, _, _) = await store.recipients(view.id)

    def message(key: str, sid: int, supersedes: bool = False) -> OutboxDraft:
        return dataclasses.replace(
            draft(
                sample_context(Template.OUT_FOR_DELIVERY, "en"),
                renderer=RENDERER, mail=MAIL, recipient="a@example.com", dedup_key=key,
                rule="r", now=T0, shipment_id=view.id, subscription_id=sid,
            ),
            supersedes=supersedes,
        )  # fmt: skip

    await store.enqueue([message("a1", a), message("a2", a), message("b1", b)], now=T0)
    (sending,) = await store.claim_outbox(owner="me", now=T0, limit=1, lease=dt.timedelta(minutes=5))
    assert sending.dedup_key == "a1"
    await store.enqueue([message("a3", a, supersedes=True), message("a4", a, supersedes=True)], now=T0)
    states = {i.dedup_key: i.state for i in await store.outbox()}
    assert states == {
        "a1": OutboxState.SENDING,  # already on its way: left alone
        "a2": OutboxState.SUPERSEDED,
        "b1": OutboxState.PENDING,  # someone else's
        "a3": OutboxState.PENDING,  # one batch (multi_stage = "each") keeps all its messages
        "a4": OutboxState.PENDING,
    }
    # A replayed poll supersedes nothing.
    await store.enqueue([message("a3", a, supersedes=True)], now=T0)
    assert (await store.outbox_item(3)) is not None
    assert {i.dedup_key for i in await store.outbox() if i.state is OutboxState.PENDING} == {"b1", "a3", "a4"}


async def test_date_is_the_first_attempt_and_the_same_on_retry(store: Store, smtp: SmtpServer) -> None:
    queued = draft(
        sample_context(Template.DELIVERED, "en"),
        renderer=RENDERER, mail=MAIL, recipient="alice@example.com", dedup_key="m", rule="delivered", now=T0,
    )  # fmt: skip
    await store.enqueue([queued], now=T0)
    smtp.faults.data_temp_failures = 1  # a 451, then 250
    first = T0 + dt.timedelta(hours=7)
    clock = Clock(first)
    async with SmtpTransport(smtp.settings()) as transport:
        assert (await drain(store, transport, owner="me", policy=OutboxPolicy(), clock=clock)).retried == 1
    (item,) = await store.outbox()
    assert item.first_attempt_at == first
    stored = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert email.utils.parsedate_to_datetime(str(stored["Date"])) == first
    clock.now = item.next_attempt_at + dt.timedelta(minutes=1)
    async with SmtpTransport(smtp.settings()) as transport:
        assert (await drain(store, transport, owner="me", policy=OutboxPolicy(), clock=clock)).sent == 1
    (received,) = smtp.messages
    sent = email.message_from_bytes(received.data, policy=email.policy.default)
    assert (
        email.utils.parsedate_to_datetime(str(sent["Date"])) == first
    )  # not the queue time, not the retry's
    assert sent["Message-ID"] == queued.message_id
    # Only the Date changed: the rest is the bytes rendered at queue time.
    assert with_date(queued.raw, first) == item.raw


def test_with_date_refuses_a_message_without_one_date() -> None:
    from notifier.core.mime import MessageBuildError

    with pytest.raises(MessageBuildError):
        with_date(b"Subject: x\r\n\r\nbody", T0)
    with pytest.raises(MessageBuildError):
        with_date(b"Date: a\r\nDate: b\r\n\r\nbody", T0)


async def test_a_quiet_hours_change_moves_a_held_message(store: Store, smtp: SmtpServer) -> None:
    queued = draft(
        sample_context(Template.DELIVERED, "en"),
        renderer=RENDERER, mail=MAIL, recipient="alice@example.com", dedup_key="q", rule="delivered",
        now=T0, time_zone="Asia/Tokyo",
    )  # fmt: skip
    await store.enqueue([queued], now=T0)
    night = dt.datetime(2026, 3, 10, 13, 0, tzinfo=dt.UTC)  # 22:00 in Tokyo
    async with SmtpTransport(smtp.settings()) as transport:
        result = await drain(
            store, transport, owner="me", policy=OutboxPolicy(quiet_hours=QUIET), clock=Clock(night)
        )
    assert result.deferred == 1
    (item,) = await store.outbox()
    assert item.next_attempt_at == dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC)  # 08:00 in Tokyo
    # Quiet hours now end at 06:00: it goes then.
    earlier = OutboxPolicy(quiet_hours=(dt.time(21), dt.time(6)))
    assert await reevaluate_quiet_hours(store, earlier, now=night) == 1
    (item,) = await store.outbox()
    assert item.next_attempt_at == dt.datetime(2026, 3, 10, 21, 0, tzinfo=dt.UTC)
    # No quiet hours any more: it is due now, and goes.
    assert await reevaluate_quiet_hours(store, OutboxPolicy(), now=night) == 1
    async with SmtpTransport(smtp.settings()) as transport:
        assert (
            await drain(store, transport, owner="me", policy=OutboxPolicy(), clock=Clock(night))
        ).sent == 1


def test_expected_send_says_when_each_waiting_message_goes() -> None:
    queued = draft(
        sample_context(Template.DELIVERED, "en"),
        renderer=RENDERER, mail=MAIL, recipient="alice@example.com", dedup_key="w", rule="delivered", now=T0,
    )  # fmt: skip
    night = dt.datetime(2026, 3, 10, 13, 0, tzinfo=dt.UTC)  # 22:00 in Tokyo
    base = OutboxItem(
        id=1, dedup_key="w", recipient="alice@example.com", sender=MAIL.sender, locale="en",
        time_zone="Asia/Tokyo", rule="delivered", template="delivered", stage="delivered", number="",
        subject="s", message_id=queued.message_id, raw=queued.raw, state=OutboxState.PENDING, attempts=0,
        next_attempt_at=night, last_error=None, created_at=T0, sent_at=None,
    )  # fmt: skip
    policy = OutboxPolicy(quiet_hours=QUIET)
    morning = dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC)
    assert expected_send(base, policy, night) == (morning, "quiet hours")
    assert expected_send(base, OutboxPolicy(), night) == (night, "")
    deferred = dataclasses.replace(base, last_error="quiet hours", next_attempt_at=morning)
    assert expected_send(deferred, policy, night) == (morning, "quiet hours")
    retry = dataclasses.replace(base, attempts=1, next_attempt_at=night + dt.timedelta(minutes=3))
    assert expected_send(retry, OutboxPolicy(), night) == (night + dt.timedelta(minutes=3), "retry")
    held = dataclasses.replace(base, state=OutboxState.HELD)
    assert expected_send(held, policy, night) == (None, "pages to read again")
    assert expected_send(dataclasses.replace(base, state=OutboxState.SENT), policy, night) == (None, "")


def test_outbox_listing_shows_when_each_message_goes(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from notifier.cli import main

    config = tmp_path / "notifier.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[notifications]\nshop_name = "Sakura"\nquiet_hours = "00:00-23:59"\n'
        'default_time_zone = "UTC"\n'
        'outbox_dir = "eml"\n',
        encoding="utf-8",
    )
    opts = ["--config", str(config)]

    async def fill() -> None:
        store = await Store.open(db_url)
        try:
            now = dt.datetime.now(dt.UTC)
            made = [
                draft(
                    sample_context(Template.DELIVERED, "en"),
                    renderer=RENDERER,
                    mail=MAIL,
                    recipient=f"{n}@example.com",
                    dedup_key=f"l{n}",
                    rule="delivered",
                    now=now,
                    time_zone="UTC",
                )
                for n in range(2)
            ]
            await store.enqueue(made[:1], now=now)
            view = await store.watch(parse_number(YUPACK.number), now=now)
            await store.record_poll(
                view.id,
                change=Change(
                    new_events=(), history=(), transitions=(), anomalies=(), previous_stage=Stage.PENDING,
                    current_stage=Stage.PENDING, first_sight=True,
                ),
                item=None, now=now, next_poll_at=None, outbox=made[1:], held=True,
            )  # fmt: skip
        finally:
            await store.close()

    asyncio.run(fill())
    assert main(["outbox", *opts]) == 0
    out = capsys.readouterr().out
    (quiet,) = [line for line in out.splitlines() if "0@example.com" in line]
    assert re.search(r"goes \d{4}-\d\d-\d\d 23:59Z \(quiet hours\)", quiet)
    (held,) = [line for line in out.splitlines() if "1@example.com" in line]
    assert held.endswith("goes when pages to read again")
    assert main(["outbox", "--json", *opts]) == 0
    listed = {m["recipient"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["0@example.com"]["waits_for"] == "quiet hours"
    assert listed["1@example.com"]["goes_at"] is None


# --- the customer's name -------------------------------------------------------------------------


def test_watch_name_is_read_and_checked_against_its_column(tmp_path: Path) -> None:
    from notifier.config import parse_settings
    from notifier.errors import ConfigError

    base = '[[watch]]\nnumber = "EJ123456785JP"\nsubscribers = ["a@example.com"]\n'
    settings = parse_settings(base + 'name = "山田　花子 "\n', tmp_path / "c.toml")
    assert settings.watches[0].name == "山田　花子"
    assert parse_settings(base, tmp_path / "c.toml").watches[0].name == ""
    with pytest.raises(ConfigError, match=r"watch\[0\]\.name.*at most 100 fit"):
        parse_settings(base + f'name = "{"x" * 101}"\n', tmp_path / "c.toml")
    with pytest.raises(ConfigError, match=r"watch\[0\]\.name"):
        parse_settings(base + 'name = "a\\nb"\n', tmp_path / "c.toml")


@pytest.mark.parametrize("column", ["name", "氏名", "お名前", "お客様名"])
def test_csv_name_column_reaches_the_watch_file(column: str) -> None:
    from notifier.config.importer import read_orders, to_toml

    orders = read_orders(f"number,{column},email\nEJ123456785JP,山田　花子,a@example.com\n", "orders.csv")
    assert orders.watches[0].name == "山田　花子"
    assert 'name = "山田　花子"' in to_toml(orders.watches, "orders.csv")


def test_csv_name_too_long_is_named_by_line() -> None:
    from notifier.config.importer import read_orders
    from notifier.errors import ConfigError

    with pytest.raises(ConfigError, match=r"orders.csv:3: name: is 101 characters"):
        read_orders(f"number,name\nEJ123456785JP,A\nEJ123456799JP,{'x' * 101}\n", "orders.csv")


async def test_synced_name_greets_in_the_context(store: Store) -> None:
    from notifier.core.views import ConfiguredWatch

    number = parse_number(YUPACK.number)
    subscribers = (("a@example.com", "ja", None),)
    await store.sync_config_watches(
        [ConfiguredWatch(number=number, subscribers=subscribers, name="山田様")], now=T0
    )
    view = await store.get(YUPACK.number)
    assert view is not None
    ((sid, *_),) = await store.recipients(view.id)
    assert await store.subscription_names(view.id) == {sid: "山田様"}
    await store.sync_config_watches([ConfiguredWatch(number=number, subscribers=subscribers)], now=T0)
    assert await store.subscription_names(view.id) == {}


def test_every_simulator_journey_is_bilingual_and_its_two_pages_pair() -> None:
    from notifier.testing.simulator import capture_journey, catalog_journeys

    for journey in [capture_journey(), *builtin_journeys(), *catalog_journeys()]:
        if not journey.scans:
            continue
        shown = dataclasses.replace(journey, revealed=len(journey.scans))
        simulator = Simulator([shown])
        en = parse_page(simulator.render_detail(shown.number, "en").encode()).item(shown.number)
        ja = parse_page(simulator.render_detail(shown.number, "ja").encode()).item(shown.number)
        assert en is not None
        assert ja is not None
        wording = pair_wording(en, ja, "ja")
        assert wording is not None, shown.number
        assert [e.status for e in wording.events.values()] == [s.status_ja for s in shown.scans]
        assert all(scan.status_ja and scan.status_en for scan in shown.scans)
        assert ja.item_type == shown.item_type_ja
