"""Shop webhooks into `notifier run` over HTTP: signed Shopify and WooCommerce payloads watched and
mailed, forgeries and replays changing nothing, cancellations, and no watch lost to a SIGKILL."""

from __future__ import annotations

import asyncio
import copy
import email
import email.policy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.core.intake import sign
from notifier.core.views import ShipmentView
from notifier.store import Store
from tests import test_daemon
from tests.smtp_server import SmtpServer
from tests.test_daemon import EMS, RETURNED, YUPACK, Run, config_text, wait_for
from tests.test_web_daemon import free_port

world = test_daemon.world
DATA = Path(__file__).parent / "data" / "intake"
SHOPIFY_SECRET = "shpss_a shopify test secret 0123456789"
WOO_SECRET = "a woocommerce test secret 0123456789"


def shopify_fulfillment() -> dict[str, Any]:
    return dict(json.loads((DATA / "shopify_fulfillment.json").read_text(encoding="utf-8")))


def woocommerce_order() -> dict[str, Any]:
    return dict(json.loads((DATA / "woocommerce_order.json").read_text(encoding="utf-8")))


def start(tmp_path: Path, db_url: str, world: Any) -> tuple[Path, int]:
    """test_daemon's configuration without its [[watch]] tables, with [http] and [intake]."""
    _, jp, smtp, _ = world
    port = free_port()
    for name, value in (
        ("http-secret", "a test secret of more than sixteen characters"),
        ("shopify-secret", SHOPIFY_SECRET),
        ("woo-secret", WOO_SECRET),
    ):
        (tmp_path / name).write_text(value + "\n", encoding="utf-8")
    head = config_text(db_url, jp.base_url, smtp.port).split("[[watch]]", 1)[0]
    config = tmp_path / "notifier.toml"
    config.write_text(
        head + f'\n[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        f'secret_file = "{tmp_path / "http-secret"}"\n'
        f'[intake]\nshopify_secret_file = "{tmp_path / "shopify-secret"}"\n'
        f'woocommerce_secret_file = "{tmp_path / "woo-secret"}"\n',
        encoding="utf-8",
    )
    upgrade = subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    return config, port


def post_shopify(
    port: int,
    payload: dict[str, Any],
    *,
    event: str,
    topic: str = "fulfillments/create",
    secret: str = SHOPIFY_SECRET,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return httpx.post(
        f"http://127.0.0.1:{port}/intake/shopify",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign(secret, body),
            "X-Shopify-Shop-Domain": "sakura.myshopify.com",
            "X-Shopify-Event-Id": event,
            "X-Shopify-Webhook-Id": f"w-{event}",
        },
        timeout=10,
    )


def shipment(db_url: str, number: str) -> ShipmentView | None:
    async def read() -> ShipmentView | None:
        store = await Store.open(db_url)
        try:
            return await store.get(number)
        finally:
            await store.close()

    return asyncio.run(read())


def stages_mailed(smtp: SmtpServer, address: str, number: str) -> list[str]:
    out = []
    for m in smtp.messages:
        message = email.message_from_bytes(m.data, policy=email.policy.default)
        if str(message["To"]) == address and message["X-Notifier-Tracking-Number"] == number:
            out.append(str(message["X-Notifier-Stage"]))
    return out


def ready(run: Run) -> None:
    wait_for(lambda: "notifier running" in run.output(), 30, run.output)


@pytest.mark.timeout(240)
def test_shopify_fulfillments_are_watched_mailed_once_and_unwatched(
    tmp_path: Path, empty_db_url: str, world: Any
) -> None:
    simulator, _, smtp, _ = world
    config, port = start(tmp_path, empty_db_url, world)
    run = Run(config)
    try:
        ready(run)
        fulfillment = shopify_fulfillment()
        # A forgery (signed with another secret) and an unsigned call: 401, nothing watched.
        assert (
            post_shopify(port, fulfillment, event="e1", secret="not the shop's secret at all").status_code
            == 401
        )
        unsigned = httpx.post(f"http://127.0.0.1:{port}/intake/shopify", content=b"{}", timeout=10)
        assert unsigned.status_code == 401
        assert shipment(empty_db_url, EMS) is None

        answer = post_shopify(port, fulfillment, event="e1")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "replayed": False,
            "watched": [EMS],
            "unwatched": [],
            "ignored": ["1Z999AA10123456784"],
        }
        # Committed before the answer.
        watched = shipment(empty_db_url, EMS)
        assert watched is not None
        assert watched.active
        assert (watched.watched_by, watched.label, watched.destination) == ("shopify", "#1001", "US")

        # Shopify's retry of the same event: accepted and ignored.
        again = post_shopify(port, fulfillment, event="e1")
        assert again.status_code == 200
        assert again.json()["replayed"] is True

        for _ in range(3):
            simulator.advance(EMS)
            time.sleep(0.8)
        wait_for(lambda: len(stages_mailed(smtp, "buyer@example.com", EMS)) >= 2, 60, run.output)
        time.sleep(1.5)  # nothing more may arrive
        mailed = stages_mailed(smtp, "buyer@example.com", EMS)
        assert len(mailed) == len(set(mailed)), mailed  # each stage once, despite the replay

        # A fulfillment that is not Japan Post's at all: 2xx, ignored and counted.
        other = copy.deepcopy(fulfillment) | {"id": 4444444445, "tracking_number": "1Z999AA10123456784"}
        other["tracking_numbers"] = ["1Z999AA10123456784"]
        ignored = post_shopify(port, other, event="e2")
        assert ignored.status_code == 200
        assert ignored.json()["watched"] == []
        assert ignored.json()["ignored"] == ["1Z999AA10123456784"]

        # An update changing the number: the old one is unwatched, the new one watched.
        changed = fulfillment | {"tracking_number": RETURNED, "tracking_numbers": [RETURNED]}
        update = post_shopify(port, changed, event="e3", topic="fulfillments/update")
        assert update.json()["watched"] == [RETURNED]
        assert update.json()["unwatched"] == [EMS]
        old = shipment(empty_db_url, EMS)
        assert old is not None
        assert not old.active

        # Cancelled: unwatched.
        cancelled = post_shopify(
            port, changed | {"status": "cancelled"}, event="e4", topic="fulfillments/update"
        )
        assert cancelled.json()["unwatched"] == [RETURNED]
        gone = shipment(empty_db_url, RETURNED)
        assert gone is not None
        assert not gone.active

        # A reload (the config watches nothing) leaves the intake's watches alone.
        post_shopify(port, fulfillment | {"id": 4444444446}, event="e5")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in run.output(), 20, run.output)
        kept = shipment(empty_db_url, EMS)
        assert kept is not None
        assert kept.active
    finally:
        run.stop()
    assert "Traceback" not in run.output()


@pytest.mark.timeout(240)
def test_sigkill_right_after_the_200_loses_no_watch_and_woocommerce_works(
    tmp_path: Path, empty_db_url: str, world: Any
) -> None:
    config, port = start(tmp_path, empty_db_url, world)
    run = Run(config)
    try:
        ready(run)
        fulfillment = shopify_fulfillment() | {"tracking_number": YUPACK, "tracking_numbers": [YUPACK]}
        assert post_shopify(port, fulfillment, event="k1").status_code == 200
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(timeout=30)
    finally:
        run.stop()
    status = subprocess.run(
        [sys.executable, "-m", "notifier", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [(row["number"], row["watched_by"]) for row in json.loads(status.stdout)] == [(YUPACK, "shopify")]
    kept = shipment(empty_db_url, YUPACK)
    assert kept is not None
    assert kept.active
    assert kept.watched_by == "shopify"

    run = Run(config)
    try:
        ready(run)
        url = f"http://127.0.0.1:{port}/intake/woocommerce"
        ping = json.dumps({"webhook_id": 7}).encode()
        saved = httpx.post(
            url,
            content=ping,
            headers={
                "X-WC-Webhook-Topic": "action.wc_webhook_ping",
                "X-WC-Webhook-Signature": sign(WOO_SECRET, ping),
            },
            timeout=10,
        )
        assert saved.status_code == 200
        body = json.dumps(woocommerce_order()).encode()
        headers = {
            "Content-Type": "application/json",
            "X-WC-Webhook-Topic": "order.updated",
            "X-WC-Webhook-ID": "7",
            "X-WC-Webhook-Delivery-ID": "d1",
        }
        forged = httpx.post(
            url, content=body, headers=headers | {"X-WC-Webhook-Signature": sign("x" * 20, body)}, timeout=10
        )
        assert forged.status_code == 401
        good = httpx.post(
            url,
            content=body,
            headers=headers | {"X-WC-Webhook-Signature": sign(WOO_SECRET, body)},
            timeout=10,
        )
        assert good.status_code == 200, good.text
        assert good.json()["watched"] == [YUPACK]
        watched = shipment(empty_db_url, YUPACK)
        # Already the Shopify intake's: the owner stays, the WooCommerce customer is subscribed.
        assert watched is not None
        assert watched.active
        assert watched.label == "#727"
        replay = httpx.post(
            url,
            content=body,
            headers=headers | {"X-WC-Webhook-Signature": sign(WOO_SECRET, body)},
            timeout=10,
        )
        assert replay.json()["replayed"] is True
    finally:
        run.stop()
    assert "Traceback" not in run.output()
