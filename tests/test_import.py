"""`notifier import`: a shop's CSV becomes a watch file the daemon loads, or a list of what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.cli import main
from notifier.config import load_settings


def test_csv_becomes_a_watch_file_the_daemon_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "Order Number,Tracking Number,Email,Language,Country,Time zone,Tags\n"
        "1001,EJ 123 456 785 JP,alice@example.com,en,us,America/New_York,vip\n"
        '1002,1234-5678-9012,"hanako@example.jp; taro@example.jp",ja,JP,Asia/Tokyo,\n'
        '1003 "quoted",EL015307999JP,,,,,\n',
        encoding="utf-8",
    )
    out = tmp_path / "watch.d" / "orders.toml"
    assert main(["import", str(orders), "--output", str(out)]) == 0
    assert "wrote 3 watches (3 subscribers)" in capsys.readouterr().out
    config = tmp_path / "notifier.toml"
    config.write_text('[polling]\nwatch_files = ["watch.d/*.toml"]\n', encoding="utf-8")
    watches = {w.number: w for w in load_settings(str(config)).watches}
    assert set(watches) == {"EJ123456785JP", "123456789012", "EL015307999JP"}
    assert watches["EJ123456785JP"].destination == "US"
    assert watches["EJ123456785JP"].tags == frozenset({"vip"})
    assert watches["123456789012"].subscribers == ("hanako@example.jp", "taro@example.jp")
    assert watches["123456789012"].locale == "ja"
    assert watches["EL015307999JP"].label == '1003 "quoted"'


def test_every_bad_row_is_reported_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "number;email;locale;colour\n"
        "EJ123456785JP;alice@example.com;en;red\n"
        "EJ123456784JP;bob@@example.com;fr;blue\n"
        "EJ123456785JP;carol@example.com;en;\n",
        encoding="utf-8",
    )
    out = tmp_path / "orders.toml"
    assert main(["import", str(orders), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err
    assert f"{orders}:1: column 'colour': unknown" in err
    assert f"{orders}:3: number:" in err
    assert "check digit" in err
    assert f"{orders}:4: number: EJ123456785JP is already on line 2" in err
    assert not out.exists()


def test_import_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = tmp_path / "o.csv"
    orders.write_text("tracking\n314159265350\n", encoding="utf-8")
    assert main(["import", str(orders)]) == 0
    assert 'number = "314159265350"' in capsys.readouterr().out
