"""The holding period abroad through the pipeline: the simulator's EMS held in Brooklyn, polled over HTTP
into a real database (each backend); the retention email states the period and date and a reminder
follows where the country table knows the period, and neither where it does not."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import pytest

from notifier.core.compose import MailSettings
from notifier.core.numbers import parse_number
from notifier.core.render import Renderer
from notifier.core.rules import RulesConfig
from notifier.core.views import ConfiguredWatch
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.poll import Notifier, poll_detail, queue_timed
from notifier.store import Store
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests import test_outbox

store = test_outbox.store

EMS = builtin_journeys()[0]  # held in Brooklyn on 2026-03-06 (scan 10)
DAY = dt.timedelta(days=1)
HELD_SEEN = dt.datetime(2026, 3, 6, 15, 0, tzinfo=dt.UTC)
PERIOD = "Post offices in the United States usually keep EMS items for 5 days"


def text_of(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return " ".join(str(body.get_content()).split())


def on(day: int) -> dt.datetime:
    """`day` days into March 2026 (past its end, into April)."""
    return dt.datetime(2026, 3, 1, 15, 0, tzinfo=dt.UTC) + (day - 1) * DAY


@pytest.fixture
async def held(store: Store) -> AsyncIterator[Callable[[str | None], object]]:
    simulator = Simulator([dataclasses.replace(EMS, revealed=10)])
    with SimulatorServer(simulator) as server:
        client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0, attempts=1))
        notifier = Notifier(rules=RulesConfig(max_event_age=3650 * DAY), mail=MAIL, renderer=Renderer())

        async def watch(destination: str | None) -> Notifier:
            await store.sync_config_watches(
                [
                    ConfiguredWatch(
                        number=parse_number(EMS.number),
                        destination=destination,
                        subscribers=(("emma@example.com", "en", "America/New_York"),),
                    )
                ],
                now=HELD_SEEN - DAY,
            )
            (view,) = await store.shipments()
            await poll_detail(store, client, view, now=HELD_SEEN, next_poll_at=None, notifier=notifier)
            return notifier

        try:
            yield watch
        finally:
            await client.aclose()


MAIL = MailSettings(sender="Sakura <shop@sakura.example>", shop_name="Sakura")


async def timed_templates(store: Store, notifier: Notifier, days: range) -> list[tuple[int, str]]:
    sent: list[tuple[int, str]] = []
    for day in days:
        before = {m.dedup_key for m in await store.outbox()}
        await queue_timed(store, notifier, now=on(day))
        sent += [(day, m.template) for m in await store.outbox() if m.dedup_key not in before]
    return sent


async def test_a_country_in_the_table_gets_the_period_the_date_and_a_reminder(store: Store, held) -> None:
    notifier = await held("US")
    (message,) = [m for m in await store.outbox() if m.template == "retention"]
    assert (
        f"{PERIOD}: counted from the day your parcel was held, that is until about Wednesday 11 March 2026."
        in (text_of(message.raw))
    )
    # Held on the 6th, kept 5 days: reminded 2 days before the 11th, once.
    assert await timed_templates(store, notifier, range(7, 16)) == [(9, "retention_reminder")]
    (reminder,) = [m for m in await store.outbox() if m.template == "retention_reminder"]
    assert PERIOD in text_of(reminder.raw)


async def test_a_destination_without_a_known_period_keeps_todays_wording_and_no_reminder(
    store: Store, held
) -> None:
    notifier = await held(None)
    (message,) = [m for m in await store.outbox() if m.template == "retention"]
    text = text_of(message.raw)
    assert "How long the post office keeps the parcel depends on your country" in text
    assert "until about" not in text
    assert "March" not in text
    assert await timed_templates(store, notifier, range(7, 40)) == []
