"""History files: one shipment per JSON line, read and checked field by field, and written back."""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from notifier.core import limits
from notifier.core.model import TOKYO, EventTime, TrackingEvent
from notifier.core.numbers import TrackingNumber, parse_number
from notifier.core.stages import Stage, located_in_japan, map_status, origin_is_japan
from notifier.core.zones import country_zones
from notifier.errors import InvalidNumberError

NAMES_TABLE = "country_names.csv"

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2})?")
_SHIPMENT_FIELDS = frozenset({"number", "item_type", "destination", "events"})
_EVENT_FIELDS = frozenset({"time", "status", "office", "region", "postal_code", "details"})
# Text fields of an event and the size of the column each is stored in: too long is an error,
# never a silent cut (the file should hold what Japan Post printed; PostgreSQL would refuse it).
_EVENT_TEXT = {
    "office": limits.OFFICE,
    "region": limits.REGION,
    "postal_code": limits.POSTAL_CODE,
    "details": limits.DETAILS,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRecord:
    """One line of a history file, checked: the shipment and its events with their stages."""

    number: TrackingNumber
    item_type: str | None
    # ISO 3166 alpha-2; None when the line gave none and the events do not say.
    destination: str | None
    destination_derived: bool
    events: tuple[TrackingEvent, ...]


@functools.cache
def country_names() -> Mapping[str, str]:
    """English country name (upper case) -> ISO 3166 alpha-2; read once, the file ships with the package."""
    text = resources.files("notifier.core").joinpath(NAMES_TABLE).read_text(encoding="utf-8")
    rows = csv.DictReader(
        io.StringIO("".join(line for line in text.splitlines(True) if not line.startswith("#")))
    )
    return {row["name"]: row["country"] for row in rows}


def place_country(event: TrackingEvent) -> str | None:
    """The country an event happened in, from its prefecture/country and ZIP cells, if they say."""
    if located_in_japan(event.region, event.postal_code):
        return "JP"
    return country_names().get(event.region.strip().rstrip(".").upper())


def derive_destination(number: TrackingNumber, events: Sequence[TrackingEvent]) -> str | None:
    """The destination the events show: the country of the last event outside the country of
    origin (a domestic number stays in Japan). None when no event names such a country, e.g.
    Japanese-language rows, whose country names are not in the English table."""
    if number.country == "JP" and number.value.isdigit():
        return "JP"
    for event in reversed(events):
        country = place_country(event)
        if country is not None and country != number.country:
            return country
    return None


def _text(value: object, field: str, size: int, problems: list[str], *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        problems.append(f"{field}: expected a string, found {type(value).__name__}")
        return ""
    if required and not value.strip():
        problems.append(f"{field}: is empty")
    if len(value) > size:
        problems.append(f"{field}: {len(value)} characters, longer than its column ({size})")
    return value


def _time(value: object, field: str, problems: list[str]) -> EventTime | None:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        problems.append(
            f"{field}: {value!r} is not a time as Japan Post prints it (YYYY-MM-DDTHH:MM or YYYY-MM-DD)"
        )
        return None
    try:
        return EventTime.from_iso(value)
    except ValueError as exc:
        problems.append(f"{field}: {value!r} is not a real date or time ({exc})")
        return None


def _events(number: TrackingNumber | None, raw: object, problems: list[str]) -> list[TrackingEvent]:
    if not isinstance(raw, list) or not raw:
        problems.append("events: expected a non-empty list of events")
        return []
    events: list[TrackingEvent] = []
    # Japanese exchange-office wordings depend on the leg's direction, as on the page itself.
    from_japan = origin_is_japan(number.value) if number is not None else True
    for index, item in enumerate(raw):
        where = f"events[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object, found {type(item).__name__}")
            continue
        for unknown in sorted(set(item) - _EVENT_FIELDS):
            problems.append(
                f"{where}.{unknown}: not a field of an event ({', '.join(sorted(_EVENT_FIELDS))})"
            )
        for missing in ("time", "status"):
            if missing not in item:
                problems.append(f"{where}.{missing}: missing")
        when = _time(item.get("time"), f"{where}.time", problems) if "time" in item else None
        status = _text(item.get("status"), f"{where}.status", limits.STATUS, problems, required=True)
        texts = {
            name: _text(item.get(name), f"{where}.{name}", size, problems, required=False)
            for name, size in _EVENT_TEXT.items()
        }
        in_japan = located_in_japan(texts["region"], texts["postal_code"])
        if in_japan is None and number is not None and number.value.isdigit():
            in_japan = True  # domestic items never leave Japan
        stage = map_status(status, in_japan=in_japan, origin_japan=from_japan) if status else Stage.UNKNOWN
        if status.strip() and stage is Stage.UNKNOWN:
            problems.append(
                f"{where}.status: {status!r} is not a Japan Post status notifier knows "
                "(English or Japanese wording, as the tracking page prints it)"
            )
        if stage is Stage.RETURNING and number is not None:
            from_japan = not origin_is_japan(number.value)
        if when is not None:
            events.append(
                TrackingEvent(
                    when=dataclasses.replace(when, zone=TOKYO if in_japan else None),
                    status=status,
                    stage=stage,
                    details=texts["details"],
                    office=texts["office"],
                    region=texts["region"],
                    postal_code=texts["postal_code"],
                )
            )
    return events


def parse_line(line: str) -> HistoryRecord | list[str]:
    """A line of a history file as a record, or every problem found in it (field: what is wrong)."""
    try:
        data: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc.msg} at column {exc.colno}"]
    if not isinstance(data, dict):
        return [f"expected a JSON object (one shipment), found {type(data).__name__}"]
    problems: list[str] = []
    for unknown in sorted(set(data) - _SHIPMENT_FIELDS):
        problems.append(f"{unknown}: not a field of a shipment ({', '.join(sorted(_SHIPMENT_FIELDS))})")
    number: TrackingNumber | None = None
    if "number" not in data:
        problems.append("number: missing")
    elif not isinstance(data["number"], str):
        problems.append(f"number: expected a string, found {type(data['number']).__name__}")
    else:
        try:
            number = parse_number(data["number"])
        except InvalidNumberError as exc:
            problems.append(f"number: {exc}")
    item_type: str | None = None
    if "item_type" not in data:
        problems.append("item_type: missing (null when unknown)")
    elif data["item_type"] is not None:
        item_type = _text(data["item_type"], "item_type", limits.ITEM_TYPE, problems, required=False) or None
    destination: str | None = None
    raw_destination = data.get("destination")
    if raw_destination is not None:
        if not isinstance(raw_destination, str) or raw_destination.upper() not in country_zones():
            problems.append(f"destination: {raw_destination!r} is not an ISO 3166 alpha-2 country code")
        else:
            destination = raw_destination.upper()
    events = _events(number, data.get("events"), problems) if "events" in data else []
    if "events" not in data:
        problems.append("events: missing")
    if problems or number is None:
        return problems
    derived = destination is None
    if derived:
        destination = derive_destination(number, events)
    return HistoryRecord(
        number=number,
        item_type=item_type,
        destination=destination,
        destination_derived=derived,
        events=tuple(events),
    )


def record_json(
    *, number: str, item_type: str | None, destination: str | None, events: Sequence[TrackingEvent]
) -> str:
    """One line of a history file (without its newline), as `parse_line` reads it back."""
    return json.dumps(
        {
            "number": number,
            "item_type": item_type,
            "destination": destination,
            "events": [
                {
                    "time": event.when.iso_local(),
                    "status": event.status,
                    "office": event.office,
                    "region": event.region,
                    "postal_code": event.postal_code,
                    "details": event.details,
                }
                for event in events
            ],
        },
        ensure_ascii=False,
    )
