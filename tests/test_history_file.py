"""History files line by line: fields checked, statuses mapped, the destination read from the events."""

from __future__ import annotations

import json

from notifier.core.history import HistoryRecord, parse_line, record_json
from notifier.core.stages import Stage


def parsed(number: str, *events: tuple[str, str, str], **extra: object) -> HistoryRecord:
    found = parse_line(
        json.dumps(
            {
                "number": number,
                "item_type": None,
                "events": [{"time": t, "status": s, "region": r} for t, s, r in events],
                **extra,
            },
            ensure_ascii=False,
        )
    )
    assert isinstance(found, HistoryRecord), found
    return found


def test_the_destination_is_read_from_the_last_event_abroad() -> None:
    exported = parsed(
        "EJ202603021JP",
        ("2026-03-02T10:15", "Posting/Collection", "TOKYO"),
        ("2026-03-03T14:20", "Arrival at inward office of exchange", "UNITED STATES"),
        ("2026-03-07T11:35", "Final delivery", "UNITED STATES"),
    )
    assert (exported.destination, exported.destination_derived) == ("US", True)
    # Sent back: the last event is in Japan again, the destination is still where it went.
    returned = parsed(
        "CP314159268JP",
        ("2026-04-01T10:00", "Posting/Collection", "OSAKA"),
        ("2026-04-08T10:00", "Arrival at inward office of exchange", "GERMANY"),
        ("2026-04-25T11:30", "Returned to sender", "OSAKA"),
    )
    assert returned.destination == "DE"
    assert parsed("314159265350", ("2026-03-10", "引受", "東京都")).destination == "JP"
    # Japanese country names are not in the English table: unknown, not guessed.
    assert parsed("EJ202603021JP", ("2026-03-05T08:00", "国際交換局に到着", "ドイツ")).destination is None
    # A destination given wins, in either case.
    given = parsed("EJ202603021JP", ("2026-03-02T10:15", "Posting/Collection", "TOKYO"), destination="gb")
    assert (given.destination, given.destination_derived) == ("GB", False)


def test_exchange_wordings_follow_the_place_and_the_leg() -> None:
    record = parsed(
        "EJ202603021JP",
        ("2026-03-02T21:40", "国際交換局に到着", "東京都"),
        ("2026-03-03T13:05", "国際交換局から発送", "東京都"),
        ("2026-03-05T08:00", "国際交換局に到着", "ドイツ"),
    )
    assert [e.stage for e in record.events] == [
        Stage.OUTWARD_EXCHANGE,
        Stage.DEPARTED_ORIGIN,
        Stage.INWARD_EXCHANGE,
    ]
    # Events in Japan carry Japan's zone, as a polled page's do; abroad, none.
    assert [e.when.zone for e in record.events] == ["Asia/Tokyo", "Asia/Tokyo", None]


def test_a_written_line_reads_back_the_same() -> None:
    record = parsed(
        "EJ202603021JP",
        ("2026-03-02T10:15", "Posting/Collection", "TOKYO"),
        ("2026-03-06", "Retention", "UNITED STATES"),
    )
    line = record_json(number="EJ202603021JP", item_type=None, destination="US", events=record.events)
    again = parse_line(line)
    assert isinstance(again, HistoryRecord)
    assert again.events == record.events
    assert [e.key for e in again.events] == [e.key for e in record.events]


def test_every_problem_of_a_line_is_named() -> None:
    problems = parse_line(
        json.dumps({"number": 12, "events": [{"time": "2026-3-2", "status": ""}, "scan"], "colour": "red"})
    )
    assert isinstance(problems, list)
    fields = [problem.split(":")[0] for problem in problems]
    assert fields == ["colour", "number", "item_type", "events[0].time", "events[0].status", "events[1]"]
    assert parse_line("[1, 2]") == ["expected a JSON object (one shipment), found list"]
    assert parse_line(json.dumps({"number": "EJ202603021JP", "item_type": None, "events": []})) == [
        "events: expected a non-empty list of events"
    ]
