"""Shop-platform webhooks read purely: signatures, and Shopify/WooCommerce payloads to orders to watch."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from notifier.core.numbers import TrackingNumber, parse_number
from notifier.errors import InvalidNumberError

SHOPIFY = "shopify"
WOOCOMMERCE = "woocommerce"
SHOPIFY_TOPICS = frozenset({"fulfillments/create", "fulfillments/update", "orders/fulfilled"})
WOOCOMMERCE_TOPICS = frozenset({"order.created", "order.updated"})
WOOCOMMERCE_PING = "action.wc_webhook_ping"
# WooCommerce Shipment Tracking keeps its items in this order meta key, each with a tracking_number.
WC_TRACKING_META = "_wc_shipment_tracking_items"
LOCALES = ("en", "ja")
# WooCommerce order statuses after which nothing will be shipped.
_WC_CANCELLED = frozenset({"cancelled", "refunded", "failed"})
_FULFILLMENT_SUFFIX = re.compile(r"\.\d+$")
_COUNTRY = re.compile(r"[A-Za-z]{2}")


class PayloadError(ValueError):
    """A signed payload we cannot use; the message names the field."""


@dataclass(frozen=True, slots=True)
class IntakeOrder:
    """One fulfillment (Shopify) or order (WooCommerce): what to watch, for whom, or to stop."""

    reference: str
    email: str | None
    label: str
    destination: str | None
    locale: str
    numbers: tuple[TrackingNumber, ...]
    ignored: tuple[str, ...]
    cancelled: bool


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """base64(HMAC-SHA256(raw body, secret)) compared in constant time with the header."""
    if not secret or not header:
        return False
    expected = base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode("ascii", "replace"))


def sign(secret: str, body: bytes) -> str:
    """The header value a platform sends for `body` (tests, the benchmark and the how-tos)."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def locale_of(value: object, default: str) -> str:
    """ "ja", "ja-JP", "en-US" to one of our locales; anything else to `default`."""
    if isinstance(value, str) and value[:2].lower() in LOCALES:
        return value[:2].lower()
    return default


def _numbers(candidates: Sequence[object]) -> tuple[tuple[TrackingNumber, ...], tuple[str, ...]]:
    numbers: dict[str, TrackingNumber] = {}
    ignored: list[str] = []
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate.strip():
            continue
        try:
            number = parse_number(candidate)
        except InvalidNumberError:
            # Not Japan Post's by our rules, whatever carrier name the shop typed.
            ignored.append(candidate.strip()[:40])
            continue
        numbers.setdefault(number.value, number)
    return tuple(numbers.values()), tuple(dict.fromkeys(ignored))


def _email(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and "@" in value and len(value) <= 320 else None


def _country(value: object) -> str | None:
    return value.upper() if isinstance(value, str) and _COUNTRY.fullmatch(value) else None


def _table(payload: object, what: str) -> Mapping[str, Any]:
    if not isinstance(payload, dict):
        raise PayloadError(f"{what}: expected a JSON object")
    return payload


def _shopify_fulfillment(
    fulfillment: Mapping[str, Any], order: Mapping[str, Any], default_locale: str
) -> IntakeOrder:
    ident = fulfillment.get("id")
    if not isinstance(ident, int | str) or isinstance(ident, bool) or str(ident) == "":
        raise PayloadError("id: the fulfillment has no id")
    candidates: list[object] = []
    listed = fulfillment.get("tracking_numbers")
    if isinstance(listed, list):
        candidates.extend(listed)
    candidates.append(fulfillment.get("tracking_number"))
    numbers, ignored = _numbers(candidates)
    name = fulfillment.get("name") or order.get("name") or ""
    label = _FULFILLMENT_SUFFIX.sub("", str(name))[:200] if isinstance(name, str | int) else ""
    destination = fulfillment.get("destination") or order.get("shipping_address") or {}
    customer = order.get("customer") if isinstance(order.get("customer"), dict) else {}
    locale = (
        order.get("customer_locale") or fulfillment.get("customer_locale") or (customer or {}).get("locale")
    )
    return IntakeOrder(
        reference=f"fulfillment:{ident}",
        email=_email(fulfillment.get("email"))
        or _email(order.get("email"))
        or _email(order.get("contact_email")),
        label=label,
        destination=_country(destination.get("country_code")) if isinstance(destination, dict) else None,
        locale=locale_of(locale, default_locale),
        numbers=numbers,
        ignored=ignored,
        cancelled=fulfillment.get("status") in ("cancelled", "error", "failure"),
    )


def shopify_orders(topic: str, payload: object, default_locale: str) -> list[IntakeOrder]:
    """The fulfillments a Shopify webhook carries: the payload itself for fulfillments/*, each of
    `fulfillments[]` for orders/fulfilled (the order gives the name, email and locale)."""
    body = _table(payload, "body")
    if topic == "orders/fulfilled":
        fulfillments = body.get("fulfillments")
        if not isinstance(fulfillments, list):
            raise PayloadError("fulfillments: expected a list")
        return [
            _shopify_fulfillment(_table(f, f"fulfillments[{i}]"), body, default_locale)
            for i, f in enumerate(fulfillments)
        ]
    return [_shopify_fulfillment(body, {}, default_locale)]


def woocommerce_numbers(meta_data: object) -> list[object]:
    """tracking_number of every item under the order meta `_wc_shipment_tracking_items`."""
    found: list[object] = []
    if not isinstance(meta_data, list):
        return found
    for meta in meta_data:
        if (
            isinstance(meta, dict)
            and meta.get("key") == WC_TRACKING_META
            and isinstance(meta.get("value"), list)
        ):
            found.extend(item.get("tracking_number") for item in meta["value"] if isinstance(item, dict))
    return found


def woocommerce_order(payload: object, default_locale: str) -> IntakeOrder:
    """An order.created/order.updated body (the REST order shape)."""
    body = _table(payload, "body")
    ident = body.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        raise PayloadError("id: the order has no id")
    billing = body.get("billing") if isinstance(body.get("billing"), dict) else {}
    shipping = body.get("shipping") if isinstance(body.get("shipping"), dict) else {}
    numbers, ignored = _numbers(woocommerce_numbers(body.get("meta_data")))
    number = body.get("number") or ident
    return IntakeOrder(
        reference=f"order:{ident}",
        email=_email((billing or {}).get("email")),
        label=f"#{number}"[:200],
        destination=_country((shipping or {}).get("country")) or _country((billing or {}).get("country")),
        locale=default_locale,
        numbers=numbers,
        ignored=ignored,
        cancelled=body.get("status") in _WC_CANCELLED,
    )
