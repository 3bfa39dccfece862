"""A stall whose email promises that the shop will ask Japan Post is an operator alert too.

Against the simulator over HTTP and a real database (each backend); the last test runs the daemon
as a subprocess with a real SMTP server and a real webhook endpoint on loopback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from notifier.core.compose import MailSettings
from notifier.core.numbers import parse_number
from notifier.core.render import Renderer
from notifier.core.rules import RulesConfig
from notifier.core.views import ConfiguredWatch
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.poll import Notifier, poll_detail, queue_operator_digest, queue_timed
from notifier.store import Store
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests import test_outbox
from tests.smtp_server import SmtpServer
from tests.test_daemon import Run, wait_for
from tests.test_daemon_ops import alert_texts, cli, customer_mail, ops_config, write_config
from tests.web_server import Recorder

EMS = builtin_journeys()[0]
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
MAIL = MailSettings(sender="Sakura <shop@sakura.example>", shop_name="Sakura")

store = test_outbox.store


class Watched:
    """The EMS watched by one customer, polled on demand at a given time."""

    def __init__(self, store: Store, simulator: Simulator, base_url: str) -> None:
        self.store, self.simulator = store, simulator
        self.client = JapanPostClient(ClientSettings(base_url=base_url, request_interval=0, attempts=1))
        self.notifier = Notifier(rules=RulesConfig(max_event_age=3650 * DAY), mail=MAIL, renderer=Renderer())

    async def poll(self, revealed: int, now: dt.datetime) -> None:
        self.simulator.reveal(EMS.number, revealed)
        (view,) = await self.store.shipments()
        await poll_detail(self.store, self.client, view, now=now, next_poll_at=None, notifier=self.notifier)

    async def timed(self, now: dt.datetime) -> int:
        return await queue_timed(self.store, self.notifier, now=now, client=self.client)

    async def stalls(self) -> list[tuple[str, str, int, bool]]:
        return [
            (a.kind, a.subject, a.count, a.acknowledged_at is None)
            for a in await self.store.alerts(include_acknowledged=True)
            if a.kind == "stalled_in_japan"
        ]


@pytest.fixture
async def watched(store: Store) -> AsyncIterator[Watched]:
    simulator = Simulator([dataclasses.replace(EMS, revealed=0)])
    with SimulatorServer(simulator) as server:
        await store.sync_config_watches(
            [
                ConfiguredWatch(
                    number=parse_number(EMS.number),
                    label="Order 1001",
                    subscribers=(("emma@example.com", "en", "America/New_York"),),
                )
            ],
            now=T0,
        )
        watched = Watched(store, simulator, server.base_url)
        yield watched
        await watched.client.aclose()


async def test_a_stall_in_japan_opens_one_alert_that_closes_when_the_parcel_moves(
    store: Store, watched: Watched
) -> None:
    await watched.poll(1, T0)  # accepted in Shibuya
    assert await watched.timed(T0 + 6 * DAY) == 0
    assert await watched.stalls() == []
    assert await watched.timed(T0 + 7 * DAY) == 1  # the customer is told the shop will ask
    (message,) = [m for m in await store.outbox() if m.template == "stalled"]
    assert message.stage == "accepted"
    assert await watched.stalls() == [("stalled_in_japan", EMS.number, 1, True)]
    (alert,) = [a for a in await store.alerts() if a.kind == "stalled_in_japan"]
    assert alert.message.startswith(f"{EMS.number} (Order 1001) has had no new scan for 7 days")
    assert "(stage: accepted)" in alert.message
    # The timed rules run every few minutes: the alert is not raised again, nor counted up.
    for day in (8, 9, 20):
        assert await watched.timed(T0 + day * DAY) == 0
    assert await watched.stalls() == [("stalled_in_japan", EMS.number, 1, True)]
    # It is in the operator's daily digest.
    assert await queue_operator_digest(store, watched.notifier, "ops@sakura.example", now=T0 + 9 * DAY) == 1
    (digest,) = [m for m in await store.outbox() if m.rule == "operator_digest"]
    assert b"stalled_in_japan" in digest.raw
    # The parcel moves: the alert closes by itself, and stays closed.
    await watched.poll(2, T0 + 21 * DAY)
    assert await watched.stalls() == [("stalled_in_japan", EMS.number, 1, False)]
    assert [a.kind for a in await store.alerts()] == []


async def test_a_normal_silence_abroad_tells_the_customer_only(store: Store, watched: Watched) -> None:
    await watched.poll(3, T0)  # dispatched from Tokyo: in the air
    assert await watched.timed(T0 + 10 * DAY) == 1
    assert sorted(m.template for m in await store.outbox()) == ["departed_origin", "stalled"]
    assert await watched.stalls() == []
    await watched.poll(5, T0 + 11 * DAY)  # presented to customs in New York
    assert await watched.timed(T0 + 18 * DAY) == 1
    assert await watched.stalls() == []


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture
def jp() -> Iterator[tuple[Simulator, SimulatorServer]]:
    simulator = Simulator(builtin_journeys())  # the EMS shows its first scan: accepted
    with SimulatorServer(simulator) as server:
        yield simulator, server


@pytest.mark.timeout(180)
def test_the_daemon_emails_and_posts_the_stall_alert_to_the_operator(
    tmp_path: Path, jp: tuple[Simulator, SimulatorServer], sqlite_template: Path, recorder: Recorder
) -> None:
    # One backend: the alert's storage is tested on both above; this is the daemon end to end.
    shutil.copyfile(sqlite_template, tmp_path / "stall.db")
    _, server = jp
    with SmtpServer() as smtp:
        config = write_config(
            tmp_path,
            ops_config(
                f"sqlite:///{tmp_path / 'stall.db'}",
                server.base_url,
                smtp.port,
                notifications=(
                    'alert_batch = "1s"\n'
                    f'operator_webhook = "{recorder.url}/services/hook"\n'
                    '[notifications.stall]\naccepted = "1s"'
                ),
            ),
        )
        # A first poll records the accepted scan; the daemon started after it finds it quiet.
        polled = cli(config, "poll", EMS.number)
        assert polled.returncode == 0, polled.stderr
        # Quiet for longer than the 1 s threshold before the daemon's first timed run, which
        # comes at its start and then every 5 minutes: on a fast machine the daemon is up within
        # the second, finds the stage not yet quiet, and the test would wait out the 5 minutes.
        time.sleep(1.5)
        run = Run(config)
        try:
            wait_for(
                lambda: len(alert_texts(smtp)) >= 1,
                60,
                lambda: f"the operator's alert email (got {alert_texts(smtp)}; log: {run.output()[-2000:]})",
            )
            wait_for(lambda: bool(recorder.received()), 30, "the webhook post")
            wait_for(lambda: customer_mail(smtp) == ["accepted"], 30, "the customer's stall email")
        finally:
            assert run.stop() == 0, run.output()
    (text,) = alert_texts(smtp)
    assert "stalled_in_japan" in text
    assert f"{EMS.number} (Order 1001) has had no new scan for 0 days while still in Japan" in text
    (post,) = recorder.received()
    assert [(a["kind"], a["subject"]) for a in post.json()["alerts"]] == [("stalled_in_japan", EMS.number)]
    alerts = json.loads(cli(config, "alerts", "--json").stdout)
    assert [(a["kind"], a["count"]) for a in alerts] == [("stalled_in_japan", 1)]
