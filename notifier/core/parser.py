"""Japan Post tracking pages (detail and list layouts, English and Japanese) to `Page` values.

The parser is strict on purpose: a page it cannot read completely is `unrecognized`, never a
shorter history, because a silently wrong history would send customers wrong emails.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from selectolax.lexbor import LexborHTMLParser, LexborNode

from notifier.core import limits
from notifier.core.limits import fit
from notifier.core.model import (
    TOKYO,
    ContactOffice,
    EventTime,
    ItemResult,
    Layout,
    Locale,
    Outcome,
    Page,
    TrackingEvent,
)
from notifier.core.numbers import normalise
from notifier.core.stages import Stage, located_in_japan, map_status, origin_is_japan

_DATE_MDY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2}))?")
_DATE_YMD = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?: (\d{1,2}):(\d{2}))?")
_NUMBER_SHAPE = re.compile(r"[A-Z0-9]{8,20}")
# The 2009 site's Struts actions (singleSearch.do, numberSearch.do, ...) appear in its forms.
_LEGACY_SITE = re.compile(r"/service/\w+Search\.do")

# Header text fragments, matched case-insensitively against the normalised header cell.
# Order matters where one fragment contains another ("office" vs "handling office").
_HISTORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("state occurrence date", "date", "状態発生日", "発生日"),
    "status": ("shipping track record", "配送履歴", "状態"),
    "details": ("details", "詳細"),
    "office": ("office", "取扱局", "取扱店"),
    "region": ("prefecture", "country", "県名"),
}
_LIST_COLUMNS: dict[str, tuple[str, ...]] = {
    "number": ("item number", "お問い合わせ番号", "問い合わせ番号"),
    "item_type": ("class of goods", "商品種別"),
    "date": ("latest date", "最新年月日", "年月日", "状態発生日"),
    "status": ("latest status", "最新状態"),
    "office": ("latest handling office", "handling office", "最新取扱局", "取扱局", "取扱店"),
    "region": ("prefecture", "県名"),
}
_ITEM_COLUMNS: dict[str, tuple[str, ...]] = {
    "number": ("item number", "お問い合わせ番号", "問い合わせ番号"),
    "item_type": ("class of goods", "商品種別"),
    "services": ("additional services", "オプション", "付加サービス"),
}
_ZIP_HEADER = ("zip code", "postal code", "郵便番号")
_CONTACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "role": ("case class", "取扱区分", "区分"),
    "office": ("office", "取扱局", "窓口", "局名"),
    "phone": ("phone", "電話"),
}
_NOT_FOUND = ("not found", "見つかりません")
_INVALID = ("number of digits", "桁数")
_ENGLISH_MARKERS = ("shipping track record", "latest status", "item number")


class _Unreadable(Exception):
    """Internal: the page broke one of the layout's invariants."""


def clean(text: str | None) -> str:
    """Collapse runs of ASCII, full-width and no-break spaces; strip."""
    # str.split() without arguments splits on every Unicode space, U+3000 and U+00A0 included.
    return " ".join(text.split()) if text else ""


def parse_time(text: str) -> tuple[dt.date, dt.time | None]:
    """Both page date styles, `MM/DD/YYYY[ HH:MM]` (en) and `YYYY/MM/DD[ HH:MM]` (ja).

    The two are told apart by where the four-digit year stands, so either locale's page
    reads correctly even if Japan Post mixes them.
    """
    value = clean(text)
    if m := _DATE_YMD.fullmatch(value):
        year, month, day, hour, minute = m.groups()
    elif m := _DATE_MDY.fullmatch(value):
        month, day, year, hour, minute = m.groups()
    else:
        raise _Unreadable(f"unreadable date {value!r}")
    try:
        date = dt.date(int(year), int(month), int(day))
        clock = dt.time(int(hour), int(minute)) if hour is not None else None
    except ValueError as exc:
        raise _Unreadable(f"impossible date {value!r}") from exc
    return date, clock


def _text(node: LexborNode) -> str:
    return clean(node.text(deep=True, separator=" "))


def _cells(row: LexborNode, tag: str) -> list[LexborNode]:
    return [child for child in row.iter() if child.tag == tag]


def _rows(table: LexborNode) -> list[LexborNode]:
    # Lexbor inserts <tbody>; rows may sit under it or directly under the table.
    return [row for row in table.css("tr") if row.parent is not None]


def _match_columns(
    headers: Sequence[str], wanted: dict[str, tuple[str, ...]], optional: frozenset[str] = frozenset()
) -> dict[str, int]:
    """Map column names to header positions by header text; each required column must appear."""
    found: dict[str, int] = {}
    for index, header in enumerate(headers):
        label = header.casefold()
        for name, fragments in wanted.items():
            if name not in found and any(fragment in label for fragment in fragments):
                found[name] = index
                break
    missing = [name for name in wanted if name not in found and name not in optional]
    if missing:
        raise _Unreadable(f"columns not found by header text: {', '.join(missing)} (headers: {headers})")
    return found


def _is_zip_header(row: LexborNode) -> bool:
    ths = _cells(row, "th")
    return len(ths) == 1 and any(f in _text(ths[0]).casefold() for f in _ZIP_HEADER)


def _split_header(table: LexborNode, what: str) -> tuple[list[str], list[LexborNode]]:
    """Two header rows (the second holds only the ZIP header), then data rows."""
    rows = _rows(table)
    if len(rows) < 2 or not _cells(rows[0], "th") or not _is_zip_header(rows[1]):
        raise _Unreadable(f"{what} table lacks its two header rows")
    return [_text(th) for th in _cells(rows[0], "th")], rows[2:]


def _event(
    number: str,
    *,
    when: str,
    status: str,
    details: str,
    office: str,
    region: str,
    postal_code: str,
    origin_japan: bool,
) -> TrackingEvent:
    if not status:
        raise _Unreadable("an event without a status")
    date, clock = parse_time(when)
    in_japan = located_in_japan(region, postal_code)
    if in_japan is None and number.isdigit():
        in_japan = True  # domestic items never leave Japan
    # The stage and place are read from the full text; what is kept is fitted to the columns.
    return TrackingEvent(
        when=EventTime(date=date, time=clock, zone=TOKYO if in_japan else None),
        status=fit(status, limits.STATUS),
        stage=map_status(status, in_japan=in_japan, origin_japan=origin_japan),
        details=details,
        office=fit(office, limits.OFFICE),
        region=fit(region, limits.REGION),
        postal_code=fit(postal_code, limits.POSTAL_CODE),
    )


def _pairs(rows: list[LexborNode], width: int, what: str) -> list[tuple[list[LexborNode], LexborNode]]:
    """Rows come in pairs: `width` cells, then a row holding only the ZIP cell."""
    if len(rows) % 2:
        raise _Unreadable(f"{what} rows are not in pairs")
    pairs = []
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        top, bottom = _cells(first, "td"), _cells(second, "td")
        if len(top) != width or len(bottom) != 1 or top[0].attributes.get("rowspan") != "2":
            raise _Unreadable(f"{what} row pair has {len(top)}+{len(bottom)} cells, expected {width}+1")
        pairs.append((top, bottom[0]))
    return pairs


def _number(cell: LexborNode) -> str:
    number = normalise(_text(cell))
    if not _NUMBER_SHAPE.fullmatch(number):
        raise _Unreadable(f"item number cell holds {number!r}")
    return number


def _item_table(table: LexborNode) -> tuple[str, str, str]:
    rows = _rows(table)
    if len(rows) != 2:
        raise _Unreadable(f"item table has {len(rows)} rows, expected 2")
    headers = [_text(th) for th in _cells(rows[0], "th")]
    columns = _match_columns(headers, _ITEM_COLUMNS, optional=frozenset({"services"}))
    values = _cells(rows[1], "td")
    if len(values) != len(headers):
        raise _Unreadable("item table header and data rows differ in width")
    services = _text(values[columns["services"]]) if "services" in columns else ""
    return _number(values[columns["number"]]), _text(values[columns["item_type"]]), services


def _history(table: LexborNode, number: str) -> tuple[TrackingEvent, ...]:
    headers, rows = _split_header(table, "history")
    columns = _match_columns(headers, _HISTORY_COLUMNS)
    events = []
    # The Japanese exchange-office wordings say neither "outward" nor "inward"; they are read
    # against the country the current leg started from, which a return to sender reverses.
    leg_from_japan = origin_is_japan(number)
    for top, bottom in _pairs(rows, len(headers), "history"):
        event = _event(
            number,
            when=_text(top[columns["date"]]),
            status=_text(top[columns["status"]]),
            details=_text(top[columns["details"]]),
            office=_text(top[columns["office"]]),
            region=_text(top[columns["region"]]),
            postal_code=_text(bottom),
            origin_japan=leg_from_japan,
        )
        if event.stage is Stage.RETURNING:
            leg_from_japan = not origin_is_japan(number)
        events.append(event)
    return tuple(events)


def _contacts(table: LexborNode | None) -> tuple[ContactOffice, ...]:
    if table is None:
        return ()
    rows = _rows(table)
    if not rows:
        return ()
    try:
        columns = _match_columns([_text(th) for th in _cells(rows[0], "th")], _CONTACT_COLUMNS)
    except _Unreadable:
        return ()  # contacts only enrich messages; their absence must not hide the history
    offices = []
    for row in rows[1:]:
        cells = _cells(row, "td")
        if len(cells) <= max(columns.values()):
            continue
        role, office, phone = (_text(cells[columns[name]]) for name in ("role", "office", "phone"))
        if role and office:
            offices.append(
                ContactOffice(
                    role=fit(role, limits.CONTACT_ROLE),
                    office=fit(office, limits.CONTACT_OFFICE),
                    phone=fit(phone, limits.CONTACT_PHONE),
                )
            )
    return tuple(offices)


def _detail(tree: LexborNode, history: LexborNode) -> tuple[ItemResult, ...]:
    item_table = tree.css_first('table[summary="配達状況詳細"]')
    if item_table is None:
        raise _Unreadable("history without the item details table")
    number, item_type, services = _item_table(item_table)
    return (
        ItemResult(
            number=number,
            outcome=Outcome.FOUND,
            item_type=fit(item_type, limits.ITEM_TYPE) or None,
            events=_history(history, number),
            offices=_contacts(tree.css_first('table[summary="窓口店"]')),
            additional_services=services,
        ),
    )


def _error_outcome(message: str) -> Outcome:
    folded = message.casefold()
    if any(f in folded for f in _NOT_FOUND):
        return Outcome.NOT_FOUND
    if any(f in folded for f in _INVALID):
        return Outcome.INVALID_NUMBER
    raise _Unreadable(f"unknown error message {message!r}")


def _list(table: LexborNode) -> tuple[ItemResult, ...]:
    headers, rows = _split_header(table, "result list")
    columns = _match_columns(headers, _LIST_COLUMNS)
    items = []
    index = 0
    while index < len(rows):
        cells = _cells(rows[index], "td")
        if len(cells) == 2 and cells[1].attributes.get("colspan") == str(len(headers) - 1):
            message = _text(cells[1])
            number = normalise(_text(cells[0]))
            if not number:
                raise _Unreadable("error row without a number")
            items.append(ItemResult(number=number, outcome=_error_outcome(message), message=message))
            index += 1
            continue
        (top, bottom), *_ = _pairs(rows[index : index + 2], len(headers), "result list")
        number = _number(top[columns["number"]])
        event = _event(
            number,
            when=_text(top[columns["date"]]),
            status=_text(top[columns["status"]]),
            details="",
            office=_text(top[columns["office"]]),
            region=_text(top[columns["region"]]),
            postal_code=_text(bottom),
            origin_japan=origin_is_japan(number),
        )
        item_type = _text(top[columns["item_type"]])
        items.append(
            ItemResult(
                number=number,
                outcome=Outcome.FOUND,
                item_type=fit(item_type, limits.ITEM_TYPE) or None,
                events=(event,),
            )
        )
        index += 2
    if not items:
        raise _Unreadable("result list without rows")
    return tuple(items)


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    head = data[:4096].lower()
    if b"shift_jis" in head or b"x-sjis" in head:
        return data.decode("shift_jis", errors="replace")
    return data.decode("utf-8", errors="replace")


def _locale(table: LexborNode | None) -> Locale:
    if table is None:
        return Locale.JA
    headers = " ".join(_text(th) for th in table.css("th")).casefold()
    return Locale.EN if any(marker in headers for marker in _ENGLISH_MARKERS) else Locale.JA


def _unrecognized(reason: str, title: str, locale: Locale = Locale.JA) -> Page:
    return Page(layout=Layout.UNRECOGNIZED, locale=locale, reason=reason, title=title)


def parse_page(data: bytes | str, *, requested: Sequence[str] = ()) -> Page:
    """Read a Japan Post response body.

    `requested` lists the compact numbers asked for; a page about other numbers is refused.
    """
    text = _decode(data)
    tree = LexborHTMLParser(text)
    root = tree.root
    title_node = tree.css_first("title")
    title = _text(title_node) if title_node is not None else ""
    if root is None:
        return _unrecognized("empty document", title)
    if _LEGACY_SITE.search(text):
        return _unrecognized("obsolete 2009 tracking site (dates carry no year); not supported", title)
    if "</html>" not in text[-4096:].lower():
        return _unrecognized("truncated page: no closing </html>", title)
    history = root.css_first('table[summary="履歴情報"]')
    results = root.css_first('table[summary="照会結果"]')
    locale = _locale(history or results)
    try:
        if history is not None:
            layout, items = Layout.DETAIL, _detail(root, history)
        elif results is not None:
            layout, items = Layout.LIST, _list(results)
        else:
            return _unrecognized("neither the history table (履歴情報) nor the result list (照会結果)", title)
    except _Unreadable as exc:
        return _unrecognized(f"{'detail' if history is not None else 'list'} layout: {exc}", title, locale)
    if requested:
        asked = {normalise(n) for n in requested}
        stray = [item.number for item in items if item.number not in asked]
        if stray:
            return _unrecognized(f"page is about {', '.join(stray)}, which was not requested", title, locale)
    return Page(layout=layout, locale=locale, items=items, title=title)


def page_to_json(page: Page) -> dict[str, object]:
    """The stable JSON shape printed by `notifier parse --json`."""
    return {
        "layout": str(page.layout),
        "items": [
            {
                "number": item.number,
                "item_type": item.item_type,
                "result": str(item.outcome),
                "stage": str(item.stage),
                "events": [
                    {
                        "time": event.when.iso_local(),
                        "status": event.status,
                        "stage": str(event.stage),
                        "details": event.details,
                        "office": event.office,
                        "region": event.region,
                        "postal_code": event.postal_code,
                    }
                    for event in item.events
                ],
            }
            for item in page.items
        ],
    }
