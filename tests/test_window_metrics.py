"""The window end to end: a real daemon polls the simulator, the customer's mail carries the window,
the tracking page and the board show it, and after the delivery /metrics publishes our accuracy."""

from __future__ import annotations

import dataclasses
import datetime as dt
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from starlette.applications import Starlette

from notifier.core.eta import lane_of
from notifier.core.links import Purpose, Signer
from notifier.store.orm import OutboxMessage, Shipment
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from notifier.web.customer import routes as customer_routes
from notifier.web.ops import ops_routes
from tests.test_web_ops import Serve, by_label, parse, started_daemon
from tests.web_server import closed_port

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def dated_now() -> Simulator:
    """The built-in EMS to New York, dated around now: handed in and gone from Japan three days
    ago (Tokyo time), delivered a minute ago (New York time, as Japan Post prints it abroad)."""
    ems = builtin_journeys()[0]
    start = (dt.datetime.now(TOKYO) - dt.timedelta(days=3)).replace(second=0, microsecond=0)
    japan = [
        dataclasses.replace(scan, when=(start + dt.timedelta(hours=4 * i)).strftime("%Y-%m-%dT%H:%M"))
        for i, scan in enumerate(ems.scans[:3])
    ]
    arrived = dt.datetime.now(NEW_YORK).replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    delivered = dataclasses.replace(ems.scans[-1], when=arrived.strftime("%Y-%m-%dT%H:%M"))
    journey = dataclasses.replace(ems, scans=[*japan, delivered], revealed=3)
    return Simulator([journey])


SECRET = "a secret for the window tests, long enough"


def config(tmp_path: Path, db_url: str, jp: str, number: str, mail: str = "always") -> Path:
    path = tmp_path / "notifier.toml"
    (tmp_path / "secret").write_text(SECRET, encoding="utf-8")
    path.write_text(
        f"""
[database]
url = "{db_url}"
[japanpost]
base_url = "{jp}"
request_interval = 0
[polling]
fixed_interval = "0.3s"
tick = "0.3s"
[smtp]
host = "127.0.0.1"
port = {closed_port()}
security = "none"
from = "Sakura <shop@sakura.example>"
allow_example_identity = true
[notifications]
operator = "ops@sakura.example"
max_event_age = "3650d"
multi_stage = "each"
settle = "0s"
[estimates]
mail = "{mail}"
[http]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
secret_file = "secret"
[[watch]]
number = "{number}"
label = "Order 1001"
destination = "US"
subscribers = ["customer@example.com"]
""",
        encoding="utf-8",
    )
    return path


async def test_a_window_shown_in_mail_counts_in_the_metrics_once_delivered(
    db_url: str, tmp_path: Path, asgi_server: Serve
) -> None:
    simulator = dated_now()
    (number,) = simulator.numbers
    with SimulatorServer(simulator) as server:
        async with started_daemon(config(tmp_path, db_url, server.base_url, number)) as daemon:
            await daemon._poll()
            engine = daemon.store.engine
            async with engine.connect() as connection:
                shown = (
                    await connection.execute(
                        select(Shipment.window_earliest, Shipment.window_latest, Shipment.window_basis)
                    )
                ).one()
                raws = list((await connection.execute(select(OutboxMessage.raw))).scalars())
            earliest, latest, basis = shown
            assert earliest is not None
            assert latest is not None
            assert basis == "prior"  # no history of this lane yet: Japan Post's published times
            today = dt.datetime.now(NEW_YORK).date()
            assert earliest <= latest
            assert latest >= today
            # The customer's message about the departure says it in one line.
            texts = [
                message_from_bytes(raw, policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
                for raw in raws
                if raw
            ]
            assert any("Expected between" in text or "Expected on" in text for text in texts), texts

            simulator.reveal(number, 4)
            await daemon.store.mark_due(None, now=dt.datetime.now(dt.UTC))
            await daemon._poll()
            view = await daemon.store.get(number)
            assert view is not None
            assert str(view.stage) == "delivered"
            async with (
                asgi_server(Starlette(routes=ops_routes(daemon))) as base,
                httpx.AsyncClient() as client,
            ):
                samples = parse((await client.get(f"{base}/metrics")).text)
    lane = str(lane_of(number=number, item_type="EMS", origin="JP", destination="US"))
    assert by_label(samples, "notifier_window_deliveries") == {lane: 1}
    inside = int(earliest <= dt.datetime.now(NEW_YORK).date() <= latest)
    assert by_label(samples, "notifier_window_deliveries_inside") == {lane: inside}
    assert by_label(samples, "notifier_window_accuracy_ratio") == {lane: float(inside)}
    assert inside == 1  # the window's earliest day is never before the day it is shown


async def test_by_default_a_prior_window_stays_out_of_mail_but_the_page_shows_and_records_it(
    db_url: str, tmp_path: Path, asgi_server: Serve
) -> None:
    simulator = dated_now()
    (number,) = simulator.numbers
    with SimulatorServer(simulator) as server:
        path = config(tmp_path, db_url, server.base_url, number, mail="history")
        async with started_daemon(path) as daemon:
            await daemon._poll()
            engine = daemon.store.engine
            async with engine.connect() as connection:
                raws = list((await connection.execute(select(OutboxMessage.raw))).scalars())
                before = (await connection.execute(select(Shipment.window_basis))).scalar_one()
            assert raws  # the customer was told about the departure...
            for raw in raws:
                text = message_from_bytes(raw, policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
                assert "Expected" not in text  # ...without the prior's window
            assert before is None
            token = Signer(SECRET).make(Purpose.TRACK, "customer@example.com", number)
            customer = Starlette(routes=customer_routes(daemon))
            async with asgi_server(customer) as base, httpx.AsyncClient() as client:
                page = (await client.get(f"{base}/t/{token}")).text
                japanese = (await client.get(f"{base}/t/{token}?lang=ja")).text
            assert "<strong>Expected " in page
            assert "published delivery times" in page
            assert "のお届け見込みです。</strong>" in japanese
            async with engine.connect() as connection:
                earliest, latest, basis = (
                    await connection.execute(
                        select(Shipment.window_earliest, Shipment.window_latest, Shipment.window_basis)
                    )
                ).one()
            assert basis == "prior"
            assert earliest is not None
            assert latest is not None
            simulator.reveal(number, 4)
            await daemon.store.mark_due(None, now=dt.datetime.now(dt.UTC))
            await daemon._poll()
            async with (
                asgi_server(Starlette(routes=ops_routes(daemon))) as base,
                httpx.AsyncClient() as client,
            ):
                samples = parse((await client.get(f"{base}/metrics")).text)
    lane = str(lane_of(number=number, item_type="EMS", origin="JP", destination="US"))
    assert by_label(samples, "notifier_window_deliveries") == {lane: 1}
    assert by_label(samples, "notifier_window_deliveries_inside") == {lane: 1}
    assert earliest <= dt.datetime.now(NEW_YORK).date() <= latest
