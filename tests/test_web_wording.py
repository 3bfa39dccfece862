"""The tracking page speaks the customer's language with Japan Post's own words, as the emails do."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import httpx

from notifier.core.localize import PageWording, pair_wording, wording_from_json, wording_json
from notifier.core.model import ContactOffice, TrackingEvent
from notifier.core.numbers import parse_number
from notifier.core.parser import parse_page
from notifier.core.render import Renderer
from notifier.core.rules import RulesConfig
from notifier.core.views import ConfiguredWatch
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.poll import Notifier, poll_detail
from notifier.pipeline.wiring import mail_settings, notifier_for, web_links
from notifier.store import Store
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from notifier.web.app import build_app
from tests.web_server import serving
from tests.web_site import View, settings_for

YUPACK = builtin_journeys()[1]
T0 = dt.datetime(2026, 3, 12, 8, 0, tzinfo=dt.UTC)
JA, EN = "hanako@example.jp", "emma@example.com"


def _pages() -> tuple[PageWording, tuple[TrackingEvent, ...]]:
    simulator = Simulator([dataclasses.replace(YUPACK, revealed=len(YUPACK.scans))])
    en = parse_page(simulator.render_detail(YUPACK.number, "en")).items[0]
    ja = parse_page(simulator.render_detail(YUPACK.number, "ja")).items[0]
    wording = pair_wording(en, ja, "ja")
    assert wording is not None
    return wording, en.events


def test_a_stored_wording_reads_back_as_it_was_paired() -> None:
    wording, events = _pages()
    again = wording_from_json(wording_json(wording), events)
    assert again == wording
    # Paired again with the stored history only: an event the history does not hold is left out.
    assert wording_from_json(wording_json(wording), events[:3]) == dataclasses.replace(
        wording, events={e.key: wording.events[e.key] for e in events[:3]}
    )


def test_a_hostile_stored_wording_is_bounded_and_a_foreign_body_is_ignored() -> None:
    wording, events = _pages()
    huge = dataclasses.replace(
        wording,
        item_type="ゆ" * 10_000,
        events={k: dataclasses.replace(e, status="保" * 50_000) for k, e in wording.events.items()},
        contacts=(ContactOffice(role="r" * 9_999, office="o" * 9_999, phone="0" * 9_999),),
    )
    body = wording_json(huge)
    assert len(body) < 20_000
    back = wording_from_json(body, events)
    assert back is not None
    assert all(len(e.status) < 1_000 for e in back.events.values())
    for foreign in ("", "null", "[]", '{"events": 1}', '{"locale": "ja", "events": {"k": [1, 2]}}', "{"):
        assert wording_from_json(foreign, events) is None


async def test_the_latest_wording_is_kept_per_language_on_each_backend(db_url: str) -> None:
    wording, events = _pages()
    store = await Store.open(db_url)
    try:
        view = await store.watch(parse_number(YUPACK.number), now=T0)
        assert await store.wording(view.id, "ja") is None
        hostile = dataclasses.replace(
            wording,
            events={k: dataclasses.replace(e, office="局" * 5_000) for k, e in wording.events.items()},
        )
        await store.save_wordings(view.id, {"ja": wording_json(hostile)}, now=T0)
        await store.save_wordings(view.id, {"ja": wording_json(wording)}, now=T0 + dt.timedelta(hours=1))
        stored = await store.wording(view.id, "ja")
        assert stored is not None
        assert wording_from_json(stored, events) == wording  # replaced, not added
        assert await store.wording(view.id, "en") is None
    finally:
        await store.close()


async def test_a_japanese_customers_tracking_page_quotes_the_japanese_page(
    tmp_path: Path, sqlite_template: Path
) -> None:
    database = tmp_path / "web.db"
    shutil.copyfile(sqlite_template, database)
    settings = settings_for(tmp_path, database)
    links = web_links(settings)
    assert links is not None
    store = await Store.open(settings.database.url)
    simulator = Simulator([dataclasses.replace(YUPACK, revealed=len(YUPACK.scans))])
    try:
        with SimulatorServer(simulator) as server:
            client = JapanPostClient(ClientSettings(base_url=server.base_url, request_interval=0, attempts=1))
            subscribers = ((JA, "ja", "Asia/Tokyo"), (EN, "en", None))
            await store.sync_config_watches(
                [ConfiguredWatch(number=parse_number(YUPACK.number), subscribers=subscribers)], now=T0
            )
            (view,) = await store.shipments()
            notifier = Notifier(rules=RulesConfig(), mail=mail_settings(settings), renderer=Renderer())
            result = await poll_detail(store, client, view, now=T0, next_poll_at=None, notifier=notifier)
            await client.aclose()
        assert result.wording_requests == 1
        app = build_app(View(store=store, settings=settings, notifier=notifier_for(settings)))
        async with serving(app) as base, httpx.AsyncClient(timeout=10) as http:
            pages = {}
            for address in (JA, EN):
                url = links.tracking(address, YUPACK.number).replace(links.public_url, base)
                response = await http.get(url)
                assert response.status_code == 200
                pages[address] = response.text
            # The language link: the English customer reads the page in Japanese, in Japan Post's
            # Japanese words as stored for the Japanese customer.
            url = links.tracking(EN, YUPACK.number).replace(links.public_url, base)
            pages["switched"] = (await http.get(url + "?lang=ja")).text
        for words in ("お届け先にお届け済み", "大阪北郵便局", "ゆうパック"):
            assert words in pages[JA]
            assert words in pages["switched"]
            assert words not in pages[EN]
        for words in ("Final delivery", "OSAKA-KITA", "Yu-Pack"):
            assert words in pages[EN]
            assert words not in pages[JA]
        # No request was made to serve either page: they read what the poll stored.
        assert len(simulator.requests) == 2
    finally:
        await store.close()
