"""`history export`, `history import` and `backtest` as a user runs them, on real databases."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import func, select

from notifier.cli import main
from notifier.store import Store
from notifier.store.orm import Event, OutboxMessage, Shipment, Subscriber, Subscription
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests.databases import fresh_postgres


def counts(url: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        store = await Store.open(url)
        try:
            async with store.database.reads() as session:
                return {
                    model.__tablename__: int(
                        await session.scalar(select(func.count()).select_from(model)) or 0
                    )
                    for model in (Shipment, Event, OutboxMessage, Subscription, Subscriber)
                }
        finally:
            await store.close()

    return asyncio.run(read())


def polled_source(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The simulator's journeys polled in full into `url` by `notifier poll`; their numbers."""
    journeys = [j for j in builtin_journeys() if j.scans]
    simulator = Simulator(journeys)
    for journey in journeys:
        simulator.reveal(journey.number, len(journey.scans))
    with SimulatorServer(simulator) as server:
        config = tmp_path / "source.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n',
            encoding="utf-8",
        )
        assert main(["poll", *(j.number for j in journeys), "--config", str(config)]) == 0
    capsys.readouterr()
    return [j.number for j in journeys]


def export(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, object]]:
    assert main(["history", "export", *extra, "--database-url", url]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert f"exported {len(lines)} shipment(s)" in err
    return lines


def round_trip(source: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    numbers = polled_source(source, tmp_path, capsys)
    exported = export(source, capsys)
    assert [line["number"] for line in exported] == numbers
    file = tmp_path / "history.jsonl"
    file.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in exported), encoding="utf-8"
    )

    assert main(["history", "import", str(file), "--database-url", target]) == 0
    out = capsys.readouterr().out
    assert f"{len(numbers)} shipment(s) added" in out
    assert "never polled and sends no message" in out
    after_first = counts(target)
    assert after_first["shipments"] == len(numbers)
    assert after_first["events"] == counts(source)["events"]
    # Nothing about imported history is ever sent: no subscribers, subscriptions or mail.
    assert (after_first["outbox"], after_first["subscriptions"], after_first["subscribers"]) == (0, 0, 0)

    imported = export(target, capsys)
    for before, after in zip(exported, imported, strict=True):
        assert (after["number"], after["item_type"], after["events"]) == (
            before["number"],
            before["item_type"],
            before["events"],
        )
    # The source's watches named no destination: the events do (UNITED STATES; a domestic number: JP).
    assert {line["number"]: line["destination"] for line in imported}["EJ202603021JP"] == "US"
    assert {line["number"]: line["destination"] for line in imported}["314159265350"] == "JP"

    # Again: nothing changes.
    assert main(["history", "import", str(file), "--database-url", target]) == 0
    assert f"0 shipment(s) added, 0 gained events, {len(numbers)} already complete" in capsys.readouterr().out
    assert counts(target) == after_first
    assert export(target, capsys) == imported

    # Imported history is shown as unwatched; `history NUMBER` still reads one number.
    assert main(["status", "--all", "--json", "--database-url", target]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["active"], r["next_poll_at"]) for r in rows} == {(False, None)}
    assert {r["number"]: r["stage"] for r in rows}["EJ202603021JP"] == "delivered"
    assert main(["history", "EJ202603021JP", "--database-url", target]) == 0
    assert "Final delivery" in capsys.readouterr().out


def test_export_import_round_trip(
    db_url: str, sqlite_template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.db"
    shutil.copyfile(sqlite_template, target)
    round_trip(db_url, f"sqlite:///{target}", tmp_path, capsys)


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    yield from fresh_postgres(postgres_template)


@pytest.mark.postgres
def test_sqlite_history_moves_to_postgresql(
    sqlite_template: Path, postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source.db"
    shutil.copyfile(sqlite_template, source)
    round_trip(f"sqlite:///{source}", postgres_url, tmp_path, capsys)


GOOD = {
    "number": "EJ202603021JP",
    "item_type": "EMS",
    "destination": "DE",
    "events": [
        {"time": "2026-03-02T10:00", "status": "引受", "office": "渋谷", "region": "東京都"},
        {
            "time": "2026-03-03T09:00",
            "status": "国際交換局から発送",
            "office": "東京国際",
            "region": "東京都",
        },
        {"time": "2026-03-05T08:00", "status": "国際交換局に到着", "office": "FRANKFURT", "region": "ドイツ"},
        {
            "time": "2026-03-07T11:35",
            "status": "お届け先にお届け済み",
            "office": "BERLIN",
            "region": "ドイツ",
        },
    ],
}


def line(**changes: object) -> str:
    return json.dumps({**GOOD, **changes}, ensure_ascii=False)


def event(index: int, **changes: object) -> list[dict[str, object]]:
    events: list[dict[str, object]] = [dict(e) for e in cast(list[dict[str, object]], GOOD["events"])]
    events[index].update(changes)
    return [e for e in events if e.get("time") is not None]


def test_japanese_statuses_map_to_stages(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "ja.jsonl"
    # Saved by an editor that starts UTF-8 with a byte order mark.
    file.write_text(line() + "\n", encoding="utf-8-sig")
    assert main(["history", "import", str(file), "--database-url", db_url]) == 0
    capsys.readouterr()
    assert main(["history", "EJ202603021JP", "--database-url", db_url]) == 0
    out = capsys.readouterr().out
    stages = [row.split()[1] for row in out.splitlines() if row.startswith("  2026-")]
    # The exchange-office wordings read against the place: 東京都 is Japan, ドイツ is not.
    assert stages == ["accepted", "departed_origin", "inward_exchange", "delivered"]


def test_bad_lines_are_all_named_and_nothing_changes(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "bad.jsonl"
    lines = [
        line(number="EJ271828189JP"),  # 1: good
        '{"number": "EJ202603021JP", "item_type": "EMS"',  # 2: cut short
        json.dumps({k: v for k, v in GOOD.items() if k != "item_type"}),  # 3
        line(events=event(1, status="Teleported")),  # 4
        line(events=event(2, time="2026-02-30T08:00")),  # 5
        line(events=event(3, office="X" * 201)),  # 6
        line(destination="Germany"),  # 7
        line(number="EJ202603022JP"),  # 8: check digit
        "",  # 9: blank lines are skipped
        line(events=event(0, status="到着", extra="?")),  # 10
    ]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = counts(db_url)
    assert main(["history", "import", str(file), "--database-url", db_url]) == 2
    err = capsys.readouterr().err
    problems = [row for row in err.splitlines() if row.startswith(str(file))]
    where = [row.removeprefix(f"{file}:").split(": ")[:2] for row in problems]
    assert where == [
        ["2", "not JSON"],
        ["3", "item_type"],
        ["4", "events[1].status"],
        ["5", "events[2].time"],
        ["6", "events[3].office"],
        ["7", "destination"],
        ["8", "number"],
        ["10", "events[0].extra"],
    ]
    assert "'Teleported' is not a Japan Post status" in err
    assert "201 characters, longer than its column (200)" in err
    assert "8 line(s) with problems; nothing imported" in err
    assert counts(db_url) == before


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["history", "import", "--database-url", url]) == 2
    assert "give the FILE" in capsys.readouterr().err
    assert main(["history", "export", "out.jsonl", "--database-url", url]) == 2
    assert "> FILE.jsonl" in capsys.readouterr().err
    assert main(["history", "import", str(tmp_path / "missing.jsonl"), "--database-url", url]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["history", "EJ202603021JP", "--since", "2026-01-01", "--database-url", url]) == 2
    with pytest.raises(SystemExit):
        main(["history", "export", "--since", "yesterday", "--database-url", url])
    assert "not a date" in capsys.readouterr().err


def test_export_since_and_backtest_json_shape(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    polled_source(db_url, tmp_path, capsys)
    file = tmp_path / "old.jsonl"
    file.write_text(
        line(number="EJ271828189JP", events=event(3, time="2025-06-07T11:35")) + "\n", encoding="utf-8"
    )
    assert main(["history", "import", str(file), "--database-url", db_url]) == 0
    capsys.readouterr()
    # The polled shipments were first watched today; the imported one in March 2026.
    assert len(export(db_url, capsys, "--since", "2026-04-01")) == 3
    assert [r["number"] for r in export(db_url, capsys, "--since", "2099-01-01")] == []

    assert main(["backtest", "--json", "--database-url", db_url]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"checkpoints", "summary"}
    assert set(result["summary"]) == {"all", "lanes"}
    # Checkpoints at the stage-changing events of delivered shipments only: the simulator's EMS
    # and Yu-Pack have them, its parcel returned to sender has none.
    numbers = {point["number"] for point in result["checkpoints"]}
    assert {"EJ202603021JP", "314159265350"} <= numbers
    assert "CP314159268JP" not in numbers
    for point in result["checkpoints"]:
        assert set(point) == {"number", "at", "stage", "earliest", "latest"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", point["at"])
        assert (point["earliest"] is None) == (point["latest"] is None)
        if point["earliest"] is not None:
            assert point["earliest"] <= point["latest"]
    assert result["summary"]["all"]["parcels"] == len(numbers)
    ems = [p for p in result["checkpoints"] if p["number"] == "EJ202603021JP"]
    assert ems[0] == {**ems[0], "at": "2026-03-02T10:15", "stage": "accepted"}

    assert main(["backtest", "--database-url", db_url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["LANE", "PARCELS", "CHECKPOINTS", "COVERAGE", "MEDIAN", "WIDTH", "WITHHELD"]
    assert table[-2].split()[:2] == ["all", str(len(numbers))]


def test_the_commands_as_processes_write_utf8_whatever_the_locale(
    sqlite_template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    shutil.copyfile(sqlite_template, source)
    shutil.copyfile(sqlite_template, target)
    japanese = tmp_path / "ja.jsonl"
    japanese.write_text(line() + "\n", encoding="utf-8")
    assert main(["history", "import", str(japanese), "--database-url", f"sqlite:///{source}"]) == 0
    capsys.readouterr()
    # A terminal in Latin-1: the history file is UTF-8 all the same, and the shell redirects it.
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    exported = tmp_path / "out.jsonl"
    with exported.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "notifier", "history", "export", "--database-url", f"sqlite:///{source}"],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(exported.read_text(encoding="utf-8"))["events"][0]["status"] == "引受"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "notifier",
            "history",
            "import",
            str(exported),
            "--database-url",
            f"sqlite:///{target}",
        ],
        capture_output=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"1 shipment(s) added" in done.stdout
