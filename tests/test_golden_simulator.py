"""Golden tests: the parser reads every status wording the simulator serves, in both layouts and locales."""

from __future__ import annotations

import pytest

from notifier.core.model import TOKYO, Layout, Locale, Outcome
from notifier.core.parser import parse_page
from notifier.core.stages import Stage, located_in_japan
from notifier.testing.simulator import Journey, Simulator, builtin_journeys, catalog_journeys

JOURNEYS = [*catalog_journeys(), *builtin_journeys()]


def fully_revealed(journeys: list[Journey]) -> list[Journey]:
    for journey in journeys:
        journey.revealed = len(journey.scans)
    return [j for j in journeys if j.scans]


@pytest.mark.parametrize("locale", [Locale.EN, Locale.JA])
@pytest.mark.parametrize("journey", fully_revealed(JOURNEYS), ids=lambda j: j.number)
def test_detail_pages_parse_to_the_scripted_history(journey: Journey, locale: Locale) -> None:
    simulator = Simulator([journey])
    page = parse_page(
        simulator.render_detail(journey.number, str(locale)).encode(), requested=[journey.number]
    )
    assert page.layout is Layout.DETAIL, page.reason
    assert page.locale is locale
    (item,) = page.items
    assert item.number == journey.number
    assert item.outcome is Outcome.FOUND
    en = locale is Locale.EN
    expected = [
        (
            scan.when,
            scan.status_en if en else scan.status_ja,
            scan.office_en if en else scan.office_ja,
            scan.region_en if en else scan.region_ja,
            scan.postal_code,
        )
        for scan in journey.scans
    ]
    assert [
        (e.when.iso_local(), e.status, e.office, e.region, e.postal_code) for e in item.events
    ] == expected
    for event, scan in zip(item.events, journey.scans, strict=True):
        assert event.stage is not Stage.UNKNOWN, event.status
        in_japan = located_in_japan(scan.region_en, scan.postal_code)
        assert (event.when.zone == TOKYO) is bool(in_japan or journey.number.isdigit())
    assert item.offices, "every scripted journey names at least one contact office"


@pytest.mark.parametrize("locale", [Locale.EN, Locale.JA])
def test_list_pages_give_each_items_latest_status(locale: Locale) -> None:
    journeys = fully_revealed(catalog_journeys())
    simulator = Simulator(journeys)
    for reveal in (1, 3, 100):
        for journey in journeys:
            simulator.reveal(journey.number, min(reveal, len(journey.scans)))
        batch = [j.number for j in journeys][:10]
        page = parse_page(simulator.render_list(batch, str(locale)).encode(), requested=batch)
        assert page.layout is Layout.LIST, page.reason
        assert [item.number for item in page.items] == batch
        for item in page.items:
            journey = simulator.journey(item.number)
            latest = journey.scans[journey.revealed - 1]
            (event,) = item.events
            assert event.status == (latest.status_en if locale is Locale.EN else latest.status_ja)
            assert event.when.iso_local() == latest.when
            assert item.stage is not Stage.UNKNOWN


@pytest.mark.parametrize("locale", [Locale.EN, Locale.JA])
def test_not_found_and_invalid_rows_in_both_locales(locale: Locale) -> None:
    simulator = Simulator(builtin_journeys())
    never = next(j.number for j in builtin_journeys() if not j.scans)
    page = parse_page(simulator.render_list([never, "12345"], str(locale)).encode())
    assert page.layout is Layout.LIST
    assert [(i.number, i.outcome) for i in page.items] == [
        (never, Outcome.NOT_FOUND),
        ("12345", Outcome.INVALID_NUMBER),
    ]
    assert all(i.stage is Stage.PENDING and i.events == () for i in page.items)


@pytest.mark.parametrize("journey", fully_revealed(builtin_journeys()), ids=lambda j: j.number)
def test_both_languages_agree_on_every_stage(journey: Journey) -> None:
    """The scripted journeys pair real English and Japanese wordings, so their stages must agree,
    including the direction-free Japanese exchange-office wordings on a return leg."""
    simulator = Simulator([journey])
    stages = {
        locale: [
            e.stage
            for e in parse_page(simulator.render_detail(journey.number, locale).encode()).items[0].events
        ]
        for locale in ("en", "ja")
    }
    assert stages["en"] == stages["ja"]
    assert len(stages["en"]) == len(journey.scans)
