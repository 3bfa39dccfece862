"""Destination countries' time zones, from the shipped table notifier/country_zones.csv."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from importlib import resources

TABLE = "country_zones.csv"


@functools.cache
def country_zones() -> Mapping[str, str]:
    """Country code (upper case) -> IANA zone; read once, the file ships with the package."""
    text = resources.files("notifier.core").joinpath(TABLE).read_text(encoding="utf-8")
    rows = csv.DictReader(
        io.StringIO("".join(line for line in text.splitlines(True) if not line.startswith("#")))
    )
    return {row["country"].upper(): row["zone"] for row in rows}
