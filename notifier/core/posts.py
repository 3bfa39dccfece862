"""Destination posts: who delivers an international parcel in its country, and their tracking page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.resources
import tomllib
import urllib.parse
from collections.abc import Mapping
from typing import Any

from notifier.core.numbers import NumberKind, parse_number

DATA_FILE = "destination_posts.toml"
_KEYS = {"name_en", "name_ja", "url", "source", "checked"}


@dataclasses.dataclass(frozen=True, slots=True)
class DestinationPost:
    """One row of destination_posts.toml."""

    country: str
    name_en: str
    name_ja: str
    url: str
    source: str
    checked: dt.date

    def name(self, locale: str) -> str:
        return self.name_ja if locale == "ja" else self.name_en

    def tracking_url(self, number: str) -> str:
        return self.url.replace("{number}", urllib.parse.quote(number, safe=""))


def parse_posts(data: Mapping[str, Any], where: str = DATA_FILE) -> dict[str, DestinationPost]:
    """The rows of the data file, checked: a bad row is an error naming the file and the key."""
    posts: dict[str, DestinationPost] = {}
    for country, row in data.items():
        if not (len(country) == 2 and country.isascii() and country.isupper()):
            raise ValueError(f"{where}: [{country}]: not an ISO 3166-1 alpha-2 country code")
        if not isinstance(row, dict) or set(row) != _KEYS:
            raise ValueError(f"{where}: [{country}]: needs exactly the keys {', '.join(sorted(_KEYS))}")
        url = row["url"]
        if not (isinstance(url, str) and url.startswith("https://") and url.count("{number}") == 1):
            raise ValueError(f"{where}: [{country}].url: must be an https URL holding {{number}} once")
        if not isinstance(row["checked"], dt.date):
            raise ValueError(f"{where}: [{country}].checked: must be a date (2026-12-07)")
        texts = (row["name_en"], row["name_ja"], row["source"])
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"{where}: [{country}]: name_en, name_ja and source must be non-empty text")
        posts[country] = DestinationPost(
            country, row["name_en"], row["name_ja"], url, row["source"], row["checked"]
        )
    return posts


@functools.cache
def destination_posts() -> dict[str, DestinationPost]:
    """The packaged table, read once."""
    text = importlib.resources.files("notifier.core").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return parse_posts(tomllib.loads(text))


def post_for(country: str, number: str) -> DestinationPost | None:
    """The destination post that tracks `number` in `country`: only for S10 numbers (the ones
    every post of the UPU shares), and only for a country the table lists."""
    try:
        if parse_number(number).kind is not NumberKind.S10:
            return None
    except ValueError:
        return None
    return destination_posts().get(country.upper())
