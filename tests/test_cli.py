"""The `check`, `parse` and `simulator` commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from notifier.cli import main
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys

PAGES = Path(__file__).parent / "data" / "pages"


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUTF8": "1"},
        check=False,
    )


def test_parse_json_prints_the_documented_shape() -> None:
    result = run("parse", str(PAGES / "en_ems_detail_intransit_2014.html"), "--json")
    assert result.returncode == 0, result.stderr
    expected = json.loads((PAGES / "en_ems_detail_intransit_2014.expected.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == expected


def test_parse_text_output_and_unrecognized_exit_code(tmp_path: Path) -> None:
    result = run("parse", str(PAGES / "en_ems_detail_intransit_2014.html"))
    assert result.returncode == 0
    assert "EL015307999JP" in result.stdout
    assert "departed_origin" in result.stdout
    assert "HIGASHIKURUME" in result.stdout
    maintenance = tmp_path / "maintenance.html"
    maintenance.write_text("<html><body><p>ただいまメンテナンス中です</p></body></html>", encoding="utf-8")
    result = run("parse", str(maintenance), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"layout": "unrecognized", "items": []}
    assert "unrecognized" in result.stderr


def test_parse_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(tmp_path / "nope.html")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_refuses_invalid_numbers_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    # An unroutable base URL proves no request is attempted: the numbers are refused first.
    code = main(["check", "EL015307998JP", "12345", "--base-url", "http://192.0.2.1:9"])
    assert code == 2
    err = capsys.readouterr().err
    assert "check digit is 8" in err
    assert "'12345'" in err


def test_check_against_a_running_simulator() -> None:
    journeys = builtin_journeys()
    simulator = Simulator(journeys)
    ems = journeys[0]
    simulator.reveal(ems.number, len(ems.scans))
    with SimulatorServer(simulator) as server:
        result = run("check", ems.number, "--base-url", server.base_url, "--request-interval", "0", "--json")
        ja = run(
            "check", ems.number, "--base-url", server.base_url, "--request-interval", "0", "--locale", "ja"
        )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["number"] == ems.number
    assert entry["error"] is None
    (item,) = entry["page"]["items"]
    assert item["number"] == ems.number
    assert item["stage"] == "delivered"
    assert [e["status"] for e in item["events"]] == [s.status_en for s in ems.scans]
    assert ja.returncode == 0, ja.stderr
    assert ems.scans[-1].status_ja in ja.stdout
    assert "配達" in ja.stdout or "お届け" in ja.stdout  # the Japanese meaning of `delivered`
    assert [r.locale for r in simulator.requests] == ["en", "ja"]


def test_check_with_builtin_simulator_covers_every_outcome() -> None:
    numbers = [j.number for j in builtin_journeys()]
    result = run("check", "--simulator", *numbers)
    assert result.returncode == 0, result.stderr
    assert "simulator" in result.stderr
    for number in numbers:
        assert number in result.stdout
    assert "not_found" in result.stdout
    assert "stage=delivered" in result.stdout
    assert "stage=returned" in result.stdout


def test_check_reports_fetch_failures_with_exit_1() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(
        "check", "EL015307999JP", "--base-url", f"http://127.0.0.1:{port}", "--request-interval", "0"
    )
    assert result.returncode == 1
    assert "fetch failed" in result.stderr


def test_simulator_command_serves_until_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifier", "simulator", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        number = builtin_journeys()[0].number
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/services/srv/search/direct",
                    params={"reqCodeNo1": number, "locale": "en"},
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
        assert "履歴情報" in response.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_check_json_keeps_one_entry_per_number_even_when_pages_fail(tmp_path: Path) -> None:
    from notifier.testing.simulator import Fault

    journeys = builtin_journeys()
    simulator = Simulator(journeys)
    numbers = [journeys[0].number, journeys[1].number]
    simulator.set_fault(Fault.MAINTENANCE)
    with SimulatorServer(simulator) as server:
        as_json = run("check", *numbers, "--base-url", server.base_url, "--request-interval", "0", "--json")
        as_text = run(
            "check",
            numbers[0],
            "--base-url",
            server.base_url,
            "--request-interval",
            "0",
            "--save-pages",
            str(tmp_path),
        )
    assert as_json.returncode == 1
    entries = json.loads(as_json.stdout)
    assert [e["number"] for e in entries] == numbers
    assert all(e["error"].startswith("unrecognized page") for e in entries)
    assert all(e["page"]["layout"] == "unrecognized" for e in entries)
    assert as_text.returncode == 1
    assert numbers[0] in as_text.stderr
    assert "unrecognized page from http://127.0.0.1" in as_text.stderr
    saved = tmp_path / f"{numbers[0]}-en.html"
    assert saved.is_file()
    assert run("parse", str(saved)).returncode == 1


def test_simulator_refuses_a_busy_port_cleanly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("simulator", "--port", str(port), timeout=15)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_latest_reads_one_list_page_per_ten_numbers() -> None:
    import dataclasses

    from notifier.core.numbers import s10_check_digit
    from notifier.net.japanpost import LIST_PATH

    ems = builtin_journeys()[0]
    copies = [
        dataclasses.replace(ems, number=f"EJ{n:08d}{s10_check_digit(f'{n:08d}')}JP", revealed=3)
        for n in range(42_000_000, 42_000_012)
    ]
    simulator = Simulator(copies)
    numbers = [j.number for j in copies]
    with SimulatorServer(simulator) as server:
        base = ["--base-url", server.base_url, "--request-interval", "0"]
        as_json = run("check", "--latest", *numbers, *base, "--json")
        as_text = run("check", "--latest", *numbers[:2], *base)
    assert as_json.returncode == 0, as_json.stderr
    assert [(r.path, len(r.numbers)) for r in simulator.requests[:2]] == [(LIST_PATH, 10), (LIST_PATH, 2)]
    entries = json.loads(as_json.stdout)
    assert [e["number"] for e in entries] == numbers
    for entry in entries:
        (item,) = entry["page"]["items"]  # its own item of the list page
        assert item["number"] == entry["number"]
        assert [e["status"] for e in item["events"]] == [ems.scans[2].status_en]  # the latest only
    assert as_text.returncode == 0, as_text.stderr
    assert all(f"{n}  " in as_text.stdout for n in numbers[:2])
    assert ems.scans[2].status_en in as_text.stdout
    assert ems.scans[0].status_en not in as_text.stdout
