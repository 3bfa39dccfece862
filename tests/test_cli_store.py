"""`poll`, `status`, `history` and `alerts` as a user runs them, against the simulator and a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.testing.simulator import Fault, Simulator, SimulatorServer, builtin_journeys


def test_poll_status_history_alerts(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journeys = builtin_journeys()
    ems, yupack, never = journeys[0], journeys[1], journeys[3]
    simulator = Simulator(journeys)
    simulator.reveal(ems.number, 4)
    with SimulatorServer(simulator) as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n',
            encoding="utf-8",
        )
        opts = ["--config", str(config)]
        assert main(["poll", ems.number, yupack.number, never.number, "--label", "Order 7", *opts]) == 0
        out = capsys.readouterr().out
        assert f"{ems.number}: 4 new event(s), stage inward_exchange" in out
        assert "departed_origin -> inward_exchange" in out

        assert main(["status", "--json", *opts]) == 0
        rows = {row["number"]: row for row in json.loads(capsys.readouterr().out)}
        assert rows[ems.number]["stage"] == "inward_exchange"
        assert rows[ems.number]["label"] == "Order 7"
        assert rows[never.number]["stage"] == "pending"
        assert rows[yupack.number]["last_event"] == yupack.scans[0].when
        # Every row says whether a delivery window is shown, and if not why (never left out).
        assert all(set(row) >= {"window", "window_withheld"} for row in rows.values())
        assert all(row["window"] is not None or row["window_withheld"] for row in rows.values())

        assert main(["status", *opts]) == 0
        table = capsys.readouterr().out
        assert table.splitlines()[0].split() == [
            "NUMBER",
            "LABEL",
            "STAGE",
            "LAST",
            "EVENT",
            "LAST",
            "POLLED",
            "NEXT",
            "POLL",
            "EXPECTED",
            "ALERTS",
            "FROM",
        ]
        assert ems.number in table

        assert main(["history", ems.number.lower(), *opts]) == 0
        history = capsys.readouterr().out
        assert [scan.status_en in history for scan in ems.scans[:4]] == [True] * 4
        assert ems.scans[4].status_en not in history
        assert main(["history", ems.number, "--json", *opts]) == 0
        found = json.loads(capsys.readouterr().out)
        assert found["number"] == ems.number
        assert found["stage"] == "inward_exchange"
        assert [e["status"] for e in found["events"]] == [scan.status_en for scan in ems.scans[:4]]
        assert set(found) >= {"window", "window_withheld"}

        simulator.set_fault(Fault.MAINTENANCE)
        assert main(["poll", ems.number, *opts]) == 1
        capsys.readouterr()
        assert main(["alerts", "--json", *opts]) == 0
        alerts = json.loads(capsys.readouterr().out)
        # As in the daemon's cycle: the number's own alert, and the kill switch's for the site.
        assert sorted((a["kind"], a["subject"]) for a in alerts) == [
            ("site_unrecognized", ""),
            ("unrecognized_page", ems.number),
        ]
        assert main(["alerts", "--ack", *(str(a["id"]) for a in alerts), *opts]) == 0
        assert "acknowledged 2" in capsys.readouterr().out
        assert main(["alerts", *opts]) == 0
        assert "no open alerts" in capsys.readouterr().out

    assert main(["history", "EJ000000005JP", *opts]) == 1
    assert "not in the database" in capsys.readouterr().err


def test_bad_config_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///x.db"\ncolour = "blue"\n[japanpost]\nrequest_interval = -1\n'
    )
    assert main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:3: database.colour: unknown key" in err
    assert f"{config}:5: japanpost.request_interval: a duration cannot be negative" in err
    config.write_text("[database\n")
    assert main(["status", "--config", str(config)]) == 2
    assert "line 1" in capsys.readouterr().err


def test_sqlite_backup_is_a_consistent_usable_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio
    import sqlite3

    from notifier.store import Store

    live = f"sqlite:///{tmp_path / 'live.db'}"
    assert main(["db", "upgrade", "--database-url", live]) == 0
    journey = builtin_journeys()[0]
    simulator = Simulator([journey])
    simulator.reveal(journey.number, 5)
    with SimulatorServer(simulator) as server:
        config = tmp_path / "c.toml"
        config.write_text(f'[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n')
        assert main(["poll", journey.number, "--config", str(config), "--database-url", live]) == 0
    # A writer holding the lock mid-transaction must not make the copy inconsistent.
    holder = sqlite3.connect(tmp_path / "live.db")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE shipments SET label = 'uncommitted'")
    copy = tmp_path / "copy.db"
    assert main(["db", "backup", str(copy), "--database-url", live]) == 0
    holder.rollback()
    holder.close()
    assert "backed up" in capsys.readouterr().out
    assert not (tmp_path / "copy.db.partial").exists()

    async def read() -> tuple[str, int]:
        store = await Store.open(f"sqlite:///{copy}")
        try:
            view = await store.get(journey.number)
            assert view is not None
            return view.label, len(await store.history(view.id))
        finally:
            await store.close()

    assert asyncio.run(read()) == ("", 5)
    assert main(["db", "backup", str(copy), "--database-url", "postgresql://x@127.0.0.1/none"]) == 2


def _column_starts(line: str, cells: list[str]) -> list[int]:
    """Display column at which each cell begins in `line` (searched left to right)."""
    from notifier.cli.columns import width

    starts, index = [], 0
    for cell in cells:
        index = line.index(cell, index)
        starts.append(width(line[:index]))
        index += len(cell)
    return starts


def test_status_aligns_japanese_labels_by_display_width(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    opts = ["--database-url", url]
    assert main(["db", "upgrade", *opts]) == 0
    labels = {"EJ123456785JP": "ご注文 1001 山田様", "314159265350": "Order 7", "123456789012": "ﾃｽﾄ注文"}
    for number, label in labels.items():
        assert main(["watch", number, "--label", label, *opts]) == 0
    capsys.readouterr()
    assert main(["status", *opts]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = _column_starts(
        lines[0], ["NUMBER", "LABEL", "STAGE", "LAST EVENT", "LAST POLLED", "NEXT POLL"]
    )
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(labels)
    for number, label in labels.items():
        assert _column_starts(rows[number], [number, label, "pending", "-", "-"]) == expected[:5]


def test_alerts_show_the_whole_message_wrapped_and_aligned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import datetime as dt

    from notifier.cli.columns import width
    from notifier.store import Store

    url = f"sqlite:///{tmp_path / 'n.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    message = (
        "message to 山田太郎 <taro@example.jp> about EJ123456785JP (delivered) failed for good: "
        "550 5.1.1 <taro@example.jp>: メールボックスが見つかりません。宛先をご確認ください。 "
        "The recipient's server refused the address after 8 attempts; end of the message"
    )

    async def raise_alerts() -> None:
        store = await Store.open(url)
        try:
            now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
            await store.raise_alert("send_failed", message, now=now, subject="EJ123456785JP")
            await store.raise_alert("stalled", "荷物が7日間動いていません", now=now, subject="314159265350")
        finally:
            await store.close()

    asyncio.run(raise_alerts())
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["alerts", "--database-url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(width(line) <= 100 for line in lines)
    start = _column_starts(lines[0], ["MESSAGE"])[0]
    # Every word of the message is there, in order, and continuation lines start under MESSAGE.
    first = next(i for i, line in enumerate(lines) if "send_failed" in line)
    block = [lines[first]]
    for line in lines[first + 1 :]:
        if line[:start].strip():
            break
        block.append(line)
    assert len(block) > 1
    assert all(width(line) - width(line.lstrip()) == start for line in block[1:])
    text = "".join(
        line[len(line) - len(line.lstrip()) :] if i else line[line.index("message to") :]
        for i, line in enumerate(block)
    )
    assert text.replace(" ", "") == message.replace(" ", "")
    stalled = next(line for line in lines if "stalled" in line)
    assert _column_starts(stalled, ["荷物"]) == [start]
    assert _column_starts(lines[first], ["send_failed", "EJ123456785JP"]) == _column_starts(
        lines[0], ["KIND", "SUBJECT"]
    )


def test_a_lease_of_a_dead_process_on_this_machine_is_stale() -> None:
    import os
    import socket
    import subprocess

    from notifier.cli.store import dead_here

    finished = subprocess.run(["true"], check=True)
    assert finished.returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = socket.gethostname()
    assert dead_here(f"poll:{host}:{gone.pid}")
    assert dead_here(f"{host}:{gone.pid}")  # a daemon's lease
    assert not dead_here(f"poll:{host}:{os.getpid()}")  # alive
    assert not dead_here(f"poll:elsewhere.example:{gone.pid}")  # another machine: cannot tell
    assert not dead_here("another process")


def test_poll_of_many_numbers_reads_one_list_page_per_ten_and_details_only_for_news(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from notifier.core.model import DETAIL_PATH
    from notifier.core.numbers import s10_check_digit
    from notifier.net.japanpost import LIST_PATH

    ems = builtin_journeys()[0]
    copies = [
        dataclasses.replace(ems, number=f"EJ{n:08d}{s10_check_digit(f'{n:08d}')}JP", revealed=2)
        for n in range(41_000_000, 41_000_025)
    ]
    simulator = Simulator(copies)
    numbers = [j.number for j in copies]
    with SimulatorServer(simulator) as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n',
            encoding="utf-8",
        )
        opts = ["--config", str(config)]
        # Never seen: a detail page each.
        assert main(["poll", *numbers, *opts]) == 0
        assert [r.path for r in simulator.requests] == [DETAIL_PATH] * 25
        assert capsys.readouterr().out.count("2 new event(s)") == 25

        # Nothing new: three list pages (10 + 10 + 5 numbers) settle all 25.
        simulator.reset_requests()
        assert main(["poll", *numbers, *opts]) == 0
        assert [(r.path, len(r.numbers)) for r in simulator.requests] == [(LIST_PATH, 10)] * 2 + [
            (LIST_PATH, 5)
        ]
        out = capsys.readouterr().out
        assert all(f"{n}: 0 new event(s), stage outward_exchange" in out for n in numbers)

        # One moved on: the list pages, then its detail page only.
        simulator.reset_requests()
        simulator.advance(numbers[13])
        assert main(["poll", *numbers, *opts]) == 0
        assert [r.path for r in simulator.requests] == [LIST_PATH] * 3 + [DETAIL_PATH]
        assert simulator.requests[-1].numbers == (numbers[13],)
        assert f"{numbers[13]}: 1 new event(s)" in capsys.readouterr().out

        # An unreadable list page: each of its numbers gets its own detail request, as before.
        simulator.reset_requests()
        simulator.set_fault(Fault.MAINTENANCE)
        assert main(["poll", *numbers[:3], *opts]) == 1
        assert [r.path for r in simulator.requests] == [LIST_PATH] + [DETAIL_PATH] * 3
        assert capsys.readouterr().out.count("(failure 1)") == 3


def test_poll_of_a_number_failing_for_its_own_reason_goes_on_with_the_others(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in the daemon's cycle (the command runs the same code): the failing number's poll is
    rolled back alone, backed off and alerted; the other numbers are polled and recorded."""
    import asyncio
    import dataclasses

    from sqlalchemy import text

    from notifier.store import Store
    from tests.test_cycle import EMS, POISON, s10

    poisoned = dataclasses.replace(
        EMS,
        number=s10(33_000_001),
        scans=[dataclasses.replace(EMS.scans[0], office_en="POISON"), *EMS.scans[1:3]],
        revealed=3,
    )
    ordinary = dataclasses.replace(EMS, number=s10(33_000_002), revealed=3)

    async def poison() -> None:
        store = await Store.open(db_url)
        try:
            async with store.engine.begin() as connection:
                for statement in POISON[store.dialect]:
                    await connection.execute(text(statement))
        finally:
            await store.close()

    asyncio.run(poison())
    with SimulatorServer(Simulator([poisoned, ordinary])) as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n',
            encoding="utf-8",
        )
        opts = ["--config", str(config)]
        assert main(["poll", poisoned.number, ordinary.number, *opts]) == 1
        out = capsys.readouterr().out
        assert f"{poisoned.number}: poll error: " in out
        assert "hostile value" in out
        assert "(failure 1)" in out
        assert f"{ordinary.number}: 3 new event(s)" in out
        assert main(["alerts", "--json", *opts]) == 0
        alerts = json.loads(capsys.readouterr().out)
        assert [(a["kind"], a["subject"]) for a in alerts] == [("poll_error", poisoned.number)]
        assert main(["status", "--json", *opts]) == 0
        rows = {row["number"]: row for row in json.loads(capsys.readouterr().out)}
        assert rows[poisoned.number]["consecutive_failures"] == 1
        assert rows[poisoned.number]["last_event"] is None  # nothing of it recorded
        assert rows[ordinary.number]["consecutive_failures"] == 0
