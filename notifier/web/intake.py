"""POST /intake/shopify and /intake/woocommerce: signed shop webhooks in, numbers watched before the 200."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.core.intake import (
    SHOPIFY,
    SHOPIFY_TOPICS,
    WOOCOMMERCE,
    WOOCOMMERCE_PING,
    WOOCOMMERCE_TOPICS,
    IntakeOrder,
    PayloadError,
    shopify_orders,
    signature_ok,
    woocommerce_order,
)
from notifier.web.state import DaemonView

logger = logging.getLogger(__name__)


# Anyone can send a refused call: at most one a second is written to the database.
_REFUSED_LOG_GAP = 1.0


class _Refusals:
    def __init__(self) -> None:
        self.last = 0.0
        self.count = 0

    def should_log(self) -> bool:
        self.count += 1
        now = time.monotonic()
        if now - self.last < _REFUSED_LOG_GAP:
            return False
        self.last = now
        return True


def _answer(status: int, **body: object) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def intake_routes(view: DaemonView) -> list[BaseRoute]:
    """Both routes; each answers 404 while its secret is not configured (a reload may set it)."""
    refusals = _Refusals()

    async def refuse(platform: str, topic: str, detail: str, status: int, error: str) -> Response:
        logger.warning("%s webhook refused: %s", platform, detail, extra={"action": "intake_refused"})
        if refusals.should_log():
            await view.store.intake.refused(platform, topic, detail, now=dt.datetime.now(dt.UTC))
        return _answer(status, error=error)

    async def take(platform: str, event_id: str | None, topic: str, orders: list[IntakeOrder]) -> Response:
        result = await view.store.intake.take(platform, event_id, topic, orders, now=dt.datetime.now(dt.UTC))
        if result.watched or result.unwatched:
            logger.info(
                "%s webhook: watched %s, unwatched %s",
                platform,
                " ".join(result.watched) or "none",
                " ".join(result.unwatched) or "none",
                extra={"action": "intake_taken"},
            )
        return _answer(
            200,
            replayed=result.replayed,
            watched=list(result.watched),
            unwatched=list(result.unwatched),
            ignored=list(result.ignored),
        )

    async def shopify(request: Request) -> Response:
        secret = view.settings.intake.shopify_secret
        if secret is None:
            return Response(status_code=404)
        body = await request.body()
        topic = request.headers.get("x-shopify-topic", "")[:60]
        # The signature is checked on the raw bytes before anything of them is read.
        if not signature_ok(secret, body, request.headers.get("x-shopify-hmac-sha256")):
            return await refuse(SHOPIFY, topic, "bad or missing X-Shopify-Hmac-Sha256", 401, "bad signature")
        event_id = request.headers.get("x-shopify-event-id") or request.headers.get("x-shopify-webhook-id")
        if topic not in SHOPIFY_TOPICS:
            return await take(SHOPIFY, event_id, topic, [])
        try:
            orders = shopify_orders(topic, json.loads(body), view.settings.intake.default_locale)
        except (ValueError, PayloadError) as exc:
            return await refuse(SHOPIFY, topic, f"unusable body: {exc}"[:300], 422, str(exc)[:200])
        return await take(SHOPIFY, event_id, topic, orders)

    async def woocommerce(request: Request) -> Response:
        secret = view.settings.intake.woocommerce_secret
        if secret is None:
            return Response(status_code=404)
        body = await request.body()
        topic = request.headers.get("x-wc-webhook-topic", "")[:60]
        if not signature_ok(secret, body, request.headers.get("x-wc-webhook-signature")):
            # WooCommerce's save ping is sent unsigned by some versions: it changes nothing, so
            # it is answered 200 when its body is exactly the ping's.
            if topic == WOOCOMMERCE_PING or _is_ping(body):
                return _answer(200, ping=True)
            return await refuse(
                WOOCOMMERCE, topic, "bad or missing X-WC-Webhook-Signature", 401, "bad signature"
            )
        if topic == WOOCOMMERCE_PING or _is_ping(body):
            return await take(WOOCOMMERCE, None, WOOCOMMERCE_PING, [])
        delivery = request.headers.get("x-wc-webhook-delivery-id")
        event_id = f"{request.headers.get('x-wc-webhook-id', '')}:{delivery}" if delivery else None
        if topic not in WOOCOMMERCE_TOPICS:
            return await take(WOOCOMMERCE, event_id, topic, [])
        try:
            order = woocommerce_order(json.loads(body), view.settings.intake.default_locale)
        except (ValueError, PayloadError) as exc:
            return await refuse(WOOCOMMERCE, topic, f"unusable body: {exc}"[:300], 422, str(exc)[:200])
        return await take(WOOCOMMERCE, event_id, topic, [order])

    return [
        Route("/intake/shopify", shopify, methods=["POST"]),
        Route("/intake/woocommerce", woocommerce, methods=["POST"]),
    ]


def _is_ping(body: bytes) -> bool:
    if len(body) > 100:
        return False
    # Some WooCommerce versions send the ping form-encoded: webhook_id=N.
    if body.startswith(b"webhook_id=") and body[11:].isdigit():
        return True
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and set(parsed) == {"webhook_id"}
