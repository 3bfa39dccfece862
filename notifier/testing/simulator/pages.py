"""The simulated pages' markup: labels, the genuine-page templates and the values they show."""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final

import jinja2

from notifier.testing.simulator.model import (
    _CR,
    DIRECT_PATH,
    MAX_NUMBERS,
    MESSAGE_NOT_FOUND,
    MESSAGE_WRONG_DIGITS,
    SEARCH_PATH,
    Fault,
    Journey,
    Scan,
    _Entry,
    _FaultSpec,
    display_number,
)

# --------------------------------------------------------------------------------------------- labels

_LABELS: Final[dict[str, dict[str, str]]] = {
    # English: exactly the genuine 2014 text. Japanese: FORMAT.md §4-5 where known (table headers,
    # list h1); titles, headings and the contact table are reconstructed, as no Japanese capture exists.
    "en": {
        "detail_title": "Detailed Search Results - Japan Post",
        "list_title": "Individual Search Results - Japan Post",
        "detail_h1": "Details of search result",
        "list_h1": "Individual number search results",
        "kind_international": "International",
        "kind_domestic": "Domestic",
        "h2_item": "Delivery Status Details",
        "h2_history": "History information",
        "h2_contacts": "Office contact information",
        "th_number": "Item number",
        "th_class": "Class of goods",
        "th_services": "Additional services",
        "th_status": "Shipping track record",
        "th_details": "Details",
        "th_office": "Office",
        "th_zip": "ZIP code（Postal code number）",
        "th_role": "Case class",
        "th_contact_office": "Office",
        "th_phone": "Phone number",
        "th_latest_date": "Latest date",
        "th_latest_status": "Latest status",
        "th_latest_office": "Latest handling office",
        "th_prefecture": "Prefecture",
        "contact_note": "* Please click the handling office in case of inquiry. (Japanese only)",
        "mail_button": "E-mail notification of completed delivery",
        "office_search_alt": "Check the local office (Japanese only).",
        "page_top": "▲ Back to page top",
        "count": "Reference results for {n} postal items",
    },
    "ja": {
        "detail_title": "詳細検索結果 - 日本郵便",
        "list_title": "個別番号検索結果 - 日本郵便",
        "detail_h1": "検索結果詳細",
        "list_h1": "個別番号検索結果",
        "kind_international": "国際",
        "kind_domestic": "国内",
        "h2_item": "配達状況詳細",
        "h2_history": "履歴情報",
        "h2_contacts": "お問い合わせ窓口",
        "th_number": "お問い合わせ番号",
        "th_class": "商品種別",
        "th_services": "付加サービス",
        "th_status": "配送履歴",
        "th_details": "詳細",
        "th_office": "取扱局",
        "th_zip": "郵便番号",
        "th_role": "取扱区分",
        "th_contact_office": "取扱局",
        "th_phone": "電話番号",
        "th_latest_date": "最新年月日",
        "th_latest_status": "最新状態",
        "th_latest_office": "最新取扱局",
        "th_prefecture": "県名等",
        "contact_note": "※お問い合わせの際は、取扱局をクリックしてください。",
        "mail_button": "配達完了メールのお申し込み",
        "office_search_alt": "お近くの郵便局を探す",
        "page_top": "▲ ページの先頭へ",
        "count": "照会結果は{n}件です",
    },
}


def _locale(value: str) -> str:
    return "en" if value == "en" else "ja"


# ------------------------------------------------------------------------------------------ templates


class _PageLoader(jinja2.BaseLoader):
    """Loads `simulator_pages/*.html` from the package, keeping carriage returns (see `_CR`)."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        resource = importlib.resources.files("notifier.testing").joinpath("simulator_pages", template)
        try:
            source = resource.read_bytes().decode("utf-8")
        except FileNotFoundError as exc:
            raise jinja2.TemplateNotFound(template) from exc
        return source.replace("\r", _CR), None, lambda: True


def _drop_cr_marker(value: Any) -> Any:
    # Keeps inserted text from smuggling the marker in and turning into a stray carriage return.
    return value.replace(_CR, "") if isinstance(value, str) else value


@functools.cache
def _environment(genuine: bool) -> jinja2.Environment:
    # Genuine templates keep every whitespace byte of the JSP output (block tags sit where the JSP
    # tags were); invented pages are tidied instead.
    return jinja2.Environment(
        loader=_PageLoader(),
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=not genuine,
        lstrip_blocks=not genuine,
        finalize=_drop_cr_marker,
        undefined=jinja2.StrictUndefined,
    )


def _render(name: str, genuine: bool, **context: Any) -> str:
    text = _environment(genuine).get_template(name).render(**context)
    return text.replace(_CR, "\r")


@functools.lru_cache(maxsize=8)
def _gzip_bomb(size: int) -> bytes:
    """A gzip stream of `size` spaces, compressed piecewise so the inflated size is never in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * min(size, 1 << 20)
    parts: list[bytes] = []
    left = size
    while left > 0:
        n = min(left, len(block))
        parts.append(packer.compress(memoryview(block)[:n]))
        left -= n
    parts.append(packer.flush())
    return b"".join(parts)


def _fault_spec(fault: Fault, *, retry_after: float | None, delay: float, size: int) -> _FaultSpec:
    if delay < 0 or size < 0 or (retry_after is not None and retry_after < 0):
        raise ValueError("delay, size and retry_after must not be negative")
    return _FaultSpec(Fault(fault), retry_after, delay, size)


def _copy_journey(journey: Journey) -> Journey:
    return dataclasses.replace(journey, scans=list(journey.scans), contacts=list(journey.contacts))


def _route(path: str) -> str | None:
    if path == DIRECT_PATH:
        return "direct"
    if path in (SEARCH_PATH, SEARCH_PATH.rstrip("/")):
        return "search"
    return None


def _numbers_from(params: list[tuple[str, str]], route: str | None) -> list[str]:
    prefix = "reqCodeNo" if route == "direct" else "requestNo"
    slots = dict(params)
    typed = (slots.get(f"{prefix}{i}", "") for i in range(1, MAX_NUMBERS + 1))
    return [value for value in typed if value.strip()]


def _message(error: str, locale: str) -> str:
    return (MESSAGE_WRONG_DIGITS if error == "digits" else MESSAGE_NOT_FOUND)[locale]


def _padded_class(item_type_en: str) -> str:
    # The capture pads "EMS" to six characters ("EMS   "), as a fixed-width database column would.
    return item_type_en.ljust(6)


def _item_view(journey: Journey, locale: str) -> dict[str, Any]:
    en = locale == "en"
    labels = _LABELS[locale]
    return {
        "number": journey.number,
        "view_number": display_number(journey.number),
        "international": journey.international,
        "kind": labels["kind_international" if journey.international else "kind_domestic"],
        "item_class": _padded_class(journey.item_type_en) if en else journey.item_type_ja,
        # FORMAT.md §5.1: one parser saw w_480 on domestic pages; the capture (international) has w_380.
        "class_cell": "w_380" if journey.international else "w_480",
        "services": journey.additional_services_en if en else journey.additional_services_ja,
        "events": [_event_view(scan, locale) for scan in journey.scans],
        "contacts": [
            {
                "role": c.role_en if en else c.role_ja,
                "office": c.office_en if en else c.office_ja,
                "office_id": c.office_id,
                "phone": c.phone,
            }
            for c in journey.contacts
        ],
    }


def _event_view(scan: Scan, locale: str) -> dict[str, str]:
    en = locale == "en"
    return {
        "date": scan.shown_when(locale),
        "status": scan.status_en if en else scan.status_ja,
        "details": scan.details,
        "office": scan.office_en if en else scan.office_ja,
        "region": scan.region_en if en else scan.region_ja,
        "postal": scan.postal_code,
    }


def _list_row(entry: _Entry, locale: str) -> dict[str, str]:
    journey = entry.journey
    if journey is None:
        empty = {"type_code": "", "trcnum": "", "first_handled": "", "dup": ""}
        return {"message": _message(entry.error, locale), "typed": entry.typed, **empty}
    latest = _event_view(journey.scans[-1], locale)
    first = journey.scans[0]
    return {
        "message": "",
        "number": journey.number,
        "item_class": _padded_class(journey.item_type_en) if locale == "en" else journey.item_type_ja,
        **latest,
        "type_code": journey.hidden_type_code,
        "trcnum": journey.number,
        "first_handled": f"{first.date:%Y/%m/%d} {first.clock or '00:00'}:{journey.accepted_seconds:02d}",
        "dup": "0",
    }


def _iter_filler(size: int, block: int = 1 << 16) -> Iterable[bytes]:
    """Whitespace that keeps an OVERSIZED page valid HTML however much of it is sent."""
    unit = b" " * block
    while size > 0:
        n = min(size, block)
        yield unit[:n]
        size -= n
