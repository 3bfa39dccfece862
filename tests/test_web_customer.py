"""The customer pages over HTTP, served by a real uvicorn over a real SQLite store."""

from __future__ import annotations

import httpx

from notifier.core.links import Purpose
from notifier.store import Store
from tests import web_site
from tests.web_site import ENGLISH, JAPANESE, Site

site = web_site.site  # the fixture: a real uvicorn over a seeded SQLite store


def test_the_tracking_page_shows_the_parcel_in_the_customers_language(site: Site) -> None:
    english = httpx.get(site.tracking(ENGLISH), timeout=10)
    assert english.status_code == 200, english.text
    assert english.headers["cache-control"] == "no-store, private"
    page = english.text
    assert '<html lang="en">' in page
    assert "Order 1001" in page
    assert "Your parcel's journey" in page
    assert '<li class="current" aria-current="step">' in page
    assert "Departure from inward office of exchange" in page  # the latest event, first
    assert page.index("2014-11-05 14:03") < page.index("2014-11-03 20:37")
    assert "https://trackings.post.japanpost.jp/services/srv/search/direct?reqCodeNo1=EL015307999JP" in page
    assert "mailto:shop@sakura.example" in page
    assert 'href="tel:+81312345678"' in page
    assert "/u/" in page  # the way to stop these emails
    japanese = httpx.get(site.tracking(JAPANESE), timeout=10).text
    assert '<html lang="ja">' in japanese
    assert "配送状況" in japanese
    assert "お問い合わせ" in japanese
    for text in (page, japanese):
        assert "style=" not in text
        assert "<script" not in text


def test_unknown_and_invalid_tokens_get_the_same_404_as_any_unknown_page(site: Site) -> None:
    # An unknown page at the same depth (the error page links its stylesheet relative to it).
    reference = httpx.get(f"{site.base_url}/no-such/page", timeout=10)
    assert 'href="../static/page.css"' in reference.text
    assert reference.status_code == 404
    good = site.tracking(ENGLISH)
    token = good.rsplit("/", 1)[1]
    unknown_number = site.links.signer.make(Purpose.TRACK, ENGLISH, "EJ123456785JP")
    wrong_purpose = site.links.signer.make(Purpose.UNSUBSCRIBE, ENGLISH, site.number)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for candidate in (
        f"{site.base_url}/t/{unknown_number}",  # signed, but no such parcel
        f"{site.base_url}/t/{wrong_purpose}",  # an unsubscribe token does not open the tracking page
        f"{site.base_url}/t/{tampered}",
        f"{site.base_url}/t/x",
        f"{site.base_url}/u/{tampered}",
        f"{site.base_url}/u/{site.links.signer.make(Purpose.TRACK, ENGLISH, site.number)}",
    ):
        answer = httpx.get(candidate, timeout=10)
        assert (answer.status_code, answer.content) == (404, reference.content), candidate


def _states(site: Site) -> tuple[set[str], set[tuple[str, str]]]:
    async def read(store: Store) -> tuple[set[str], set[tuple[str, str]]]:
        return (
            await store.suppressed_among([ENGLISH, JAPANESE]),
            await store.suppressed_shipments_among([(ENGLISH, site.number), (JAPANESE, site.number)]),
        )

    return site.store_call(read)


def test_a_get_changes_nothing_and_one_click_unsubscribes_at_once(site: Site) -> None:
    url = site.unsubscribe(ENGLISH)
    for _ in range(3):  # a mail scanner prefetching the link
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        assert '<form method="post">' in page.text
    assert _states(site) == (set(), set())
    one_click = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert one_click.status_code == 200
    assert _states(site) == ({ENGLISH}, set())
    assert "You get no more emails from Sakura Ceramics" in httpx.get(url, timeout=10).text


def test_the_page_stops_one_parcel_or_everything_and_takes_it_back(site: Site) -> None:
    url = site.unsubscribe(JAPANESE)
    page = httpx.get(url, timeout=10).text
    assert '<html lang="ja">' in page
    assert "すべて停止" in page
    parcel = httpx.post(url, data={"action": "unsubscribe", "scope": "parcel"}, timeout=10)
    assert parcel.status_code == 200
    assert "メールの配信を停止しました" in parcel.text
    assert _states(site) == (set(), {(JAPANESE, site.number)})
    assert 'value="resubscribe-parcel"' in parcel.text
    everything = httpx.post(url, data={"action": "unsubscribe", "scope": "all"}, timeout=10)
    assert _states(site) == ({JAPANESE}, {(JAPANESE, site.number)})
    assert 'value="resubscribe-all"' in everything.text
    httpx.post(url, data={"action": "resubscribe", "scope": "all"}, timeout=10)
    httpx.post(url, data={"action": "resubscribe", "scope": "parcel"}, timeout=10)
    assert _states(site) == (set(), set())


def test_a_malformed_post_changes_nothing(site: Site) -> None:
    url = site.unsubscribe(ENGLISH)
    for data in ({"action": "delete", "scope": "all"}, {"List-Unsubscribe": "Yes"}, {}):
        assert httpx.post(url, data=data, timeout=10).status_code == 400
    assert _states(site) == (set(), set())


# ------------------------------------------------------------------------------------ language


def _languages(site: Site) -> tuple[str | None, str | None]:
    async def read(store: Store) -> tuple[str | None, str | None]:
        return await store.locale_for(ENGLISH, site.number), await store.locale_for(JAPANESE, site.number)

    return site.store_call(read)


def test_the_language_link_shows_the_same_page_in_the_other_language_and_changes_nothing(site: Site) -> None:
    url = site.tracking(ENGLISH)
    english = httpx.get(url, timeout=10).text
    assert '<a href="?lang=ja" hreflang="ja" lang="ja">日本語</a>' in english
    japanese = httpx.get(url + "?lang=ja", timeout=10)
    assert japanese.status_code == 200  # the signed token is still good with the query
    assert '<html lang="ja">' in japanese.text
    assert '<a href="?lang=en" hreflang="en" lang="en">English</a>' in japanese.text
    # The page offers to send the mail in the language being read, without doing it.
    assert '<input type="hidden" name="lang" value="ja">' in japanese.text
    assert "このお荷物についてのメールは、現在英語でお送りしています。" in japanese.text
    unsubscribe = httpx.get(site.unsubscribe(ENGLISH) + "?lang=ja", timeout=10).text
    assert '<html lang="ja">' in unsubscribe
    assert 'href="?lang=en"' in unsubscribe
    assert httpx.get(url + "?lang=xx", timeout=10).text == english  # not a language: ignored
    assert _languages(site) == ("en", "ja")


def test_choosing_a_language_on_the_page_is_kept_for_that_customers_mail(site: Site) -> None:
    url = site.tracking(ENGLISH) + "?lang=ja"
    chosen = httpx.post(url, data={"action": "language", "lang": "ja"}, timeout=10)
    assert chosen.status_code == 200
    assert '<html lang="ja">' in chosen.text
    assert '<p role="status">承知しました。' in chosen.text
    assert _languages(site) == ("ja", "ja")  # the other customer's is untouched
    # Without ?lang the page now opens in the chosen language, and offers English back.
    again = httpx.get(site.tracking(ENGLISH), timeout=10).text
    assert '<html lang="ja">' in again
    assert 'href="?lang=en"' in again


def test_a_malformed_language_post_changes_nothing(site: Site) -> None:
    url = site.tracking(ENGLISH)
    for data in ({"action": "language", "lang": "fr"}, {"action": "language"}, {"lang": "ja"}, {}):
        assert httpx.post(url, data=data, timeout=10).status_code == 400
    tampered = url[:-2] + ("A" if url[-2] != "A" else "B") + url[-1]
    assert httpx.post(tampered, data={"action": "language", "lang": "ja"}, timeout=10).status_code == 404
    assert _languages(site) == ("en", "ja")


def test_the_404_page_is_no_dead_end(site: Site) -> None:
    """An old or cut-off link from an email: the page says what to do and how to reach the shop."""
    page = httpx.get(f"{site.base_url}/t/cut-off", timeout=10)
    assert page.status_code == 404
    assert "open the link in the latest email about your order" in page.text
    assert "ご注文についての最新のメールのリンク" in page.text
    assert '<a href="mailto:shop@sakura.example">shop@sakura.example</a>' in page.text
    assert "style=" not in page.text
    assert "<script" not in page.text
