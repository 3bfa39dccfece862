"""The JSON API under /api/v1: watch, read, list and unwatch numbers with a bearer token ([intake])."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.config.json_watch import check_watch
from notifier.core.model import TrackingEvent
from notifier.core.numbers import parse_number
from notifier.core.stages import Stage
from notifier.core.views import WATCHED_BY_API, WATCHED_BY_CONFIG, ShipmentView
from notifier.errors import InvalidNumberError
from notifier.pipeline.estimates import Estimator, shown_windows
from notifier.web.openapi import DOCUMENT, NEW_WATCH
from notifier.web.state import DaemonView

logger = logging.getLogger(__name__)

PREFIX = "/api/v1"
# The last events a watch's answer carries: the customer's page shows the whole history.
LAST_EVENTS = 10
_NO_CACHE = {"Cache-Control": "no-store"}
# What a new watch may carry, checked as a [[watch]] table's keys are.
FIELDS = frozenset(NEW_WATCH["properties"])
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="notifier"'}


def _error(status: int, error: str, problems: list[tuple[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if problems is not None:
        body["problems"] = [{"field": field, "reason": reason} for field, reason in problems]
    headers = {**_NO_CACHE, **(_CHALLENGE if status == 401 else {})}
    return JSONResponse(body, status_code=status, headers=headers)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary(view: ShipmentView) -> dict[str, Any]:
    """A watch as the list shows it."""
    return {
        "number": view.number,
        "label": view.label,
        "stage": view.stage.value,
        "active": view.active,
        "watched_by": view.watched_by,
        "destination": view.destination,
        "tags": sorted(view.tags),
        "created_at": _iso(view.created_at),
        "last_polled_at": _iso(view.last_polled_at),
    }


def _event(event: TrackingEvent) -> dict[str, Any]:
    return {
        "when": event.when.iso_local(),
        "status": event.status,
        "stage": event.stage.value,
        "details": event.details,
        "office": event.office,
    }


Handler = Callable[[Request], Awaitable[Response]]


class Api:
    """The routes' shared state: the daemon's view (its settings follow reloads) and an Estimator."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view
        self._estimator: Estimator | None = None

    def estimator(self) -> Estimator:
        # The daemon's own when it has one (one LaneCache for mail, pages and the API).
        shared = getattr(getattr(self.view, "notifier", None), "estimator", None)
        if isinstance(shared, Estimator) and shared.settings == self.view.settings.estimates:
            return shared
        if self._estimator is None or self._estimator.settings != self.view.settings.estimates:
            self._estimator = Estimator(self.view.store, self.view.settings.estimates)
        return self._estimator

    def guarded(self, handler: Handler, *, open_: bool = False) -> Handler:
        """Without a token configured the API is not there (404, the web face's page); with one,
        every route but the document needs it, compared in constant time."""

        async def guard(request: Request) -> Response:
            token = self.view.settings.intake.api_token
            if not token:
                raise HTTPException(404)
            if not open_:
                scheme, _, given = request.headers.get("authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not given:
                    return _error(401, "missing bearer token (Authorization: Bearer <token>)")
                if not hmac.compare_digest(given.strip().encode(), token.encode()):
                    return _error(401, "wrong token")
            return await handler(request)

        return guard

    async def full(self, view: ShipmentView) -> dict[str, Any]:
        """A watch with its subscribers, delivery window and last events."""
        store = self.view.store
        history = await store.history(view.id)
        now = dt.datetime.now(dt.UTC)
        window, withheld = (await shown_windows(self.estimator(), [view], {view.id: history}, now=now))[
            view.id
        ]
        recipients = await store.recipients(view.id)
        newest_first = sorted(history, key=lambda e: e.when.iso_local(), reverse=True)
        return {
            **summary(view),
            "subscribers": [email for _, email, _, _ in recipients],
            "window": None
            if window is None
            else {
                "earliest": window.earliest.isoformat(),
                "latest": window.latest.isoformat(),
                "basis": window.basis,
            },
            "window_withheld": None if window is not None else withheld,
            "events": [_event(e) for e in newest_first[:LAST_EVENTS]],
        }

    def _configured(self, number: str, known: ShipmentView | None) -> bool:
        """The configuration's watchlist decides this number: a change here would be undone at reload."""
        listed = any(w.number == number for w in self.view.settings.watches)
        return listed or (known is not None and known.active and known.watched_by == WATCHED_BY_CONFIG)

    async def create(self, request: Request) -> Response:
        try:
            raw = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"the body is not JSON: {exc}")
        if not isinstance(raw, dict):
            return _error(400, "the body must be a JSON object")
        # The customer's name is not taken here: subscriptions made here greet without one.
        unknown = [(str(key), "unknown key") for key in raw if key not in FIELDS]
        watch, problems = check_watch({k: v for k, v in raw.items() if k in FIELDS})
        if watch is None or unknown:
            problems = sorted(unknown + problems)
            return _error(422, "invalid watch", problems)
        store = self.view.store
        known = await store.get(watch.number)
        if self._configured(watch.number, known):
            return _error(409, f"{watch.number} is in the configuration's watchlist: edit it there")
        now = dt.datetime.now(dt.UTC)
        view = await store.watch(
            parse_number(watch.number),
            now=now,
            label=watch.label,
            destination=watch.destination,
            tags=watch.tags if "tags" in raw else None,
            watched_by=WATCHED_BY_API,
        )
        for address in watch.subscribers:
            await store.subscribe(view.id, address, locale=watch.locale, now=now, time_zone=watch.time_zone)
        created = known is None or not known.active or known.id != view.id
        logger.info(
            "api: %s %s",
            "watching" if created else "updated",
            view.number,
            extra={"action": "api_watch", "number": view.number},
        )
        fresh = await store.get(view.number)
        body = await self.full(fresh if fresh is not None else view)
        return JSONResponse(body, status_code=201 if created else 200, headers=_NO_CACHE)

    async def _known(self, request: Request) -> tuple[str, ShipmentView | None]:
        text = str(request.path_params["number"])
        try:
            number = parse_number(text).value
        except InvalidNumberError:
            return text, None
        return number, await self.view.store.get(number)

    async def read(self, request: Request) -> Response:
        number, view = await self._known(request)
        if view is None:
            return _error(404, f"{number} was never watched")
        return JSONResponse(await self.full(view), headers=_NO_CACHE)

    async def delete(self, request: Request) -> Response:
        number, view = await self._known(request)
        if view is None:
            return _error(404, f"{number} was never watched")
        if self._configured(number, view):
            return _error(409, f"{number} is in the configuration's watchlist: remove it there")
        await self.view.store.unwatch(number)
        logger.info("api: unwatched %s", number, extra={"action": "api_unwatch", "number": number})
        return Response(status_code=204, headers=_NO_CACHE)

    async def listing(self, request: Request) -> Response:
        wanted: set[Stage] = set()
        unknown: list[str] = []
        for value in request.query_params.getlist("stage"):
            for name in filter(None, (part.strip() for part in value.split(","))):
                try:
                    wanted.add(Stage(name))
                except ValueError:
                    unknown.append(name)
        if unknown:
            known = ", ".join(s.value for s in Stage)
            return _error(
                422,
                "unknown stage",
                [("stage", f"{name!r} is not a stage; the stages are {known}") for name in unknown],
            )
        views = await self.view.store.shipments()
        shown = [summary(v) for v in views if not wanted or v.stage in wanted]
        return JSONResponse({"watches": shown}, headers=_NO_CACHE)

    async def document(self, request: Request) -> Response:
        return JSONResponse(DOCUMENT, headers=_NO_CACHE)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{PREFIX}/openapi.json", self.guarded(self.document, open_=True), methods=["GET"]),
            Route(f"{PREFIX}/watches", self.guarded(self.create), methods=["POST"]),
            Route(f"{PREFIX}/watches", self.guarded(self.listing), methods=["GET"]),
            Route(f"{PREFIX}/watches/{{number}}", self.guarded(self.read), methods=["GET"]),
            Route(f"{PREFIX}/watches/{{number}}", self.guarded(self.delete), methods=["DELETE"]),
        ]


def api_routes(view: DaemonView) -> list[BaseRoute]:
    """The JSON API's routes, for build_app(..., extra_routes=...); they answer 404 while no
    token is configured (read at each request: a reload may add or remove it)."""
    if view.settings.intake.api_token:
        logger.info("JSON API on at %s/", PREFIX, extra={"action": "api_on"})
    return Api(view).routes()
