"""The web face's error pages: small, bilingual, saying only what the status says (and, for a 404, where to go)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from starlette.responses import HTMLResponse

from notifier.config import Settings
from notifier.core.render import mailto, split_address

_ERRORS = {
    400: ("Bad request", "リクエストが正しくありません"),
    404: ("Page not found", "ページが見つかりません"),
    405: ("Method not allowed", "この操作はできません"),
    413: ("Request too large", "リクエストが大きすぎます"),
    429: ("Too many requests: please wait a moment", "アクセスが多すぎます。しばらくしてからお試しください"),
    500: ("Something went wrong on our side", "サーバーで問題が発生しました"),
}


@dataclass(frozen=True, slots=True)
class ShopContact:
    """Where a customer on a dead end can turn: the shop's reply address and site ([notifications])."""

    shop_name: str
    reply_to: str | None = None
    shop_url: str | None = None


def shop_contact(settings: Settings) -> ShopContact:
    n = settings.notifications
    return ShopContact(n.shop_name, n.reply_to, n.shop_url)


# Most 404s a customer meets are an old or cut-off link from one of our emails: say so, and
# where to go instead (the same page for every unknown link, so it tells nothing of any token).
_NOT_FOUND_HELP = (
    "The link may be incomplete or out of date. Please open the link in the latest email about "
    "your order, or simply reply to that email and we will help.",
    "リンクが途中で切れているか、古くなっている可能性があります。ご注文についての最新のメールのリンクを"
    "お使いいただくか、そのメールにご返信ください。確認のうえご案内いたします。",
)


def _contact_html(contact: ShopContact) -> str:
    parts: list[str] = []
    if contact.reply_to:
        name, address = split_address(contact.reply_to)
        if address:
            label = escape(name or address)
            parts.append(f'<a href="{escape(mailto(contact.reply_to))}">{label}</a>')
    if contact.shop_url:
        parts.append(f'<a href="{escape(contact.shop_url)}">{escape(contact.shop_name)}</a>')
    return f"<p>{' · '.join(parts)}</p>" if parts else ""


def error_page(status: int, path: str = "/", contact: ShopContact | None = None) -> HTMLResponse:
    """A small bilingual page that says only what the status says; a 404 also says what to do
    and, with `contact`, links the shop. `path` is the request's: the stylesheet is linked
    relative to it, so it loads under a proxy's path prefix too."""
    english, japanese = _ERRORS.get(status, ("Error", "エラー"))
    stylesheet = "../" * max(0, path.count("/") - 1) + "static/page.css"
    help_html = ""
    if status == 404:
        help_html = f'<p>{_NOT_FOUND_HELP[0]}</p><p lang="ja">{_NOT_FOUND_HELP[1]}</p>'
        help_html += _contact_html(contact) if contact is not None else ""
    body = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{english}</title><link rel="stylesheet" href="{stylesheet}"></head>'
        f'<body><main class="page"><h1>{english}</h1><p lang="ja">{japanese}</p>{help_html}</main></body></html>\n'
    )
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
