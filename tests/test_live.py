"""The real Japan Post site. Off by default (marker `live`); run with `python -m pytest -m live`."""

from __future__ import annotations

import pytest

from notifier.core.model import Layout, Locale, Outcome
from notifier.net.japanpost import ClientSettings, JapanPostClient

pytestmark = pytest.mark.live

# The number of the 2014 capture: long expired, so today's site should answer "not found"
# in the list layout. What matters is that the page is still recognised at all.
GENUINE_NUMBER = "EL015307999JP"


@pytest.mark.parametrize("locale", [Locale.EN, Locale.JA])
async def test_live_site_is_still_recognised(locale: Locale) -> None:
    async with JapanPostClient(ClientSettings(request_interval=5.0)) as client:
        fetched = await client.fetch_detail(GENUINE_NUMBER, locale)
    assert fetched.page.layout is not Layout.UNRECOGNIZED, fetched.page.reason
    (item,) = fetched.page.items
    assert item.number == GENUINE_NUMBER
    assert item.outcome in (Outcome.FOUND, Outcome.NOT_FOUND)


async def test_live_batch_is_recognised() -> None:
    async with JapanPostClient(ClientSettings(request_interval=5.0)) as client:
        fetched = await client.fetch_latest([GENUINE_NUMBER, "12345678901"], Locale.EN)
    assert fetched.page.layout is not Layout.UNRECOGNIZED, fetched.page.reason
    assert [item.number for item in fetched.page.items] == [GENUINE_NUMBER, "12345678901"]
