"""Previews are what customers get: made by the daemon's pipeline from the simulator's bilingual pages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.core.messages import MessageContext, Template
from notifier.core.render import LOCALES, Renderer
from notifier.testing.previews import CUSTOMERS, pipeline_contexts, preview_context
from notifier.testing.simulator import builtin_journeys, catalog_journeys

DOCS_MESSAGES = Path(__file__).resolve().parent.parent / "docs" / "messages"
NOT_ABOUT_A_PARCEL = {Template.TEST, Template.OPERATOR_DIGEST}
JOURNEYS = {j.number: j for j in (*builtin_journeys(), *catalog_journeys())}


@pytest.fixture(scope="module")
def contexts() -> dict[str, dict[Template, MessageContext]]:
    return {locale: asyncio.run(pipeline_contexts(locale)) for locale in LOCALES}


def _statuses(locale: str) -> set[str]:
    return {s.status_ja if locale == "ja" else s.status_en for j in JOURNEYS.values() for s in j.scans}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_parcel_message_comes_out_of_the_pipeline_in_the_page_language(
    contexts: dict[str, dict[Template, MessageContext]], locale: str
) -> None:
    made = contexts[locale]
    assert set(made) == set(Template) - NOT_ABOUT_A_PARCEL
    statuses = _statuses(locale)
    for template, context in made.items():
        assert (context.wording_locale, context.wording_unavailable) == (locale, False), template
        assert context.event is not None, template
        # Japan Post's wording, as the page in the customer's language prints it.
        assert context.event.status in statuses, (template, context.event.status)
        assert all(line.status in statuses for line in context.history), template
        assert context.name == CUSTOMERS[locale].name
        # A shipment the simulator served (or a copy stopped on the way for the silent ones).
        assert context.number in JOURNEYS or template in {Template.RETENTION_REMINDER}, template


def test_a_japanese_customer_gets_a_domestic_parcel_first_and_an_english_one_ems(
    contexts: dict[str, dict[Template, MessageContext]],
) -> None:
    assert not contexts["ja"][Template.DELIVERED].international
    assert contexts["ja"][Template.DELIVERED].item_type == "ゆうパック"
    assert contexts["en"][Template.DELIVERED].international
    assert contexts["en"][Template.DELIVERED].item_type == "EMS"


def test_japanese_previews_quote_no_english_page_wording() -> None:
    english_only = _statuses("en") - _statuses("ja")
    for template in set(Template) - NOT_ABOUT_A_PARCEL:
        text = (DOCS_MESSAGES / f"ja-{template.value}.txt").read_text(encoding="utf-8")
        quoted = sorted(word for word in english_only if word in text)
        assert not quoted, (template, quoted)


def test_preview_command_renders_the_pipeline_message_for_the_configured_shop(tmp_path: Path) -> None:
    config = tmp_path / "notifier.toml"
    config.write_text(
        '[notifications]\nshop_name = "Kobo Ceramics"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "notifier",
            "preview",
            "--config",
            str(config),
            "--template",
            "attempted_delivery",
            "--locale",
            "ja",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Kobo Ceramics" in done.stdout
    assert "ご不在のため持ち戻り" in done.stdout  # the Japanese page's wording
    assert "Absence" not in done.stdout


def test_preview_of_the_test_message_is_the_configured_shops() -> None:
    from notifier.testing.previews import SAMPLE_MAIL

    context = preview_context(Template.TEST, "en", SAMPLE_MAIL, Renderer())
    assert context.shop_name == SAMPLE_MAIL.shop_name


@pytest.mark.parametrize("locale", LOCALES)
def test_the_stall_preview_counts_from_its_own_parcels_last_scan(
    contexts: dict[str, dict[Template, MessageContext]], locale: str
) -> None:
    """A real stall message goes out once its parcel has been silent long enough: days, not the
    months between the sample journeys' dates."""
    stalled = contexts[locale][Template.STALLED]
    assert stalled.stalled_days is not None
    assert 1 <= stalled.stalled_days <= 30, stalled.stalled_days


def test_preview_with_the_web_face_shows_its_signed_links_as_text_not_links(tmp_path: Path) -> None:
    """A /t/ link signed for the sample parcel would answer 404: the preview says what goes there."""
    (tmp_path / "http-secret").write_text("0123456789abcdef-a-good-secret\n", encoding="utf-8")
    config = tmp_path / "notifier.toml"
    config.write_text(
        '[notifications]\nshop_name = "Kobo Ceramics"\n\n[http]\nlisten = "127.0.0.1:8080"\n'
        'public_url = "https://track.kobo.example"\nsecret_file = "http-secret"\n',
        encoding="utf-8",
    )
    html = tmp_path / "preview.html"
    command = [
        sys.executable,
        "-m",
        "notifier",
        "preview",
        "--config",
        str(config),
        "--template",
        "delivered",
    ]
    done = subprocess.run(
        [*command, "--locale", "en", "--html", str(html)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[preview: each customer gets their own link, https://track.kobo.example/t/...]" in done.stdout
    assert "[preview: each customer gets their own link, https://track.kobo.example/u/...]" in done.stdout
    page = html.read_text(encoding="utf-8")
    assert 'href="https://track.kobo.example/t/' not in page
    assert 'href="https://track.kobo.example/u/' not in page
