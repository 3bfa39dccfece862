"""`notifier import`: a shop's CSV becomes a watch file the daemon loads, or a list of what to fix."""

from __future__ import annotations

import os
import stat
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
    assert f"{orders}:1: ignoring column(s) 'colour'" in err
    assert f"{orders}:3: number:" in err
    assert "check digit" in err
    assert f"{orders}:4: number: EJ123456785JP is already on line 2" in err
    assert not out.exists()


def test_import_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = tmp_path / "o.csv"
    orders.write_text("tracking\n314159265350\n", encoding="utf-8")
    assert main(["import", str(orders)]) == 0
    assert 'number = "314159265350"' in capsys.readouterr().out


def _config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "notifier.toml"
    config.write_text(f'[polling]\nwatch_files = ["watch.d/*.toml"]\n{extra}', encoding="utf-8")
    return config


def test_cp932_file_from_japanese_excel_with_japanese_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "注文.csv"
    # What Japanese Excel writes for "CSV (comma separated)": CP932 bytes, CRLF, a name and an
    # address column we do not use.
    orders.write_bytes(
        (
            "注文番号,氏名,住所,お問い合わせ番号,メールアドレス,言語\r\n"
            "A-1001,山田 太郎,東京都千代田区丸の内2-7-2,ＥＪ１２３４５６７８５ＪＰ,taro@example.jp,日本語\r\n"
            "A-1002,鈴木 花子,大阪府大阪市北区梅田3-2-4,1234-5678-9012,hanako@example.jp、hana@example.jp,英語\r\n"
        ).encode("cp932")
    )
    config = _config(tmp_path)
    out = tmp_path / "watch.d" / "orders.toml"
    assert main(["import", str(orders), "--output", str(out), "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 watches (3 subscribers)" in captured.out
    assert "Shift_JIS (CP932)" in captured.out
    assert f"{orders}:1: ignoring column(s) '住所'" in captured.err
    watches = {w.number: w for w in load_settings(str(config)).watches}
    assert set(watches) == {"EJ123456785JP", "123456789012"}
    assert watches["EJ123456785JP"].label == "A-1001"
    assert watches["EJ123456785JP"].locale == "ja"
    assert watches["EJ123456785JP"].subscribers == ("taro@example.jp",)
    assert watches["123456789012"].locale == "en"
    assert watches["123456789012"].subscribers == ("hanako@example.jp", "hana@example.jp")
    # The name greets the customer; their postal address stays out of the watch file.
    assert watches["EJ123456785JP"].name == "山田 太郎"
    assert "千代田区" not in out.read_text(encoding="utf-8")


def test_utf8_with_bom_and_header_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_bytes(
        "\ufeff伝票番号\tEメール\tお名前\n314159265350\tkeiko@example.jp\t佐藤 恵子\n".encode()
    )
    assert main(["import", str(orders)]) == 0
    captured = capsys.readouterr()
    assert 'number = "314159265350"' in captured.out
    assert 'subscribers = ["keiko@example.jp"]' in captured.out
    assert 'name = "佐藤 恵子"' in captured.out
    assert "'お名前'" not in captured.err


def test_utf16_from_excel_unicode_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = tmp_path / "orders.txt"
    orders.write_bytes("問い合わせ番号\t注文番号\r\n314159265350\tご注文 7\r\n".encode("utf-16"))
    assert main(["import", str(orders)]) == 0
    out = capsys.readouterr().out
    assert 'number = "314159265350"' in out
    assert 'label = "ご注文 7"' in out


def test_header_only_csv_is_refused_and_the_old_watch_file_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "watch.d" / "orders.toml"
    out.parent.mkdir()
    out.write_text('[[watch]]\nnumber = "314159265350"\n', encoding="utf-8")
    before = out.read_bytes()
    orders = tmp_path / "orders.csv"
    orders.write_bytes("お問い合わせ番号,メールアドレス\r\n,\r\n".encode("cp932"))
    assert main(["import", str(orders), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err
    assert f"{orders}: no orders, only a header" in err
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["orders.toml"]


def test_row_problems_and_duplicates_against_the_config_come_in_one_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad row must not hide that another row's number is already watched: the operator fixes
    everything in one pass."""
    config = _config(tmp_path, '\n[[watch]]\nnumber = "EJ123456785JP"\n')
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "number,email\nEJ123456785JP,a@example.com\nEJ12345678,b@example.com\n", encoding="utf-8"
    )
    out = tmp_path / "watch.d" / "orders.toml"
    assert main(["import", str(orders), "--output", str(out), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err
    assert f"{orders}:3: number:" in err
    assert f"{orders}:2: number: EJ123456785JP is already watched at {config}:4" in err
    assert not out.exists()


def test_duplicates_against_the_config_and_other_watch_files_are_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, '\n[[watch]]\nnumber = "EJ123456785JP"\n')
    watch_dir = tmp_path / "watch.d"
    watch_dir.mkdir()
    (watch_dir / "manual.toml").write_text('[[watch]]\nnumber = "123456789012"\n', encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "number,email\nEJ123456785JP,a@example.com\n314159265350,b@example.com\n1234 5678 9012,c@example.com\n",
        encoding="utf-8",
    )
    out = watch_dir / "orders.toml"
    assert main(["import", str(orders), "--output", str(out), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err
    assert f"{orders}:2: number: EJ123456785JP is already watched at {config}:4" in err
    assert f"{orders}:4: number: 123456789012 is already watched at {watch_dir / 'manual.toml'}:1" in err
    assert "314159265350" not in err
    assert not out.exists()
    # The same config through $NOTIFIER_CONFIG, as the service has it.
    os.environ["NOTIFIER_CONFIG"] = str(config)
    try:
        assert main(["import", str(orders), "--output", str(out)]) == 2
    finally:
        del os.environ["NOTIFIER_CONFIG"]
    assert not out.exists()


def test_importing_again_over_the_same_file_is_not_a_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    orders = tmp_path / "orders.csv"
    orders.write_text("number\n314159265350\n", encoding="utf-8")
    out = tmp_path / "watch.d" / "orders.toml"
    assert main(["import", str(orders), "--output", str(out), "--config", str(config)]) == 0
    orders.write_text("number\n314159265350\nEJ123456785JP\n", encoding="utf-8")
    assert main(["import", str(orders), "--output", str(out), "--config", str(config)]) == 0
    assert {w.number for w in load_settings(str(config)).watches} == {"314159265350", "EJ123456785JP"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_file_takes_the_mode_of_its_neighbours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("number\n314159265350\n", encoding="utf-8")
    watch_dir = tmp_path / "watch.d"
    watch_dir.mkdir()
    neighbour = watch_dir / "manual.toml"
    neighbour.write_text("", encoding="utf-8")
    neighbour.chmod(0o640)
    out = watch_dir / "orders.toml"
    assert main(["import", str(orders), "--output", str(out)]) == 0
    assert _mode(out) == 0o640
    assert "mode 0640" in capsys.readouterr().out
    # Replacing a file keeps that file's own mode.
    out.chmod(0o644)
    assert main(["import", str(orders), "--output", str(out)]) == 0
    assert _mode(out) == 0o644
    assert sorted(p.name for p in watch_dir.iterdir()) == ["manual.toml", "orders.toml"]


def test_written_file_in_an_empty_folder_is_readable_by_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("number\n314159265350\n", encoding="utf-8")
    out = tmp_path / "new" / "orders.toml"
    old = os.umask(0o022)
    try:
        assert main(["import", str(orders), "--output", str(out)]) == 0
    finally:
        os.umask(old)
    assert _mode(out) == 0o644


def test_a_watch_file_the_config_does_not_read_is_pointed_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    orders = tmp_path / "orders.csv"
    orders.write_text("number\n314159265350\n", encoding="utf-8")
    assert (
        main(
            ["import", str(orders), "--output", str(tmp_path / "watch.d" / "a.toml"), "--config", str(config)]
        )
        == 0
    )
    assert "does not read" not in capsys.readouterr().err
    elsewhere = tmp_path / "orders.toml"
    assert main(["import", str(orders), "--output", str(elsewhere), "--config", str(config)]) == 2
    assert "already watched" in capsys.readouterr().err  # a.toml has the number already
    (tmp_path / "watch.d" / "a.toml").unlink()
    assert main(["import", str(orders), "--output", str(elsewhere), "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"note: {config} does not read {elsewhere}: add it to [polling] watch_files" in err


def test_a_file_in_neither_encoding_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "orders.csv"
    # Line 3 holds bytes that are neither UTF-8 nor CP932 (a broken double-byte character).
    orders.write_bytes("番号\r\n314159265350\r\n".encode("cp932") + b"\x81\x7f\r\n")
    assert main(["import", str(orders), "--output", str(tmp_path / "o.toml")]) == 2
    err = capsys.readouterr().err
    assert f"{orders}:3: neither UTF-8 nor Shift_JIS (CP932)" in err
    assert not (tmp_path / "o.toml").exists()


def test_problems_name_the_line_a_row_starts_on_after_multiline_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(
        'number,住所\n314159265350,"東京都千代田区\n丸の内2-7-2"\nEJ123456784JP,大阪\n', encoding="utf-8"
    )
    assert main(["import", str(orders)]) == 2
    assert f"{orders}:4: number:" in capsys.readouterr().err
