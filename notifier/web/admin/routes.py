"""The operator board's routes (thin): pages, login and logout, and the actions."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable

import jinja2
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.core.mime import AddressError, validate_address
from notifier.core.render import templates_root
from notifier.core.stages import Stage
from notifier.core.views import OutboxState
from notifier.pipeline.estimates import Estimator, shown_windows
from notifier.pipeline.wiring import outbox_policy
from notifier.web.admin.board import (
    MAX_TEXT,
    Filters,
    build_board,
    build_shipment_page,
    load_banners,
    load_snapshot,
)
from notifier.web.admin.session import (
    _ID_BYTES,
    COOKIE_PATH,
    FLASH_COOKIE,
    LOGIN_COOKIE,
    LOGIN_FAILURES,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    LoginThrottle,
    SessionKeys,
    _encode,
    _Revoked,
)
from notifier.web.state import DaemonView

# The logger keeps the name it had when the board was one module (docs/upgrading.md).
logger = logging.getLogger("notifier.web.admin")


# --- routes (thin) -------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_root() / "web" / "admin"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_TEXT]


class AdminBoard:
    """The board's routes over a running daemon; the password is read from the current settings
    at each request, so a reload that adds, changes or removes it takes effect at once."""

    def __init__(self, view: DaemonView, *, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.clock = clock
        self.throttle = LoginThrottle()
        self.revoked = _Revoked()
        self.templates = _environment()
        self._own_estimator: Estimator | None = None

    # -- helpers

    def _keys(self) -> SessionKeys:
        """The current keys; without a password the board does not exist (404)."""
        http = self.view.settings.http
        if http is None or http.admin_password is None or not http.secret:
            raise HTTPException(404)
        return SessionKeys(http.secret, http.admin_password)

    def _secure(self) -> bool:
        http = self.view.settings.http
        return http is not None and http.public_url.startswith("https://")

    def _session(self, request: Request, keys: SessionKeys) -> str | None:
        session = keys.session_id(request.cookies.get(SESSION_COOKIE), self.clock())
        return None if session is None or session in self.revoked else session

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            secure=self._secure(),
            httponly=True,
            samesite="strict",
        )

    def _page(self, template: str, status: int = 200, **context: object) -> HTMLResponse:
        body = self.templates.get_template(template).render(**context)
        # No token is in the board's paths: its own forms may say where they come from (under
        # no-referrer a browser posts them with Origin: null), other sites still learn nothing.
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
        return HTMLResponse(body, status_code=status, headers=headers)

    def _same_origin(self, request: Request) -> bool:
        """A POST must come from the board's own pages: checked where the browser says."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        if origin == "null":
            # A page under Referrer-Policy: no-referrer (the rest of the web face) posts with
            # Origin: null; the browser's Sec-Fetch-Site still tells a same-origin form apart.
            return site == "same-origin"
        http = self.view.settings.http
        allowed = {f"{request.url.scheme}://{request.url.netloc}"}
        if http is not None:
            public = urllib.parse.urlsplit(http.public_url)
            allowed.add(f"{public.scheme}://{public.netloc}")
        return origin in allowed

    def _refused(self, request: Request, why: str) -> Response:
        logger.warning(
            "admin: %s %s refused (%s) from %s",
            request.method,
            request.url.path,
            why,
            _client(request),
            extra={"action": "admin_refused", "client": _client(request)},
        )
        return self._page("refused.html.j2", 403, why=why)

    # -- pages

    def _estimator(self) -> Estimator:
        """The daemon's estimator when it has one (one LaneCache for mail and pages), else the board's."""
        shared = getattr(getattr(self.view, "notifier", None), "estimator", None)
        if isinstance(shared, Estimator) and shared.settings == self.view.settings.estimates:
            return shared
        if self._own_estimator is None or self._own_estimator.settings != self.view.settings.estimates:
            self._own_estimator = Estimator(self.view.store, self.view.settings.estimates)
        return self._own_estimator

    async def board(self, request: Request) -> Response:
        keys = self._keys()
        session = self._session(request, keys)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        filters = Filters.from_query(request.query_params)
        snapshot = await load_snapshot(self.view.store, self._estimator())
        settings = self.view.settings
        now = dt.datetime.now(dt.UTC)
        board = build_board(
            snapshot,
            filters,
            now=now,
            policy=outbox_policy(settings),
            stalls=settings.notifications.rules.stalls,
        )
        intake = settings.intake
        # Shown once a shop platform is connected: does its platform reach us?
        calls = (
            await self.view.store.intake.recent_calls()
            if intake.shopify_secret is not None or intake.woocommerce_secret is not None
            else None
        )
        response = self._page(
            "board.html.j2",
            intake_calls=calls,
            banners=await load_banners(self.view, now),
            page="",
            now=board.now,
            board=board,
            stages=[str(stage) for stage in Stage],
            csrf=keys.form_token("action", session),
            back=filters.query(),
            flash=keys.read_flash(request.cookies.get(FLASH_COOKIE)),
        )
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    async def shipment(self, request: Request) -> Response:
        keys = self._keys()
        session = self._session(request, keys)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        number = str(request.path_params["number"]).strip().upper()[:40]
        store = self.view.store
        view = await store.get(number)
        if view is None:
            raise HTTPException(404)
        subscribers = [email for _, email, _, _ in await store.recipients(view.id)]
        now = dt.datetime.now(dt.UTC)
        history = await store.history(view.id)
        windows = await shown_windows(self._estimator(), [view], {view.id: history}, now=now)
        page = build_shipment_page(
            view,
            window=windows[view.id],
            history=history,
            subscribers=subscribers,
            suppressed=frozenset(await store.suppressed_among(subscribers)),
            messages=await store.outbox_for(view.number),
            alerts=await store.alerts(),
            stalls=self.view.settings.notifications.rules.stalls,
            now=now,
        )
        response = self._page(
            "shipment.html.j2",
            banners=await load_banners(self.view, now),
            shipment=page,
            now=f"{now:%Y-%m-%d %H:%M}Z",
            csrf=keys.form_token("action", session),
            back="",
            page=view.number,
            flash=keys.read_flash(request.cookies.get(FLASH_COOKIE)),
        )
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    async def login_form(self, request: Request) -> Response:
        keys = self._keys()
        if self._session(request, keys) is not None:
            return RedirectResponse("/admin/", status_code=303)
        return self._login_page(keys, "")

    def _login_page(self, keys: SessionKeys, error: str, status: int = 200) -> Response:
        nonce = _encode(os.urandom(_ID_BYTES))
        response = self._page("login.html.j2", status, csrf=keys.form_token("login", nonce), error=error)
        self._cookie(response, LOGIN_COOKIE, nonce, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        keys = self._keys()
        client = _client(request)
        form = await request.form()
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if (
            not self._same_origin(request)
            or not nonce
            or not keys.form_token_ok("login", nonce, _field(form, "csrf"))
        ):
            return self._refused(request, "the login form has expired: open the login page again")
        wait = self.throttle.wait(client, self.clock())
        if wait > 0:
            logger.warning(
                "admin: login from %s throttled after %d failures in a minute",
                client,
                LOGIN_FAILURES,
                extra={"action": "admin_login_throttled", "client": client},
            )
            response = self._login_page(keys, "Too many failed logins: wait a minute and try again.", 429)
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        # Counted as failed until it succeeds: tries sent all at once are held to the limit too.
        self.throttle.failed(client, self.clock())
        # scrypt takes a few dozen milliseconds: off the loop, so polls and sends go on.
        if not await asyncio.to_thread(keys.password.matches, _field(form, "password")):
            logger.warning(
                "admin: failed login from %s",
                client,
                extra={"action": "admin_login_failed", "client": client},
            )
            return self._login_page(keys, "Wrong password.", 403)
        self.throttle.succeeded(client)
        logger.info("admin: login from %s", client, extra={"action": "admin_login", "client": client})
        response = RedirectResponse("/admin/", status_code=303)
        self._cookie(
            response, SESSION_COOKIE, keys.new_session(self.clock()), int(SESSION_LIFETIME.total_seconds())
        )
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return response

    async def logout(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            self.revoked.add(session, self.clock())
            return "admin_logout", "logged out"

        response = await self._act(request, work, redirect="/admin/login")
        if response.status_code == 303:
            response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    # -- actions

    async def _check(self, request: Request) -> tuple[SessionKeys, str, FormData] | Response:
        """A POST's session, origin and form token, or the refusal."""
        keys = self._keys()
        session = self._session(request, keys)
        if session is None:
            return self._refused(request, "not logged in (or the session expired): log in again")
        form = await request.form()
        if not self._same_origin(request):
            return self._refused(request, "the request came from another site")
        if not keys.form_token_ok("action", session, _field(form, "csrf")):
            return self._refused(request, "the form's token is missing or stale: reload the board")
        return keys, session, form

    async def _act(
        self,
        request: Request,
        work: Callable[[FormData, str], Awaitable[tuple[str, str]]],
        redirect: str | None = None,
    ) -> Response:
        """Check the session, the form token and the origin, do `work`, log it, redirect back
        with its one-line result as the flash."""
        checked = await self._check(request)
        if isinstance(checked, Response):
            return checked
        keys, session, form = checked
        action, result = await work(form, session)
        client = _client(request)
        logger.info("admin: %s by %s", result, client, extra={"action": action, "client": client})
        response = RedirectResponse(redirect or _back(form), status_code=303)
        self._cookie(response, FLASH_COOKIE, keys.flash(result), max_age=300)
        return response

    async def acknowledge(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            alert_id = _number(form, "alert")
            if alert_id is None:
                return "admin_ack", "no alert given"
            count = await self.view.store.acknowledge([alert_id], now=dt.datetime.now(dt.UTC))
            return (
                "admin_ack",
                f"alert {alert_id} acknowledged" if count else f"alert {alert_id} was not open",
            )

        return await self._act(request, work)

    async def retry(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            message_id = _number(form, "message")
            item = await self.view.store.outbox_item(message_id) if message_id is not None else None
            if item is None or item.state is not OutboxState.FAILED:
                return "admin_retry", f"message {message_id} is not a failed message"
            if not item.raw:
                # Same rule as `notifier outbox retry`: queueing it again would send nothing.
                return "admin_retry", f"message {item.id} was never built: it cannot be sent again"
            count = await self.view.store.retry_failed([item.id], now=dt.datetime.now(dt.UTC))
            return "admin_retry", (
                f"message {item.id} to {item.recipient} queued again"
                if count
                else f"message {item.id} was not failed"
            )

        return await self._act(request, work)

    async def unsubscribe(self, request: Request) -> Response:
        checked = await self._check(request)
        if isinstance(checked, Response):
            return checked
        keys, session, form = checked
        address = _address(form)
        if address is not None and _field(form, "confirm") != "yes":
            # Every mail from the shop, about every parcel: the operator says so twice.
            return await self._confirm_unsubscribe(request, keys, session, form, address)

        async def work(form: FormData, session: str) -> tuple[str, str]:
            address = _address(form)
            if address is None:
                return "admin_unsubscribe", f"not an email address: {_one_line(_field(form, 'address'))!r}"
            changed = await self.view.store.suppress(address, now=dt.datetime.now(dt.UTC), reason="operator")
            return "admin_unsubscribe", (
                f"{address} unsubscribed: nothing more is sent to it"
                if changed
                else f"{address} was already unsubscribed"
            )

        return await self._act(request, work)

    async def _confirm_unsubscribe(
        self, request: Request, keys: SessionKeys, session: str, form: FormData, address: str
    ) -> Response:
        store = self.view.store
        following = await store.active_subscribers()
        numbers = sorted(
            view.number
            for view in await store.shipments()
            if address.lower() in (e.lower() for e in following.get(view.id, ()))
        )
        now = dt.datetime.now(dt.UTC)
        return self._page(
            "unsubscribe.html.j2",
            banners=await load_banners(self.view, now),
            now=f"{now:%Y-%m-%d %H:%M}Z",
            address=address,
            numbers=numbers,
            csrf=keys.form_token("action", session),
            back=_field(form, "back"),
            page=_page_number(form),
            cancel=_back(form),
        )

    async def resubscribe(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            address = _address(form)
            if address is None:
                return "admin_resubscribe", f"not an email address: {_one_line(_field(form, 'address'))!r}"
            changed = await self.view.store.unsuppress(address)
            return (
                "admin_resubscribe",
                f"{address} resubscribed" if changed else f"{address} was not unsubscribed",
            )

        return await self._act(request, work)

    async def poll_now(self, request: Request) -> Response:
        async def work(form: FormData, session: str) -> tuple[str, str]:
            number = _field(form, "number").strip()[:40]
            # As `notifier poll --now`: due now, the daemon polls it at its next tick, at its pace.
            marked = await self.view.store.mark_due([number], now=dt.datetime.now(dt.UTC)) if number else []
            if not marked:
                return "admin_poll_now", f"{_one_line(number)!r} is not watched"
            return "admin_poll_now", f"{marked[0]} due now: polled at the next tick"

        return await self._act(request, work)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/", self.board, methods=["GET"]),
            Route("/admin/shipments/{number}", self.shipment, methods=["GET"]),
            Route("/admin/login", self.login_form, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", self.logout, methods=["POST"]),
            Route("/admin/ack", self.acknowledge, methods=["POST"]),
            Route("/admin/retry", self.retry, methods=["POST"]),
            Route("/admin/unsubscribe", self.unsubscribe, methods=["POST"]),
            Route("/admin/resubscribe", self.resubscribe, methods=["POST"]),
            Route("/admin/poll", self.poll_now, methods=["POST"]),
        ]


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _page_number(form: FormData) -> str:
    """The parcel page a form was posted from ("" for the board): letters and digits only."""
    number = _field(form, "page").strip()
    return number if number.isascii() and number.isalnum() and len(number) <= 40 else ""


def _back(form: FormData) -> str:
    """Where an action returns: the parcel page it came from, else the board with its filters."""
    number = _page_number(form)
    if number:
        return f"/admin/shipments/{number}"
    return Filters.from_query(dict(urllib.parse.parse_qsl(_field(form, "back")))).board_url()


def _number(form: FormData, name: str) -> int | None:
    value = _field(form, name).strip()
    return int(value) if value.isdigit() and len(value) < 19 else None


def _address(form: FormData) -> str | None:
    try:
        return validate_address(_field(form, "address").strip())
    except AddressError:
        return None


def admin_routes(view: DaemonView) -> list[BaseRoute]:
    """The operator board's routes, for build_app(..., extra_routes=...)."""
    http = view.settings.http
    if http is not None and http.admin_password is not None:
        logger.info("operator board on at %s/admin/", http.public_url, extra={"action": "admin_on"})
    else:
        logger.info(
            "operator board off: no password in http.admin_password_file, $NOTIFIER_HTTP_ADMIN_PASSWORD "
            'or the systemd credential "http-admin-password" (/admin/ answers 404)',
            extra={"action": "admin_off"},
        )
    return AdminBoard(view).routes()
