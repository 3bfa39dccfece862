"""The customer pages: one-click unsubscribe (/u/{token}) and the tracking page (/t/{token})."""

from __future__ import annotations

import datetime as dt
import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.core.compose import POLL_LOCALE, display_number
from notifier.core.links import ALL, Purpose, Signer
from notifier.core.localize import wording_from_json
from notifier.core.render import Renderer
from notifier.core.windows import MailWindows, local_today
from notifier.core.zones import country_zones
from notifier.pipeline.estimates import Estimator, shown_windows
from notifier.pipeline.poll import Notifier
from notifier.pipeline.wiring import mail_settings
from notifier.web.errors import error_page, shop_contact
from notifier.web.pages import LOCALES, UnsubscribePage, page_locale, tracking_page
from notifier.web.state import DaemonView

logger = logging.getLogger(__name__)

ONE_CLICK = "One-Click"
# From a page one directory below the root (/u/TOKEN, /t/TOKEN): relative, so the pages also
# work when the reverse proxy publishes them under a path prefix.
STATIC_URL = "../static/page.css"
_PRIVATE = {"Cache-Control": "no-store, private"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def asked_locale(request: Request) -> str | None:
    """The language asked for with `?lang=` (the page's language link), if it is one we have."""
    lang = request.query_params.get("lang")
    return lang if lang in LOCALES else None


def switch_values(locale: str) -> dict[str, str]:
    """The language link: the other language, and a relative URL that keeps the signed token."""
    other = next(loc for loc in LOCALES if loc != locale)
    return {"other_locale": other, "other_url": f"?lang={other}"}


class _Pages:
    """The routes' shared state: the view, and a web renderer that follows the daemon's reloads."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view
        self._renderer: tuple[Notifier | None, Renderer] | None = None
        self._estimator: Estimator | None = None

    def estimator(self) -> Estimator:
        """The daemon's own (one LaneCache for mail and pages), else one of the pages'; a reload
        that changes [estimates] makes a new one."""
        notifier = getattr(self.view, "notifier", None)
        shared = getattr(notifier, "estimator", None)
        if isinstance(shared, Estimator) and shared.settings == self.view.settings.estimates:
            return shared
        if self._estimator is None or self._estimator.settings != self.view.settings.estimates:
            self._estimator = Estimator(self.view.store, self.view.settings.estimates)
        return self._estimator

    def renderer(self) -> Renderer:
        # A reload makes a new Notifier (and reads the operator's template folder again): the
        # pages then render with the same templates the emails do.
        notifier = getattr(self.view, "notifier", None)
        if self._renderer is None or self._renderer[0] is not notifier:
            self._renderer = (notifier, Renderer(self.view.settings.notifications.templates, web=True))
        return self._renderer[1]

    def signer(self) -> Signer | None:
        http = self.view.settings.http
        return Signer(http.secret) if http is not None and http.secret else None

    def claim(self, request: Request, purpose: Purpose) -> tuple[str, str] | None:
        signer = self.signer()
        claim = signer.check(purpose, request.path_params["token"]) if signer else None
        return (claim.recipient, claim.scope) if claim else None

    def page(self, name: str, values: dict[str, object], status: int = 200) -> HTMLResponse:
        html = self.renderer().render_page(name, {**values, "static_url": STATIC_URL})
        return HTMLResponse(html, status_code=status, headers=_PRIVATE)

    async def tracking(self, request: Request) -> Response:
        claim = self.claim(request, Purpose.TRACK)
        store = self.view.store
        shipment = await store.get(claim[1]) if claim and claim[1] != ALL else None
        if claim is None or shipment is None:
            # The same answer as for any unknown page: nothing tells a number that exists.
            return error_page(404, request.url.path, shop_contact(self.view.settings))
        recipient, number = claim
        saved = False
        if request.method == "POST":
            # Like the unsubscribe form: the signed link is the only credential (no cookie
            # another site's form could ride on), and a GET never changes anything.
            form = await request.form()
            chosen = form.get("lang")
            if form.get("action") != "language" or chosen not in LOCALES:
                return error_page(400, request.url.path)
            await store.choose_locale(recipient, number, str(chosen))
            saved = True
            logger.info(
                "language chosen on the web page to=%s parcel %s: %s",
                recipient,
                number,
                chosen,
                extra={"action": "language_chosen", "to": recipient, "number": number, "locale": chosen},
            )
        history = await store.history(shipment.id)
        contacts = await store.contacts(shipment.id)
        mail_locale = page_locale(await store.locale_for(recipient, number))
        # After a choice the page speaks the chosen language, whatever the link said.
        locale = mail_locale if saved else asked_locale(request) or mail_locale
        stored = await store.wording(shipment.id, locale) if locale != str(POLL_LOCALE) else None
        now = utcnow()
        window, _ = (await shown_windows(self.estimator(), [shipment], {shipment.id: history}, now=now))[
            shipment.id
        ]
        if self.view.settings.estimates.mail is MailWindows.NEVER:
            # A shop that keeps windows out of mail does not want customers to read them here.
            window = None
        if window is not None:
            # What this customer was told last: /metrics counts deliveries inside it.
            await store.record_window(shipment.id, window, now=now)
        built = tracking_page(
            shipment,
            history,
            contacts,
            mail_settings(self.view.settings),
            recipient=recipient,
            locale=locale,
            wording=wording_from_json(stored, history) if stored else None,
            window=window,
            today=local_today(now, country_zones().get((shipment.destination or "").upper())),
        )
        return self.page(
            "tracking.html.j2",
            {**built.values(), **switch_values(locale), "mail_locale": mail_locale, "language_saved": saved},
        )

    async def unsubscribe(self, request: Request) -> Response:
        claim = self.claim(request, Purpose.UNSUBSCRIBE)
        if claim is None:
            return error_page(404, request.url.path, shop_contact(self.view.settings))
        recipient, scope = claim
        number = "" if scope == ALL else scope
        store = self.view.store
        done = ""
        if request.method == "POST":
            form = await request.form()
            if form.get("List-Unsubscribe") == ONE_CLICK:
                # RFC 8058: the mail client's one-click button; no page to read, stop at once.
                await store.suppress(recipient, now=utcnow(), reason="unsubscribed (one-click)")
                logger.info(
                    "unsubscribed by one-click to=%s (all mail)",
                    recipient,
                    extra={"action": "unsubscribed", "to": recipient, "scope": "all"},
                )
                return HTMLResponse("<!DOCTYPE html><title>Unsubscribed</title>\n", headers=_PRIVATE)
            action, where = form.get("action"), form.get("scope")
            if action not in ("unsubscribe", "resubscribe") or where not in ("all", "parcel"):
                return error_page(400, request.url.path)
            if where == "parcel" and not number:
                return error_page(400, request.url.path)
            if action == "unsubscribe" and where == "all":
                await store.suppress(recipient, now=utcnow(), reason="unsubscribed (web page)")
            elif action == "unsubscribe":
                await store.suppress_shipment(recipient, number, now=utcnow())
            elif where == "all":
                await store.unsuppress(recipient)
            else:
                await store.unsuppress_shipment(recipient, number)
            done = "unsubscribed" if action == "unsubscribe" else "resubscribed"
            logger.info(
                "%s on the web page to=%s (%s)",
                done,
                recipient,
                f"parcel {number}" if where == "parcel" else "all mail",
                extra={"action": done, "to": recipient, "scope": where, "number": number},
            )
        shipment = await store.get(number) if number else None
        settings = self.view.settings
        locale = asked_locale(request) or page_locale(await store.locale_for(recipient, number))
        page = UnsubscribePage(
            locale=locale,
            shop_name=settings.notifications.shop_name,
            recipient=recipient,
            number=number,
            number_display=display_number(number) if number else "",
            label=shipment.label if shipment else "",
            all_stopped=bool(await store.suppressed_among([recipient])),
            parcel_stopped=bool(number)
            and bool(await store.suppressed_shipments_among([(recipient, number)])),
            done=done,
        )
        return self.page("unsubscribe.html.j2", {**page.values(), **switch_values(locale)})


def routes(view: DaemonView) -> list[BaseRoute]:
    pages = _Pages(view)
    return [
        Route("/u/{token}", pages.unsubscribe, methods=["GET", "POST"], name="unsubscribe"),
        Route("/t/{token}", pages.tracking, methods=["GET", "POST"], name="tracking"),
    ]
