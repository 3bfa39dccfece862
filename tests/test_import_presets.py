"""`notifier import` of a shop platform's export: Shopify's orders export, one row per line item."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from notifier.config import load_settings

EXPORT = Path(__file__).parent / "data" / "shopify_orders_export.csv"


def notifier(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_a_shopify_orders_export_becomes_one_watch_per_parcel(tmp_path: Path) -> None:
    out = tmp_path / "watch.d" / "orders.toml"
    done = notifier("import", str(EXPORT), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote 4 watches (4 subscribers)" in done.stdout
    assert f"{EXPORT}:1: read as a Shopify orders export" in done.stderr
    assert f"{EXPORT}:8: order #1004: no tracking number (not fulfilled yet): skipped" in done.stderr
    config = tmp_path / "notifier.toml"
    config.write_text('[polling]\nwatch_files = ["watch.d/*.toml"]\n', encoding="utf-8")
    watches = {w.number: w for w in load_settings(str(config)).watches}
    assert set(watches) == {"EJ112345678JP", "123456789012", "LX112345678JP", "LX112345681JP"}
    first = watches["EJ112345678JP"]
    # The order name is the label; the greeting is the shipping name, never "#1001".
    assert (first.label, first.name, first.subscribers, first.destination) == (
        "#1001",
        "Alice Smith",
        ("alice@example.com",),
        "US",
    )
    domestic = watches["123456789012"]
    assert (domestic.label, domestic.name, domestic.destination) == ("#1002", "山田 花子", "JP")
    for number in ("LX112345678JP", "LX112345681JP"):  # two parcels of one order
        assert (watches[number].label, watches[number].name) == ("#1003", "Jean Dupont")


def test_problems_in_a_shopify_export_name_the_line_and_column(tmp_path: Path) -> None:
    lines = EXPORT.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = lines[3].replace("hanako@example.jp", "hanako@@example.jp")  # #1002's first row
    lines[5] = lines[5].replace("LX112345681JP", "LX112345682JP")  # a wrong check digit
    broken = tmp_path / "orders_export.csv"
    broken.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "orders.toml"
    done = notifier("import", str(broken), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 2
    assert "nothing written" in done.stderr
    assert f"{broken}:4: subscribers:" in done.stderr
    assert f"{broken}:6: number:" in done.stderr
    assert "check digit" in done.stderr
    assert not out.exists()


def test_a_preset_forces_the_layout(tmp_path: Path) -> None:
    # As plain rows, each line item is a parcel: the line without a number is refused, as before.
    plain = notifier("import", str(EXPORT), "--preset", "plain", cwd=tmp_path)
    assert plain.returncode == 2
    assert f"{EXPORT}:3: number: '' is not a valid tracking number" in plain.stderr
    # A file with our own column names read as Shopify's export: it says what it lacks.
    ours = tmp_path / "orders.csv"
    ours.write_text("Order,Email\n1001,alice@example.com\n", encoding="utf-8")
    forced = notifier("import", str(ours), "--preset", "shopify", cwd=tmp_path)
    assert forced.returncode == 2
    assert f"{ours}:1: no tracking number column in this Shopify export" in forced.stderr
