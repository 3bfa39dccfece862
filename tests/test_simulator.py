"""Tests of the Japan Post simulator: markup fidelity to the genuine captures, journeys, faults."""

from __future__ import annotations

import datetime as dt
import difflib
import http.client
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode

from notifier.testing.simulator import (
    DIRECT_PATH,
    MESSAGE_NOT_FOUND,
    MESSAGE_WRONG_DIGITS,
    OFFSITE_REDIRECT,
    SEARCH_PATH,
    Fault,
    Journey,
    Scan,
    Simulator,
    SimulatorServer,
    builtin_journeys,
    capture_journey,
    catalog_journeys,
)

HERE = Path(__file__).parent
DETAIL_CAPTURE = HERE / "data" / "pages" / "en_ems_detail_intransit_2014.html"
LIST_CAPTURE = HERE / "data" / "pages" / "en_invalid_digits_list_2014.html"
# A copy of the research notes' status list: the catalog must show every wording in it.
STATUSES_MD = HERE / "data" / "STATUSES.md"

CAPTURE_NUMBER = "EL015307999JP"
EMS, YUPACK, RETURNED, NEVER_FOUND = (j.number for j in builtin_journeys())

# Values the live site generates per response: the only bytes allowed to differ from the capture.
PER_SESSION = (
    re.compile(rb'(name="deliveryCompletionMailDto\.hash" value=")[0-9a-f]{32}(")'),
    re.compile(
        rb'(name="deliveryCompletionMailDto\.deliveryComplitionMail\[0\]\.trackingNoHash" value=")\d{1,2}(")'
    ),
)


def capture(path: Path | None) -> bytes:
    assert path is not None
    return path.read_bytes()


def normalise(body: bytes) -> bytes:
    for pattern in PER_SESSION:
        body, count = pattern.subn(rb"\1<per-session>\2", body)
        assert count == 1, pattern.pattern
    return body


def tables(html: str) -> list[tuple[dict[str, Any], list[list[tuple[str, dict[str, Any], str]]]]]:
    """Every table: its attributes, and per row every cell's tag, attributes and text."""
    out = []
    for table in HTMLParser(html).css("table"):
        rows = [
            [(cell.tag, dict(cell.attributes), cell.text()) for cell in tr.iter() if cell.tag in ("td", "th")]
            for tr in table.css("tr")
        ]
        out.append((dict(table.attributes), rows))
    return out


def first(html: str | HTMLParser | LexborNode, selector: str) -> LexborNode:
    root = HTMLParser(html) if isinstance(html, str) else html
    node = root.css_first(selector)
    assert node is not None, f"no {selector}"
    return node


def chrome(html: str) -> dict[str, Any]:
    doc = HTMLParser(html)
    title, h1 = doc.css_first("title"), doc.css_first("h1")
    return {
        "title": title.text() if title else None,
        "h1": h1.text() if h1 else None,
        "h2": [h2.text() for h2 in doc.css("h2")],
        "forms": [dict(form.attributes) for form in doc.css("form")],
        "links": [a.attributes.get("href") for a in doc.css("a")],
        "images": [(img.attributes.get("src"), img.attributes.get("alt")) for img in doc.css("img")],
    }


def hidden_fields(html: str) -> list[tuple[str | None, str | None]]:
    return [
        (node.attributes.get("name"), node.attributes.get("value"))
        for node in HTMLParser(html).css('input[type="hidden"]')
    ]


def history(html: str) -> list[tuple[str, ...]]:
    """(date, status, details, office, region, zip) per event of the `履歴情報` table."""
    table = HTMLParser(html).css_first('table[summary="履歴情報"]')
    assert table is not None, "no history table"
    rows = table.css("tr")[2:]
    assert len(rows) % 2 == 0
    return [
        (*(td.text() for td in first.css("td")), second.css("td")[0].text())
        for first, second in zip(rows[::2], rows[1::2], strict=True)
    ]


def list_entries(html: str) -> list[tuple[str, ...]]:
    """("found", number, class, date, status, office, region, zip) or ("error", typed, message)."""
    table = HTMLParser(html).css_first('table[summary="照会結果"]')
    assert table is not None, "no list table"
    rows = table.css("tr")[2:]
    entries: list[tuple[str, ...]] = []
    i = 0
    while i < len(rows):
        cells = rows[i].css("td")
        if len(cells) == 2:
            assert cells[1].attributes == {"colspan": "5", "class": "txt_l"}
            entries.append(("error", cells[0].text(), cells[1].text()))
            i += 1
        else:
            assert len(cells) == 6
            entries.append(("found", *(c.text() for c in cells), rows[i + 1].css("td")[0].text()))
            i += 2
    return entries


def shown(scan: Scan, locale: str) -> str:
    """The date cell, computed independently of the simulator."""
    moment = dt.datetime.fromisoformat(scan.when if "T" in scan.when else f"{scan.when}T00:00")
    day = moment.strftime("%m/%d/%Y" if locale == "en" else "%Y/%m/%d")
    return f"{day} {moment:%H:%M}" if "T" in scan.when else day


def expected_event(scan: Scan, locale: str) -> tuple[str, ...]:
    en = locale == "en"
    return (
        shown(scan, locale),
        scan.status_en if en else scan.status_ja,
        scan.details,
        scan.office_en if en else scan.office_ja,
        scan.region_en if en else scan.region_ja,
        scan.postal_code or "\xa0",
    )


@pytest.fixture
def simulator() -> Simulator:
    return Simulator([*builtin_journeys(), capture_journey()], seed=7)


@pytest.fixture
def server(simulator: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(simulator) as running:
        yield running


@pytest.fixture
def client(server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as http:
        yield http


def direct(client: httpx.Client, *numbers: str, locale: str | None = None) -> httpx.Response:
    params = {f"reqCodeNo{i}": number for i, number in enumerate(numbers, 1)}
    if locale:
        params["locale"] = locale
    return client.get(DIRECT_PATH, params=params)


# ------------------------------------------------------------------------------------- markup fidelity


def test_detail_page_reproduces_the_capture_tables_and_chrome(client: httpx.Client) -> None:
    genuine = capture(DETAIL_CAPTURE).decode()
    served = direct(client, CAPTURE_NUMBER, locale="en").text

    assert tables(served) == tables(genuine)
    assert [attrs["summary"] for attrs, _ in tables(served)] == ["配達状況詳細", "履歴情報", "窓口店"]
    assert chrome(served) == chrome(genuine)
    assert chrome(served)["title"] == "Detailed Search Results - Japan Post"
    per_session = {
        "deliveryCompletionMailDto.hash",
        "deliveryCompletionMailDto.deliveryComplitionMail[0].trackingNoHash",
    }
    assert [f for f in hidden_fields(served) if f[0] not in per_session] == [
        f for f in hidden_fields(genuine) if f[0] not in per_session
    ]


def test_detail_bytes_differ_from_the_capture_only_in_per_session_values(client: httpx.Client) -> None:
    genuine = capture(DETAIL_CAPTURE)
    served = direct(client, CAPTURE_NUMBER, locale="en").content

    assert normalise(served) == normalise(genuine)
    changed = [
        line
        for line in difflib.diff_bytes(
            difflib.unified_diff, genuine.splitlines(True), served.splitlines(True), n=0
        )
        if line[:1] in (b"-", b"+") and not line.startswith((b"---", b"+++"))
    ]
    assert len(changed) == 4  # two per-session lines, each removed and added
    assert all(any(p.search(line) for p in PER_SESSION) for line in changed)
    assert served.startswith(b"\n\n\n\n  \n")
    assert b"\r\n" in served
    assert not served.endswith(b"\n")


def test_invalid_length_list_page_is_the_capture_byte_for_byte(client: httpx.Client) -> None:
    genuine = capture(LIST_CAPTURE)
    response = direct(client, "EL015307999123JP", locale="en")

    assert response.content == genuine
    assert tables(response.text) == tables(genuine.decode())
    assert list_entries(response.text) == [("error", "EL015307999123JP", MESSAGE_WRONG_DIGITS["en"])]


def test_response_headers_are_the_recorded_ones_and_connections_stay_open(server: SimulatorServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", f"{DIRECT_PATH}?reqCodeNo1={CAPTURE_NUMBER}&locale=en")
        first = conn.getresponse()
        body = first.read()
        sock = conn.sock
        conn.request("GET", f"{DIRECT_PATH}?reqCodeNo1=EL015307999123JP&locale=en")
        second = conn.getresponse()
        second.read()
        assert conn.sock is sock, "the connection was not kept alive"
    finally:
        conn.close()

    assert first.status == 200
    assert first.getheader("Content-Type") == "text/html; charset=UTF-8"
    assert first.getheader("Content-Language") == "ja-JP"
    assert first.getheader("X-Powered-By") == "Servlet/2.5 JSP/2.1"
    assert int(first.getheader("Content-Length", "-1")) == len(body)
    cookies = first.headers.get_all("Set-Cookie") or []
    assert [c.split("=", 1)[0] for c in cookies] == [
        "JSESSIONID",
        "trackings.3",
        "trackings",
        "TS75c202",
        "TS4d1b44",
    ]
    assert re.fullmatch(r"JSESSIONID=[A-Za-z0-9]{52}!\d+; path=/services/; secure; HttpOnly", cookies[0])
    assert first.getheader("Server") is None


def test_japanese_pages_use_the_japanese_labels_and_dates(simulator: Simulator, client: httpx.Client) -> None:
    simulator.reveal(YUPACK, 5)
    detail = direct(client, YUPACK).text  # no locale: Japanese, as on the live site

    doc = HTMLParser(detail)
    assert [t.attributes["summary"] for t in doc.css("table")] == ["配達状況詳細", "履歴情報", "窓口店"]
    history_heads = [th.text() for th in first(doc, 'table[summary="履歴情報"]').css("th")]
    assert history_heads == ["状態発生日", "配送履歴", "詳細", "取扱局", "県名等", "郵便番号"]
    item_cells = [td.text() for td in first(doc, 'table[summary="配達状況詳細"]').css("td")]
    assert item_cells == ["3141-5926-5350", "ゆうパック", ""]
    assert history(detail)[0][0] == "2026/03/10 16:40"
    assert history(detail)[4][:2] == ("2026/03/11", "ご不在のため持ち戻り")
    assert '<input type="hidden" name="locale" value="ja">' in detail
    assert "This page requires" not in detail

    listing = direct(client, YUPACK, EMS).text
    doc = HTMLParser(listing)
    assert first(doc, "h1").text() == "個別番号検索結果"
    heads = [th.text() for th in first(doc, 'table[summary="照会結果"]').css("th")]
    assert heads == [
        "お問い合わせ番号",
        "商品種別",
        "最新年月日",
        "最新状態",
        "最新取扱局",
        "県名等",
        "郵便番号",
    ]
    assert "照会結果は2件です" in listing


def test_inserted_text_is_escaped() -> None:
    journey = Journey(
        number="EJ161803397JP",
        item_type_en="<b>EMS</b>",
        item_type_ja="EMS",
        international=True,
        scans=[
            Scan(
                when="2026-01-05T09:00",
                status_en="<script>alert(1)</script>",
                status_ja="引受\ue000",
                details="a&b",
            )
        ],
    )
    simulator = Simulator([journey])
    english = simulator.render_detail("EJ161803397JP", "en")
    assert "<script>alert(1)</script>" not in english
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in english
    assert "&lt;b&gt;EMS&lt;/b&gt;" in english
    assert "a&amp;b" in english
    assert history(english)[0][1] == "<script>alert(1)</script>"
    assert history(simulator.render_detail("EJ161803397JP", "ja"))[0][1] == "引受"


# ------------------------------------------------------------------------------------------- journeys


def _check_digit(serial: str) -> int:
    check = 11 - sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7), strict=True)) % 11
    return {10: 0, 11: 5}.get(check, check)


def test_builtin_journeys_are_well_formed() -> None:
    journeys = builtin_journeys()
    assert [j.revealed for j in journeys] == [1, 1, 1, 0]
    ems, yupack, returned, never = journeys
    assert re.fullmatch(r"E[A-Z]\d{9}JP", ems.number)
    assert int(ems.number[10]) == _check_digit(ems.number[2:10])
    assert ems.international
    assert ems.scans[-1].status_en == "Final delivery"
    assert ems.contacts[0].role_en == "Acceptance"
    assert ems.contacts[0].phone
    assert re.fullmatch(r"\d{12}", yupack.number)
    assert not yupack.international
    assert [c.role_ja for c in yupack.contacts] == ["引受", "配達"]
    assert [s.status_ja for s in yupack.scans] == [
        "引受",
        "中継",
        "到着",
        "持ち出し中",
        "ご不在のため持ち戻り",
        "配達希望受付",
        "持ち出し中",
        "お届け先にお届け済み",
    ]
    assert "T" not in yupack.scans[4].when
    assert int(returned.number[10]) == _check_digit(returned.number[2:10])
    assert "Held by import Customs" in [s.status_en for s in returned.scans]
    assert returned.scans[-1].status_ja == "差出人に返送済み"
    assert never.scans == []
    assert never.revealed == 0
    for journey in journeys:
        for scan in journey.scans:
            assert scan.when.startswith("2026-")
            assert scan.status_en
            assert scan.status_ja
            assert scan.office_en
            assert scan.office_ja
            assert scan.office_en == scan.office_en.upper()


@pytest.mark.parametrize("number", [EMS, YUPACK, RETURNED])
def test_builtin_journey_reveals_one_scan_per_advance(
    simulator: Simulator, client: httpx.Client, number: str
) -> None:
    scans = simulator.journey(number).scans
    for visible in range(1, len(scans) + 1):
        assert simulator.journey(number).revealed == visible
        for locale in ("en", "ja"):
            page = direct(client, number, locale=locale).text
            assert history(page) == [expected_event(scan, locale) for scan in scans[:visible]]
        assert simulator.advance(number) == ([number] if visible < len(scans) else [])
    simulator.reveal(number, 0)
    assert list_entries(direct(client, number, locale="en").text) == [
        ("error", number, MESSAGE_NOT_FOUND["en"])
    ]


def test_advance_without_a_number_moves_every_journey(simulator: Simulator) -> None:
    assert sorted(simulator.advance()) == sorted([EMS, YUPACK, RETURNED])  # capture is complete already
    assert simulator.journey(EMS).revealed == 2
    simulator.advance(steps=100)
    assert simulator.advance() == []
    assert simulator.journey(NEVER_FOUND).revealed == 0


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_unknown_unrevealed_and_wrong_length_numbers_answer_list_pages(
    client: httpx.Client, locale: str
) -> None:
    for number, message in [
        (NEVER_FOUND, MESSAGE_NOT_FOUND),
        ("EJ000000000JP", MESSAGE_NOT_FOUND),
        ("1234-5678-9012", MESSAGE_NOT_FOUND),
        ("12345", MESSAGE_WRONG_DIGITS),
        ("EL015307999123JP", MESSAGE_WRONG_DIGITS),
    ]:
        page = direct(client, number, locale=locale)
        assert page.status_code == 200
        assert list_entries(page.text) == [("error", number, message[locale])]
        heading = first(page.text, "h1").text()
        assert heading == ("Individual number search results" if locale == "en" else "個別番号検索結果")
        assert HTMLParser(page.text).css_first('table[summary="履歴情報"]') is None


def test_ten_numbers_give_one_list_entry_each_on_both_endpoints(
    simulator: Simulator, client: httpx.Client
) -> None:
    simulator.reveal(EMS, 11)
    ems_done = ("EMS   ", "03/07/2026 11:35", "Final delivery", "BROOKLYN NY", "UNITED STATES", "\xa0")
    yupack_new = ("Yu-Pack", "03/10/2026 16:40", "Posting/Collection", "SHINJUKU", "TOKYO", "163-8799")
    parcel_new = ("Parcel", "04/06/2026 16:20", "Posting/Collection", "SAKAI", "OSAKA", "590-8799")
    departed = ("EMS   ", "11/05/2014 14:03", "Departure from inward office of exchange")
    frankfurt = (*departed, "FRANKFURT A/M FLUGHAFEN", "GERMANY", "\xa0")
    not_found, wrong_digits = MESSAGE_NOT_FOUND["en"], MESSAGE_WRONG_DIGITS["en"]
    cases = [
        (EMS, ("found", EMS, *ems_done)),
        ("3141 5926 5350", ("found", YUPACK, *yupack_new)),
        (RETURNED, ("found", RETURNED, *parcel_new)),
        (NEVER_FOUND, ("error", NEVER_FOUND, not_found)),
        (CAPTURE_NUMBER, ("found", CAPTURE_NUMBER, *frankfurt)),
        ("123", ("error", "123", wrong_digits)),
        ("EJ000000000JP", ("error", "EJ000000000JP", not_found)),
        (EMS, ("found", EMS, *ems_done)),
        ("x", ("error", "x", wrong_digits)),
        ("9" * 14, ("error", "9" * 14, wrong_digits)),
    ]
    numbers = [number for number, _ in cases]
    expected = [entry for _, entry in cases]
    form = {f"requestNo{i}": n for i, n in enumerate(numbers, 1)}
    form |= {"search.x": "52", "search.y": "11", "startingUrlPatten": "", "locale": "en"}
    for response in (
        direct(client, *numbers, locale="en"),
        client.get(SEARCH_PATH, params=form),
        client.get(SEARCH_PATH.rstrip("/"), params=form),
    ):
        assert response.status_code == 200
        assert list_entries(response.text) == expected
        assert "Reference results for 10 postal items" in response.text
        assert 'name="trackingInfoViewDtoList[9].trackingInfoDto.trcnum"' in response.text
    link = HTMLParser(response.text).css_first('table[summary="照会結果"] td a')
    assert link is not None
    assert client.get(link.attributes["href"] or "").status_code == 200


def test_search_form_ignores_empty_slots_and_resolves_one_number_to_detail(client: httpx.Client) -> None:
    both = client.get(SEARCH_PATH, params={"requestNo1": EMS, "requestNo2": "", "requestNo3": YUPACK})
    assert [entry[1] for entry in list_entries(both.text)] == [EMS, YUPACK]
    one = client.get(SEARCH_PATH, params={"requestNo1": "", "requestNo2": EMS, "search": "追跡スタート"})
    assert history(one.text)[0][1] == "引受"
    kind = client.get(DIRECT_PATH, params={"reqCodeNo1": EMS, "searchKind": "S002", "locale": "en"})
    assert history(kind.text)[0][1] == "Posting/Collection"


def test_other_paths_are_404(client: httpx.Client, simulator: Simulator) -> None:
    for path in ("/", "/services/srv/search/input", "/services/srv/search/directx", "/favicon.ico"):
        assert client.get(path).status_code == 404
    assert [r.status for r in simulator.requests] == [404] * 4


def test_catalog_shows_every_status_wording_in_both_locales() -> None:
    wanted_en, wanted_ja = _status_wordings(STATUSES_MD.read_text(encoding="utf-8"))
    assert len(wanted_en) >= 30
    assert len(wanted_ja) >= 40

    simulator = Simulator(catalog_journeys())
    shown_statuses: dict[str, set[str]] = {"en": set(), "ja": set()}
    for journey in catalog_journeys():
        assert journey.revealed == len(journey.scans)
        for locale in ("en", "ja"):
            page = simulator.render_detail(journey.number, locale)
            shown_statuses[locale] |= {event[1] for event in history(page)}
    assert sorted(wanted_en - shown_statuses["en"]) == []
    assert sorted(wanted_ja - shown_statuses["ja"]) == []


def _status_wordings(markdown: str) -> tuple[set[str], set[str]]:
    """English and Japanese wordings of tables A-D, variants in parentheses included."""
    english: set[str] = set()
    japanese: set[str] = set()
    section = ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            section = line[3:4]
            continue
        if section not in "ABCD" or not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "English" or set(cells[0]) <= set("- "):
            continue
        english |= _cell_wordings(cells[0])
        japanese |= _cell_wordings(cells[2])
    return english, japanese


def _cell_wordings(cell: str) -> set[str]:
    found: set[str] = set()
    for note in re.findall(r"\(([^()]*)\)", cell):
        found.update(re.findall(r'"([^"]+)"', note))  # e.g. UPU text "…", HS shows "…"
        if note.startswith("older:"):
            found.add(note.removeprefix("older:").strip())
    main = re.sub(r"\s*\([^()]*\)", "", cell)
    found.update(part.strip() for part in main.split(" / ") if part.strip() not in ("", "—"))
    return found


# --------------------------------------------------------------------------------------------- faults


def test_server_error(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(Fault.SERVER_ERROR)
    response = direct(client, EMS)
    assert response.status_code == 500
    assert "Internal Server Error" in response.text
    assert simulator.requests[-1].status == 500
    assert simulator.requests[-1].fault is Fault.SERVER_ERROR


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (2.2, "3"), (None, "1")])
def test_rate_limited(
    simulator: Simulator, client: httpx.Client, retry_after: float | None, header: str
) -> None:
    simulator.inject(Fault.RATE_LIMITED, retry_after=retry_after)
    response = direct(client, EMS)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == header
    assert direct(client, EMS).status_code == 200


def test_slow(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(Fault.SLOW, delay=0.3)
    started = time.monotonic()
    response = direct(client, EMS)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert len(history(response.text)) == 1


def test_trickle(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(Fault.TRICKLE, delay=0.3)
    started = time.monotonic()
    with client.stream("GET", DIRECT_PATH, params={"reqCodeNo1": EMS}) as response:
        headers_after = time.monotonic() - started
        chunks = list(response.iter_raw())
    total = time.monotonic() - started
    assert total >= 0.3
    assert total - headers_after >= 0.25, (headers_after, total)
    assert len(chunks) > 10
    assert len(history(b"".join(chunks).decode())) == 1


def test_oversized(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(Fault.OVERSIZED, size=1_000_000)
    response = direct(client, EMS)
    assert response.status_code == 200
    assert len(response.content) == 1_000_000 == int(response.headers["Content-Length"])
    assert b"<!DOCTYPE HTML PUBLIC" in response.content[:1000]


def test_gzip_bomb(simulator: Simulator, client: httpx.Client) -> None:
    size = 2 * 2**20
    simulator.inject(Fault.GZIP_BOMB, size=size)
    with client.stream("GET", DIRECT_PATH, params={"reqCodeNo1": EMS}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert len(raw) == int(response.headers["Content-Length"]) < 20_000
    inflater = zlib.decompressobj(31)
    inflated, pending = 0, raw
    while pending:
        inflated += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
    assert inflated == size
    assert inflater.eof


def test_maintenance(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(Fault.MAINTENANCE)
    response = direct(client, EMS, locale="en")
    assert response.status_code == 200
    assert HTMLParser(response.text).css("table") == []
    assert "メンテナンス" in response.text
    assert "maintenance" in response.text


def test_changed_layout(simulator: Simulator, client: httpx.Client) -> None:
    simulator.reveal(EMS, 3)
    simulator.inject(Fault.CHANGED_LAYOUT, times=2)
    detail = direct(client, EMS, locale="en")
    listing = direct(client, EMS, NEVER_FOUND, locale="ja")
    for response in (detail, listing):
        assert response.status_code == 200
        assert HTMLParser(response.text).css("table") == []
        assert "summary=" not in response.text
    statuses = [node.text() for node in HTMLParser(detail.text).css(".event__status")]
    assert statuses == [s.status_en for s in simulator.journey(EMS).scans[:3]]
    assert "EJ 202 603 021 JP" in detail.text
    assert "国際交換局から発送" in listing.text
    assert MESSAGE_NOT_FOUND["ja"] in listing.text


def test_scripted_and_flapping_faults(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(None, times=2)  # good answers can be scripted between faults
    simulator.inject(Fault.MAINTENANCE)
    simulator.set_fault(Fault.MAINTENANCE, every=2)  # after the script: every second request
    for _ in range(7):
        direct(client, EMS, locale="en")
    faults = [r.fault for r in simulator.requests]
    maintenance = Fault.MAINTENANCE
    assert faults == [None, None, maintenance, None, maintenance, None, maintenance]
    simulator.clear_faults()
    direct(client, EMS, locale="en")
    direct(client, EMS, locale="en")
    assert [r.fault for r in simulator.requests[-2:]] == [None, None]
    with pytest.raises(ValueError, match="every"):
        simulator.set_fault(Fault.MAINTENANCE, every=0)


def test_reset(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(Fault.RESET)
    with pytest.raises(httpx.TransportError):
        direct(client, EMS)
    assert direct(client, EMS).status_code == 200
    assert [(r.status, r.fault) for r in simulator.requests] == [(0, Fault.RESET), (200, None)]


def test_redirect_offsite(simulator: Simulator, client: httpx.Client) -> None:
    simulator.inject(Fault.REDIRECT_OFFSITE)
    response = direct(client, EMS)
    assert response.status_code == 302
    assert response.headers["Location"] == OFFSITE_REDIRECT


def test_redirect_onsite_is_then_served_normally(
    simulator: Simulator, client: httpx.Client, server: SimulatorServer
) -> None:
    simulator.inject(Fault.REDIRECT_ONSITE)
    response = client.get(DIRECT_PATH, params={"reqCodeNo1": EMS, "locale": "en"}, follow_redirects=True)
    assert [r.status_code for r in response.history] == [302]
    assert (
        response.history[0].headers["Location"]
        == f"{server.base_url}{DIRECT_PATH}?reqCodeNo1={EMS}&locale=en"
    )
    assert response.status_code == 200
    assert history(response.text)[0][1] == "Posting/Collection"
    assert [(r.status, r.fault) for r in simulator.requests] == [(302, Fault.REDIRECT_ONSITE), (200, None)]


def test_inject_twice_affects_exactly_the_next_two_requests(
    simulator: Simulator, client: httpx.Client
) -> None:
    simulator.inject(Fault.SERVER_ERROR, times=2)
    simulator.inject(Fault.RATE_LIMITED)
    codes = [direct(client, EMS).status_code for _ in range(4)]
    assert codes == [500, 500, 429, 200]
    assert [r.fault for r in simulator.requests] == [Fault.SERVER_ERROR] * 2 + [Fault.RATE_LIMITED, None]


def test_persistent_fault_lasts_until_cleared_and_queued_faults_go_first(
    simulator: Simulator, client: httpx.Client
) -> None:
    simulator.set_fault(Fault.MAINTENANCE)
    simulator.inject(Fault.SERVER_ERROR)
    codes = [direct(client, EMS).status_code for _ in range(3)]
    assert codes == [500, 200, 200]
    assert [r.fault for r in simulator.requests] == [Fault.SERVER_ERROR, Fault.MAINTENANCE, Fault.MAINTENANCE]
    simulator.set_fault(None)
    assert history(direct(client, EMS).text)
    assert simulator.requests[-1].fault is None


def test_request_log_records_time_numbers_and_locale(simulator: Simulator, client: httpx.Client) -> None:
    before = time.monotonic()
    direct(client, "EJ 202 603 021 JP", locale="en")
    client.get(
        SEARCH_PATH, params={"requestNo1": "3141-5926-5350", "requestNo2": "", "requestNo3": NEVER_FOUND}
    )
    after = time.monotonic()

    first, second = simulator.requests
    assert before <= first.at <= second.at <= after
    assert (first.path, first.numbers, first.locale, first.status, first.fault) == (
        DIRECT_PATH,
        (EMS,),
        "en",
        200,
        None,
    )
    assert (second.path, second.numbers, second.locale) == (SEARCH_PATH, (YUPACK, NEVER_FOUND), "ja")
    assert simulator.request_count == 2
    simulator.reset_requests()
    assert simulator.request_count == 0
    assert simulator.requests == []


def test_respond_answers_without_sockets(simulator: Simulator) -> None:
    status, headers, body = simulator.respond(DIRECT_PATH, f"reqCodeNo1={EMS}&locale=en")
    assert status == 200
    assert ("Content-Language", "ja-JP") in headers
    assert history(body.decode())[0][1] == "Posting/Collection"
    simulator.inject(Fault.RESET)
    with pytest.raises(ConnectionResetError):
        simulator.respond(DIRECT_PATH, f"reqCodeNo1={EMS}")
    simulator.inject(Fault.OVERSIZED, size=50_000)
    assert len(simulator.respond(DIRECT_PATH, f"reqCodeNo1={EMS}")[2]) == 50_000


# --------------------------------------------------------------------------------------------- server


def test_stop_does_not_wait_for_idle_keepalive_connections(simulator: Simulator) -> None:
    server = SimulatorServer(simulator).start()
    try:
        with httpx.Client(base_url=server.base_url, trust_env=False) as http:
            assert direct(http, EMS).status_code == 200  # the pooled connection stays open
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 2
    finally:
        server.stop()


def test_serve_advances_journeys_and_stops_on_sigterm() -> None:
    code = (
        "from notifier.testing.simulator import builtin_journeys, serve\n"
        "serve('127.0.0.1', 0, step_seconds=0.2, journeys=builtin_journeys())\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        found = re.search(r"http://[\d.]+:\d+", proc.stderr.readline())
        assert found, "serve() did not announce its address"
        with httpx.Client(base_url=found.group(0), trust_env=False, timeout=10) as http:
            early = len(history(direct(http, EMS).text))
            time.sleep(0.7)
            later = len(history(direct(http, EMS).text))
        assert later >= early + 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output, errors = proc.communicate()
    assert (output, errors) == ("", "")
