"""The destination posts table: every row sourced and usable, and who tracks which parcel."""

from __future__ import annotations

import datetime as dt
import tomllib
from typing import Any

import pytest

from notifier.core.posts import DATA_FILE, destination_posts, parse_posts, post_for


def test_the_table_covers_the_main_destinations_with_sourced_https_patterns() -> None:
    posts = destination_posts()
    assert {"US", "CA", "GB", "DE", "FR", "AU", "NZ"} <= set(posts)
    for post in posts.values():
        url = post.tracking_url("EJ482913056JP")
        assert url.startswith("https://")
        assert "EJ482913056JP" in url
        assert post.source
        assert post.checked <= dt.date(2026, 12, 7)
        assert post.name_en
        assert post.name_ja


def test_only_s10_numbers_to_a_listed_country_get_a_destination_post() -> None:
    us = post_for("us", "EJ482913056JP")
    assert us is not None
    assert us.name("en") == "USPS"
    assert (
        us.tracking_url("EJ482913056JP")
        == "https://tools.usps.com/go/TrackConfirmAction?tLabels=EJ482913056JP"
    )
    assert post_for("US", "123456789012") is None  # a domestic number: Japan Post's alone
    assert post_for("BR", "EJ482913056JP") is None  # not in the table
    assert post_for("US", "not a number") is None


ROW: dict[str, Any] = {
    "name_en": "X",
    "name_ja": "X",
    "url": "https://x.example/{number}",
    "source": "s",
    "checked": dt.date(2026, 1, 1),
}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"usa": ROW}, r"\[usa\]: not an ISO"),
        ({"US": {**ROW, "url": "http://x.example/{number}"}}, r"\[US\]\.url: must be an https URL"),
        ({"US": {**ROW, "url": "https://x.example/"}}, r"\[US\]\.url"),
        ({"US": {k: v for k, v in ROW.items() if k != "source"}}, r"\[US\]: needs exactly the keys"),
        ({"US": {**ROW, "checked": "yesterday"}}, r"\[US\]\.checked"),
    ],
)
def test_a_bad_row_is_refused_naming_the_file_and_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{DATA_FILE}: {message}"):
        parse_posts(data)


def test_the_packaged_file_is_valid_toml_with_one_table_per_country() -> None:
    from importlib.resources import files

    data = tomllib.loads(files("notifier.core").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    assert parse_posts(data) == destination_posts()
