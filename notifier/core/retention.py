"""How long a post office keeps a parcel it could not deliver: Japan Post's rule at home, a sourced table abroad."""

from __future__ import annotations

import calendar
import csv
import dataclasses
import datetime as dt
import functools
import io
from collections.abc import Mapping
from importlib import resources

from notifier.core.eta import lane_of

TABLE = "retention_periods.csv"
CLASSES = frozenset({"registered", "parcel", "ems", "all"})
UNITS = frozenset({"days", "months"})
QUALITIES = frozenset({"official", "archived"})

# Japan Post keeps a domestic item it could not deliver for 7 days (内国郵便約款; the source is
# cited at notifier.core.render.DOMESTIC_HOLD_DAYS, which the templates state). Kept equal here
# by a test rather than imported: render pulls in Jinja, which the rules have no need of.
DOMESTIC_HOLD_DAYS = 7


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HoldingPeriod:
    """One row of the table: how long the post office of `country` keeps items of `item_class`."""

    country: str
    item_class: str  # registered, parcel, ems, all; "domestic" for Japan Post's own rule
    amount: int
    unit: str  # days or months
    name_en: str
    name_ja: str
    source: str
    retrieved: str
    quality: str

    def until(self, held_on: dt.date) -> dt.date:
        """The last day of the hold, counted from the day the parcel was held."""
        if self.unit == "days":
            return held_on + dt.timedelta(days=self.amount)
        months = held_on.month - 1 + self.amount
        year, month = held_on.year + months // 12, months % 12 + 1
        return dt.date(year, month, min(held_on.day, calendar.monthrange(year, month)[1]))

    def length(self) -> dt.timedelta:
        """The period as a duration (a month counted as 30 days), for when to send a reminder."""
        return dt.timedelta(days=self.amount * (30 if self.unit == "months" else 1))

    def country_name(self, locale: str) -> str:
        return self.name_ja if locale == "ja" else self.name_en


DOMESTIC = HoldingPeriod(
    country="JP",
    item_class="domestic",
    amount=DOMESTIC_HOLD_DAYS,
    unit="days",
    name_en="Japan",
    name_ja="日本",
    source="内国郵便約款 (see notifier.core.render.DOMESTIC_HOLD_DAYS)",
    retrieved="",
    quality="official",
)


def _uncommented(text: str) -> tuple[list[str], int]:
    """The file's lines without its comment block, and the line number of the header."""
    lines = text.splitlines(True)
    skipped = 0
    while skipped < len(lines) and lines[skipped].startswith("#"):
        skipped += 1
    return lines[skipped:], skipped + 1


def parse_table(text: str, name: str = TABLE) -> Mapping[tuple[str, str], HoldingPeriod]:
    """(country, class) -> period; a ValueError names the file and line of any bad row."""
    lines, header_line = _uncommented(text)
    out: dict[tuple[str, str], HoldingPeriod] = {}
    for offset, row in enumerate(csv.DictReader(io.StringIO("".join(lines))), start=1):
        where = f"{name} line {header_line + offset}"
        try:
            amount = int(row["amount"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: amount must be a whole number, got {row['amount']!r}") from None
        country, item_class = (row["country"] or "").upper(), row["class"] or ""
        problems = [
            *([] if len(country) == 2 and country.isalpha() else [f"country {country!r} is not ISO alpha-2"]),
            *([] if item_class in CLASSES else [f"class {item_class!r} is not one of {sorted(CLASSES)}"]),
            *([] if amount > 0 else ["amount must be positive"]),
            *([] if row["unit"] in UNITS else [f"unit {row['unit']!r} is not days or months"]),
            *([] if (row["source"] or "").startswith("https://") else ["source must be an https URL"]),
            *(
                []
                if row["quality"] in QUALITIES
                else [f"quality {row['quality']!r} is not one of {sorted(QUALITIES)}"]
            ),
            *([] if row["name_en"] and row["name_ja"] else ["name_en and name_ja are required"]),
            *([] if (country, item_class) not in out else [f"{country} {item_class} is listed twice"]),
        ]
        if problems:
            raise ValueError(f"{where}: {'; '.join(problems)}")
        out[(country, item_class)] = HoldingPeriod(
            country=country,
            item_class=item_class,
            amount=amount,
            unit=row["unit"],
            name_en=row["name_en"],
            name_ja=row["name_ja"],
            source=row["source"],
            retrieved=row["retrieved"],
            quality=row["quality"],
        )
    return out


@functools.cache
def holding_table() -> Mapping[tuple[str, str], HoldingPeriod]:
    """The shipped table, read once."""
    return parse_table(resources.files("notifier.core").joinpath(TABLE).read_text(encoding="utf-8"))


def item_class(*, number: str, item_type: str | None, origin: str, destination: str | None) -> str | None:
    """The table's class of a shipment (from the time model's service: a parcel by air, SAL or
    surface is a parcel), "domestic", or None for a service the table has no class for (ePacket,
    unknown), which only a country's `all` row covers."""
    service = lane_of(number=number, item_type=item_type, origin=origin, destination=destination).service
    if service in {"air", "sal", "surface"}:
        return "parcel"
    return service if service in {"registered", "parcel", "ems", "domestic"} else None


def holding_period(
    *,
    number: str,
    item_type: str | None,
    origin: str = "JP",
    destination: str | None,
    table: Mapping[tuple[str, str], HoldingPeriod] | None = None,
) -> HoldingPeriod | None:
    """The holding period that applies to a shipment, or None when no source gives one."""
    kind = item_class(number=number, item_type=item_type, origin=origin, destination=destination)
    if kind == "domestic":
        return DOMESTIC
    rows = holding_table() if table is None else table
    country = (destination or "").upper()
    if kind is not None and (country, kind) in rows:
        return rows[(country, kind)]
    return rows.get((country, "all"))
