"""The intake routes in the web face over real uvicorn and a real store: 404 without a secret,
large signed bodies, no per-client throttle for platforms, forgeries not filling the call log,
and the operator board's "Shop webhooks" list and watch source."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from notifier.config.settings import IntakeSettings
from notifier.core.intake import sign
from notifier.store import Store
from notifier.store.intake import KEEP_REFUSED
from notifier.web.admin import admin_routes
from notifier.web.app import build_app
from notifier.web.intake import intake_routes
from notifier.web.state import DaemonView
from tests.test_web_admin import View, board_settings, login
from tests.web_server import serving

DATA = Path(__file__).parent / "data" / "intake"
SECRET = "a shopify secret for the web tests"
EMS = "EJ202603021JP"


@pytest.fixture
async def site(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[tuple[str, Store, View]]:
    path = tmp_path / "intake.db"
    shutil.copyfile(sqlite_template, path)
    store = await Store.open(f"sqlite:///{path}")
    try:
        settings = dataclasses.replace(board_settings(), intake=IntakeSettings(shopify_secret=SECRET))
        view = View(store, settings)
        daemon = cast(DaemonView, view)
        app = build_app(daemon, extra_routes=[*admin_routes(daemon), *intake_routes(daemon)])
        async with serving(app) as url:
            yield url, store, view
    finally:
        await store.close()


def signed(payload: dict[str, Any], event: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        "X-Shopify-Topic": "fulfillments/create",
        "X-Shopify-Hmac-Sha256": sign(secret, body),
        "X-Shopify-Event-Id": event,
    }


def fulfillment() -> dict[str, Any]:
    return dict(json.loads((DATA / "shopify_fulfillment.json").read_text(encoding="utf-8")))


async def test_a_platform_without_its_secret_has_no_route(site: tuple[str, Store, View]) -> None:
    url, _, view = site
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.post("/intake/woocommerce", content=b"{}")).status_code == 404
        view.settings = dataclasses.replace(view.settings, intake=IntakeSettings())
        body, headers = signed(fulfillment(), "e1")
        assert (await client.post("/intake/shopify", content=body, headers=headers)).status_code == 404


async def test_large_signed_orders_pass_and_platforms_are_not_throttled(
    site: tuple[str, Store, View],
) -> None:
    url, store, _ = site
    payload = fulfillment() | {"line_items": [{"id": i, "title": "手ぬぐい" * 20} for i in range(400)]}
    async with httpx.AsyncClient(base_url=url) as client:
        body, headers = signed(payload, "big")
        assert len(body) > 64 * 1024
        answer = await client.post("/intake/shopify", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        # More than the customer pages' burst (60) from one address: none is refused with 429.
        codes = set()
        for i in range(80):
            body, headers = signed(fulfillment(), f"e{i}")
            codes.add((await client.post("/intake/shopify", content=body, headers=headers)).status_code)
        assert codes == {200}
    view = await store.get(EMS)
    assert view is not None
    assert view.watched_by == "shopify"


async def test_forgeries_are_refused_without_filling_the_call_log(site: tuple[str, Store, View]) -> None:
    url, store, _ = site
    async with httpx.AsyncClient(base_url=url) as client:
        for i in range(KEEP_REFUSED * 3):
            body, headers = signed(fulfillment(), f"f{i}", secret="a forger's guess of the secret")
            assert (await client.post("/intake/shopify", content=body, headers=headers)).status_code == 401
    assert await store.get(EMS) is None
    calls = await store.intake.recent_calls(limit=1000)
    # At most one refused call a second is written, and never more than KEEP_REFUSED are kept.
    assert 1 <= len(calls) <= KEEP_REFUSED
    assert {c.outcome for c in calls} == {"refused"}


async def test_the_board_lists_recent_calls_and_where_watches_came_from(
    site: tuple[str, Store, View],
) -> None:
    url, _, _ = site
    async with httpx.AsyncClient(base_url=url) as client:
        body, headers = signed(fulfillment(), "e1")
        assert (await client.post("/intake/shopify", content=body, headers=headers)).status_code == 200
        forged, headers = signed(fulfillment(), "e2", secret="not it, not it, not it")
        assert (await client.post("/intake/shopify", content=forged, headers=headers)).status_code == 401
        other, headers = signed({"id": 7, "title": "a product"}, "e3")
        headers["X-Shopify-Topic"] = "products/update"
        assert (await client.post("/intake/shopify", content=other, headers=headers)).status_code == 200
        assert (await login(client)).status_code == 303
        page = (await client.get("/admin/")).text
    assert "Shop webhooks: recent calls" in page
    assert f"watched {EMS}" in page
    assert "1 not Japan Post: 1Z999AA10123456784" in page
    assert "bad or missing X-Shopify-Hmac-Sha256" in page
    assert "a topic not read" in page  # not "no tracking number": it carries no order at all
    assert "via shopify" in page
    assert dt.datetime.now(dt.UTC).strftime("%Y-%m-%d") in page


async def test_woocommerce_answers_its_save_ping_and_refuses_forged_orders(
    site: tuple[str, Store, View],
) -> None:
    url, store, view = site
    view.settings = dataclasses.replace(view.settings, intake=IntakeSettings(woocommerce_secret=SECRET))
    order = json.loads((DATA / "woocommerce_order.json").read_text(encoding="utf-8"))
    body = json.dumps(order).encode()
    async with httpx.AsyncClient(base_url=url) as client:
        # The ping as some WooCommerce versions send it: form-encoded, unsigned. It changes nothing.
        ping = await client.post(
            "/intake/woocommerce",
            content=b"webhook_id=7",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert ping.status_code == 200
        forged = await client.post(
            "/intake/woocommerce",
            content=body,
            headers={
                "X-WC-Webhook-Topic": "order.updated",
                "X-WC-Webhook-Signature": sign("guess" * 5, body),
            },
        )
        assert forged.status_code == 401
        # A signed body that is not an order: 422 naming the field.
        bad = b'{"status": "completed"}'
        unusable = await client.post(
            "/intake/woocommerce",
            content=bad,
            headers={"X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Signature": sign(SECRET, bad)},
        )
        assert unusable.status_code == 422
        assert "id" in unusable.json()["error"]
    assert await store.get("314159265350") is None
