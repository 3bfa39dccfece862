"""Shop webhooks without the web: signatures, the documented payload shapes, and the intake's
store on SQLite and PostgreSQL (replays, updates, cancellations, the capped call log)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from notifier.config import parse_settings
from notifier.core.intake import (
    IntakeOrder,
    PayloadError,
    shopify_orders,
    sign,
    signature_ok,
    woocommerce_order,
)
from notifier.core.numbers import parse_number
from notifier.errors import ConfigError
from notifier.store import Store
from notifier.store.intake import KEEP_REFUSED

DATA = Path(__file__).parent / "data" / "intake"
T0 = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)
EMS = "EJ202603021JP"


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / name).read_text(encoding="utf-8")))


def test_the_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id": 1}'
    # printf %s "$body" | openssl dgst -sha256 -hmac secret -binary | base64, computed independently:
    assert sign("secret", body) == "HmaC4Bw8oKa+/A6Wm3oTLEyqJmv+tDIzcqPNO7NS3Do="
    assert signature_ok("secret", body, sign("secret", body))
    assert not signature_ok("secret", body + b" ", sign("secret", body))
    assert not signature_ok("secret", body, None)
    assert not signature_ok("secret", body, "not base64 ☃")
    assert not signature_ok("", body, sign("", body))


def test_a_shopify_fulfillment_gives_its_japan_post_numbers_and_counts_the_others() -> None:
    (order,) = shopify_orders("fulfillments/create", fixture("shopify_fulfillment.json"), "ja")
    assert order.reference == "fulfillment:4444444444"
    assert [n.value for n in order.numbers] == [EMS]
    assert order.ignored == ("1Z999AA10123456784",)
    assert (order.email, order.label, order.destination, order.locale) == (
        "buyer@example.com",
        "#1001",
        "US",
        "ja",
    )
    assert not order.cancelled


def test_orders_fulfilled_reads_each_fulfillment_with_the_orders_locale() -> None:
    fulfillment = fixture("shopify_fulfillment.json")
    del fulfillment["email"]
    order = {"id": 5555555555, "name": "#1001", "email": "buyer@example.com", "customer_locale": "en-US"}
    (taken,) = shopify_orders("orders/fulfilled", order | {"fulfillments": [fulfillment]}, "ja")
    assert (taken.email, taken.locale, taken.label) == ("buyer@example.com", "en", "#1001")
    with pytest.raises(PayloadError, match="fulfillments"):
        shopify_orders("orders/fulfilled", order, "en")
    with pytest.raises(PayloadError, match="id"):
        shopify_orders("fulfillments/create", {"tracking_number": EMS}, "en")


def test_a_woocommerce_order_reads_the_shipment_tracking_meta() -> None:
    order = woocommerce_order(fixture("woocommerce_order.json"), "ja")
    assert [n.value for n in order.numbers] == ["314159265350"]
    assert (order.reference, order.email, order.label, order.destination) == (
        "order:727",
        "hanako@example.jp",
        "#727",
        "JP",
    )
    cancelled = woocommerce_order(fixture("woocommerce_order.json") | {"status": "cancelled"}, "ja")
    assert cancelled.cancelled


def test_intake_settings_come_from_a_file_and_refuse_short_secrets(tmp_path: Path) -> None:
    (tmp_path / "shop").write_text("x" * 32 + "\n", encoding="utf-8")
    settings = parse_settings(
        f'[intake]\nshopify_secret_file = "{tmp_path / "shop"}"\ndefault_locale = "ja"\n', tmp_path / "n.toml"
    )
    assert settings.intake.shopify_secret == "x" * 32
    assert settings.intake.woocommerce_secret is None
    assert settings.intake.default_locale == "ja"
    (tmp_path / "short").write_text("short\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"intake\.woocommerce_secret_file.*at least 16"):
        parse_settings(f'[intake]\nwoocommerce_secret_file = "{tmp_path / "short"}"\n', tmp_path / "n.toml")
    with pytest.raises(ConfigError, match=r"intake\.default_locale"):
        parse_settings('[intake]\ndefault_locale = "fr"\n', tmp_path / "n.toml")


def test_intake_secrets_come_from_the_environment_else_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("NOTIFIER_WOOCOMMERCE_SECRET", raising=False)
    monkeypatch.setenv("NOTIFIER_SHOPIFY_SECRET", "shopify secret from the environment")
    settings = parse_settings("[intake]\n")
    assert settings.intake.shopify_secret == "shopify secret from the environment"
    assert settings.intake.woocommerce_secret is None
    monkeypatch.delenv("NOTIFIER_SHOPIFY_SECRET")
    (tmp_path / "shopify-secret").write_text("shopify secret from systemd\n", encoding="utf-8")
    (tmp_path / "woocommerce-secret").write_text("woocommerce secret from systemd\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = parse_settings("")
    assert settings.intake.shopify_secret == "shopify secret from systemd"
    assert settings.intake.woocommerce_secret == "woocommerce secret from systemd"


@pytest_asyncio.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


def order(
    numbers: tuple[str, ...], *, reference: str = "fulfillment:1", cancelled: bool = False
) -> IntakeOrder:
    return IntakeOrder(
        reference=reference,
        email="Buyer@Example.com",
        label="#1001",
        destination="US",
        locale="ja",
        numbers=tuple(parse_number(n) for n in numbers),
        ignored=(),
        cancelled=cancelled,
    )


async def test_take_watches_once_and_a_replay_changes_nothing(store: Store) -> None:
    first = await store.intake.take("shopify", "e1", "fulfillments/create", [order((EMS,))], now=T0)
    assert first.watched == (EMS,)
    replay = await store.intake.take(
        "shopify", "e1", "fulfillments/create", [order((EMS,), cancelled=True)], now=T0
    )
    assert replay.replayed
    view = await store.get(EMS)
    assert view is not None
    assert view.active
    assert view.watched_by == "shopify"
    assert await store.locale_for("buyer@example.com", EMS) == "ja"
    # The event id is forgotten after a few days: the same id is then a new event.
    later = await store.intake.take("shopify", "e1", "fulfillments/update", [], now=T0 + dt.timedelta(days=4))
    assert not later.replayed
    calls = await store.intake.recent_calls()
    assert [c.outcome for c in calls] == ["ignored", "ignored", "accepted"]


async def test_updates_and_cancellations_unwatch_only_what_the_intake_started(store: Store) -> None:
    other = "EL015307999JP"
    await store.intake.take("shopify", "e1", "t", [order((EMS,))], now=T0)
    # The CLI watches `other` itself: the intake subscribes its customer but does not own it.
    await store.watch(parse_number(other), now=T0)
    await store.intake.take("shopify", "e2", "t", [order((other,), reference="fulfillment:2")], now=T0)
    changed = await store.intake.take("shopify", "e3", "t", [order((other,))], now=T0)
    assert changed.unwatched == (EMS,)
    cancelled = await store.intake.take("shopify", "e4", "t", [order((other,), cancelled=True)], now=T0)
    assert cancelled.unwatched == ()
    still = await store.get(other)
    assert still is not None
    assert still.active
    assert still.watched_by == "cli"


async def test_refused_calls_cannot_fill_the_log(store: Store) -> None:
    await store.intake.take("shopify", "e1", "t", [order((EMS,))], now=T0)
    for _ in range(KEEP_REFUSED * 3):
        await store.intake.refused("shopify", "t", "bad signature", now=T0)
    calls = await store.intake.recent_calls(limit=1000)
    assert sum(c.outcome == "refused" for c in calls) <= KEEP_REFUSED + 1
    assert any(c.outcome == "accepted" for c in calls)
